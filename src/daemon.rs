//! The loops: take what waits in the mailbox, process each message, move it out only after its
//! filing is durable, deliver due replies, then wait for more. Shuts down on purpose: a signal
//! stops intake, the message in hand finishes, then the loop returns (STYLE habit 5).

mod delivery;
pub mod health;

pub use crate::shutdown::Shutdown;
pub use health::Health;

use crate::mailbox::{MailSource, Pending, SourceError};
use crate::outbound::{deliver_due_gated, deliver_due_with, DeliveryStats, Gate, Transport};
use crate::pipeline::{self, Env, Incoming, Processed};
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Messages filed per group commit. Large enough that the flush (and the index pages a filing
/// touches) is shared by many; a burst starts with smaller ones ([`FIRST_BATCH`], doubling), so
/// the first replies are not held up by the size of the rest.
const FILING_BATCH: usize = 100;
/// The first batch of a round, when more are waiting.
const FIRST_BATCH: usize = 10;
/// Bytes of mail fetched together (one round trip to an IMAP server); a larger message comes
/// on its own. Bounds memory however large the messages of a batch are.
const FETCH_BYTES: u64 = 8 * 1024 * 1024;
/// Replies fetched from the outbox at a time.
const DELIVERY_BATCH: usize = 500;
/// Replies in flight at once. A reply the relay has accepted but the store has not yet recorded
/// as sent is the one that a crash would send twice (SPEC §5), so this is kept small: a send
/// takes about a millisecond, and four in flight share the sent journal's flushes (group commit)
/// while keeping the relay busy.
const DELIVERY_WORKERS: usize = 4;

/// Replies in flight at once with `config`: [`DELIVERY_WORKERS`], or fewer when `[smtp]
/// connections` says so (Microsoft 365 takes three at once from one mailbox).
fn workers(config: &crate::config::Config) -> usize {
    match &config.outbound.transport {
        crate::config::Transport::Smtp(smtp) => DELIVERY_WORKERS.min(smtp.connections as usize),
        _ => DELIVERY_WORKERS,
    }
}

/// The daemon's idea of the time: the real clock, or one that starts at a given moment
/// (`--now`) and runs on from there, so a long-running daemon replaying an archive still sees
/// retries come due. Every message is taken as received at the given moment itself.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Option<DateTime<Utc>>,
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::starting_at(None)
    }
}

impl Clock {
    /// The real clock (`None`), or one starting at `at`.
    pub fn starting_at(at: Option<DateTime<Utc>>) -> Clock {
        Clock { start: at, origin: Instant::now() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.start {
            // Whole seconds, so what a replay records reads like the moment it was given.
            Some(start) => {
                start + chrono::TimeDelta::seconds(self.origin.elapsed().as_secs() as i64)
            }
            None => Utc::now(),
        }
    }

    /// The moment `--now` gave, if any.
    pub fn fixed(&self) -> Option<DateTime<Utc>> {
        self.start
    }

    /// When a message that reached the mailbox at `arrived` counts as received: `--now`'s
    /// moment when given (SPEC §7), else its arrival.
    pub fn received_at(&self, arrived: DateTime<Utc>) -> DateTime<Utc> {
        self.start.unwrap_or(arrived)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("mailbox: {0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Pipeline(#[from] pipeline::PipelineError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What one round did.
#[derive(Debug, Default)]
pub struct Round {
    pub processed: Vec<Processed>,
    /// Messages left in the mailbox for a later round (transient trouble).
    pub deferred: usize,
    /// Messages filed but still in the mailbox: the server refused to move them out (they are
    /// recognised as filed next time, never answered twice).
    pub unmoved: usize,
    /// Why they could not be moved, when some could not.
    pub unmoved_reason: Option<String>,
    pub delivery: DeliveryStats,
}

/// Where replies go out in the long-running daemon: on the delivery thread of [`Daemon::run`],
/// woken by `kick` after each commit, sharing `gate` with the filing.
struct Elsewhere<'g> {
    gate: &'g Gate,
    kick: &'g Notify,
}

pub struct Daemon<'a, S: Store, M: MailSource, T: Transport + ?Sized> {
    pub store: &'a S,
    pub source: M,
    pub transport: &'a T,
    pub env: &'a Env,
    pub clock: Clock,
    pub shutdown: Shutdown,
}

impl<'a, S: Store, M: MailSource, T: Transport + ?Sized> Daemon<'a, S, M, T> {
    /// Process everything waiting now, then deliver due replies. Messages are filed in batches
    /// (group commit: one flush for many filings), and a batch leaves the mailbox only once its
    /// commit has returned — so a crash at any point leaves every unfiled message in the inbox.
    ///
    /// Replies go out while the next batch is fetched and prepared: a delivery thread works
    /// whenever no filing is open, and stops between two replies when one begins (see
    /// [`Gate`]), so a reply is still recorded the moment the relay accepts it.
    pub fn round(&mut self) -> Result<Round, DaemonError> {
        self.round_with(None)
    }

    /// A round whose replies go out on the daemon's delivery thread (`elsewhere`), or within
    /// it (`None`, as [`Daemon::round`]).
    fn round_with(&mut self, elsewhere: Option<&Elsewhere<'_>>) -> Result<Round, DaemonError> {
        let mut round = Round::default();
        let pending = self.source.pending()?;
        if let Some(e) = elsewhere {
            if !pending.is_empty() {
                let kick = || e.kick.notify_one();
                self.file_all_then(&pending, &mut round, e.gate, &kick)?;
            }
            return Ok(round);
        }
        if pending.is_empty() {
            round.delivery = self.deliver()?;
            self.settle();
            return Ok(round);
        }
        let (store, transport, clock) = (self.store, self.transport, self.clock);
        let shutdown = self.shutdown.clone();
        let gate = Gate::new();
        let kick = Kick::default();
        let worked = std::thread::scope(|scope| {
            let worker =
                std::thread::Builder::new().name("delivery".into()).spawn_scoped(scope, || {
                    deliver_while_filing(
                        store,
                        transport,
                        clock,
                        &gate,
                        &kick,
                        &shutdown,
                        workers(&self.env.config),
                    )
                });
            let filed = self.file_all(scope, &pending, &mut round, &gate, &|| kick.kick());
            kick.stop();
            let delivered = match worker {
                Ok(handle) => {
                    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                }
                Err(e) => {
                    // No thread to spare: every reply still goes out below, after the filing.
                    tracing::warn!("delivering after filing instead of beside it: {e}");
                    Ok(DeliveryStats::default())
                }
            };
            filed.map(|()| delivered)
        })?;
        round.delivery.add(worked?);
        let sent = self.deliver()?;
        round.delivery.add(sent);
        self.settle();
        Ok(round)
    }

    /// Fold what delivery recorded on the side into the store proper, so a reader of the
    /// database alone sees every send once a round is over. Trouble here loses nothing (the
    /// record stays where it is and is folded later), so it is only logged.
    fn settle(&self) {
        if let Err(e) = self.store.settle() {
            tracing::warn!("sent replies recorded, not yet folded into the outbox: {e}");
        }
    }

    /// [`Daemon::file_all`] in a scope of its own, calling `committed` after each commit.
    fn file_all_then(
        &mut self,
        pending: &[Pending],
        round: &mut Round,
        gate: &Gate,
        committed: &(dyn Fn() + Sync),
    ) -> Result<(), DaemonError> {
        std::thread::scope(|scope| self.file_all(scope, pending, round, gate, committed))
    }

    /// File every pending message, batch after batch, calling `committed` (which wakes the
    /// delivery thread) after each commit.
    ///
    /// One batch ahead: before a batch is filed, the first group of the next is fetched and
    /// handed to a thread of `scope` to prepare (parse, read, write its blobs) while this one
    /// is filed, committed and moved. Nothing of the next batch is filed before its turn, so a
    /// crash still leaves it whole in the inbox.
    fn file_all<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        pending: &[Pending],
        round: &mut Round,
        gate: &Gate,
        committed: &(dyn Fn() + Sync),
    ) -> Result<(), DaemonError>
    where
        'a: 'scope,
    {
        let chunks = batches(pending);
        let mut ahead: Option<std::thread::ScopedJoinHandle<'scope, Ready>> = None;
        let mut left = chunks.len();
        for (i, &chunk) in chunks.iter().enumerate() {
            if self.shutdown.requested() {
                round.deferred += chunks[i..].iter().map(|c| c.len()).sum::<usize>();
                left = 0;
                break;
            }
            let first = match ahead.take() {
                Some(handle) => {
                    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                }
                None => self.fetch_and_prepare(first_group(chunk)),
            };
            if let Some(&next) = chunks.get(i + 1) {
                let fetched = self.fetch(first_group(next));
                let (store, env) = (self.store, self.env);
                let spawned = std::thread::Builder::new().name("prepare".into()).spawn_scoped(
                    scope,
                    move || {
                        let prepared = prepare_all(store, env, &fetched);
                        (fetched, prepared)
                    },
                );
                // No thread to spare: the next batch is prepared in its turn instead.
                ahead = spawned.ok();
            }
            left -= 1;
            let filed = self.batch(chunk, first, round, gate);
            // Answer each committed batch while the next is fetched, so the first replies of a
            // burst go out in seconds rather than after the whole burst.
            committed();
            if !filed? {
                break; // store trouble: leave the rest for a later round
            }
        }
        round.deferred += chunks[chunks.len() - left..].iter().map(|c| c.len()).sum::<usize>();
        Ok(())
    }

    /// File one batch and move it out of the mailbox. `Ok(false)` when the store is in trouble
    /// (nothing of the batch was filed; it stays in the mailbox).
    ///
    /// `first` is the first group of the batch, fetched and prepared before the filing began
    /// (see [`Daemon::file_all`]); any further group is fetched and prepared inside the filing.
    /// `gate` is closed from the start of the filing until it is committed or abandoned.
    fn batch(
        &mut self,
        chunk: &[Pending],
        first: Ready,
        round: &mut Round,
        gate: &Gate,
    ) -> Result<bool, DaemonError> {
        let groups = by_size(chunk, FETCH_BYTES);
        let mut first = Some(first);
        // A store that records sends apart from the filing lets delivery run on throughout.
        let closed = (!self.store.delivers_beside_filing()).then(|| gate.close());
        if let Err(e) = self.store.begin_batch() {
            tracing::warn!("cannot start filing, messages left in the inbox: {e}");
            round.deferred += chunk.len();
            return if e.is_transient() { Ok(false) } else { Err(e.into()) };
        }
        let mut done: Vec<Processed> = Vec::with_capacity(chunk.len());
        for group in groups {
            let (fetched, prepared) = match first.take() {
                Some(ready) => ready,
                None => self.fetch_and_prepare(group),
            };
            let mut prepared = prepared.into_iter();
            for (p, (_, fetched)) in group.iter().zip(fetched) {
                let prepared = prepared.next().flatten();
                let raw = match fetched {
                    Ok(raw) => raw,
                    Err(SourceError::Gone { .. }) => {
                        // Another process took it; if it is still listed next round, this
                        // line says why it was passed over.
                        tracing::info!(key = p.key, "listed, but gone when fetched: skipped");
                        continue;
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(key = p.key, "cannot fetch, will retry: {e}");
                        round.deferred += 1;
                        continue;
                    }
                    Err(e) => {
                        self.store.rollback_batch();
                        return Err(e.into());
                    }
                };
                let now = self.clock.now();
                let received_at = self.clock.received_at(p.received_at);
                let msg = Incoming { raw: &raw, source_key: &p.key, received_at };
                let prepared = prepared.unwrap_or_else(|| pipeline::prepare(self.env, &raw));
                match pipeline::process_prepared(self.store, self.env, msg, prepared, now) {
                    Ok(processed) => done.push(processed),
                    Err(e) if e.is_transient() => {
                        // The store is unavailable: abandon the batch; all of it stays in the
                        // inbox.
                        tracing::warn!(
                            key = p.key,
                            "not filed, batch left in the inbox to retry: {e}"
                        );
                        self.store.rollback_batch();
                        round.deferred += chunk.len();
                        return Ok(false);
                    }
                    Err(e) => {
                        // Only this message's savepoint was undone. It stays in the inbox
                        // (nothing is lost) and is reported; the rest of the batch carries on.
                        tracing::error!(
                            key = p.key,
                            "cannot file this message, left in the inbox: {e}"
                        );
                        round.deferred += 1;
                    }
                }
            }
        }
        if let Err(e) = self.store.commit_batch() {
            tracing::warn!("batch not committed, left in the inbox to retry: {e}");
            round.deferred += done.len();
            return if e.is_transient() { Ok(false) } else { Err(e.into()) };
        }
        drop(closed); // filed: replies may go out while the batch is moved out of the inbox
        let keys: Vec<String> = done.iter().map(|p| p.source_key.clone()).collect();
        for (key, e) in self.source.mark_processed_many(&keys) {
            if !matches!(e, SourceError::Gone { .. }) {
                tracing::warn!(key, "filed, but not yet moved out of the inbox (a duplicate next time, never a second reply): {e}");
                round.unmoved += 1;
                round.unmoved_reason.get_or_insert_with(|| e.to_string());
            }
        }
        for p in &done {
            log(p);
        }
        round.processed.extend(done);
        Ok(true)
    }

    /// Fetch a group of messages in one round trip and prepare them (parse, classify, read
    /// attachments, write blobs) on threads of their own.
    fn fetch_and_prepare(&mut self, group: &[Pending]) -> Ready {
        let fetched = self.fetch(group);
        let prepared = prepare_all(self.store, self.env, &fetched);
        (fetched, prepared)
    }

    /// Fetch a group of messages in one round trip.
    fn fetch(&mut self, group: &[Pending]) -> Fetched {
        let keys: Vec<String> = group.iter().map(|p| p.key.clone()).collect();
        self.source.fetch_many(&keys)
    }

    /// Deliver everything due, batch after batch, until a batch comes back short (all sent) or
    /// the relay looks down (the rest waits for the next round).
    fn deliver(&mut self) -> Result<DeliveryStats, DaemonError> {
        let mut total = DeliveryStats::default();
        loop {
            let s = deliver_due_with(
                self.store,
                self.transport,
                self.clock.now(),
                DELIVERY_BATCH,
                workers(&self.env.config),
            )?;
            let handled = s.sent + s.retried + s.failed;
            let (deferred, sent, refused) = (s.deferred, s.sent, s.refused.is_some());
            total.add(s);
            if handled < DELIVERY_BATCH
                || deferred > 0
                || sent == 0
                || refused
                || self.shutdown.requested()
            {
                return Ok(total);
            }
        }
    }

    /// Rounds until shutdown, waiting for new mail between them (see [`MailSource::wait`]).
    pub fn run(&mut self, poll: Duration) -> Result<(), DaemonError> {
        self.run_watched(poll, &Health::default())
    }

    /// [`Daemon::run`], keeping `health` up to date. Replies go out on a thread of their own
    /// the whole time, so a slow relay never holds up filing. Nothing that goes wrong here
    /// ends the loop: an unreachable mailbox, a refused login or a failing store is logged,
    /// shown in `health`, and met again after a pause (the IMAP source's own backoff runs from
    /// 1 s to 60 s).
    pub fn run_watched(&mut self, poll: Duration, health: &Health) -> Result<(), DaemonError> {
        let (gate, kick) = (Gate::new(), Notify::new());
        let (store, transport, env, shutdown) =
            (self.store, self.transport, self.env, self.shutdown.clone());
        let ctx = delivery::Ctx {
            clock: self.clock,
            gate: &gate,
            kick: &kick,
            shutdown: &shutdown,
            health,
            config: &env.config,
        };
        std::thread::scope(|scope| {
            let delivering = std::thread::Builder::new()
                .name("delivery".into())
                .spawn_scoped(scope, || delivery::run(store, transport, &ctx));
            if let Err(e) = &delivering {
                tracing::error!("no delivery thread, replies go out between rounds: {e}");
            }
            let elsewhere = delivering.is_ok().then_some(Elsewhere { gate: &gate, kick: &kick });
            self.intake(poll, health, elsewhere.as_ref());
        });
        Ok(())
    }

    fn intake(&mut self, poll: Duration, health: &Health, elsewhere: Option<&Elsewhere<'_>>) {
        let mut failures = 0u32;
        while !self.shutdown.requested() {
            match self.round_with(elsewhere) {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(failures, "the mailbox answers again");
                    }
                    failures = 0;
                    health.mailbox_up();
                }
                Err(e) => {
                    failures += 1;
                    health.mailbox_down(self.clock.now(), &e.to_string());
                    // 1, 2, 4, 8, 16 s between rounds that fail on the store; the mailbox's own
                    // backoff, waited out in `wait`, paces reconnection.
                    let pause = Duration::from_secs(1 << failures.saturating_sub(1).min(4));
                    match &e {
                        // The source logged the failed attempt when it made it.
                        DaemonError::Source(SourceError::Backoff { .. }) => {}
                        DaemonError::Source(s) if s.is_transient() => {
                            tracing::warn!("mailbox unavailable (round {failures}), retrying: {e}")
                        }
                        _ => tracing::error!("round failed (attempt {failures}), retrying: {e}"),
                    }
                    self.shutdown.sleep(pause.min(poll));
                }
            }
            if self.shutdown.requested() {
                break;
            }
            if let Err(e) = self.source.wait(poll, &self.shutdown) {
                tracing::warn!("waiting for mail: {e}");
                self.shutdown.sleep(Duration::from_secs(1).min(poll));
            }
        }
    }
}

/// Messages as fetched: each key with its bytes or why they could not be had.
type Fetched = Vec<(String, Result<Vec<u8>, SourceError>)>;

/// A group fetched and prepared, ready to be filed.
type Ready = (Fetched, Vec<Option<pipeline::Prepared>>);

/// The messages of `chunk` fetched together first (see [`by_size`]).
fn first_group(chunk: &[Pending]) -> &[Pending] {
    by_size(chunk, FETCH_BYTES).first().copied().unwrap_or(chunk)
}

/// Wakes the delivery thread after each commit, and tells it when the filing is over.
#[derive(Debug, Default)]
struct Kick {
    state: Mutex<KickState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct KickState {
    kicked: bool,
    stopped: bool,
}

impl Kick {
    fn kick(&self) {
        self.lock().kicked = true;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Wait for a kick; `false` once stopped.
    fn wait(&self) -> bool {
        let mut s = self.lock();
        while !s.kicked && !s.stopped {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.kicked = false;
        !s.stopped
    }

    fn lock(&self) -> MutexGuard<'_, KickState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The delivery thread of a round: after each kick, deliver what is due until nothing is, the
/// gate closes, the relay looks down or shutdown is asked for; then wait for the next kick.
/// Whatever it leaves is delivered by the round itself once the filing is over.
fn deliver_while_filing<S: Store, T: Transport + ?Sized>(
    store: &S,
    transport: &T,
    clock: Clock,
    gate: &Gate,
    kick: &Kick,
    shutdown: &Shutdown,
    workers: usize,
) -> Result<DeliveryStats, crate::store::StoreError> {
    let mut total = DeliveryStats::default();
    while kick.wait() {
        loop {
            let s =
                deliver_due_gated(store, transport, clock.now(), DELIVERY_BATCH, workers, gate)?;
            let handled = s.sent + s.retried + s.failed;
            let (deferred, sent, paused, refused) =
                (s.deferred, s.sent, s.paused, s.refused.is_some());
            total.add(s);
            if paused > 0
                || refused
                || handled < DELIVERY_BATCH
                || deferred > 0
                || sent == 0
                || shutdown.requested()
            {
                break;
            }
        }
    }
    Ok(total)
}

/// Threads that prepare messages (parse, classify, read attachments, write blobs); the batch
/// is filed in order afterwards.
const PREPARE_THREADS: usize = 2;

/// Prepare every fetched message of a group and stage its blobs, on up to [`PREPARE_THREADS`]
/// threads; `None` for one that could not be fetched. The order is kept.
fn prepare_all<S: Store>(
    store: &S,
    env: &Env,
    fetched: &[(String, Result<Vec<u8>, SourceError>)],
) -> Vec<Option<pipeline::Prepared>> {
    let one = |f: &(String, Result<Vec<u8>, SourceError>)| {
        f.1.as_ref().ok().map(|raw| {
            let mut prepared = pipeline::prepare(env, raw);
            pipeline::stage_blobs(store, &mut prepared, raw);
            prepared
        })
    };
    if fetched.len() < 2 {
        return fetched.iter().map(one).collect();
    }
    let per = fetched.len().div_ceil(PREPARE_THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = fetched
            .chunks(per)
            .map(|chunk| scope.spawn(move || chunk.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// `pending` cut into filing batches: [`FIRST_BATCH`] messages, then twice as many each time,
/// up to [`FILING_BATCH`].
fn batches(pending: &[Pending]) -> Vec<&[Pending]> {
    let mut out = Vec::new();
    let (mut rest, mut size) = (pending, FIRST_BATCH);
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        out.push(batch);
        rest = tail;
        size = (size * 2).min(FILING_BATCH);
    }
    out
}

/// Consecutive groups of `pending` whose sizes add up to at most `budget` (a message larger
/// than the budget forms a group of its own).
fn by_size(pending: &[Pending], budget: u64) -> Vec<&[Pending]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, p) in pending.iter().enumerate() {
        if i > start && bytes.saturating_add(p.size) > budget {
            groups.push(&pending[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(p.size);
    }
    if start < pending.len() {
        groups.push(&pending[start..]);
    }
    groups
}

/// One structured log line per message: id, class, organisation, outcome, receipt.
fn log(p: &Processed) {
    tracing::info!(
        key = p.source_key,
        message_id = p.message_id.as_deref().unwrap_or("-"),
        class = p.class,
        org = p.org.as_deref().unwrap_or("-"),
        outcome = p.outcome,
        receipts = p.receipts.join(","),
        replies = p.replies.len(),
        "message processed"
    );
}

#[cfg(test)]
#[path = "daemon_tests.rs"]
mod tests;
