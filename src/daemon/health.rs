//! The daemon's health as others read it: whether the mailbox can be reached and whether
//! delivery runs or is paused, with since when and why. Kept in a tokio `watch` channel, so a
//! reader (the `/readyz` endpoint, once it exists) always sees the latest state and can wait
//! for a change; the daemon also logs every change.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::watch;

/// One part's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Part {
    /// Not known yet (the daemon is starting).
    #[default]
    Starting,
    Up,
    /// Down or paused since `since`, for `reason`.
    Down {
        since: DateTime<Utc>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// The mailbox: reachable and logged in, or the last failure.
    pub mailbox: Part,
    /// Delivery: running, or paused because the relay refuses our sender or login.
    pub delivery: Part,
}

impl State {
    /// Ready: the mailbox answers and replies go out.
    pub fn ready(&self) -> bool {
        self.mailbox == Part::Up && !matches!(self.delivery, Part::Down { .. })
    }
}

/// Cloned freely; every clone shares one state.
#[derive(Debug, Clone)]
pub struct Health(Arc<watch::Sender<State>>);

impl Default for Health {
    fn default() -> Health {
        Health(Arc::new(watch::channel(State::default()).0))
    }
}

impl Health {
    pub fn state(&self) -> State {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.0.subscribe()
    }

    pub(crate) fn mailbox_up(&self) {
        self.0.send_if_modified(|s| std::mem::replace(&mut s.mailbox, Part::Up) != Part::Up);
    }

    /// Keeps the first `since` of an outage while its reason changes.
    pub(crate) fn mailbox_down(&self, now: DateTime<Utc>, reason: &str) {
        self.0.send_modify(|s| {
            let since = match &s.mailbox {
                Part::Down { since, .. } => *since,
                _ => now,
            };
            s.mailbox = Part::Down { since, reason: reason.to_string() };
        });
    }

    pub(crate) fn delivery_paused(&self, since: DateTime<Utc>, reason: &str) {
        self.0.send_modify(|s| s.delivery = Part::Down { since, reason: reason.to_string() });
    }

    pub(crate) fn delivery_running(&self) {
        self.0.send_if_modified(|s| std::mem::replace(&mut s.delivery, Part::Up) != Part::Up);
    }
}
