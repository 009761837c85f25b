//! In-memory stand-ins for the two ends of delivery, for tests of the sender, the pipeline and
//! the daemon: `MemoryOutbox` (the store's queue) and `MemoryTransport` (a relay that records
//! what it was given and fails when told to).

use super::{Outbox, OutboxItem, SendError, Transport};
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Where one queued reply stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for its first or next attempt.
    Queued {
        retry_at: Option<DateTime<Utc>>,
        last_error: Option<String>,
    },
    Sent {
        at: DateTime<Utc>,
    },
    /// Permanently failed: never tried again.
    Failed {
        at: DateTime<Utc>,
        error: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryOutboxError {
    #[error("no outbox item {0}")]
    UnknownId(i64),
    #[error("the outbox is unavailable")]
    Unavailable,
}

#[derive(Debug, Default)]
pub struct MemoryOutbox {
    inner: Mutex<OutboxInner>,
}

#[derive(Debug, Default)]
struct OutboxInner {
    entries: Vec<(OutboxItem, OutboxState)>,
    broken: bool,
}

impl MemoryOutbox {
    pub fn new() -> MemoryOutbox {
        MemoryOutbox::default()
    }

    /// Queues a reply due at once; returns its id (1, 2, …).
    pub fn queue(&self, message_id: &str, from: &str, to: &[&str], raw: &[u8]) -> i64 {
        let mut inner = lock(&self.inner);
        let id = inner.entries.len() as i64 + 1;
        let item = OutboxItem {
            id,
            message_id: message_id.to_string(),
            envelope_from: from.to_string(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
            raw: raw.to_vec(),
            attempts: 0,
        };
        inner.entries.push((item, OutboxState::Queued { retry_at: None, last_error: None }));
        id
    }

    pub fn state(&self, id: i64) -> Option<OutboxState> {
        lock(&self.inner).entries.iter().find(|(i, _)| i.id == id).map(|(_, s)| s.clone())
    }

    /// Delivery attempts recorded for `id`.
    pub fn attempts(&self, id: i64) -> Option<u32> {
        lock(&self.inner).entries.iter().find(|(i, _)| i.id == id).map(|(i, _)| i.attempts)
    }

    /// While broken every call fails, as a store on a full disk would.
    pub fn set_broken(&self, broken: bool) {
        lock(&self.inner).broken = broken;
    }

    fn update(
        &self,
        id: i64,
        f: impl FnOnce(&mut OutboxItem, &mut OutboxState),
    ) -> Result<(), MemoryOutboxError> {
        let mut inner = lock(&self.inner);
        if inner.broken {
            return Err(MemoryOutboxError::Unavailable);
        }
        let (item, state) = inner
            .entries
            .iter_mut()
            .find(|(i, _)| i.id == id)
            .ok_or(MemoryOutboxError::UnknownId(id))?;
        f(item, state);
        Ok(())
    }
}

/// A panic in another test thread must not hide the queue.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Outbox for MemoryOutbox {
    type Error = MemoryOutboxError;

    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, Self::Error> {
        let inner = lock(&self.inner);
        if inner.broken {
            return Err(MemoryOutboxError::Unavailable);
        }
        let due = inner.entries.iter().filter(|(_, state)| match state {
            OutboxState::Queued { retry_at, .. } => retry_at.is_none_or(|at| at <= now),
            OutboxState::Sent { .. } | OutboxState::Failed { .. } => false,
        });
        Ok(due.take(limit).map(|(item, _)| item.clone()).collect())
    }

    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<(), Self::Error> {
        self.update(id, |item, state| {
            if !matches!(state, OutboxState::Sent { .. }) {
                item.attempts += 1;
                *state = OutboxState::Sent { at };
            }
        })
    }

    fn mark_failed(
        &self,
        id: i64,
        at: DateTime<Utc>,
        error: &str,
        permanent: bool,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), Self::Error> {
        self.update(id, |item, state| {
            item.attempts += 1;
            *state = if permanent {
                OutboxState::Failed { at, error: error.to_string() }
            } else {
                OutboxState::Queued { retry_at, last_error: Some(error.to_string()) }
            };
        })
    }
}

/// A relay in memory: records every reply it accepts; fails as scripted.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    inner: Mutex<TransportInner>,
}

#[derive(Debug, Default)]
struct TransportInner {
    accepted: Vec<OutboxItem>,
    attempts: usize,
    scripted: VecDeque<SendError>,
    always: Option<SendError>,
}

impl MemoryTransport {
    pub fn new() -> MemoryTransport {
        MemoryTransport::default()
    }

    /// The next send fails with `error` (queued: call twice to fail the next two).
    pub fn fail_next(&self, error: SendError) {
        lock(&self.inner).scripted.push_back(error);
    }

    /// Every send fails with `error` until called with `None`.
    pub fn fail_always(&self, error: Option<SendError>) {
        lock(&self.inner).always = error;
    }

    /// Replies accepted, in order.
    pub fn sent(&self) -> Vec<OutboxItem> {
        lock(&self.inner).accepted.clone()
    }

    /// Sends tried, accepted or not.
    pub fn attempts(&self) -> usize {
        lock(&self.inner).attempts
    }
}

impl Transport for MemoryTransport {
    fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
        let mut inner = lock(&self.inner);
        inner.attempts += 1;
        if let Some(error) = inner.scripted.pop_front().or_else(|| inner.always.clone()) {
            return Err(error);
        }
        inner.accepted.push(item.clone());
        Ok(())
    }
}
