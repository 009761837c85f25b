//! The xlsx / xlsm reader, written with `zip` + `quick-xml` rather than calamine because
//! calamine 0.38 builds a dense grid from cell positions (a 4 KB file with cells at A1 and
//! XFD1048576 aborts the process), fails a whole sheet on an error value it does not know
//! (`#SPILL!`), and reads a formula with no saved value as an empty cell. This file owns the
//! workbook-level parts (workbook.xml, its rels, sharedStrings); `xlsx_sheet` reads the cells.
//! Macros are never looked at, let alone run.

use std::collections::HashMap;
use std::io::BufReader;

use quick_xml::events::Event;

use crate::workbook::grid::{Format, Limits, ReadError, Sheet, Workbook};

use super::budget::Budget;
use super::xlsx_sheet;
use super::xml;
use super::zipped::{self, Archive, Capped};

/// One sheet as workbook.xml lists it.
struct SheetEntry {
    name: String,
    visible: bool,
    rel_id: Option<String>,
}

/// Reads every sheet of an xlsx or xlsm whose archive already passed the zip guards.
pub fn read(zip: &mut Archive<'_>, format: Format, limits: &Limits) -> Result<Workbook, ReadError> {
    let mut budget = Budget::new(limits);
    let workbook_xml = small_part(zip, "xl/workbook.xml", &mut budget)?;
    let entries = parse_workbook(&workbook_xml)?;
    let rels = match zipped::has(zip, "xl/_rels/workbook.xml.rels") {
        true => parse_rels(&small_part(zip, "xl/_rels/workbook.xml.rels", &mut budget)?)?,
        false => Vec::new(),
    };
    let strings_part = rels
        .iter()
        .find(|r| r.kind.ends_with("/sharedStrings"))
        .map(|r| r.target.clone())
        .unwrap_or_else(|| "xl/sharedStrings.xml".to_string());
    let strings = match zipped::has(zip, &strings_part) {
        true => shared_strings(zip, &strings_part, &mut budget)?,
        false => Vec::new(),
    };
    let targets: HashMap<&str, &str> =
        rels.iter().map(|r| (r.id.as_str(), r.target.as_str())).collect();
    let mut sheets = Vec::with_capacity(entries.len().min(256));
    for entry in entries {
        let mut sheet = Sheet::new(entry.name, entry.visible);
        let part = entry.rel_id.as_deref().and_then(|id| targets.get(id).copied());
        if let Some(part) = part {
            if !zipped::has(zip, part) {
                return Err(ReadError::Corrupt(format!(
                    "sheet '{}' points to a missing part {part}",
                    sheet.name
                )));
            }
            xlsx_sheet::read(zip, part, &strings, &mut sheet, &mut budget)?;
        }
        sheets.push(sheet);
    }
    if sheets.is_empty() {
        return Err(ReadError::Corrupt("the workbook lists no sheets".into()));
    }
    Ok(Workbook { format, sheets })
}

fn small_part(
    zip: &mut Archive<'_>,
    name: &str,
    budget: &mut Budget,
) -> Result<Vec<u8>, ReadError> {
    let bytes = zipped::read_entry(zip, name, budget.unpacked_left())?;
    budget.charge_unpacked(bytes.len() as u64);
    Ok(bytes)
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

struct Rel {
    id: String,
    kind: String,
    /// The part's name inside the zip (`xl/worksheets/sheet1.xml`).
    target: String,
}

fn parse_rels(bytes: &[u8]) -> Result<Vec<Rel>, ReadError> {
    let mut reader = xml::reader(bytes);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if xml::local(&e) == "Relationship" => {
                // External targets (links to other files) are never opened.
                if xml::attr(&e, "TargetMode").is_none_or(|m| m != "External") {
                    out.push(Rel {
                        id: xml::attr(&e, "Id").unwrap_or_default(),
                        kind: xml::attr(&e, "Type").unwrap_or_default(),
                        target: part_name(&xml::attr(&e, "Target").unwrap_or_default()),
                    });
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(xml::error(&e, "the workbook relationships", 0)),
        }
        buf.clear();
    }
    Ok(out)
}

/// Resolves a relationship target of `xl/workbook.xml` to a zip entry name.
fn part_name(target: &str) -> String {
    let joined = match target.strip_prefix('/') {
        Some(absolute) => absolute.to_string(),
        None => format!("xl/{target}"),
    };
    let mut parts: Vec<&str> = Vec::new();
    for piece in joined.split('/') {
        match piece {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The shared string table, rich-text runs joined, phonetic guides (`rPh`) left out.
fn shared_strings(
    zip: &mut Archive<'_>,
    part: &str,
    budget: &mut Budget,
) -> Result<Vec<String>, ReadError> {
    let limit = budget.unpacked_left();
    let file = zip.by_name(part).map_err(zipped::zip_error)?;
    let mut reader = xml::reader(BufReader::new(xml::TokenCap::new(Capped::new(file, limit))));
    let mut buf = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let (mut in_t, mut in_rph) = (false, false);
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| xml::error(&e, part, limit))?;
        match &event {
            Event::Start(e) => match xml::local(e) {
                "si" => current.clear(),
                "t" => in_t = true,
                "rPh" => in_rph = true,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "si" => {
                    budget.charge_string(&out, part)?;
                    out.push(std::mem::take(&mut current));
                }
                "t" => in_t = false,
                "rPh" => in_rph = false,
                _ => {}
            },
            Event::Empty(e) if xml::local(e) == "si" => {
                budget.charge_string(&out, part)?;
                out.push(String::new());
            }
            Event::Eof => break,
            other if in_t && !in_rph => {
                xml::push_text(&mut current, other);
            }
            _ => {}
        }
        buf.clear();
    }
    budget.charge_unpacked(reader.get_ref().get_ref().get_ref().seen());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_targets_resolve_to_zip_entry_names() {
        assert_eq!(part_name("worksheets/sheet1.xml"), "xl/worksheets/sheet1.xml");
        assert_eq!(part_name("/xl/worksheets/sheet2.xml"), "xl/worksheets/sheet2.xml");
        assert_eq!(part_name("../xl/./sharedStrings.xml"), "xl/sharedStrings.xml");
    }

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
