//! Where messages come from: the `MailSource` port (SPEC §5) with the Maildir adapter (the
//! embedded default) and an in-memory source for tests. An IMAP adapter implements the same
//! port, so nothing here speaks of files or folders in the trait itself.
//!
//! This module owns reading and moving messages in the source. It must not parse, classify or
//! file messages (that is `mail` and `pipeline`), and it must not decide retries (that is the
//! daemon, which asks `SourceError::is_transient`).

use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::time::Duration;

pub mod imap;
pub mod maildir;
pub mod memory;

pub use maildir::Maildir;
pub use memory::MemorySource;

/// One message waiting in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Stable id of the message within its source (a Maildir unique name, an IMAP UID).
    pub key: String,
    /// When the message reached the mailbox: windows are judged at this moment (SPEC §2).
    pub received_at: DateTime<Utc>,
    /// Size in bytes as the source reports it, so an oversized message can be handled without
    /// reading it whole.
    pub size: u64,
}

/// A mailbox the daemon drains. Sync on purpose: the daemon runs it on a blocking thread, and a
/// network adapter keeps its own runtime or socket behind these calls.
pub trait MailSource {
    /// Messages not yet processed, oldest first (ties broken by key, so the order is stable).
    fn pending(&mut self) -> Result<Vec<Pending>, SourceError>;

    /// The raw bytes of one pending message, unchanged.
    fn fetch(&mut self, key: &str) -> Result<Vec<u8>, SourceError>;

    /// The raw bytes of several pending messages, in the order asked. The default fetches them
    /// one by one; a remote source fetches the set in one round trip. The caller bounds the
    /// total size (it knows each message's size from `pending`).
    fn fetch_many(&mut self, keys: &[String]) -> Vec<(String, Result<Vec<u8>, SourceError>)> {
        keys.iter().map(|k| (k.clone(), self.fetch(k))).collect()
    }

    /// Takes the message out of the pending set. Called only after its filing is durable.
    /// Idempotent: a message already processed is `Ok`.
    fn mark_processed(&mut self, key: &str) -> Result<(), SourceError>;

    /// Takes several messages out of the pending set at once (a batch whose filings were
    /// committed together). Returns the ones that could not be moved, with why. The default
    /// moves them one by one; a source may do better (one directory flush, one MOVE of a set).
    fn mark_processed_many(&mut self, keys: &[String]) -> Vec<(String, SourceError)> {
        keys.iter().filter_map(|k| self.mark_processed(k).err().map(|e| (k.clone(), e))).collect()
    }

    /// Blocks until new mail may have arrived or it is time to look again, and returns early
    /// when `stop` is requested. A source that must ask looks `poll` after its last look; one
    /// that is told of new mail may wait longer (IMAP IDLE: until the server speaks, or its
    /// 29-minute refresh). Returning without new mail is allowed (the caller lists again).
    fn wait(&mut self, poll: Duration, stop: &Shutdown) -> Result<(), SourceError>;
}

/// Why the source could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A local file or directory operation failed (disk full, permissions, too many files).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The message is no longer in the source: another process took or deleted it.
    #[error("message {key} is no longer in the mailbox")]
    Gone { key: String },
    /// The key cannot name a message of this source (it would escape the mailbox, for one).
    #[error("{key:?} is not a message key of this mailbox")]
    InvalidKey { key: String },
    /// A remote mailbox could not be reached or answered badly; `transient` says whether
    /// trying again later can help (a dropped connection) or not (a refused login is not).
    #[error("mailbox unavailable: {message}")]
    Remote { message: String, transient: bool },
    /// A remote mailbox failed to connect a moment ago and the next attempt is not yet due (the
    /// failed attempt was logged when it was made).
    #[error("mailbox unavailable; next attempt in {left:.1?}")]
    Backoff { left: Duration },
}

impl SourceError {
    /// Whether the same call may succeed later, so the daemon retries with backoff instead of
    /// giving up on the message.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Io { .. } => true,
            SourceError::Gone { .. } | SourceError::InvalidKey { .. } => false,
            SourceError::Remote { transient, .. } => *transient,
            SourceError::Backoff { .. } => true,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SourceError::Io { op, path: path.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_and_dropped_connections_are_retried_but_a_vanished_message_is_not() {
        let io = SourceError::io("read", "/x", std::io::Error::other("disk"));
        assert!(io.is_transient());
        assert!(!SourceError::Gone { key: "k".into() }.is_transient());
        assert!(!SourceError::InvalidKey { key: "../k".into() }.is_transient());
        let down = SourceError::Remote { message: "reset".into(), transient: true };
        assert!(down.is_transient());
        let refused = SourceError::Remote { message: "login".into(), transient: false };
        assert!(!refused.is_transient());
    }
}
