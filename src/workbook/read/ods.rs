//! The OpenDocument spreadsheet reader: `content.xml` of an .ods, or the whole of a flat .fods,
//! streamed into sparse sheets. Written here rather than taken from calamine, which expands
//! `number-columns-repeated` / `number-rows-repeated` into a dense grid (up to 100 million
//! slots), fails on text between cells ("Expecting 'table-cell', found Text"), as SheetJS and
//! Gnumeric write it, and cannot be stopped when a read runs out of time. Here repeats are
//! expanded only for cells that hold something (each copy counted as a real cell), an empty
//! run of any length costs nothing, and text outside a cell's paragraphs is ignored. Both ODF
//! flavours Gnumeric writes (plain ODF 1.2 and LibreOffice's extended form) are the same XML
//! to this reader; LibreOffice's `calcext:value-type="error"` marks an error result.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};

use quick_xml::events::{BytesStart, Event};

use crate::workbook::grid::{Cell, CellRef, Format, ReadError, Sheet, Workbook};

use super::budget::Budget;
use super::xml;
use super::zipped::Archive;

pub fn read_zip(zip: &mut Archive<'_>, mut budget: Budget) -> Result<Workbook, ReadError> {
    if zip.has("META-INF/manifest.xml") {
        let manifest = zip.read_small("META-INF/manifest.xml", &mut budget)?;
        if String::from_utf8_lossy(&manifest).contains("encryption-data") {
            return Err(ReadError::Encrypted);
        }
    }
    let mut stream = zip.stream("content.xml", &budget)?;
    let limit = stream.limit();
    let sheets = parse(BufReader::new(xml::TokenCap::new(&mut stream)), limit, &mut budget)?;
    budget.charge_unpacked(stream.seen());
    finish(sheets)
}

/// A flat OpenDocument spreadsheet (.fods): one XML file.
pub fn read_flat(bytes: &[u8], mut budget: Budget) -> Result<Workbook, ReadError> {
    let sheets = parse(BufReader::new(xml::TokenCap::new(bytes)), bytes.len() as u64, &mut budget)?;
    finish(sheets)
}

fn finish(sheets: Vec<Sheet>) -> Result<Workbook, ReadError> {
    if sheets.is_empty() {
        return Err(ReadError::Corrupt("the workbook lists no sheets".into()));
    }
    Ok(Workbook { format: Format::Ods, sheets })
}

/// One cell's attributes and text, between its start and end tags.
struct Pending {
    col: u32,
    repeat: u64,
    kind: String,
    ext_kind: String,
    value: Option<String>,
    formula: bool,
    text: String,
    paragraphs: usize,
}

/// Where the reader is.
#[derive(Default)]
struct State {
    hidden_styles: HashSet<String>,
    style: Option<String>,
    sheets: Vec<Sheet>,
    sheet: Option<Sheet>,
    row: u32,
    row_repeat: u64,
    col: u32,
    /// The current row's cells: column, how many times repeated, value.
    cells: Vec<(u32, u64, Cell)>,
    cell: Option<Pending>,
    in_paragraph: usize,
    in_annotation: usize,
}

fn number(e: &BytesStart<'_>, attr: &str) -> u64 {
    xml::attr(e, attr).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(1).max(1)
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn parse(input: impl BufRead, limit: u64, budget: &mut Budget) -> Result<Vec<Sheet>, ReadError> {
    let mut reader = xml::reader(input);
    let mut buf = Vec::new();
    let mut s = State::default();
    loop {
        let event =
            reader.read_event_into(&mut buf).map_err(|e| xml::error(&e, "content.xml", limit))?;
        budget.tick()?;
        match &event {
            Event::Start(e) => start(&mut s, e, false, budget)?,
            Event::Empty(e) => start(&mut s, e, true, budget)?,
            Event::End(e) => end(&mut s, e.local_name().as_ref(), budget)?,
            Event::Eof => break,
            other => {
                if let (Some(cell), true, 0) =
                    (s.cell.as_mut(), s.in_paragraph > 0, s.in_annotation)
                {
                    xml::push_text(&mut cell.text, other);
                    budget.check_pending(cell.text.len())?;
                }
            }
        }
        buf.clear();
    }
    Ok(s.sheets)
}

fn start(
    s: &mut State,
    e: &BytesStart<'_>,
    empty: bool,
    budget: &mut Budget,
) -> Result<(), ReadError> {
    if s.in_annotation > 0 {
        if !empty {
            s.in_annotation += 1;
        }
        return Ok(());
    }
    match xml::local(e) {
        "style" if xml::attr(e, "family").as_deref() == Some("table") => {
            s.style = xml::attr(e, "name");
        }
        "table-properties" if xml::attr(e, "display").as_deref() == Some("false") => {
            if let Some(name) = s.style.clone() {
                s.hidden_styles.insert(name);
            }
        }
        "table" => {
            let visible = xml::attr(e, "style-name").is_none_or(|n| !s.hidden_styles.contains(&n));
            s.sheet = Some(Sheet::new(xml::attr(e, "name").unwrap_or_default(), visible));
            s.row = 0;
            if empty {
                end(s, "table", budget)?;
            }
        }
        "table-row" => {
            s.row_repeat = number(e, "number-rows-repeated");
            s.col = 0;
            s.cells.clear();
            if empty {
                end(s, "table-row", budget)?;
            }
        }
        name @ ("table-cell" | "covered-table-cell") => {
            let a = CellAttrs::of(e);
            let col = s.col;
            s.col = to_u32(u64::from(s.col).saturating_add(a.repeat));
            span(s, &a, col, budget)?;
            // A covered cell is hidden under a merge; what it holds is not shown.
            if name == "table-cell" {
                s.cell = Some(Pending {
                    col,
                    repeat: a.repeat,
                    kind: a.kind,
                    ext_kind: a.ext_kind,
                    value: a.value,
                    formula: a.formula,
                    text: String::new(),
                    paragraphs: 0,
                });
                if empty {
                    end(s, "table-cell", budget)?;
                }
            }
        }
        "annotation" if !empty => s.in_annotation = 1,
        "p" | "h" if s.cell.is_some() => {
            if let Some(cell) = s.cell.as_mut() {
                if cell.paragraphs > 0 {
                    cell.text.push('\n');
                }
                cell.paragraphs += 1;
            }
            if !empty {
                s.in_paragraph += 1;
            }
        }
        "s" if s.in_paragraph > 0 => {
            let spaces = number(e, "c").min(1_000) as usize;
            if let Some(cell) = s.cell.as_mut() {
                cell.text.extend(std::iter::repeat_n(' ', spaces));
            }
        }
        "tab" if s.in_paragraph > 0 => s.cell.iter_mut().for_each(|c| c.text.push('\t')),
        "line-break" if s.in_paragraph > 0 => s.cell.iter_mut().for_each(|c| c.text.push('\n')),
        _ => {}
    }
    Ok(())
}

/// A cell's attributes, read in one pass (there can be millions of cells).
#[derive(Default)]
struct CellAttrs {
    repeat: u64,
    cols_spanned: u64,
    rows_spanned: u64,
    kind: String,
    ext_kind: String,
    value: Option<String>,
    string_value: Option<String>,
    formula: bool,
}

impl CellAttrs {
    fn of(e: &BytesStart<'_>) -> CellAttrs {
        let mut a =
            CellAttrs { repeat: 1, cols_spanned: 1, rows_spanned: 1, ..CellAttrs::default() };
        let count = |v: &str| v.trim().parse::<u64>().unwrap_or(1).max(1);
        xml::each_attr(e, |prefix, name, v| match (prefix, name) {
            (_, "number-columns-repeated") => a.repeat = count(v),
            (_, "number-columns-spanned") => a.cols_spanned = count(v),
            (_, "number-rows-spanned") => a.rows_spanned = count(v),
            (Some("calcext"), "value-type") => a.ext_kind = v.to_string(),
            (_, "value-type") => a.kind = v.to_string(),
            (_, "value" | "date-value" | "time-value" | "boolean-value") => {
                a.value = Some(v.to_string())
            }
            (_, "string-value") => a.string_value = Some(v.to_string()),
            (_, "formula") => a.formula = true,
            _ => {}
        });
        if a.value.is_none() {
            a.value = a.string_value.take();
        }
        a
    }
}

/// A merged range starting at this cell.
fn span(s: &mut State, a: &CellAttrs, col: u32, budget: &mut Budget) -> Result<(), ReadError> {
    if a.cols_spanned <= 1 && a.rows_spanned <= 1 {
        return Ok(());
    }
    let Some(sheet) = s.sheet.as_mut() else { return Ok(()) };
    let last_row = to_u32(u64::from(s.row).saturating_add(a.rows_spanned - 1));
    let last_col = to_u32(u64::from(col).saturating_add(a.cols_spanned - 1));
    budget.charge_cell(&sheet.name, sheet.merged.len())?;
    sheet.merged.push((CellRef::new(s.row, col), CellRef::new(last_row, last_col)));
    Ok(())
}

fn end(s: &mut State, local: &str, budget: &mut Budget) -> Result<(), ReadError> {
    if s.in_annotation > 0 {
        s.in_annotation -= 1;
        return Ok(());
    }
    match local {
        "p" | "h" => s.in_paragraph = s.in_paragraph.saturating_sub(1),
        "table-cell" => {
            if let Some(pending) = s.cell.take() {
                if let Some(cell) = value(pending.kind.as_str(), &pending) {
                    s.cells.push((pending.col, pending.repeat, cell));
                }
            }
            s.in_paragraph = 0;
        }
        "table-row" => {
            let Some(sheet) = s.sheet.as_mut() else { return Ok(()) };
            // Repeats are laid out only for cells that hold something; each copy is counted,
            // so a repeat count can never make more cells than the budget allows.
            if !s.cells.is_empty() {
                for r in 0..s.row_repeat {
                    let row = to_u32(u64::from(s.row).saturating_add(r));
                    for (col, repeat, cell) in &s.cells {
                        for c in 0..*repeat {
                            let at = CellRef::new(row, to_u32(u64::from(*col).saturating_add(c)));
                            budget.put(sheet, at, cell.clone())?;
                        }
                    }
                }
            }
            s.row = to_u32(u64::from(s.row).saturating_add(s.row_repeat));
            s.cells.clear();
        }
        "table" => {
            if let Some(sheet) = s.sheet.take() {
                s.sheets.push(sheet);
            }
        }
        "style" => s.style = None,
        _ => {}
    }
    Ok(())
}

/// A cell's value from its type and attributes (ODF 1.2 §19.385); `None` for an empty cell.
fn value(kind: &str, c: &Pending) -> Option<Cell> {
    let attr = c.value.as_deref().map(str::trim);
    let cell =
        match kind {
            "float" | "percentage" | "currency" => Cell::Number(attr?.parse().ok()?),
            "date" => iso_date(attr?)
                .map_or_else(|| Cell::Text(attr.unwrap_or("").into()), Cell::DateTime),
            "time" => duration(attr?)
                .map_or_else(|| Cell::Text(attr.unwrap_or("").into()), Cell::DateTime),
            "boolean" => Cell::Bool(matches!(attr?, "true" | "1")),
            _ if c.ext_kind == "error" => Cell::Error(c.text.clone()),
            "string" => {
                let text = if c.paragraphs > 0 { c.text.clone() } else { c.value.clone()? };
                // LibreOffice saves an error result of a formula as its text.
                if c.formula && looks_like_error(&text) {
                    Cell::Error(text)
                } else {
                    Cell::Text(text)
                }
            }
            _ if c.paragraphs > 0 && !c.text.is_empty() => Cell::Text(c.text.clone()),
            _ => return None,
        };
    Some(cell)
}

fn looks_like_error(text: &str) -> bool {
    text == "#N/A"
        || (text.starts_with('#')
            && (text.ends_with('!') || text.ends_with('?'))
            && text.len() <= 16
            && text[1..].chars().all(|c| c.is_ascii_uppercase() || "/0!?".contains(c)))
}

/// An ISO 8601 date or date-time as the serial number Excel uses.
fn iso_date(text: &str) -> Option<f64> {
    use chrono::{NaiveDate, NaiveDateTime};
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let at = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0))?;
    Some(at.signed_duration_since(epoch).num_milliseconds() as f64 / 86_400_000.0)
}

/// An ISO 8601 duration (`PT12H30M00S`) as a fraction of a day.
fn duration(text: &str) -> Option<f64> {
    let rest = text.strip_prefix("PT").or_else(|| text.strip_prefix("-PT"))?;
    let (mut seconds, mut number) = (0.0, String::new());
    for ch in rest.chars() {
        let unit = match ch {
            'H' => 3600.0,
            'M' => 60.0,
            'S' => 1.0,
            _ => {
                number.push(ch);
                continue;
            }
        };
        seconds += number.parse::<f64>().ok()? * unit;
        number.clear();
    }
    let sign = if text.starts_with('-') { -1.0 } else { 1.0 };
    Some(sign * seconds / 86_400.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workbook::grid::Limits;
    use crate::workbook::read::budget::Cancel;

    fn sheets(xml: &str, limits: &Limits) -> Result<Vec<Sheet>, ReadError> {
        let mut budget = Budget::new(limits, &Cancel::new());
        parse(xml.as_bytes(), xml.len() as u64, &mut budget)
    }

    const NS: &str = r#"xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0""#;

    #[test]
    fn whitespace_between_cells_and_repeats_are_read_as_a_person_sees_them() {
        let xml = format!(
            r#"<office:document-content {NS}><office:body><office:spreadsheet>
            <table:table table:name="Return">
              <table:table-row table:number-rows-repeated="2">
                <table:table-cell table:number-columns-repeated="2"/>
                <table:table-cell office:value-type="float" office:value="68653">
                  <text:p>68,653</text:p>
                </table:table-cell>
              </table:table-row>
              <table:table-row table:number-rows-repeated="1048570">
                <table:table-cell table:number-columns-repeated="16384"/>
              </table:table-row>
              <table:table-row><table:table-cell office:value-type="string">
                <text:p>a<text:s text:c="2"/>b</text:p><office:annotation><text:p>note</text:p></office:annotation>
              </table:table-cell></table:table-row>
            </table:table></office:spreadsheet></office:body></office:document-content>"#
        );
        let got = sheets(&xml, &Limits::default()).expect("reads");
        let sheet = &got[0];
        assert_eq!(sheet.cells.len(), 3);
        assert_eq!(sheet.get(0, 2), Some(&Cell::Number(68653.0)));
        assert_eq!(sheet.get(1, 2), Some(&Cell::Number(68653.0)));
        assert_eq!(sheet.get(1_048_572, 0), Some(&Cell::Text("a  b".into())));
    }

    #[test]
    fn a_repeated_value_counts_every_copy_against_the_cell_limit() {
        let xml = format!(
            r#"<office:document-content {NS}><office:body><office:spreadsheet>
            <table:table table:name="Return"><table:table-row table:number-rows-repeated="1000000">
            <table:table-cell table:number-columns-repeated="16384" office:value-type="float" office:value="1"/>
            </table:table-row></table:table></office:spreadsheet></office:body></office:document-content>"#
        );
        let limits = Limits { cells_per_sheet: 1_000, ..Limits::default() };
        assert!(matches!(sheets(&xml, &limits), Err(ReadError::TooLarge { actual: 1_001, .. })));
    }

    #[test]
    fn durations_are_fractions_of_a_day() {
        assert_eq!(duration("PT12H00M00S"), Some(0.5));
        assert_eq!(duration("PT00H00M36S"), Some(36.0 / 86_400.0));
    }
}
