//! The xlsb reader: calamine's cell-by-cell reader fills a sparse sheet under the cell budget,
//! after this module has walked every binary part's records. calamine sizes a buffer from each
//! record's declared length (up to 256 MB) and keeps one string per shared-string record, so
//! oversized records and over-long string tables are rejected first.

use std::io::{self, BufReader, Cursor, Read};

use calamine::{Data, Reader, Xlsb, XlsbError};

use crate::workbook::grid::{CellRef, Format, Limits, ReadError, Sheet, Workbook};

use super::budget::{self, Budget};
use super::calc;
use super::detect;
use super::zipped::{self, Archive, Capped};

/// Larger than any real record (a 32,767-character string is 64 KB).
const MAX_RECORD: u64 = 4 * 1024 * 1024;
const BRT_SST_ITEM: u16 = 0x0013;

pub fn read(bytes: &[u8], zip: &mut Archive<'_>, limits: &Limits) -> Result<Workbook, ReadError> {
    let parts: Vec<String> = zip
        .file_names()
        .flatten()
        .filter(|n| n.starts_with("xl/") && n.ends_with(".bin"))
        .filter(|n| !n.ends_with("vbaProject.bin") && !n.contains("printerSettings"))
        .map(|n| n.into_owned())
        .collect();
    let check = Budget::new(limits);
    for part in &parts {
        let strings = walk_records(zip, part, limits.unpacked_bytes)?;
        check.check_declared_strings(part, strings)?;
    }
    calc::guarded("the xlsb file", || decode(bytes, limits))
}

/// Walks one part's records (type: 1–2 byte varint, length: 1–4 byte varint); returns how many
/// shared-string items it holds.
fn walk_records(zip: &mut Archive<'_>, part: &str, limit: u64) -> Result<u64, ReadError> {
    let file = zip.by_name(part).map_err(zipped::zip_error)?;
    let mut r = BufReader::new(Capped::new(file, limit));
    let mut strings = 0u64;
    let fail = |e: io::Error| zipped::io_error(&e, limit);
    while let Some(first) = byte(&mut r).map_err(fail)? {
        let mut kind = u16::from(first & 0x7F);
        if first & 0x80 != 0 {
            let second = byte(&mut r).map_err(fail)?.unwrap_or(0);
            kind |= u16::from(second & 0x7F) << 7;
        }
        let mut len: u64 = 0;
        for i in 0..4 {
            let b = byte(&mut r).map_err(fail)?.unwrap_or(0);
            len |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        if len > MAX_RECORD {
            return Err(ReadError::Corrupt(format!("{part} declares a record of {len} bytes")));
        }
        if kind == BRT_SST_ITEM {
            strings += 1;
        }
        let skipped = io::copy(&mut (&mut r).take(len), &mut io::sink()).map_err(fail)?;
        if skipped < len {
            return Err(ReadError::Corrupt(format!("{part} ends inside a record")));
        }
    }
    Ok(strings)
}

fn byte(r: &mut impl Read) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    match r.read(&mut b)? {
        0 => Ok(None),
        _ => Ok(Some(b[0])),
    }
}

fn decode(bytes: &[u8], limits: &Limits) -> Result<Workbook, ReadError> {
    let mut xlsb: Xlsb<_> = Xlsb::new(Cursor::new(bytes)).map_err(xlsb_error)?;
    let mut budget = Budget::new(limits);
    let metadata = xlsb.sheets_metadata().to_vec();
    let mut sheets = Vec::with_capacity(metadata.len());
    for meta in metadata {
        let mut sheet = Sheet::new(meta.name.clone(), calc::visible(meta.visible));
        let mut cells = xlsb.worksheet_cells_reader(&meta.name).map_err(xlsb_error)?;
        let d = cells.dimensions();
        let declared =
            budget::area(d.start.0.into(), d.start.1.into(), d.end.0.into(), d.end.1.into());
        budget.check_declared(&sheet.name, declared)?;
        while let Some(cell) = cells.next_cell().map_err(xlsb_error)? {
            let (row, col) = cell.get_position();
            let Some(value) = calc::cell(&Data::from(cell.get_value().clone())) else { continue };
            budget.charge_cell(&sheet.name, sheet.cells.len())?;
            sheet.cells.insert(CellRef::new(row, col), value);
        }
        sheets.push(sheet);
    }
    if sheets.is_empty() {
        return Err(ReadError::Corrupt("the workbook lists no sheets".into()));
    }
    Ok(Workbook { format: Format::Xlsb, sheets })
}

fn xlsb_error(e: XlsbError) -> ReadError {
    match e {
        XlsbError::Password => ReadError::Encrypted,
        XlsbError::CellError(code) => detect::unsupported_content(&format!(
            "an xlsb workbook holding an error value (code {code:#04x}) this reader cannot decode"
        )),
        other => ReadError::Corrupt(format!("the xlsb file cannot be decoded: {other}")),
    }
}
