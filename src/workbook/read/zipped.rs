//! Opening zipped workbooks (xlsx, xlsm, xlsb, ods) with the SPEC §6 guards: entry count, the
//! sum of declared unpacked sizes, and a hard cap on every decompression read because declared
//! sizes can lie. Owns nothing else; the format readers call `open` and `entry_reader`.

use std::io::{self, Cursor, Read};

use zip::result::ZipError;
use zip::ZipArchive;

use crate::workbook::grid::{Limits, ReadError};

/// More entries than any real workbook has (a return has about a dozen; one with many pictures a
/// few hundred). Past this the file is a hostile archive, not a spreadsheet.
pub const MAX_ENTRIES: u64 = 10_000;

pub type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Opens the archive and applies the guards that need only the central directory.
pub fn open<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Archive<'a>, ReadError> {
    // The zip crate bounds its own allocation by the central directory's byte size, so opening
    // cannot allocate more than the file holds.
    let zip = ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
    let entries = zip.len() as u64;
    if entries > MAX_ENTRIES {
        return Err(ReadError::TooLarge {
            what: "the number of parts in the zipped workbook".into(),
            actual: entries,
            limit: MAX_ENTRIES,
        });
    }
    let mut declared: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip.by_index_data(i).map_err(zip_error)?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.unpacked_bytes {
        return Err(ReadError::TooLarge {
            what: "the unpacked size of the workbook".into(),
            actual: declared,
            limit: limits.unpacked_bytes,
        });
    }
    Ok(zip)
}

/// True when the archive has an entry of exactly this name.
pub fn has(zip: &Archive<'_>, name: &str) -> bool {
    zip.index_for_name(name).is_some()
}

/// Reads one whole entry into memory, capped at `budget` unpacked bytes. Use for small parts
/// (workbook.xml, rels); sheets are streamed through [`Capped`] instead.
pub fn read_entry(zip: &mut Archive<'_>, name: &str, budget: u64) -> Result<Vec<u8>, ReadError> {
    let file = zip.by_name(name).map_err(zip_error)?;
    let mut out = Vec::new();
    Capped::new(file, budget).read_to_end(&mut out).map_err(|e| io_error(&e, budget))?;
    Ok(out)
}

/// A reader that fails (rather than silently ending) once more than `limit` bytes came through,
/// so a part whose declared size lies is stopped at the limit and reported as too large.
pub struct Capped<R> {
    inner: io::Take<R>,
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
        Capped { inner: inner.take(limit.saturating_add(1)), limit, seen: 0 }
    }
}

impl<R: Read> Capped<R> {
    /// Unpacked bytes read so far, for charging a budget shared by several parts.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > self.limit {
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
            what: "the unpacked size of the workbook (more than its directory declares)".into(),
            actual: limit.saturating_add(1),
            limit,
        }
    } else {
        ReadError::Corrupt(format!("cannot unpack a part of the workbook: {e}"))
    }
}

pub fn zip_error(e: ZipError) -> ReadError {
    match e {
        ZipError::UnsupportedArchive(m) if m.contains("ncrypt") || m.contains("assword") => {
            ReadError::Encrypted
        }
        ZipError::Io(e) => io_error(&e, 0),
        other => ReadError::Corrupt(format!("not a valid zip archive: {other}")),
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
}
