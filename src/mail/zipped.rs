//! Returns sent inside a `.zip` (SPEC §4b): each spreadsheet in the archive is treated as
//! attached, opened with the guards of SPEC §6 — at most [`MAX_ENTRIES`] entries, every entry
//! read through a hard cap (declared sizes can lie), the unpacked total bounded, no archive
//! inside an archive. What cannot be opened (a password, an entry over a limit, a damaged
//! archive) is recorded so the sender is told, never dropped silently. PURE: bytes in, data out.

use super::attachment::{safe_file_name, sniff_kind, Attachment, AttachmentKind};
use std::io::{Cursor, Read};

/// More entries than a zip of returns holds; a larger archive is not opened.
pub const MAX_ENTRIES: usize = 1000;

/// The limits an archive is opened with: those of a single attachment and of an unpacked
/// workbook (`[limits] attachment_bytes`, `unpacked_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    pub entry_bytes: u64,
    pub total_bytes: u64,
}

impl Default for ZipLimits {
    fn default() -> ZipLimits {
        let d = crate::workbook::Limits::default();
        ZipLimits { entry_bytes: d.attachment_bytes, total_bytes: d.unpacked_bytes }
    }
}

/// What came out of one archive.
#[derive(Debug, Default)]
pub struct Unzipped {
    /// The spreadsheets found, as attachments (their `container` names the archive).
    pub attachments: Vec<Attachment>,
    /// Why some of it could not be opened, in words for the audit trail and the reply.
    pub problems: Vec<String>,
}

/// Whether an attachment is an archive to look into: a zip that is not itself an Office or
/// OpenDocument file (those are spreadsheets already).
pub fn is_archive(attachment: &Attachment) -> bool {
    attachment.kind == AttachmentKind::Other && attachment.bytes.starts_with(b"PK\x03\x04")
}

/// The spreadsheets inside `archive` (an attachment of `depth`), at most `room` of them.
pub fn spreadsheets(archive: &Attachment, limits: ZipLimits, room: usize) -> Unzipped {
    let mut out = Unzipped::default();
    let name = &archive.name;
    let mut zip = match zip::ZipArchive::new(Cursor::new(archive.bytes.as_slice())) {
        Ok(zip) => zip,
        Err(e) => {
            out.problems.push(format!("the archive {name} could not be opened: {e}"));
            return out;
        }
    };
    if zip.len() > MAX_ENTRIES {
        out.problems.push(format!(
            "the archive {name} holds {} entries, more than the {MAX_ENTRIES} that are opened",
            zip.len()
        ));
        return out;
    }
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        if out.attachments.len() >= room {
            out.problems.push(format!("{name}: more spreadsheets than one message may carry"));
            break;
        }
        let mut entry = match zip.by_index(i) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::UnsupportedArchive(what)) => {
                out.problems.push(format!("{name}: an entry could not be opened ({what})"));
                continue;
            }
            Err(e) => {
                out.problems.push(format!("{name}: an entry could not be opened: {e}"));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let declared = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let entry_name = safe_file_name(Some(&declared), i + 1);
        let ext = super::attachment::extension(&entry_name);
        if ext == "zip" {
            out.problems.push(format!("{name}: the archive {entry_name} inside it was not opened"));
            continue;
        }
        if !SPREADSHEET_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        if entry.encrypted() {
            out.problems.push(format!("{name}: {entry_name} is protected by a password"));
            continue;
        }
        // One byte past the limit tells an entry at the limit from one over it.
        let cap = limits.entry_bytes.min(limits.total_bytes.saturating_sub(total)) + 1;
        let mut bytes = Vec::new();
        if let Err(e) = (&mut entry).take(cap).read_to_end(&mut bytes) {
            out.problems.push(format!("{name}: {entry_name} could not be unpacked: {e}"));
            continue;
        }
        if bytes.len() as u64 >= cap {
            out.problems.push(format!(
                "{name}: {entry_name} unpacks to more than the {:.1} MB a file may have",
                (cap - 1) as f64 / 1e6
            ));
            continue;
        }
        total += bytes.len() as u64;
        let kind = sniff_kind(&entry_name, "", &bytes);
        out.attachments.push(Attachment {
            kind,
            declared_name: Some(declared),
            content_type: String::new(),
            depth: archive.depth,
            size: bytes.len(),
            danger: super::danger::danger(&entry_name, "", &bytes),
            container: Some(archive.name.clone()),
            name: entry_name,
            bytes,
        });
    }
    out
}

const SPREADSHEET_EXTENSIONS: &[&str] = &["xlsx", "xlsm", "xlsb", "xls", "ods", "csv"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish");
        buf.into_inner()
    }

    fn archive(bytes: Vec<u8>) -> Attachment {
        Attachment {
            name: "returns.zip".into(),
            declared_name: Some("returns.zip".into()),
            content_type: "application/zip".into(),
            kind: AttachmentKind::Other,
            depth: 0,
            size: bytes.len(),
            danger: None,
            container: None,
            bytes,
        }
    }

    #[test]
    fn spreadsheets_inside_come_out_named_and_other_files_stay_inside() {
        let zip = zip_of(&[
            ("Q1/Leeds IAPT Q1.csv", b"Organisation code,5N1\n"),
            ("readme.txt", b"hello"),
        ]);
        let a = archive(zip);
        assert!(is_archive(&a));
        let out = spreadsheets(&a, ZipLimits::default(), 100);
        assert_eq!(out.attachments.len(), 1, "{:?}", out.problems);
        let csv = &out.attachments[0];
        assert_eq!(csv.name, "Leeds IAPT Q1.csv");
        assert_eq!(csv.container.as_deref(), Some("returns.zip"));
        assert_eq!(csv.bytes, b"Organisation code,5N1\n");
        assert!(out.problems.is_empty());
    }

    #[test]
    fn an_entry_over_the_limit_is_named_and_not_read_whole() {
        let big = vec![b'1'; 5000];
        let a = archive(zip_of(&[("big.csv", &big)]));
        let out = spreadsheets(&a, ZipLimits { entry_bytes: 1000, total_bytes: 1_000_000 }, 100);
        assert!(out.attachments.is_empty());
        assert!(out.problems[0].contains("big.csv unpacks to more than"), "{:?}", out.problems);
    }

    #[test]
    fn a_damaged_archive_and_an_archive_in_an_archive_are_reported() {
        let out =
            spreadsheets(&archive(b"PK\x03\x04 not really".to_vec()), ZipLimits::default(), 9);
        assert!(out.problems[0].contains("could not be opened"), "{:?}", out.problems);
        let inner = zip_of(&[("x.csv", b"a,b")]);
        let out = spreadsheets(&archive(zip_of(&[("inner.zip", &inner)])), ZipLimits::default(), 9);
        assert!(out.attachments.is_empty());
        assert!(out.problems[0].contains("inner.zip inside it was not opened"));
    }
}
