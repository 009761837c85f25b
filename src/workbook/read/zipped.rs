//! Opening zipped workbooks (xlsx, xlsm, xlsb, ods) with the SPEC §6 guards: the entry count,
//! and a hard cap on every decompression, charged to the read's budget as the bytes come out
//! (the sizes the directory declares are never trusted, nor used to refuse a file: a part this
//! reader never opens costs nothing). Part names are looked up the way Office looks them up:
//! case-insensitively, with `\` taken for `/` and a leading `/` ignored, because some writers
//! store `XL/Workbook.xml` or `xl\worksheets\sheet1.xml`.

use std::collections::HashMap;
use std::io::{self, Cursor, Read};

use zip::read::ZipFile;
use zip::result::ZipError;
use zip::ZipArchive;

use crate::workbook::grid::{Limits, ReadError};

use super::budget::Budget;

/// More entries than any real workbook has (a return has about a dozen; one with many pictures a
/// few hundred). Past this the file is a hostile archive, not a spreadsheet.
pub const MAX_ENTRIES: u64 = 10_000;

/// A zipped workbook: the archive, and its entries by normalised name.
pub struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    names: HashMap<String, usize>,
}

/// A part name as Office compares them.
pub fn normalise(name: &str) -> String {
    name.replace('\\', "/").trim_start_matches('/').to_ascii_lowercase()
}

impl<'a> Archive<'a> {
    /// Opens the archive; the zip crate bounds what it allocates by the central directory's
    /// real byte size, so opening cannot take more memory than the file holds.
    pub fn open(bytes: &'a [u8], _limits: &Limits) -> Result<Archive<'a>, ReadError> {
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
        let entries = zip.len() as u64;
        if entries > MAX_ENTRIES {
            return Err(ReadError::TooLarge {
                what: "the number of parts in the zipped workbook".into(),
                actual: entries,
                limit: MAX_ENTRIES,
            });
        }
        let mut by_index = HashMap::with_capacity(zip.len());
        for i in 0..zip.len() {
            if let Some(Ok(name)) = zip.name_for_index(i) {
                by_index.entry(normalise(&name)).or_insert(i);
            }
        }
        Ok(Archive { zip, names: by_index })
    }

    /// True when the archive has this part (compared as Office compares names).
    pub fn has(&self, name: &str) -> bool {
        self.names.contains_key(&normalise(name))
    }

    /// Every part name, normalised.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// A streaming reader of one part that fails once the read's unpacked budget is spent; call
    /// [`Archive::charge`] with it when done.
    pub fn stream(
        &mut self,
        name: &str,
        budget: &Budget,
    ) -> Result<Capped<ZipFile<'_, Cursor<&'a [u8]>>>, ReadError> {
        let Some(&index) = self.names.get(&normalise(name)) else {
            return Err(ReadError::Corrupt(format!("the part {name} is missing")));
        };
        let file = self.zip.by_index(index).map_err(zip_error)?;
        let mut capped = Capped::new(file, budget.unpacked_left());
        capped.limit = budget.limits().unpacked_bytes;
        Ok(capped)
    }

    /// Reads one whole small part (workbook, relationships, content types) under the budget.
    pub fn read_small(&mut self, name: &str, budget: &mut Budget) -> Result<Vec<u8>, ReadError> {
        let limit = budget.unpacked_left();
        let mut reader = self.stream(name, budget)?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map_err(|e| io_error(&e, limit))?;
        budget.charge_unpacked(out.len() as u64);
        Ok(out)
    }
}

/// A reader that fails (rather than silently ending) once more than `allowed` bytes came
/// through, so a part whose declared size lies is stopped at the limit and reported as too
/// large; `limit` is the figure the message names (the whole read's limit, of which this part
/// was allowed what was left).
pub struct Capped<R> {
    inner: io::Take<R>,
    allowed: u64,
    limit: u64,
    seen: u64,
}

/// The marker carried inside the `io::Error` a [`Capped`] reader returns at its limit.
#[derive(Debug)]
pub struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unpacked data over the limit")
    }
}

impl std::error::Error for OverLimit {}

impl<R: Read> Capped<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        // One byte past the limit is allowed through `take` so that reaching it is detectable.
        Capped { inner: inner.take(limit.saturating_add(1)), allowed: limit, limit, seen: 0 }
    }

    /// Unpacked bytes read so far, for charging a budget shared by several parts.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > self.allowed {
            return Err(io::Error::other(OverLimit));
        }
        Ok(n)
    }
}

/// True when an I/O error came from a [`Capped`] reader reaching its limit.
pub fn is_over_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OverLimit>())
}

/// Maps a read error: over the cap → `TooLarge`, anything else → `Corrupt`.
pub fn io_error(e: &io::Error, limit: u64) -> ReadError {
    if is_over_limit(e) {
        ReadError::TooLarge {
            what: "the unpacked size of the workbook's parts".into(),
            actual: limit.saturating_add(1),
            limit,
        }
    } else {
        ReadError::Corrupt(format!("cannot unpack a part of the workbook (a damaged zip): {e}"))
    }
}

pub fn zip_error(e: ZipError) -> ReadError {
    match e {
        ZipError::UnsupportedArchive(m) if m.contains("ncrypt") || m.contains("assword") => {
            ReadError::Encrypted
        }
        ZipError::Io(e) => io_error(&e, 0),
        other => ReadError::Corrupt(format!("not a valid zip archive (a damaged zip): {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reader_fails_past_its_limit_instead_of_ending_quietly() {
        let data = vec![b'x'; 10_000];
        let mut out = Vec::new();
        let err = Capped::new(&data[..], 4_096).read_to_end(&mut out).expect_err("over the cap");
        assert!(is_over_limit(&err));
        assert!(out.len() <= 4_097, "read {} bytes", out.len());
        assert!(matches!(io_error(&err, 4_096), ReadError::TooLarge { limit: 4_096, .. }));
    }

    #[test]
    fn capped_reader_passes_data_within_its_limit() {
        let data = vec![b'x'; 4_096];
        let mut out = Vec::new();
        Capped::new(&data[..], 4_096).read_to_end(&mut out).expect("within the cap");
        assert_eq!(out.len(), 4_096);
    }

    #[test]
    fn part_names_compare_as_office_compares_them() {
        assert_eq!(normalise("XL\\Worksheets\\Sheet1.xml"), "xl/worksheets/sheet1.xml");
        assert_eq!(normalise("/xl/workbook.xml"), "xl/workbook.xml");
    }
}
