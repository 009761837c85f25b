//! The ods reader: calamine decodes, after this module has streamed content.xml once to size
//! every table. calamine expands `number-columns-repeated` / `number-rows-repeated` into a dense
//! grid (it allows up to 100 million slots, several gigabytes), so a few hundred bytes of XML
//! could exhaust memory; the area up to the last non-empty row and column of each table, and
//! their sum, are checked against the cell limit before calamine sees the file.

use std::io::{BufReader, Cursor};

use calamine::{Ods, OdsError, Reader};
use quick_xml::events::{BytesStart, Event};

use crate::workbook::grid::{CellRef, Format, Limits, ReadError, Sheet, Workbook};

use super::budget::{self, Budget};
use super::calc;
use super::xml;
use super::zipped::{self, Archive, Capped};

pub fn read(bytes: &[u8], zip: &mut Archive<'_>, limits: &Limits) -> Result<Workbook, ReadError> {
    if is_encrypted(zip, limits)? {
        return Err(ReadError::Encrypted);
    }
    let merged = scan(zip, limits)?;
    let mut workbook = calc::guarded("the ods file", || decode(bytes, limits))?;
    // calamine does not report merged cells for ods; the walk found them, table by table.
    for (sheet, merges) in workbook.sheets.iter_mut().zip(merged) {
        sheet.merged = merges;
    }
    Ok(workbook)
}

fn is_encrypted(zip: &mut Archive<'_>, limits: &Limits) -> Result<bool, ReadError> {
    if !zipped::has(zip, "META-INF/manifest.xml") {
        return Ok(false);
    }
    let manifest = zipped::read_entry(zip, "META-INF/manifest.xml", limits.unpacked_bytes)?;
    Ok(String::from_utf8_lossy(&manifest).contains("encryption-data"))
}

/// Size of one table as calamine would lay it out.
#[derive(Default)]
struct Table {
    rows: u64,
    used_rows: u64,
    used_cols: u64,
}

fn repeats(e: &BytesStart<'_>, attr: &str) -> u64 {
    xml::attr(e, attr).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(1).max(1)
}

/// Walks content.xml, checking each table's area; returns each table's merged ranges.
fn scan(zip: &mut Archive<'_>, limits: &Limits) -> Result<Vec<Vec<Merge>>, ReadError> {
    let check = Budget::new(limits);
    let limit = limits.unpacked_bytes;
    let file = zip.by_name("content.xml").map_err(zipped::zip_error)?;
    let mut reader = xml::reader(BufReader::new(xml::TokenCap::new(Capped::new(file, limit))));
    let mut buf = Vec::new();
    let mut table = Table::default();
    let mut name = String::new();
    let (mut row_repeat, mut col, mut row_used) = (1u64, 0u64, 0u64);
    let mut total: u64 = 0;
    let mut merged: Vec<Vec<Merge>> = Vec::new();
    loop {
        let event =
            reader.read_event_into(&mut buf).map_err(|e| xml::error(&e, "content.xml", limit))?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let empty = matches!(event, Event::Empty(_));
                match e.name().as_ref() {
                    "table:table" => {
                        table = Table::default();
                        name = xml::attr(e, "name").unwrap_or_default();
                        merged.push(Vec::new());
                    }
                    "table:table-row" => {
                        row_repeat = repeats(e, "number-rows-repeated");
                        (col, row_used) = (0, 0);
                        if empty {
                            table.rows = table.rows.saturating_add(row_repeat);
                        }
                    }
                    "table:table-cell" | "table:covered-table-cell" => {
                        if let (Some(list), Some(m)) =
                            (merged.last_mut(), spanned(e, table.rows, col))
                        {
                            check.check_declared(&name, list.len() as u64 + 1)?;
                            list.push(m);
                        }
                        col = col.saturating_add(repeats(e, "number-columns-repeated"));
                        let has_value = !empty
                            || xml::attr(e, "value-type").is_some()
                            || xml::attr(e, "formula").is_some();
                        if has_value {
                            row_used = col;
                        }
                    }
                    _ => {}
                }
            }
            Event::End(e) => match e.name().as_ref() {
                "table:table-row" => {
                    table.rows = table.rows.saturating_add(row_repeat);
                    if row_used > 0 {
                        table.used_rows = table.rows;
                        table.used_cols = table.used_cols.max(row_used);
                    }
                }
                "table:table" => {
                    let area = budget::area(0, 0, table.used_rows, table.used_cols);
                    let area = if table.used_rows == 0 { 0 } else { area };
                    check.check_declared(&name, area)?;
                    total = total.saturating_add(area);
                    check.check_declared("all sheets together", total)?;
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(merged)
}

type Merge = (CellRef, CellRef);

/// The merged range a cell starts, from its `number-columns-spanned` / `number-rows-spanned`.
fn spanned(e: &BytesStart<'_>, row: u64, col: u64) -> Option<Merge> {
    let span = |attr: &str| xml::attr(e, attr).and_then(|v| v.trim().parse::<u64>().ok());
    let (cols, rows) = (span("number-columns-spanned"), span("number-rows-spanned"));
    if cols.unwrap_or(1) <= 1 && rows.unwrap_or(1) <= 1 {
        return None;
    }
    let at = |r: u64, c: u64| {
        CellRef::new(u32::try_from(r).unwrap_or(u32::MAX), u32::try_from(c).unwrap_or(u32::MAX))
    };
    let last_row = row.saturating_add(rows.unwrap_or(1).max(1) - 1);
    let last_col = col.saturating_add(cols.unwrap_or(1).max(1) - 1);
    Some((at(row, col), at(last_row, last_col)))
}

fn decode(bytes: &[u8], limits: &Limits) -> Result<Workbook, ReadError> {
    let mut ods: Ods<_> = Ods::new(Cursor::new(bytes)).map_err(ods_error)?;
    let mut budget = Budget::new(limits);
    let metadata = ods.sheets_metadata().to_vec();
    let mut sheets = Vec::with_capacity(metadata.len());
    for meta in metadata {
        let mut sheet = Sheet::new(meta.name.clone(), calc::visible(meta.visible));
        let values = ods.worksheet_range(&meta.name).map_err(ods_error)?;
        let formulas = ods.worksheet_formula(&meta.name).ok();
        calc::fill(&mut sheet, &values, formulas.as_ref(), &mut budget)?;
        calc::errors_from_formula_text(&mut sheet, formulas.as_ref());
        sheets.push(sheet);
    }
    if sheets.is_empty() {
        return Err(ReadError::Corrupt("the workbook lists no sheets".into()));
    }
    Ok(Workbook { format: Format::Ods, sheets })
}

fn ods_error(e: OdsError) -> ReadError {
    match e {
        OdsError::Password => ReadError::Encrypted,
        other => ReadError::Corrupt(format!("the ods file cannot be decoded: {other}")),
    }
}
