//! The xlsb reader, written here like the xlsx reader rather than taken from calamine, which
//! panics on some valid files (POI's `Simple.xlsb`), drops or misplaces the compact cell
//! records SheetJS writes (`BrtShort*`, which carry no column: it is the previous cell's plus
//! one), sizes a buffer from every record's declared length, and cannot be stopped when a read
//! runs out of time. Only the parts the workbook's relationships name are opened — the
//! workbook, the shared strings and each worksheet or macro sheet; chart and dialog sheets hold
//! no cells and are left out, and ActiveX, OLE, VBA and other binary parts are never parsed.
//! Records ([MS-XLSB] §2.1.4) are streamed: one whose data the reader needs is held (at most
//! [`MAX_RECORD`] bytes), any other is skipped unread.
//!
//! [MS-XLSB]: https://learn.microsoft.com/en-us/openspecs/office_file_formats/ms-xlsb/

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};

use crate::workbook::grid::{Cell, CellRef, Format, ReadError, Sheet, Workbook};

use super::budget::Budget;
use super::opc;
use super::xls_records::{error_text, rk};
use super::zipped::{self, Archive};

/// Larger than any record this reader holds (a 32,767-character string is 64 KB).
const MAX_RECORD: usize = 1 << 20;

const ROW: u16 = 0x0000;
const SST_ITEM: u16 = 0x0013;
const BUNDLE_SHEET: u16 = 0x009C;
const MERGE: u16 = 0x00B0;
const RICH_STRING: u16 = 0x003E;

/// A record reader over one part.
struct Records<R> {
    inner: R,
    part: String,
    limit: u64,
    data: Vec<u8>,
}

impl<R: BufRead> Records<R> {
    fn byte(&mut self) -> Result<Option<u8>, ReadError> {
        let mut b = [0u8; 1];
        match self.inner.read(&mut b) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(b[0])),
            Err(e) => Err(zipped::io_error(&e, self.limit)),
        }
    }

    /// The next record's type, its data in `self.data` when `wanted` says so (else skipped).
    fn next(&mut self, wanted: impl Fn(u16) -> bool) -> Result<Option<u16>, ReadError> {
        let Some(first) = self.byte()? else { return Ok(None) };
        let mut kind = u16::from(first & 0x7F);
        if first & 0x80 != 0 {
            let second = self.byte()?.unwrap_or(0);
            kind |= u16::from(second & 0x7F) << 7;
        }
        let mut len: u64 = 0;
        for i in 0..4 {
            let b = self.byte()?.unwrap_or(0);
            len |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        self.data.clear();
        let taken = if wanted(kind) {
            if len > MAX_RECORD as u64 {
                return Err(ReadError::Corrupt(format!(
                    "{} holds a record of {len} bytes",
                    self.part
                )));
            }
            (&mut self.inner).take(len).read_to_end(&mut self.data).map(|n| n as u64)
        } else {
            io::copy(&mut (&mut self.inner).take(len), &mut io::sink())
        };
        let taken = taken.map_err(|e| zipped::io_error(&e, self.limit))?;
        if taken < len {
            return Err(ReadError::Corrupt(format!("{} ends inside a record", self.part)));
        }
        Ok(Some(kind))
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

fn f64_at(b: &[u8], at: usize) -> Option<f64> {
    let x = b.get(at..at + 8)?;
    Some(f64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]))
}

/// An `XLWideString` at `at`: its text and where it ends.
fn wide_string(b: &[u8], at: usize) -> Option<(String, usize)> {
    let count = u32_at(b, at)?;
    if count == u32::MAX {
        return Some((String::new(), at + 4));
    }
    let end = at.checked_add(4)?.checked_add(count as usize * 2)?;
    let units: Vec<u16> =
        b.get(at + 4..end)?.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    Some((String::from_utf16_lossy(&units), end))
}

/// Runs `f` over the records of one part that `wanted` picks.
fn each_record(
    zip: &mut Archive<'_>,
    part: &str,
    budget: &mut Budget,
    wanted: impl Fn(u16) -> bool,
    mut f: impl FnMut(u16, &[u8], &mut Budget) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut stream = zip.stream(part, budget)?;
    let limit = stream.limit();
    let mut records = Records {
        inner: BufReader::new(&mut stream),
        part: part.to_string(),
        limit,
        data: Vec::new(),
    };
    while let Some(kind) = records.next(&wanted)? {
        budget.tick()?;
        if wanted(kind) {
            f(kind, &records.data, budget)?;
        }
    }
    drop(records);
    budget.charge_unpacked(stream.seen());
    Ok(())
}

pub fn read(zip: &mut Archive<'_>, main: &str, mut budget: Budget) -> Result<Workbook, ReadError> {
    let mut entries: Vec<(String, bool, String)> = Vec::new();
    each_record(
        zip,
        main,
        &mut budget,
        |k| k == BUNDLE_SHEET,
        |_, data, _| {
            let state = u32_at(data, 0).unwrap_or(0);
            let (rel, at) = wide_string(data, 8).unwrap_or_default();
            let (name, _) = wide_string(data, at).unwrap_or_default();
            entries.push((name, state == 0, rel));
            Ok(())
        },
    )?;
    let rels = opc::rels_of(zip, main, &mut budget)?;
    let strings = match rels.iter().find(|r| r.is("sharedStrings")) {
        Some(r) if zip.has(&r.target) => shared_strings(zip, &r.target.clone(), &mut budget)?,
        _ => Vec::new(),
    };
    let targets: HashMap<&str, &opc::Rel> = rels.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut sheets = Vec::new();
    for (name, visible, rel_id) in entries {
        let mut sheet = Sheet::new(name, visible);
        match targets.get(rel_id.as_str()) {
            Some(rel) if rel.is("chartsheet") || rel.is("dialogsheet") => continue,
            Some(rel) if zip.has(&rel.target) => {
                read_sheet(zip, &rel.target, &strings, &mut sheet, &mut budget)?
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
    Ok(Workbook { format: Format::Xlsb, sheets })
}

/// `BrtSSTItem` records: a `RichStr` each (flags byte, then the text; runs and phonetic data
/// after it are not needed).
fn shared_strings(
    zip: &mut Archive<'_>,
    part: &str,
    budget: &mut Budget,
) -> Result<Vec<String>, ReadError> {
    let mut out = Vec::new();
    each_record(
        zip,
        part,
        budget,
        |k| k == SST_ITEM,
        |_, data, budget| {
            let (text, _) = wide_string(data, 1).unwrap_or_default();
            budget.charge_string(out.len(), part, text.len())?;
            out.push(text);
            Ok(())
        },
    )?;
    Ok(out)
}

fn is_cell(kind: u16) -> bool {
    matches!(kind, 0x01..=0x12 | RICH_STRING)
}

fn read_sheet(
    zip: &mut Archive<'_>,
    part: &str,
    strings: &[String],
    sheet: &mut Sheet,
    budget: &mut Budget,
) -> Result<(), ReadError> {
    let (mut row, mut col) = (0u32, None::<u32>);
    let wanted = |k: u16| k == ROW || k == MERGE || is_cell(k);
    each_record(zip, part, budget, wanted, |kind, data, budget| {
        match kind {
            ROW => {
                row = u32_at(data, 0).unwrap_or(row);
                col = None;
            }
            MERGE => {
                let f = |i: usize| u32_at(data, 4 * i);
                if let (Some(r0), Some(r1), Some(c0), Some(c1)) = (f(0), f(1), f(2), f(3)) {
                    budget.charge_cell(&sheet.name, sheet.merged.len())?;
                    sheet.merged.push((CellRef::new(r0, c0), CellRef::new(r1, c1)));
                }
            }
            _ => {
                // Compact (`BrtShort*`) records carry no column: the previous cell's plus one.
                let short = (0x0C..=0x12).contains(&kind);
                let at = if short {
                    col.map_or(0, |c| c.saturating_add(1))
                } else {
                    u32_at(data, 0).unwrap_or(0)
                };
                col = Some(at);
                let value_at = if short { 4 } else { 8 };
                if let Some(value) = cell(kind, data, value_at, strings, sheet, at, row)? {
                    if let Cell::Text(s) = &value {
                        budget.check_pending(s.len())?;
                    }
                    budget.put(sheet, CellRef::new(row, at), value)?;
                }
            }
        }
        Ok(())
    })
}

/// The value of a cell record whose value starts at `v`; `None` for a blank.
fn cell(
    kind: u16,
    data: &[u8],
    v: usize,
    strings: &[String],
    sheet: &Sheet,
    col: u32,
    row: u32,
) -> Result<Option<Cell>, ReadError> {
    Ok(match kind {
        0x02 | 0x0D => u32_at(data, v).map(|n| Cell::Number(rk(n))),
        0x03 | 0x0B | 0x0E => data.get(v).map(|&e| Cell::Error(error_text(e))),
        0x04 | 0x0A | 0x0F => data.get(v).map(|&b| Cell::Bool(b != 0)),
        0x05 | 0x09 | 0x10 => f64_at(data, v).map(Cell::Number),
        0x06 | 0x08 | 0x11 => wide_string(data, v).map(|(s, _)| Cell::Text(s)),
        RICH_STRING => wide_string(data, v + 1).map(|(s, _)| Cell::Text(s)),
        0x07 | 0x12 => {
            let Some(index) = u32_at(data, v) else { return Ok(None) };
            match strings.get(index as usize) {
                Some(s) => Some(Cell::Text(s.clone())),
                None => {
                    return Err(ReadError::Corrupt(format!(
                        "cell {} of sheet '{}' refers to a missing shared string",
                        CellRef::new(row, col),
                        sheet.name
                    )))
                }
            }
        }
        _ => None,
    })
}
