//! The csv reader: delimited text into one sheet named `Return`, row i / column j as in the
//! file. Bytes are decoded as UTF-16 when they start with its byte-order mark (LibreOffice's
//! and Excel's "Unicode" text), else as UTF-8 (BOM stripped) or, when they are not valid UTF-8,
//! as Windows-1252, the encoding spreadsheet programs on NHS desktops save csv in. The
//! separator is the one Excel would use: a first line `sep=;` names it; otherwise whichever of
//! comma, semicolon and tab appears (outside quotes) on the most of the first lines, since
//! Excel in a locale with a decimal comma writes `;` and "Unicode text" is tab-separated.
//! Every value is kept as Text: whether "68653" is a number is the validator's call.

use crate::workbook::grid::{Cell, CellRef, Format, ReadError, Sheet, Workbook};

use super::budget::Budget;

pub const SHEET_NAME: &str = "Return";

pub fn read(bytes: &[u8], mut budget: Budget) -> Result<Workbook, ReadError> {
    let decoded = decode(bytes);
    budget.check_pending(decoded.len())?;
    let (text, delimiter) = separator(&decoded);
    let mut sheet = Sheet::new(SHEET_NAME, true);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
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
            budget.put(&mut sheet, CellRef::new(row, col), Cell::Text(field.to_string()))?;
        }
    }
    Ok(Workbook { format: Format::Csv, sheets: vec![sheet] })
}

/// The text after a `sep=X` line (and X), or the whole text and the separator found by
/// counting.
fn separator(text: &str) -> (&str, u8) {
    let first = text.lines().next().unwrap_or("");
    if let Some(sep) = first.trim().strip_prefix("sep=") {
        if let [b] = sep.as_bytes() {
            let rest = text.get(first.len()..).unwrap_or("");
            return (rest.trim_start_matches(['\r', '\n']), *b);
        }
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(20).collect();
    let score = |d: u8| lines.iter().filter(|l| outside_quotes(l).contains(&d)).count();
    let (comma, semi, tab) = (score(b','), score(b';'), score(b'\t'));
    // Ties go to the comma, then the semicolon.
    let delimiter = if semi > comma && semi >= tab {
        b';'
    } else if tab > comma && tab > semi {
        b'\t'
    } else {
        b','
    };
    (text, delimiter)
}

/// The bytes of a line that are not inside double quotes.
fn outside_quotes(line: &str) -> Vec<u8> {
    let mut quoted = false;
    line.bytes()
        .filter(|&b| {
            if b == b'"' {
                quoted = !quoted;
            }
            !quoted && b != b'"'
        })
        .collect()
}

/// UTF-16 after its byte-order mark, UTF-8 when the bytes are UTF-8, else Windows-1252; never
/// fails.
pub fn decode(bytes: &[u8]) -> String {
    if let Some(text) = utf16(bytes) {
        return text;
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| windows_1252(b)).collect(),
    }
}

/// UTF-16 text that starts with a byte-order mark (either order).
pub fn utf16(bytes: &[u8]) -> Option<String> {
    let little = match bytes.get(..2)? {
        [0xFF, 0xFE] => true,
        [0xFE, 0xFF] => false,
        _ => return None,
    };
    let units = bytes[2..].chunks_exact(2).map(|c| match little {
        true => u16::from_le_bytes([c[0], c[1]]),
        false => u16::from_be_bytes([c[0], c[1]]),
    });
    Some(char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')).collect())
}

/// One Windows-1252 byte as a char. 0x80–0x9F differ from Latin-1; the five bytes the code page
/// leaves undefined map to the replacement character.
pub fn windows_1252(b: u8) -> char {
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
    use crate::workbook::grid::Limits;
    use crate::workbook::read::budget::Cancel;

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
        let wb = read_text(b"Organisation code,5N1\n\nKPI1,68653,note\n", &Limits::default())
            .expect("reads");
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
        assert!(matches!(read_text(body.as_bytes(), &limits), Err(ReadError::TooLarge { .. })));
    }

    fn read_text(bytes: &[u8], limits: &Limits) -> Result<Workbook, ReadError> {
        read(bytes, Budget::new(limits, &Cancel::new()))
    }

    #[test]
    fn utf16_with_either_byte_order_mark_decodes() {
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("KPI1,5".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&le), "KPI1,5");
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("Café".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode(&be), "Café");
    }

    #[test]
    fn semicolon_tab_and_sep_lines_are_separators_as_excel_writes_them() {
        let semi = read_text(
            b"Organisation code;5N1\nOrganisation name;\"Leeds, NHS\"\nKPI4;2600,5\n",
            &Limits::default(),
        )
        .expect("reads");
        let sheet = semi.first_visible().expect("sheet");
        assert_eq!(sheet.get(1, 1), Some(&Cell::Text("Leeds, NHS".into())));
        assert_eq!(sheet.get(2, 1), Some(&Cell::Text("2600,5".into())));
        let tab =
            read_text(b"Organisation code\t5N1\nKPI1\t68653\n", &Limits::default()).expect("reads");
        assert_eq!(
            tab.first_visible().and_then(|s| s.get(1, 1)),
            Some(&Cell::Text("68653".into()))
        );
        let sep = read_text(b"sep=;\r\nKPI1;68653\r\n", &Limits::default()).expect("reads");
        assert_eq!(
            sep.first_visible().and_then(|s| s.get(0, 1)),
            Some(&Cell::Text("68653".into()))
        );
        let comma =
            read_text(b"Contact name,Smith; Ann\nKPI1,68653\n", &Limits::default()).expect("reads");
        assert_eq!(
            comma.first_visible().and_then(|s| s.get(1, 1)),
            Some(&Cell::Text("68653".into()))
        );
    }
}
