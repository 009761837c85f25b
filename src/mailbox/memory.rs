//! An in-memory `MailSource` for tests of the pipeline and the daemon: no files, no server.
//! Clones share one mailbox, so a test can keep a handle, add mail while the daemon runs, and
//! see what was marked processed. It can be switched offline to exercise retry paths.

use super::{MailSource, Pending, SourceError};
use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    shared: Arc<(Mutex<Inner>, Condvar)>,
}

#[derive(Debug, Default)]
struct Inner {
    messages: Vec<Stored>,
    offline: bool,
    /// Bumped on every push, so `wait` can tell that mail arrived.
    arrivals: u64,
    /// `arrivals` when the last `pending` listed the mailbox.
    listed: u64,
}

#[derive(Debug)]
struct Stored {
    key: String,
    received_at: DateTime<Utc>,
    raw: Vec<u8>,
    processed: bool,
}

impl MemorySource {
    pub fn new() -> MemorySource {
        MemorySource::default()
    }

    /// Adds a message; wakes a caller blocked in `wait`. A key already present is replaced.
    pub fn push(&self, key: &str, received_at: DateTime<Utc>, raw: impl Into<Vec<u8>>) {
        let (lock, wake) = &*self.shared;
        let mut inner = lock_inner(lock);
        inner.messages.retain(|m| m.key != key);
        inner.messages.push(Stored {
            key: key.to_string(),
            received_at,
            raw: raw.into(),
            processed: false,
        });
        inner.arrivals += 1;
        wake.notify_all();
    }

    /// While offline every call fails with a transient error, as a dropped server would.
    pub fn set_offline(&self, offline: bool) {
        lock_inner(&self.shared.0).offline = offline;
    }

    /// Keys marked processed, in the order they were added.
    pub fn processed(&self) -> Vec<String> {
        let inner = lock_inner(&self.shared.0);
        inner.messages.iter().filter(|m| m.processed).map(|m| m.key.clone()).collect()
    }

    fn online(&self) -> Result<MutexGuard<'_, Inner>, SourceError> {
        let inner = lock_inner(&self.shared.0);
        if inner.offline {
            return Err(SourceError::Remote {
                message: "source is offline".into(),
                transient: true,
            });
        }
        Ok(inner)
    }
}

/// A panic in another test thread must not hide this mailbox's contents.
fn lock_inner(lock: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MailSource for MemorySource {
    fn pending(&mut self) -> Result<Vec<Pending>, SourceError> {
        let mut inner = self.online()?;
        inner.listed = inner.arrivals;
        let mut pending: Vec<Pending> = inner
            .messages
            .iter()
            .filter(|m| !m.processed)
            .map(|m| Pending {
                key: m.key.clone(),
                received_at: m.received_at,
                size: m.raw.len() as u64,
            })
            .collect();
        pending.sort_by(|a, b| (a.received_at, &a.key).cmp(&(b.received_at, &b.key)));
        Ok(pending)
    }

    fn fetch(&mut self, key: &str) -> Result<Vec<u8>, SourceError> {
        let inner = self.online()?;
        inner
            .messages
            .iter()
            .find(|m| m.key == key && !m.processed)
            .map(|m| m.raw.clone())
            .ok_or_else(|| SourceError::Gone { key: key.to_string() })
    }

    fn mark_processed(&mut self, key: &str) -> Result<(), SourceError> {
        let mut inner = self.online()?;
        match inner.messages.iter_mut().find(|m| m.key == key) {
            Some(m) => {
                m.processed = true;
                Ok(())
            }
            None => Err(SourceError::Gone { key: key.to_string() }),
        }
    }

    fn wait(&mut self, poll: Duration, stop: &Shutdown) -> Result<(), SourceError> {
        let (lock, wake) = &*self.shared;
        let until = std::time::Instant::now() + poll;
        // In slices, so a shutdown request is noticed within 50 ms.
        while !stop.requested() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let inner = lock_inner(lock);
            let (inner, _) = wake
                .wait_timeout_while(inner, left.min(Duration::from_millis(50)), |i| {
                    i.arrivals == i.listed && !i.offline
                })
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if inner.arrivals != inner.listed || inner.offline {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Instant;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2011, 10, 3, hour, 0, 0).single().expect("valid time")
    }

    #[test]
    fn pending_is_oldest_first_and_processed_mail_leaves_it() {
        let mut source = MemorySource::new();
        source.push("late", at(12), "b");
        source.push("early", at(9), "a");
        let keys: Vec<_> = source.pending().expect("list").into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["early", "late"]);
        assert_eq!(source.fetch("early").expect("fetch"), b"a");
        source.mark_processed("early").expect("mark");
        source.mark_processed("early").expect("marking twice is fine");
        let keys: Vec<_> = source.pending().expect("list").into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["late"]);
        assert_eq!(source.processed(), ["early"]);
        assert!(matches!(source.fetch("early"), Err(SourceError::Gone { .. })));
    }

    #[test]
    fn offline_source_fails_transiently() {
        let mut source = MemorySource::new();
        source.set_offline(true);
        let err = source.pending().expect_err("offline");
        assert!(err.is_transient());
        source.set_offline(false);
        assert!(source.pending().expect("back online").is_empty());
    }

    #[test]
    fn wait_returns_when_mail_is_pushed_from_another_thread() {
        let mut source = MemorySource::new();
        source.pending().expect("list");
        let handle = source.clone();
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            handle.push("k", at(9), "x");
        });
        let started = Instant::now();
        source.wait(Duration::from_secs(10), &Shutdown::default()).expect("wait");
        assert!(started.elapsed() < Duration::from_secs(5));
        pusher.join().expect("pusher thread");
        assert_eq!(source.pending().expect("list").len(), 1);
    }
}
