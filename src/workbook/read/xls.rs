//! The xls reader (BIFF8 from Excel 97–2003 and BIFF5 from Excel 5/95), written here rather
//! than taken from calamine: calamine builds a dense grid spanning every sheet's outermost
//! cells (a 65536 × 256 sheet is 16.7 million slots), reserves memory from the DIMENSIONS
//! record, cannot be stopped when a read runs out of time, does not decrypt Excel's default
//! password, and opens the container with rules the files SheetJS writes break. This reader
//! walks the records once, keeps only real cells (each counted with its text as it is stored),
//! and looks at the cancel flag at every record.
//!
//! Recognised and refused with what to do: a password (FILEPASS: XOR obfuscation, or RC4 with a
//! password other than Excel's default, see `xls_crypt`), and BIFF2–4 (Excel 2.x, 3.0 and 4.0,
//! from 1987–1992; not OLE2 files at all, so `detect` names them).

use crate::workbook::grid::{Cell, CellRef, Format, ReadError, Sheet, Workbook};

use super::budget::Budget;
use super::cfb::Compound;
use super::xls_crypt;
use super::xls_records::{self as rec, Records, Segments};

const BOF: u16 = 0x0809;
const EOF: u16 = 0x000A;
const FILEPASS: u16 = 0x002F;
const BOUNDSHEET: u16 = 0x0085;
const SST: u16 = 0x00FC;

/// A sheet as the globals list it.
struct Entry {
    name: String,
    visible: bool,
    /// 0 worksheet (or dialog), 1 macro sheet, 2 chart, 6 VBA module.
    kind: u8,
    offset: usize,
}

/// The workbook's globals: its sheets and shared strings.
struct Globals {
    biff8: bool,
    sheets: Vec<Entry>,
    strings: Vec<String>,
}

pub fn read(cfb: &Compound<'_>, mut budget: Budget) -> Result<Workbook, ReadError> {
    let Some(stream) = cfb.stream("Workbook").or_else(|| cfb.stream("Book")) else {
        return Err(ReadError::Corrupt("the xls file has no workbook stream".into()));
    };
    let stream = deciphered(stream)?;
    let globals = globals(&stream, &mut budget)?;
    let starts = substreams(&stream);
    let mut sheets = Vec::new();
    for (i, entry) in globals.sheets.iter().enumerate() {
        if entry.kind == 2 || entry.kind == 6 {
            continue; // charts and VBA modules hold no cells
        }
        let at_bof = Records::new(&stream, entry.offset).next().is_some_and(|r| r.kind == BOF);
        let offset = match (at_bof, starts.get(i)) {
            (true, _) => entry.offset,
            (false, Some(&o)) => o,
            (false, None) => continue,
        };
        let mut sheet = Sheet::new(entry.name.clone(), entry.visible);
        read_sheet(&stream, offset, &globals, &mut sheet, &mut budget)?;
        sheets.push(sheet);
    }
    if sheets.is_empty() {
        return Err(ReadError::Corrupt("the workbook lists no sheets".into()));
    }
    Ok(Workbook { format: Format::Xls, sheets })
}

/// The stream as written, or deciphered when FILEPASS says it is encrypted.
fn deciphered(stream: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    let mut filepass = None;
    for r in Records::new(&stream, 0) {
        match r.kind {
            FILEPASS => {
                filepass = Some((r.data.to_vec(), r.offset + 4 + r.data.len()));
                break;
            }
            EOF => break,
            _ => {}
        }
    }
    match filepass {
        Some((data, after)) => xls_crypt::decrypt(&stream, &data, after),
        None => Ok(stream),
    }
}

fn globals(stream: &[u8], budget: &mut Budget) -> Result<Globals, ReadError> {
    let mut records = Records::new(stream, 0);
    let first = records.next().filter(|r| r.kind == BOF);
    let version = first.and_then(|r| rec::u16_at(r.data, 0)).unwrap_or(0);
    let biff8 = match version {
        0x0600 => true,
        0x0500 => false,
        _ if first.is_none() => {
            return Err(ReadError::Corrupt(
                "the xls workbook stream does not start with BOF".into(),
            ))
        }
        // BIFF8 files written by some tools leave the version at 0; BIFF5 never does.
        _ => true,
    };
    let mut out = Globals { biff8, sheets: Vec::new(), strings: Vec::new() };
    while let Some(r) = records.next() {
        budget.tick()?;
        match r.kind {
            EOF => break,
            BOUNDSHEET => {
                if let Some(entry) = boundsheet(r.data, biff8) {
                    out.sheets.push(entry);
                }
            }
            SST if biff8 => {
                let mut seg = Segments::gather(r.data, &mut records);
                seg.skip(8)?;
                // An entry cut short ends the table with what was read; a cell that refers past
                // it is then reported as damage.
                while !seg.at_end() {
                    let Ok(s) = seg.unicode(false) else { break };
                    budget.charge_string(out.strings.len(), "the shared string table", s.len())?;
                    out.strings.push(s);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn boundsheet(data: &[u8], biff8: bool) -> Option<Entry> {
    let offset = rec::u32_at(data, 0)? as usize;
    let visible = data.get(4)? & 0x03 == 0;
    let kind = *data.get(5)?;
    let name = if biff8 {
        Segments::single(data.get(6..)?).unicode(true).ok()?
    } else {
        let len = usize::from(*data.get(6)?);
        rec::byte_string(data.get(7..(7 + len).min(data.len()))?)
    };
    Some(Entry { name, visible, kind, offset })
}

/// Where each top-level substream after the globals starts, in order (for sheets whose
/// BOUNDSHEET offset is wrong, as some writers leave it).
fn substreams(stream: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut seen_globals = false;
    for r in Records::new(stream, 0) {
        match r.kind {
            BOF => {
                if depth == 0 {
                    if seen_globals {
                        out.push(r.offset);
                    }
                    seen_globals = true;
                }
                depth += 1;
            }
            EOF => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

fn at(data: &[u8]) -> Option<CellRef> {
    Some(CellRef::new(u32::from(rec::u16_at(data, 0)?), u32::from(rec::u16_at(data, 2)?)))
}

/// One sheet substream's cells and merged ranges; charts embedded in it are skipped.
fn read_sheet(
    stream: &[u8],
    offset: usize,
    globals: &Globals,
    sheet: &mut Sheet,
    budget: &mut Budget,
) -> Result<(), ReadError> {
    let mut records = Records::new(stream, offset);
    let mut depth = 0usize;
    // A formula whose result is text has it in the STRING record that follows.
    let mut string_for: Option<CellRef> = None;
    while let Some(r) = records.next() {
        budget.tick()?;
        match r.kind {
            BOF => depth += 1,
            EOF => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            _ if depth != 1 => {}
            0x0207 => {
                if let Some(cell) = string_for.take() {
                    let text = if globals.biff8 {
                        Segments::gather(r.data, &mut records).unicode(false).ok()
                    } else {
                        rec::biff5_string(r.data, 0)
                    };
                    if let Some(text) = text {
                        budget.put(sheet, cell, Cell::Text(text))?;
                    }
                }
            }
            0x00E5 => merges(r.data, sheet, budget)?,
            kind => {
                if let Some((cell, value)) = cell(kind, r.data, globals, sheet)? {
                    match value {
                        Value::Cell(c) => budget.put(sheet, cell, c)?,
                        Value::StringFollows => string_for = Some(cell),
                    }
                }
                if kind == 0x00BD {
                    mulrk(r.data, sheet, budget)?;
                }
            }
        }
    }
    Ok(())
}

enum Value {
    Cell(Cell),
    StringFollows,
}

/// The cell a single-cell record holds, if it is one.
fn cell(
    kind: u16,
    data: &[u8],
    globals: &Globals,
    sheet: &Sheet,
) -> Result<Option<(CellRef, Value)>, ReadError> {
    let Some(pos) = at(data) else { return Ok(None) };
    let value = match kind {
        0x0203 => rec::f64_at(data, 6).map(Cell::Number),
        0x027E => rec::u32_at(data, 6).map(|v| Cell::Number(rec::rk(v))),
        0x00FD => {
            let Some(index) = rec::u32_at(data, 6) else { return Ok(None) };
            match globals.strings.get(index as usize) {
                Some(s) => Some(Cell::Text(s.clone())),
                None => {
                    return Err(ReadError::Corrupt(format!(
                        "cell {pos} of sheet '{}' refers to a missing shared string",
                        sheet.name
                    )))
                }
            }
        }
        0x0204 | 0x00D6 => {
            let text = match globals.biff8 {
                true => data.get(6..).and_then(|d| Segments::single(d).unicode(false).ok()),
                false => rec::biff5_string(data, 6),
            };
            text.map(Cell::Text)
        }
        0x0205 => match (data.get(6), data.get(7)) {
            (Some(&v), Some(0)) => Some(Cell::Bool(v != 0)),
            (Some(&v), Some(_)) => Some(Cell::Error(rec::error_text(v))),
            _ => None,
        },
        0x0006 => return Ok(formula(data).map(|v| (pos, v))),
        _ => None,
    };
    Ok(value.map(|c| (pos, Value::Cell(c))))
}

/// A FORMULA record's saved result.
fn formula(data: &[u8]) -> Option<Value> {
    let result = data.get(6..14)?;
    if result[6..8] != [0xFF, 0xFF] {
        return rec::f64_at(data, 6).map(|n| Value::Cell(Cell::Number(n)));
    }
    Some(match result[0] {
        0 => Value::StringFollows,
        1 => Value::Cell(Cell::Bool(result[2] != 0)),
        2 => Value::Cell(Cell::Error(rec::error_text(result[2]))),
        _ => Value::Cell(Cell::Text(String::new())),
    })
}

/// MULRK: row, first column, (format, RK) pairs, last column.
fn mulrk(data: &[u8], sheet: &mut Sheet, budget: &mut Budget) -> Result<(), ReadError> {
    let Some(first) = at(data) else { return Ok(()) };
    let pairs = data.len().saturating_sub(6) / 6;
    for i in 0..pairs {
        if let Some(v) = rec::u32_at(data, 4 + 6 * i + 2) {
            let cell = CellRef::new(first.row, first.col.saturating_add(i as u32));
            budget.put(sheet, cell, Cell::Number(rec::rk(v)))?;
        }
    }
    Ok(())
}

fn merges(data: &[u8], sheet: &mut Sheet, budget: &mut Budget) -> Result<(), ReadError> {
    let count = usize::from(rec::u16_at(data, 0).unwrap_or(0));
    for i in 0..count {
        let base = 2 + 8 * i;
        let field = |k: usize| rec::u16_at(data, base + 2 * k).map(u32::from);
        let (Some(r0), Some(r1), Some(c0), Some(c1)) = (field(0), field(1), field(2), field(3))
        else {
            break;
        };
        budget.charge_cell(&sheet.name, sheet.merged.len())?;
        sheet.merged.push((CellRef::new(r0, c0), CellRef::new(r1, c1)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_results_of_every_kind() {
        let mut data = vec![0u8; 20];
        data[6..14].copy_from_slice(&2469.0f64.to_le_bytes());
        assert!(matches!(formula(&data), Some(Value::Cell(Cell::Number(n))) if n == 2469.0));
        data[6..14].copy_from_slice(&[2, 0, 0x07, 0, 0, 0, 0xFF, 0xFF]);
        assert!(matches!(formula(&data), Some(Value::Cell(Cell::Error(e))) if e == "#DIV/0!"));
        data[6] = 0;
        assert!(matches!(formula(&data), Some(Value::StringFollows)));
    }
}
