//! The xls (BIFF) reader: calamine does the decoding, but only after this module has walked the
//! records itself. calamine parses every sheet when it opens the file, reserves room for the
//! DIMENSIONS record's area and builds a dense grid spanning the outermost cells (a 65536 × 256
//! sheet is 16.7 million slots, over half a gigabyte), so the declared areas, the cells' spans
//! and their counts are all checked against the limits first. FILEPASS means encrypted.

use std::io::{Cursor, Read};

use calamine::{Reader, Xls, XlsError};

use crate::workbook::grid::{Format, Limits, ReadError, Sheet, Workbook};

use super::budget::{self, Budget};
use super::calc;

/// What the walk found in one sheet substream.
#[derive(Debug, Default)]
struct Span {
    cells: u64,
    min: Option<(u32, u32)>,
    max: (u32, u32),
}

impl Span {
    fn add(&mut self, row: u32, first_col: u32, last_col: u32) {
        let count = u64::from(last_col.saturating_sub(first_col)).saturating_add(1);
        self.cells = self.cells.saturating_add(count);
        let (r0, c0) = self.min.unwrap_or((row, first_col));
        self.min = Some((r0.min(row), c0.min(first_col)));
        self.max = (self.max.0.max(row), self.max.1.max(last_col));
    }

    fn area(&self) -> u64 {
        match self.min {
            Some((r0, c0)) => {
                budget::area(r0.into(), c0.into(), self.max.0.into(), self.max.1.into())
            }
            None => 0,
        }
    }
}

pub fn read(bytes: &[u8], limits: &Limits) -> Result<Workbook, ReadError> {
    let stream = workbook_stream(bytes, limits)?;
    scan(&stream, limits)?;
    calc::guarded("the xls file", || decode(bytes, limits))
}

fn workbook_stream(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, ReadError> {
    let corrupt = |e: std::io::Error| ReadError::Corrupt(format!("not a valid xls file: {e}"));
    let mut cfb = cfb::CompoundFile::open(Cursor::new(bytes)).map_err(corrupt)?;
    let name = if cfb.exists("/Workbook") { "/Workbook" } else { "/Book" };
    let stream = cfb.open_stream(name).map_err(corrupt)?;
    let mut out = Vec::new();
    stream.take(limits.attachment_bytes).read_to_end(&mut out).map_err(corrupt)?;
    Ok(out)
}

/// Walks the BIFF records: FILEPASS → `Encrypted`; each sheet's DIMENSIONS area, its cells'
/// span and count, and the sum of spans over all sheets (calamine holds them all) → `TooLarge`.
fn scan(stream: &[u8], limits: &Limits) -> Result<(), ReadError> {
    let check = Budget::new(limits);
    // Substreams follow one another (globals first, then one per sheet), each BOF … EOF; a chart
    // inside a sheet nests one level deeper and holds no cells of the sheet.
    let (mut depth, mut substream) = (0usize, 0usize);
    let mut span = Span::default();
    let mut total_area: u64 = 0;
    let mut at = 0usize;
    while let Some(header) = stream.get(at..at.saturating_add(4)) {
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let data = stream.get(at + 4..at + 4 + len).unwrap_or(&[]);
        at = at + 4 + len;
        let in_sheet = depth == 1 && substream >= 2;
        let name = || format!("number {}", substream.saturating_sub(1));
        match kind {
            0x0809 => {
                if depth == 0 {
                    substream += 1;
                    span = Span::default();
                }
                depth += 1;
            }
            0x000A => {
                if in_sheet {
                    check.check_declared(&name(), span.area())?;
                    if span.cells > limits.cells_per_sheet {
                        return Err(ReadError::TooLarge {
                            what: format!("the number of cells in sheet {}", name()),
                            actual: span.cells,
                            limit: limits.cells_per_sheet,
                        });
                    }
                    total_area = total_area.saturating_add(span.area());
                    check.check_declared("all sheets together", total_area)?;
                }
                depth = depth.saturating_sub(1);
            }
            0x002F
                if depth == 1 && substream == 1 && data.get(..2).is_some_and(|d| d != [0, 0]) =>
            {
                return Err(ReadError::Encrypted)
            }
            0x0200 if in_sheet => check.check_declared(&name(), dimensions_area(data))?,
            0x0203 | 0x0204 | 0x00D6 | 0x0205 | 0x027E | 0x00FD | 0x0006 if in_sheet => {
                if let Some((row, col)) = row_col(data, 0) {
                    span.add(row, col, col);
                }
            }
            0x00BD if in_sheet && data.len() >= 6 => {
                // MulRk: row, first column, 6-byte values..., last column.
                let last = data.len() - 2;
                if let (Some((row, first)), Some(l)) = (row_col(data, 0), data.get(last..)) {
                    span.add(row, first, u32::from(u16::from_le_bytes([l[0], l[1]])));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn row_col(data: &[u8], at: usize) -> Option<(u32, u32)> {
    let b = data.get(at..at + 4)?;
    Some((u32::from(u16::from_le_bytes([b[0], b[1]])), u32::from(u16::from_le_bytes([b[2], b[3]]))))
}

/// The area a DIMENSIONS record declares (BIFF8: 32-bit rows; older: 16-bit).
fn dimensions_area(data: &[u8]) -> u64 {
    let u16_at =
        |i: usize| data.get(i..i + 2).map_or(0, |b| u64::from(u16::from_le_bytes([b[0], b[1]])));
    let u32_at = |i: usize| {
        data.get(i..i + 4).map_or(0, |b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let (first_row, last_row, first_col, last_col) = match data.len() {
        10 => (u16_at(0), u16_at(2), u16_at(4), u16_at(6)),
        14 | 16 => (u32_at(0), u32_at(4), u16_at(8), u16_at(10)),
        _ => return 0,
    };
    // Last row and column are one past the end; an empty sheet declares 0..0.
    if last_row <= first_row || last_col <= first_col {
        return 0;
    }
    budget::area(first_row, first_col, last_row - 1, last_col - 1)
}

fn decode(bytes: &[u8], limits: &Limits) -> Result<Workbook, ReadError> {
    let mut xls = Xls::new(Cursor::new(bytes)).map_err(xls_error)?;
    let mut budget = Budget::new(limits);
    let metadata = xls.sheets_metadata().to_vec();
    let mut sheets = Vec::with_capacity(metadata.len());
    for meta in metadata {
        let mut sheet = Sheet::new(meta.name.clone(), calc::visible(meta.visible));
        let values = xls.worksheet_range(&meta.name).map_err(xls_error)?;
        let formulas = xls.worksheet_formula(&meta.name).ok();
        calc::fill(&mut sheet, &values, formulas.as_ref(), &mut budget)?;
        if let Ok(merges) = xls.merge_cells_by_sheet_name(&meta.name) {
            sheet.merged = merges
                .iter()
                .map(|d| {
                    use crate::workbook::grid::CellRef;
                    (CellRef::new(d.start.0, d.start.1), CellRef::new(d.end.0, d.end.1))
                })
                .collect();
        }
        sheets.push(sheet);
    }
    if sheets.is_empty() {
        return Err(ReadError::Corrupt("the workbook lists no sheets".into()));
    }
    Ok(Workbook { format: Format::Xls, sheets })
}

fn xls_error(e: XlsError) -> ReadError {
    match e {
        XlsError::Password => ReadError::Encrypted,
        other => ReadError::Corrupt(format!("the xls file cannot be decoded: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend((data.len() as u16).to_le_bytes());
        out.extend(data);
        out
    }

    /// Globals substream (with `globals_extra` records), then one sheet substream.
    fn stream(globals_extra: &[Vec<u8>], sheet: &[Vec<u8>]) -> Vec<u8> {
        let mut out = record(0x0809, &[0; 16]);
        globals_extra.iter().for_each(|r| out.extend(r));
        out.extend(record(0x000A, &[]));
        out.extend(record(0x0809, &[0; 16]));
        sheet.iter().for_each(|r| out.extend(r));
        out.extend(record(0x000A, &[]));
        out
    }

    fn number(row: u16, col: u16) -> Vec<u8> {
        let mut data = row.to_le_bytes().to_vec();
        data.extend(col.to_le_bytes());
        data.extend([0u8; 10]);
        record(0x0203, &data)
    }

    #[test]
    fn whole_sheet_dimensions_record_is_rejected() {
        let mut dims = 0u32.to_le_bytes().to_vec();
        dims.extend(65_536u32.to_le_bytes());
        dims.extend(0u16.to_le_bytes());
        dims.extend(256u16.to_le_bytes());
        dims.extend([0, 0]);
        let s = stream(&[], &[record(0x0200, &dims)]);
        assert!(matches!(
            scan(&s, &Limits::default()),
            Err(ReadError::TooLarge { actual: 16_777_216, .. })
        ));
    }

    #[test]
    fn cells_at_opposite_corners_are_rejected_because_calamine_would_fill_between() {
        let s = stream(&[], &[number(0, 0), number(65_535, 255)]);
        assert!(matches!(scan(&s, &Limits::default()), Err(ReadError::TooLarge { .. })));
        let small = stream(&[], &[number(0, 0), number(40, 5)]);
        assert_eq!(scan(&small, &Limits::default()), Ok(()));
    }

    #[test]
    fn filepass_record_means_encrypted() {
        let s = stream(&[record(0x002F, &[1, 0, 1, 0])], &[number(0, 0)]);
        assert_eq!(scan(&s, &Limits::default()), Err(ReadError::Encrypted));
    }
}
