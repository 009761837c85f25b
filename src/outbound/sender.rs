//! The outbox sender: delivers the replies that are due and records each outcome at once.
//!
//! Owns the retry policy (exponential backoff with jitter) and nothing else: it reads the
//! clock from its caller and the queue through the `Outbox` port, so it runs the same against
//! SQLite and in memory.

use super::gate::Gate;
use super::{Outbox, OutboxItem, SendErrorKind, Transport};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// The first retry waits about this long…
pub const MIN_BACKOFF: Duration = Duration::from_secs(30);
/// …and no retry waits longer, so a relay back after a long outage is used within the hour.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// After this many temporary failures in a row the relay is taken to be down and the rest of
/// the round is left for the next one: otherwise each due reply would wait out its own
/// connection timeout.
const DOWN_AFTER: usize = 3;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Accepted by the transport and recorded as sent.
    pub sent: usize,
    /// Failed temporarily; scheduled for a later attempt.
    pub retried: usize,
    /// Failed permanently; recorded and never tried again.
    pub failed: usize,
    /// Not tried this round because the relay looked down; still due.
    pub deferred: usize,
    /// Not tried because the gate closed (filing needed the store); still due.
    pub paused: usize,
    /// Not tried because the relay refused us (our sender, our login), which would fail every
    /// reply alike; still queued. The one that met the refusal is counted in `retried`.
    pub held: usize,
    /// That refusal, when there was one: delivery should pause until it clears.
    pub refused: Option<String>,
}

impl DeliveryStats {
    /// Count another round's outcomes into this one.
    pub fn add(&mut self, other: DeliveryStats) {
        self.sent += other.sent;
        self.retried += other.retried;
        self.failed += other.failed;
        self.deferred += other.deferred;
        self.paused += other.paused;
        self.held += other.held;
        self.refused = other.refused.or(self.refused.take());
    }
}

/// Delivers up to `limit` replies due at `now`, oldest first, one at a time. Each outcome is
/// recorded as soon as the transport answers, which keeps the window in which a crash could cause
/// a second copy (SPEC §5) down to that one store write. A store error stops the round and is
/// returned; the reply in hand stays due and goes out again, identical, next time.
pub fn deliver_due<O: Outbox + Sync, T: Transport + ?Sized>(
    outbox: &O,
    transport: &T,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<DeliveryStats, O::Error> {
    deliver_due_with(outbox, transport, now, limit, 1)
}

/// As [`deliver_due`], with up to `workers` replies in flight at once (each worker takes every
/// `workers`-th due reply, so order is kept roughly). A relay answers each message only after a
/// round trip or more, so a few connections from the pool multiply throughput; every outcome is
/// still recorded the moment its own send returns.
pub fn deliver_due_with<O: Outbox + Sync, T: Transport + ?Sized>(
    outbox: &O,
    transport: &T,
    now: DateTime<Utc>,
    limit: usize,
    workers: usize,
) -> Result<DeliveryStats, O::Error> {
    deliver_due_gated(outbox, transport, now, limit, workers, &Gate::new())
}

/// As [`deliver_due_with`], passing `gate` for reading the outbox and for each reply (see
/// [`Gate`]): once the gate closes, every worker stops after recording the reply in hand, and
/// the replies not tried are counted as `paused` and stay due. Nothing is read while it is
/// closed.
pub fn deliver_due_gated<O: Outbox + Sync, T: Transport + ?Sized>(
    outbox: &O,
    transport: &T,
    now: DateTime<Utc>,
    limit: usize,
    workers: usize,
    gate: &Gate,
) -> Result<DeliveryStats, O::Error> {
    let due = match gate.enter() {
        Some(_pass) => outbox.due(now, limit)?,
        None => return Ok(DeliveryStats::default()),
    };
    let workers = workers.clamp(1, due.len().max(1));
    if workers == 1 {
        return deliver(outbox, transport, now, due.iter(), gate);
    }
    let results: Vec<Result<DeliveryStats, O::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let share = due.iter().skip(w).step_by(workers);
                scope.spawn(move || deliver(outbox, transport, now, share, gate))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut total = DeliveryStats::default();
    for r in results {
        total.add(r?);
    }
    Ok(total)
}

/// One worker's share, in order. Each outcome is recorded at the time it came (the round's
/// `now` plus the time spent since), so a retry is scheduled from the failure, not from the
/// start of a round that waited on a slow relay.
fn deliver<'a, O: Outbox, T: Transport + ?Sized>(
    outbox: &O,
    transport: &T,
    now: DateTime<Utc>,
    items: impl ExactSizeIterator<Item = &'a OutboxItem>,
    gate: &Gate,
) -> Result<DeliveryStats, O::Error> {
    let mut stats = DeliveryStats::default();
    let mut failing = 0;
    let count = items.len();
    let started = std::time::Instant::now();
    // Whole seconds: a round that waited on nothing records its own `now` exactly.
    let at = || now + TimeDelta::seconds(started.elapsed().as_secs() as i64);
    for (n, item) in items.enumerate() {
        // Held from the send to the store write that records its outcome.
        let Some(_pass) = gate.enter() else {
            stats.paused = count - n;
            break;
        };
        if failing >= DOWN_AFTER {
            stats.deferred = count - n;
            tracing::warn!(
                deferred = stats.deferred,
                "relay looks down; rest of the round deferred"
            );
            break;
        }
        let result = transport.send(item);
        let now = at();
        let Err(e) = result else {
            outbox.mark_sent(item.id, now)?;
            tracing::info!(id = item.id, message_id = %item.message_id, "reply sent");
            stats.sent += 1;
            failing = 0;
            continue;
        };
        let wait = backoff(item.id, item.attempts.saturating_add(1));
        let later = |wait: Duration| now + TimeDelta::milliseconds(wait.as_millis() as i64);
        match e.kind {
            SendErrorKind::Permanent => {
                outbox.mark_failed(item.id, now, &e.message, true, None)?;
                tracing::error!(id = item.id, message_id = %item.message_id, error = %e.message, "reply failed permanently");
                stats.failed += 1;
                failing = 0;
            }
            SendErrorKind::Refused => {
                // Every reply would meet the same refusal: this one stays queued (not failed),
                // the rest are not tried, and the caller pauses delivery.
                let retry_at = later(MIN_BACKOFF);
                outbox.mark_failed(item.id, now, &e.message, false, Some(retry_at))?;
                tracing::error!(id = item.id, message_id = %item.message_id, error = %e.message, "the relay refuses our sender or login; replies kept queued");
                stats.retried += 1;
                stats.held = count - n - 1;
                stats.refused = Some(e.message);
                break;
            }
            SendErrorKind::Unanswered { retry_after } => {
                let retry_at = later(wait.max(retry_after));
                outbox.mark_failed(item.id, now, &e.message, false, Some(retry_at))?;
                tracing::warn!(id = item.id, message_id = %item.message_id, %retry_at, error = %e.message, "reply unanswered after its end of data; not sent again before the limit has passed");
                stats.retried += 1;
            }
            SendErrorKind::Transient => {
                let retry_at = later(wait);
                outbox.mark_failed(item.id, now, &e.message, false, Some(retry_at))?;
                tracing::warn!(id = item.id, message_id = %item.message_id, %retry_at, error = %e.message, "reply deferred");
                stats.retried += 1;
                failing += 1;
            }
        }
    }
    Ok(stats)
}

/// How long to wait after the `attempts`-th failed attempt (1 for the first failure) of outbox
/// item `id`: 30 s, 1 min, 2 min, … capped at 1 h, each shortened by up to 20% so replies
/// queued together do not all hit a recovering relay in the same second. The jitter is derived
/// from `id` and `attempts` rather than a random source, so the sender stays deterministic.
pub fn backoff(id: i64, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    let full = MIN_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    let spread = mix((id as u64) ^ (u64::from(attempts) << 48)) % 2001; // 0 ..= 20.00%
    let full_ms = full.as_millis() as u64;
    let wait = Duration::from_millis(full_ms - full_ms * spread / 10_000);
    wait.max(MIN_BACKOFF)
}

/// SplitMix64 finaliser: spreads neighbouring ids over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{MemoryOutbox, MemoryTransport, OutboxState, SendError};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2011, 10, 5, 9, 0, 0).single().expect("valid time")
    }

    #[test]
    fn backoff_grows_and_stays_between_thirty_seconds_and_an_hour() {
        for id in 1..200 {
            let mut last = Duration::ZERO;
            for attempts in 1..40 {
                let wait = backoff(id, attempts);
                assert!(wait >= MIN_BACKOFF && wait <= MAX_BACKOFF, "{id}/{attempts}: {wait:?}");
                if attempts <= 7 {
                    assert!(wait > last, "{id}/{attempts}: {wait:?} after {last:?}");
                }
                last = wait;
            }
        }
        assert!(backoff(1, 30) >= Duration::from_secs(48 * 60), "jitter at most 20%");
    }

    #[test]
    fn backoff_spreads_replies_that_failed_together() {
        let waits: std::collections::BTreeSet<_> = (1..50).map(|id| backoff(id, 8)).collect();
        assert!(waits.len() > 40, "only {} distinct waits", waits.len());
        assert_eq!(backoff(7, 3), backoff(7, 3));
    }

    #[test]
    fn parallel_workers_send_every_due_reply_exactly_once() {
        let outbox = MemoryOutbox::new();
        for n in 0..23 {
            outbox.queue(&format!("r{n}@t"), "f@t.test", &["a@t.test"], b"x");
        }
        let transport = MemoryTransport::new();
        let stats = deliver_due_with(&outbox, &transport, now(), 100, 4).expect("delivered");
        assert_eq!(stats.sent, 23);
        let mut ids: Vec<String> = transport.sent().into_iter().map(|i| i.message_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 23, "each reply sent once");
        let again = deliver_due_with(&outbox, &transport, now(), 100, 4).expect("second round");
        assert_eq!(again.sent, 0, "nothing due after a full round");
    }

    /// Filing closes the gate in the middle of a round: the sends in hand finish, none starts
    /// until it reopens, and in the end every reply went out exactly once.
    #[test]
    fn a_closed_gate_pauses_delivery_between_replies_and_loses_none() {
        use std::sync::Mutex;
        use std::time::{Duration, Instant};
        struct Slow {
            inner: MemoryTransport,
            starts: Mutex<Vec<Instant>>,
        }
        impl Transport for Slow {
            fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
                self.starts.lock().expect("lock").push(Instant::now());
                std::thread::sleep(Duration::from_millis(2));
                self.inner.send(item)
            }
        }
        let outbox = MemoryOutbox::new();
        for n in 0..60 {
            outbox.queue(&format!("r{n}@t"), "f@t.test", &["a@t.test"], b"x");
        }
        let relay = Slow { inner: MemoryTransport::new(), starts: Mutex::new(Vec::new()) };
        let gate = Gate::new();
        let (first, shut) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| deliver_due_gated(&outbox, &relay, now(), 100, 2, &gate));
            while relay.starts.lock().expect("lock").len() < 4 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let closed = gate.close();
            let shut = (Instant::now(), {
                std::thread::sleep(Duration::from_millis(30));
                Instant::now()
            });
            drop(closed);
            (worker.join().expect("worker").expect("round"), shut)
        });
        assert!(first.paused > 0 && first.sent > 0, "closed mid-round: {first:?}");
        assert_eq!(first.sent + first.paused, 60);
        let during = relay
            .starts
            .lock()
            .expect("lock")
            .iter()
            .filter(|t| **t > shut.0 && **t < shut.1)
            .count();
        assert_eq!(during, 0, "a send started while the gate was closed");
        let rest = deliver_due_gated(&outbox, &relay, now(), 100, 2, &gate).expect("second");
        assert_eq!(rest.sent, first.paused);
        let mut ids: Vec<String> = relay.inner.sent().into_iter().map(|i| i.message_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 60, "each reply sent once");
    }

    #[test]
    fn relay_down_defers_the_rest_of_the_round() {
        let outbox = MemoryOutbox::new();
        let ids: Vec<i64> = (0..10)
            .map(|n| outbox.queue(&format!("r{n}@t"), "f@t.test", &["a@t.test"], b"x"))
            .collect();
        let relay = MemoryTransport::new();
        relay.fail_always(Some(SendError::transient("connection refused")));
        let stats = deliver_due(&outbox, &relay, now(), 100).expect("round");
        let want = DeliveryStats { retried: DOWN_AFTER, deferred: 7, ..DeliveryStats::default() };
        assert_eq!(stats, want);
        assert_eq!(relay.attempts(), DOWN_AFTER);
        let untouched = OutboxState::Queued { retry_at: None, last_error: None };
        assert_eq!(outbox.state(ids[9]), Some(untouched));
    }

    #[test]
    fn a_refusal_of_our_sender_keeps_every_reply_queued_and_stops_the_round() {
        let outbox = MemoryOutbox::new();
        let ids: Vec<i64> = (0..5)
            .map(|n| outbox.queue(&format!("r{n}@t"), "f@t.test", &["a@t.test"], b"x"))
            .collect();
        let relay = MemoryTransport::new();
        let why = "550 5.7.60 Client does not have permissions to send as this sender";
        relay.fail_always(Some(SendError::new(SendErrorKind::Refused, why)));
        let stats = deliver_due(&outbox, &relay, now(), 100).expect("round");
        assert_eq!((stats.retried, stats.held, stats.failed), (1, 4, 0), "{stats:?}");
        assert_eq!(stats.refused.as_deref(), Some(why));
        assert_eq!(relay.attempts(), 1, "one try, not one per reply");
        for id in &ids[1..] {
            let untouched = OutboxState::Queued { retry_at: None, last_error: None };
            assert_eq!(outbox.state(*id), Some(untouched));
        }
        let Some(OutboxState::Queued { retry_at: Some(at), .. }) = outbox.state(ids[0]) else {
            panic!("{:?}", outbox.state(ids[0]));
        };
        assert_eq!(at, now() + TimeDelta::seconds(30), "tried again, not failed");
    }

    #[test]
    fn an_unanswered_end_of_data_is_not_due_again_before_the_rest_of_its_limit() {
        let outbox = MemoryOutbox::new();
        let id = outbox.queue("r@t", "f@t.test", &["a@t.test"], b"x");
        let relay = MemoryTransport::new();
        let left = Duration::from_secs(590);
        relay.fail_next(SendError::new(
            SendErrorKind::Unanswered { retry_after: left },
            "no answer",
        ));
        deliver_due(&outbox, &relay, now(), 10).expect("round");
        let Some(OutboxState::Queued { retry_at: Some(at), .. }) = outbox.state(id) else {
            panic!("{:?}", outbox.state(id));
        };
        assert_eq!(at, now() + TimeDelta::seconds(590));
    }
}
