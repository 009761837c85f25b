//! The xlsx / xlsm reader, written with `zip` + `quick-xml` rather than calamine because
//! calamine 0.38 builds a dense grid from cell positions (a 4 KB file with cells at A1 and
//! XFD1048576 aborts the process), fails a whole sheet on an error value it does not know
//! (`#SPILL!`), and reads a formula with no saved value as an empty cell. This file owns the
//! workbook-level parts (the workbook part, its relationships, the shared strings), all found
//! through the package's relationships (`opc`); `xlsx_sheet` reads the cells.
//! Macros are never looked at, let alone run.

use std::collections::HashMap;
use std::io::BufReader;

use quick_xml::events::Event;

use crate::workbook::grid::{Format, ReadError, Sheet, Workbook};

use super::budget::Budget;
use super::opc;
use super::xlsx_sheet;
use super::xml;
use super::zipped::Archive;

/// One sheet as workbook.xml lists it.
struct SheetEntry {
    name: String,
    visible: bool,
    rel_id: Option<String>,
}

/// Reads every sheet of an xlsx or xlsm whose workbook part is `main`.
pub fn read(
    zip: &mut Archive<'_>,
    main: &str,
    format: Format,
    mut budget: Budget,
) -> Result<Workbook, ReadError> {
    let workbook_xml = zip.read_small(main, &mut budget)?;
    let entries = parse_workbook(&workbook_xml)?;
    let rels = opc::rels_of(zip, main, &mut budget)?;
    let strings_part = rels
        .iter()
        .find(|r| r.is("sharedStrings"))
        .map(|r| r.target.clone())
        .unwrap_or_else(|| format!("{}sharedStrings.xml", opc::dir_of(main)));
    let strings = match zip.has(&strings_part) {
        true => shared_strings(zip, &strings_part, &mut budget)?,
        false => Vec::new(),
    };
    let targets: HashMap<&str, &opc::Rel> = rels.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut sheets = Vec::with_capacity(entries.len().min(256));
    for entry in entries {
        let mut sheet = Sheet::new(entry.name, entry.visible);
        let rel = entry.rel_id.as_deref().and_then(|id| targets.get(id).copied());
        // Chart and dialog sheets hold no cells; a missing worksheet part is damage.
        match rel {
            Some(rel) if rel.is("chartsheet") || rel.is("dialogsheet") => continue,
            Some(rel) if zip.has(&rel.target) => {
                xlsx_sheet::read(zip, &rel.target, &strings, &mut sheet, &mut budget)?
            }
            Some(rel) => {
                return Err(ReadError::Corrupt(format!(
                    "sheet '{}' points to a missing part {}",
                    sheet.name, rel.target
                )))
            }
            None => {}
        }
        sheets.push(sheet);
    }
    if sheets.is_empty() {
        return Err(ReadError::Corrupt("the workbook lists no sheets".into()));
    }
    Ok(Workbook { format, sheets })
}

fn parse_workbook(bytes: &[u8]) -> Result<Vec<SheetEntry>, ReadError> {
    let mut reader = xml::reader(bytes);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if xml::local(&e) == "sheet" => {
                let state = xml::attr(&e, "state").unwrap_or_default();
                out.push(SheetEntry {
                    name: xml::attr(&e, "name").unwrap_or_default(),
                    visible: state != "hidden" && state != "veryHidden",
                    rel_id: xml::prefixed_attr(&e, "id"),
                });
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(xml::error(&e, "the workbook part", 0)),
        }
        buf.clear();
    }
    Ok(out)
}

/// The shared string table, rich-text runs joined, phonetic guides (`rPh`) left out. Each
/// entry is charged to the text budget as it is stored (and again at every use, by the sheet
/// reader), and an entry still being read is checked as it grows.
fn shared_strings(
    zip: &mut Archive<'_>,
    part: &str,
    budget: &mut Budget,
) -> Result<Vec<String>, ReadError> {
    let mut stream = zip.stream(part, budget)?;
    let limit = stream.limit();
    let mut reader = xml::reader(BufReader::new(xml::TokenCap::new(&mut stream)));
    let mut buf = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let (mut in_t, mut in_rph) = (false, false);
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| xml::error(&e, part, limit))?;
        budget.tick()?;
        match &event {
            Event::Start(e) => match xml::local(e) {
                "si" => current.clear(),
                "t" => in_t = true,
                "rPh" => in_rph = true,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "si" => {
                    budget.charge_string(out.len(), part, current.len())?;
                    out.push(std::mem::take(&mut current));
                }
                "t" => in_t = false,
                "rPh" => in_rph = false,
                _ => {}
            },
            Event::Empty(e) if xml::local(e) == "si" => {
                budget.charge_string(out.len(), part, 0)?;
                out.push(String::new());
            }
            Event::Eof => break,
            other if in_t && !in_rph => {
                xml::push_text(&mut current, other);
                budget.check_pending(current.len())?;
            }
            _ => {}
        }
        buf.clear();
    }
    drop(reader);
    budget.charge_unpacked(stream.seen());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workbook_part_gives_order_names_and_visibility() {
        let xml = br#"<workbook xmlns:r="urn:r"><sheets>
            <sheet name="Return" sheetId="1" r:id="rId1"/>
            <sheet name="About" sheetId="3" state="veryHidden" r:id="rId3"/>
            <sheet name="Guidance &amp; notes" sheetId="2" state="hidden" r:id="rId2"/>
        </sheets></workbook>"#;
        let sheets = parse_workbook(xml).expect("parses");
        let seen: Vec<(&str, bool, Option<&str>)> =
            sheets.iter().map(|s| (s.name.as_str(), s.visible, s.rel_id.as_deref())).collect();
        assert_eq!(
            seen,
            vec![
                ("Return", true, Some("rId1")),
                ("About", false, Some("rId3")),
                ("Guidance & notes", false, Some("rId2")),
            ]
        );
    }
}
