//! The pieces of the BIFF record stream ([MS-XLS] §2.1.4) the xls reader needs: walking
//! records, a cursor over a record and the CONTINUE records that carry on its data, and the
//! string forms (BIFF8 `XLUnicodeString` with its mid-string change of character width at a
//! CONTINUE boundary; BIFF5 byte strings in the workbook's code page).
//!
//! [MS-XLS]: https://learn.microsoft.com/en-us/openspecs/office_file_formats/ms-xls/

use crate::workbook::grid::ReadError;

pub const CONTINUE: u16 = 0x003C;

/// One record: its type, where its header starts in the stream, and its data.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub kind: u16,
    pub offset: usize,
    pub data: &'a [u8],
}

/// Walks the records of a stream from `at`. A record whose length runs past the end of the
/// stream ends the walk with the bytes that are there.
#[derive(Clone)]
pub struct Records<'a> {
    stream: &'a [u8],
    at: usize,
}

impl<'a> Records<'a> {
    pub fn new(stream: &'a [u8], at: usize) -> Self {
        Records { stream, at }
    }

    pub fn peek_kind(&self) -> Option<u16> {
        self.stream.get(self.at..self.at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let header = self.stream.get(self.at..self.at.checked_add(4)?)?;
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let offset = self.at;
        let start = offset + 4;
        let end = start.saturating_add(len).min(self.stream.len());
        self.at = start + len;
        Some(Record { kind, offset, data: self.stream.get(start..end).unwrap_or(&[]) })
    }
}

pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|x| u16::from_le_bytes([x[0], x[1]]))
}

pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

pub fn f64_at(b: &[u8], at: usize) -> Option<f64> {
    let x = b.get(at..at + 8)?;
    Some(f64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]))
}

/// A record's data followed by the data of the CONTINUE records after it, read as one.
pub struct Segments<'a> {
    parts: Vec<&'a [u8]>,
    part: usize,
    at: usize,
}

fn short() -> ReadError {
    ReadError::Corrupt("the xls file has a record that ends inside a string".into())
}

impl<'a> Segments<'a> {
    /// `first`'s data, and the CONTINUE records that follow it (taken from `records`).
    pub fn gather(first: &'a [u8], records: &mut Records<'a>) -> Segments<'a> {
        let mut parts = vec![first];
        while records.peek_kind() == Some(CONTINUE) {
            if let Some(r) = records.next() {
                parts.push(r.data);
            }
        }
        Segments { parts, part: 0, at: 0 }
    }

    pub fn single(data: &'a [u8]) -> Segments<'a> {
        Segments { parts: vec![data], part: 0, at: 0 }
    }

    /// Moves to the next segment when the current one is used up; false at the very end.
    fn settle(&mut self) -> bool {
        while self.parts.get(self.part).is_some_and(|p| self.at >= p.len()) {
            self.part += 1;
            self.at = 0;
        }
        self.part < self.parts.len()
    }

    pub fn at_end(&mut self) -> bool {
        !self.settle()
    }

    pub fn byte(&mut self) -> Result<u8, ReadError> {
        if !self.settle() {
            return Err(short());
        }
        let b = self.parts[self.part][self.at];
        self.at += 1;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes([self.byte()?, self.byte()?, self.byte()?, self.byte()?]))
    }

    /// Skips `n` bytes (rich-text runs, phonetic data), across segments.
    pub fn skip(&mut self, mut n: usize) -> Result<(), ReadError> {
        while n > 0 {
            if !self.settle() {
                return Err(short());
            }
            let take = n.min(self.parts[self.part].len() - self.at);
            self.at += take;
            n -= take;
        }
        Ok(())
    }

    /// A BIFF8 `XLUnicodeString` (or `ShortXLUnicodeString` when `short_len`), rich runs and
    /// phonetic data skipped. Where the characters cross into a CONTINUE record, that record
    /// starts with a new flags byte saying whether the rest are one byte or two.
    pub fn unicode(&mut self, short_len: bool) -> Result<String, ReadError> {
        let count = if short_len { usize::from(self.byte()?) } else { usize::from(self.u16()?) };
        let flags = self.byte()?;
        let runs = if flags & 0x08 != 0 { usize::from(self.u16()?) } else { 0 };
        let ext = if flags & 0x04 != 0 { self.u32()? as usize } else { 0 };
        let mut wide = flags & 0x01 != 0;
        let mut units: Vec<u16> = Vec::with_capacity(count.min(8_192));
        while units.len() < count {
            if self.parts.get(self.part).is_some_and(|p| self.at >= p.len()) {
                if !self.settle() {
                    return Err(short());
                }
                wide = self.byte()? & 0x01 != 0;
            }
            units.push(if wide { self.u16()? } else { u16::from(self.byte()?) });
        }
        self.skip(runs * 4)?;
        self.skip(ext)?;
        Ok(String::from_utf16_lossy(&units))
    }
}

/// A BIFF5 byte string of `len` bytes in the workbook's code page (Windows-1252 unless the
/// CODEPAGE record says otherwise; every other single-byte page is read as 1252 too).
pub fn byte_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| super::csv::windows_1252(b)).collect()
}

/// A BIFF5 string with a 16-bit length (`LABEL`, `STRING`) at `at`.
pub fn biff5_string(data: &[u8], at: usize) -> Option<String> {
    let len = usize::from(u16_at(data, at)?);
    let bytes = data.get(at + 2..(at + 2 + len).min(data.len()))?;
    Some(byte_string(bytes))
}

/// The text of a BIFF error code, as Excel shows it.
pub fn error_text(code: u8) -> String {
    match code {
        0x00 => "#NULL!".into(),
        0x07 => "#DIV/0!".into(),
        0x0F => "#VALUE!".into(),
        0x17 => "#REF!".into(),
        0x1D => "#NAME?".into(),
        0x24 => "#NUM!".into(),
        0x2A => "#N/A".into(),
        0x2B => "#GETTING_DATA".into(),
        other => format!("#ERROR({other:#04x})"),
    }
}

/// An `RkNumber`: a 30-bit integer or the high bits of a double, optionally divided by 100.
pub fn rk(value: u32) -> f64 {
    let n = if value & 0x02 != 0 {
        f64::from((value as i32) >> 2)
    } else {
        f64::from_bits(u64::from(value & 0xFFFF_FFFC) << 32)
    };
    if value & 0x01 != 0 {
        n / 100.0
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rk_numbers_decode_in_all_four_forms() {
        assert_eq!(rk((68653 << 2) | 0x02), 68653.0);
        assert_eq!(rk((12345 << 2) | 0x03), 123.45);
        assert_eq!(rk(((-3i32 << 2) as u32) | 0x02), -3.0);
        let bits = (1234.5f64.to_bits() >> 32) as u32;
        assert_eq!(rk(bits), 1234.5);
    }

    #[test]
    fn a_string_continued_in_a_continue_record_may_change_width() {
        // "Leeds": 5 characters, the first two one byte each, then a CONTINUE whose flags byte
        // says the rest are two bytes each.
        let first = [5u8, 0, 0x00, b'L', b'e'];
        let second = [0x01u8, b'e', 0, b'd', 0, b's', 0];
        let mut stream = Vec::new();
        for (kind, data) in [(0x00FCu16, &first[..]), (CONTINUE, &second[..])] {
            stream.extend(kind.to_le_bytes());
            stream.extend((data.len() as u16).to_le_bytes());
            stream.extend(data);
        }
        let mut records = Records::new(&stream, 0);
        let sst = records.next().expect("first record");
        let mut seg = Segments::gather(sst.data, &mut records);
        assert_eq!(seg.unicode(false).expect("reads"), "Leeds");
        assert!(seg.at_end());
    }
}
