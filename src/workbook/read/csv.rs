//! The csv reader: any comma-separated text into one sheet named `Return`, row i / column j as
//! in the file. Bytes are decoded as UTF-8 (BOM stripped) or, when they are not valid UTF-8, as
//! Windows-1252, the encoding spreadsheet programs on NHS desktops save csv in. Every value is
//! kept as Text: whether "68653" is a number is the validator's call.

use crate::workbook::grid::{Cell, CellRef, Format, Limits, ReadError, Sheet, Workbook};

use super::budget::Budget;

pub const SHEET_NAME: &str = "Return";

pub fn read(bytes: &[u8], limits: &Limits) -> Result<Workbook, ReadError> {
    let text = decode(bytes);
    let mut budget = Budget::new(limits);
    let mut sheet = Sheet::new(SHEET_NAME, true);
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let (mut seen_byte, mut line) = (0usize, 0usize);
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(ReadError::Corrupt(format!("the csv file cannot be read: {e}"))),
        }
        // The row is the record's line in the file (the csv crate skips blank lines and does not
        // count them), so a blank line keeps its place as it does in a spreadsheet program.
        let mut start = record.position().map_or(seen_byte, |p| p.byte() as usize);
        // The reported start is where the reader began, before any blank lines it skipped.
        while text.as_bytes().get(start).is_some_and(|b| *b == b'\n' || *b == b'\r') {
            start += 1;
        }
        let between = text.as_bytes().get(seen_byte..start).unwrap_or(&[]);
        line = line.saturating_add(between.iter().filter(|&&b| b == b'\n').count());
        seen_byte = start.max(seen_byte);
        let row = u32::try_from(line).unwrap_or(u32::MAX);
        for (col, field) in record.iter().enumerate() {
            if field.is_empty() {
                continue;
            }
            let col = u32::try_from(col).unwrap_or(u32::MAX);
            budget.charge_cell(SHEET_NAME, sheet.cells.len())?;
            sheet.cells.insert(CellRef::new(row, col), Cell::Text(field.to_string()));
        }
    }
    Ok(Workbook { format: Format::Csv, sheets: vec![sheet] })
}

/// UTF-8 when the bytes are UTF-8, else Windows-1252; never fails.
pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| windows_1252(b)).collect(),
    }
}

/// One Windows-1252 byte as a char. 0x80–0x9F differ from Latin-1; the five bytes the code page
/// leaves undefined map to the replacement character.
fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{FFFD}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{FFFD}', 'Ž',
        '\u{FFFD}', '\u{FFFD}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ',
        '\u{FFFD}', 'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH.get(usize::from(b - 0x80)).copied().unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_bytes_decode_to_the_characters_typed() {
        assert_eq!(decode(b"Caf\xe9 \x80 \x93x\x94"), "Café € “x”");
    }

    #[test]
    fn utf8_bom_is_stripped() {
        assert_eq!(decode("\u{feff}KPI1,5".as_bytes()), "KPI1,5");
    }

    #[test]
    fn rows_of_different_lengths_land_at_their_positions_as_text() {
        let wb =
            read(b"Organisation code,5N1\n\nKPI1,68653,note\n", &Limits::default()).expect("reads");
        let sheet = wb.first_visible().expect("one sheet");
        assert_eq!(sheet.name, "Return");
        assert_eq!(sheet.get(0, 1), Some(&Cell::Text("5N1".into())));
        assert_eq!(sheet.get(2, 1), Some(&Cell::Text("68653".into())));
        assert_eq!(sheet.get(2, 2), Some(&Cell::Text("note".into())));
        assert_eq!(sheet.get(1, 0), None);
    }

    #[test]
    fn cell_cap_stops_a_huge_csv() {
        let limits = Limits { cells_per_sheet: 10, ..Limits::default() };
        let body = "a,b,c,d\n".repeat(5);
        assert!(matches!(read(body.as_bytes(), &limits), Err(ReadError::TooLarge { .. })));
    }
}
