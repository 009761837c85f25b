//! The embedded default transport, "reply files out": each reply becomes an `.eml` file a mail
//! client opens as is, with its envelope in a `.json` file of the same name beside it.
//!
//! Written by hand rather than with lettre's file transport because that one names files by a
//! fresh random id, and here the same Message-ID must land in the same file: a resend after a
//! crash replaces the file with identical bytes instead of adding a second copy.
//!
//! Owns the reply directory only; writes are atomic (temp file, fsync, rename).

use super::{OutboxItem, SendError, Transport};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes replies into one directory.
#[derive(Debug, Clone)]
pub struct FileTransport {
    directory: PathBuf,
}

/// What a person reading the folder wants to know that the message itself does not say:
/// to whom it was (or would have been) sent, and from which envelope sender.
#[derive(Serialize)]
struct EnvelopeFile<'a> {
    message_id: &'a str,
    envelope_from: &'a str,
    recipients: &'a [String],
    outbox_id: i64,
}

impl FileTransport {
    pub fn new(directory: impl Into<PathBuf>) -> FileTransport {
        FileTransport { directory: directory.into() }
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Where `item` is written: `<directory>/<stem>.eml` (and `<stem>.json`).
    pub fn path_for(&self, item: &OutboxItem) -> PathBuf {
        self.directory.join(format!("{}.eml", file_stem(item)))
    }
}

impl Transport for FileTransport {
    fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
        let io = |what: &str, path: &Path, e: std::io::Error| {
            SendError::transient(format!("{what} {}: {e}", path.display()))
        };
        fs::create_dir_all(&self.directory).map_err(|e| io("cannot create", &self.directory, e))?;
        let stem = file_stem(item);
        let envelope = EnvelopeFile {
            message_id: &item.message_id,
            envelope_from: &item.envelope_from,
            recipients: &item.recipients,
            outbox_id: item.id,
        };
        let mut json = serde_json::to_vec_pretty(&envelope)
            .map_err(|e| SendError::permanent(format!("envelope cannot be written: {e}")))?;
        json.push(b'\n');
        // Envelope first: whoever picks up a new .eml finds its envelope already there.
        let json_path = self.directory.join(format!("{stem}.json"));
        write_atomic(&json_path, &json).map_err(|e| io("cannot write", &json_path, e))?;
        let eml_path = self.directory.join(format!("{stem}.eml"));
        write_atomic(&eml_path, &item.raw).map_err(|e| io("cannot write", &eml_path, e))?;
        fs::File::open(&self.directory)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync", &self.directory, e))
    }
}

/// `20111005-093012_a.analyst@leeds.nhs.test_<message-id>_<hash>`: sorts by the reply's Date,
/// names the recipient, and is the same for every send of one Message-ID. The hash of the exact
/// Message-ID keeps two ids that sanitise alike from sharing a file.
fn file_stem(item: &OutboxItem) -> String {
    let date = header_date(&item.raw)
        .map_or_else(|| "undated".to_string(), |d| d.format("%Y%m%d-%H%M%S").to_string());
    let to = item.recipients.first().map_or("no-recipient", String::as_str);
    let digest = Sha256::digest(item.message_id.as_bytes());
    format!(
        "{date}_{}_{}_{}",
        sanitise(to, 64),
        sanitise(&item.message_id, 80),
        &hex::encode(digest)[..8]
    )
}

/// The reply's own Date header: part of the stored bytes, so stable across resends.
fn header_date(raw: &[u8]) -> Option<DateTime<Utc>> {
    let message = mail_parser::MessageParser::new().parse_headers(raw)?;
    DateTime::from_timestamp(message.date()?.to_timestamp(), 0)
}

/// Keeps characters that are safe and readable in a file name on any system.
fn sanitise(text: &str, max: usize) -> String {
    let safe: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || ".@+=-".contains(c) { c } else { '_' })
        .take(max)
        .collect();
    if safe.is_empty() {
        "_".to_string()
    } else {
        safe
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Dot-prefixed so that folder watchers and `ls` ignore the half-written file.
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(message_id: &str, raw: &str) -> OutboxItem {
        OutboxItem {
            id: 7,
            message_id: message_id.into(),
            envelope_from: "iapt@dct.test".into(),
            recipients: vec!["a.analyst@leeds.nhs.test".into()],
            raw: raw.as_bytes().to_vec(),
            attempts: 0,
        }
    }

    #[test]
    fn stem_names_the_reply_date_recipient_and_message_id() {
        let it = item("r1.5N1@iapt.test", "Date: Wed, 05 Oct 2011 09:30:12 +0100\r\n\r\nx");
        let stem = file_stem(&it);
        assert!(stem.starts_with("20111005-083012_a.analyst@leeds.nhs.test_r1.5N1@iapt.test_"));
        assert_eq!(stem, file_stem(&it), "same item, same name");
    }

    #[test]
    fn message_ids_that_sanitise_alike_get_different_files() {
        let a = item("a/b@iapt.test", "x");
        let b = item("a?b@iapt.test", "x");
        assert_ne!(file_stem(&a), file_stem(&b));
        assert!(file_stem(&a).starts_with("undated_"));
    }

    #[test]
    fn hostile_message_ids_cannot_escape_the_directory() {
        let stem = file_stem(&item("../../etc/passwd\u{e9}", "x"));
        assert!(!stem.contains('/') && stem.is_ascii(), "{stem}");
        let long = file_stem(&item(&"x".repeat(5000), "x"));
        assert!(long.len() < 200, "{}", long.len());
    }
}
