//! What the calamine-backed readers (xls, xlsb, ods) share: mapping calamine's `Data` to our
//! `Cell`, filling a sparse `Sheet` from a calamine range under the cell budget, and running
//! calamine behind `catch_unwind`, because some of its parsers index into record buffers without
//! checking lengths and a hostile file must end in an error, not a crash of the daemon.

use std::panic::{self, AssertUnwindSafe};

use calamine::{Data, Range, SheetVisible};

use crate::workbook::grid::{Cell, CellRef, ReadError, Sheet};

use super::budget::Budget;

/// Runs a calamine call; a panic inside it becomes `Corrupt`.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, ReadError>) -> Result<T, ReadError> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(ReadError::Corrupt(format!("{what} has records that cannot be decoded"))),
    }
}

/// One calamine value as a cell; `None` for an empty cell.
pub fn cell(data: &Data) -> Option<Cell> {
    Some(match data {
        Data::Empty => return None,
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Float(f) => Cell::Number(*f),
        Data::String(s) => Cell::Text(s.clone()),
        Data::Bool(b) => Cell::Bool(*b),
        Data::DateTime(d) => Cell::DateTime(d.as_f64()),
        Data::DateTimeIso(s) => iso_cell(s),
        Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(e) => Cell::Error(e.to_string()),
    })
}

/// ods stores dates as ISO text; the grid wants Excel serials, as xlsx gives them.
fn iso_cell(text: &str) -> Cell {
    use chrono::{NaiveDate, NaiveDateTime};
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).and_then(|d| d.and_hms_opt(0, 0, 0));
    let at = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0));
    match (epoch, at) {
        (Some(epoch), Some(at)) => {
            let ms = at.signed_duration_since(epoch).num_milliseconds() as f64;
            Cell::DateTime(ms / 86_400_000.0)
        }
        _ => Cell::Text(text.to_string()),
    }
}

pub fn visible(v: SheetVisible) -> bool {
    matches!(v, SheetVisible::Visible)
}

/// Copies the non-empty cells of a value range (and formulas that have no value) into `sheet`.
pub fn fill(
    sheet: &mut Sheet,
    values: &Range<Data>,
    formulas: Option<&Range<String>>,
    budget: &mut Budget,
) -> Result<(), ReadError> {
    for (row, col, data) in values.used_cells() {
        let Some(value) = cell(data) else { continue };
        let at = absolute(values.start(), row, col);
        budget.charge_cell(&sheet.name, sheet.cells.len())?;
        sheet.cells.insert(at, value);
    }
    let Some(formulas) = formulas else { return Ok(()) };
    for (row, col, text) in formulas.used_cells() {
        let at = absolute(formulas.start(), row, col);
        if text.is_empty() || sheet.cells.contains_key(&at) {
            continue;
        }
        budget.charge_cell(&sheet.name, sheet.cells.len())?;
        sheet.cells.insert(at, Cell::FormulaNoValue(text.clone()));
    }
    Ok(())
}

/// ods saves a formula's error result as the text `#DIV/0!` (calamine reads it as a string);
/// where a formula cell's text has the shape of an error value, it is turned into one, as xlsx
/// and xls give it.
pub fn errors_from_formula_text(sheet: &mut Sheet, formulas: Option<&Range<String>>) {
    let Some(formulas) = formulas else { return };
    for (row, col, text) in formulas.used_cells() {
        if text.is_empty() {
            continue;
        }
        let at = absolute(formulas.start(), row, col);
        if let Some(Cell::Text(value)) = sheet.cells.get(&at) {
            if looks_like_error(value) {
                let error = Cell::Error(value.clone());
                sheet.cells.insert(at, error);
            }
        }
    }
}

fn looks_like_error(text: &str) -> bool {
    text == "#N/A"
        || (text.starts_with('#')
            && (text.ends_with('!') || text.ends_with('?'))
            && text.len() <= 16
            && text[1..].chars().all(|c| c.is_ascii_uppercase() || "/0!?".contains(c)))
}

/// `used_cells` positions are relative to the range's start.
fn absolute(start: Option<(u32, u32)>, row: usize, col: usize) -> CellRef {
    let (r0, c0) = start.unwrap_or((0, 0));
    let row = r0.saturating_add(u32::try_from(row).unwrap_or(u32::MAX));
    let col = c0.saturating_add(u32::try_from(col).unwrap_or(u32::MAX));
    CellRef::new(row, col)
}
