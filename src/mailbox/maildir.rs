//! The Maildir source, the embedded default: messages wait in `new/` and are moved to `cur/`
//! with the seen flag (`:2,S`) once filed, following the classic convention
//! (<https://cr.yp.to/proto/maildir.html>), so any mail client shows the processed ones as read.
//!
//! Owns the three Maildir directories only. Reads `new/` alone: a message in `cur/` has been
//! handed over already (by us, or by a client the Data Collection Team uses), and `tmp/` holds
//! deliveries still being written. Must not parse messages.

use super::{MailSource, Pending, SourceError};
use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How often `wait` looks at `new/`: cheap (one stat) and well under the latency goal.
const DEFAULT_SLICE: Duration = Duration::from_millis(100);

/// Directory timestamps come from a coarse kernel clock, so a delivery in the same tick as our
/// listing may leave `new/`'s mtime unchanged. A listing this close to the last change is
/// therefore not trusted: `wait` returns once this much time has passed so the caller lists again.
const TIMESTAMP_MARGIN: Duration = Duration::from_secs(1);

/// A Maildir on the local filesystem.
#[derive(Debug)]
pub struct Maildir {
    root: PathBuf,
    slice: Duration,
    /// `new/`'s mtime taken just before the last listing, and whether it was too recent to trust.
    listed: Option<(SystemTime, bool)>,
    /// Most bytes read of one message (see [`Maildir::with_fetch_cap`]).
    fetch_cap: u64,
}

impl Maildir {
    /// Rename new/KEY → cur/KEY:2,S (atomic on one filesystem), without flushing.
    fn move_to_cur(&self, key: &str) -> Result<(), SourceError> {
        let from = self.new_path(key)?;
        let to = self.root.join("cur").join(processed_name(key));
        match fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if to.exists() {
                    Ok(())
                } else {
                    Err(SourceError::Gone { key: key.to_string() })
                }
            }
            Err(e) => Err(SourceError::io("rename", from, e)),
        }
    }

    /// Flush both directories so the moves survive a power cut.
    fn sync_dirs(&self) -> Result<(), SourceError> {
        sync_dir(&self.root.join("cur"))?;
        sync_dir(&self.new_dir())
    }

    /// Opens the Maildir at `root`, creating `new/`, `cur/` and `tmp/` if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Maildir, SourceError> {
        let root = root.into();
        for sub in ["new", "cur", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| SourceError::io("create", dir, e))?;
        }
        Ok(Maildir { root, slice: DEFAULT_SLICE, listed: None, fetch_cap: u64::MAX })
    }

    /// Reads at most `cap` bytes of a message (SPEC §6): give it one byte more than the message
    /// limit, and a 300 MB file costs that much memory, not 300 MB; the pipeline sees it is over
    /// the limit and answers from its headers. The file itself stays in the Maildir (`cur/`).
    pub fn with_fetch_cap(mut self, cap: u64) -> Maildir {
        self.fetch_cap = cap.max(1);
        self
    }

    /// How often `wait` checks for new mail (default 100 ms).
    pub fn with_poll_slice(mut self, slice: Duration) -> Maildir {
        self.slice = slice.max(Duration::from_millis(1));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Delivers a message the way an MDA does (write to `tmp/`, then rename into `new/`) and
    /// returns its key. Used to load sample mailboxes and by tests.
    pub fn deliver(&self, raw: &[u8]) -> Result<String, SourceError> {
        let name = unique_name();
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        write_synced(&tmp, raw).map_err(|e| SourceError::io("write", &tmp, e))?;
        fs::rename(&tmp, &new).map_err(|e| SourceError::io("rename", &new, e))?;
        sync_dir(&self.root.join("new"))?;
        Ok(name)
    }

    fn new_dir(&self) -> PathBuf {
        self.root.join("new")
    }

    fn new_path(&self, key: &str) -> Result<PathBuf, SourceError> {
        check_key(key)?;
        Ok(self.new_dir().join(key))
    }

    fn new_mtime(&self) -> Result<SystemTime, SourceError> {
        let dir = self.new_dir();
        fs::metadata(&dir).and_then(|m| m.modified()).map_err(|e| SourceError::io("stat", dir, e))
    }
}

impl MailSource for Maildir {
    fn pending(&mut self) -> Result<Vec<Pending>, SourceError> {
        // Taken before listing, so any delivery after this point changes it.
        let mtime = self.new_mtime()?;
        let dir = self.new_dir();
        let entries = fs::read_dir(&dir).map_err(|e| SourceError::io("list", &dir, e))?;
        let mut pending = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| SourceError::io("list", &dir, e))?;
            let Ok(key) = entry.file_name().into_string() else {
                tracing::warn!(name = ?entry.file_name(), "skipping a Maildir file whose name is not UTF-8");
                continue;
            };
            if key.starts_with('.') {
                continue;
            }
            // lstat: a symlink or directory in new/ is not a delivery.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => continue, // taken meanwhile
                Err(e) => return Err(SourceError::io("stat", entry.path(), e)),
            };
            if !meta.is_file() {
                continue;
            }
            let delivered =
                meta.modified().map_err(|e| SourceError::io("stat", entry.path(), e))?;
            pending.push(Pending {
                key,
                received_at: DateTime::<Utc>::from(delivered),
                size: meta.len(),
            });
        }
        pending.sort_by(|a, b| (a.received_at, &a.key).cmp(&(b.received_at, &b.key)));
        let fresh =
            SystemTime::now().duration_since(mtime).map_or(true, |age| age < TIMESTAMP_MARGIN);
        self.listed = Some((mtime, fresh));
        Ok(pending)
    }

    fn fetch(&mut self, key: &str) -> Result<Vec<u8>, SourceError> {
        use std::io::Read;
        let path = self.new_path(key)?;
        let failed = |e: std::io::Error, path: PathBuf| match e.kind() {
            ErrorKind::NotFound => SourceError::Gone { key: key.to_string() },
            _ => SourceError::io("read", path, e),
        };
        let file = fs::File::open(&path).map_err(|e| failed(e, path.clone()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut raw = Vec::with_capacity(size.min(self.fetch_cap) as usize);
        file.take(self.fetch_cap).read_to_end(&mut raw).map_err(|e| failed(e, path))?;
        Ok(raw)
    }

    fn mark_processed(&mut self, key: &str) -> Result<(), SourceError> {
        // A move lost in a crash is harmless (the message is read again and recognised as
        // filed), but flushing keeps the mailbox tidy and the work done once.
        self.move_to_cur(key)?;
        self.sync_dirs()
    }

    fn mark_processed_many(&mut self, keys: &[String]) -> Vec<(String, SourceError)> {
        let failed: Vec<(String, SourceError)> =
            keys.iter().filter_map(|k| self.move_to_cur(k).err().map(|e| (k.clone(), e))).collect();
        if failed.len() < keys.len() {
            if let Err(e) = self.sync_dirs() {
                // Harmless if lost: such a message is read again and recognised as filed.
                tracing::warn!("moved to cur/, not yet flushed: {e}");
            }
        }
        failed
    }

    fn wait(&mut self, timeout: Duration, stop: &Shutdown) -> Result<(), SourceError> {
        let Some((listed, fresh)) = self.listed else {
            return Ok(()); // never listed: whatever is there is new to the caller
        };
        let deadline = Instant::now() + timeout;
        loop {
            if self.new_mtime()? != listed {
                return Ok(());
            }
            if fresh
                && SystemTime::now().duration_since(listed).is_ok_and(|a| a >= TIMESTAMP_MARGIN)
            {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if !stop.sleep(left.min(self.slice)) {
                return Ok(());
            }
        }
    }
}

/// A key is a file name directly inside `new/`: no separators, no hidden or relative names.
fn check_key(key: &str) -> Result<(), SourceError> {
    if key.is_empty() || key.starts_with('.') || key.contains(['/', '\\', '\0']) {
        return Err(SourceError::InvalidKey { key: key.to_string() });
    }
    Ok(())
}

/// `unique` → `unique:2,S`; keeps any flags a delivery agent already set (`x:2,F` → `x:2,FS`).
pub(crate) fn processed_name(key: &str) -> String {
    let (base, info) = key.split_once(':').unwrap_or((key, ""));
    let mut flags: Vec<char> = info.strip_prefix("2,").unwrap_or("").chars().collect();
    flags.push('S');
    flags.retain(|c| c.is_ascii_alphabetic());
    flags.sort_unstable();
    flags.dedup();
    format!("{base}:2,{}", flags.into_iter().collect::<String>())
}

/// `seconds.M<micros>P<pid>Q<n>.<host>`, the Maildir convention for a name no other
/// delivery on any host can take.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c == '/' || c == ':' || c.is_whitespace() { '_' } else { c })
        .collect();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        if host.is_empty() { "localhost" } else { &host }
    )
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), SourceError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SourceError::io("sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processed_name_adds_the_seen_flag_once_and_keeps_others() {
        assert_eq!(processed_name("123.M4P5.host"), "123.M4P5.host:2,S");
        assert_eq!(processed_name("123.host:2,F"), "123.host:2,FS");
        assert_eq!(processed_name("123.host:2,S"), "123.host:2,S");
    }

    #[test]
    fn keys_that_would_leave_new_are_refused() {
        for bad in ["", ".hidden", "../cur/x", "a/b", "a\\b", "a\0b"] {
            assert!(matches!(check_key(bad), Err(SourceError::InvalidKey { .. })), "{bad:?}");
        }
        assert!(check_key("1318000000.M1P2Q3.host").is_ok());
    }

    #[test]
    fn unique_names_differ_within_one_process() {
        assert_ne!(unique_name(), unique_name());
    }
}
