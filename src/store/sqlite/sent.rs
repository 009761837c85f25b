//! The sent journal: where a reply's delivery is recorded the moment the relay accepts it.
//!
//! Filing holds the database's write lock for a whole batch (group commit), so a reply recorded
//! in the same database would either wait for that batch, which widens the window in which a
//! crash can send a second copy (SPEC §5), or stop delivery while filing runs. So the record of
//! a sent reply goes to a small database of its own beside the store, `<db>.sent` (WAL): one
//! short transaction that no filing ever holds up. The delivery side works on its own
//! connection, to the main database (where it reads only what is committed) with the journal
//! attached.
//!
//! **When a record is safe.** A record's transaction is committed into the journal's WAL
//! without waiting for the disk (`synchronous=NORMAL`): from then on it survives the daemon
//! being killed, crashing or running out of memory, since the kernel holds the bytes. The
//! [`Flusher`] puts them on the disk within [`FLUSH_WITHIN`], one flush for every record made
//! in that time, so a power cut or kernel crash can cost at most that much of the journal.
//! Waiting for the disk on every send made each reply a flush of its own: about 750 flushes
//! per 1,000 replies, which cost the whole machine (the mail stack shares the disk) about a
//! tenth of its throughput in the bench. The window for the daemon's own crash is now only the
//! step from the relay's answer to that commit.
//!
//! Each batch, and every opening of the store, folds the journal into `outbox.sent_at` and
//! writes the `reply_sent` audit rows, so the main database stands on its own. A folded entry
//! is deleted later, once it has been folded for an hour; until then it is still in the journal.
//! That order (fold committed, then entry deleted) with the outbox read journal first (see
//! `due`) means no reader can see a reply as neither sent nor journaled.

use super::filing::audit;
use super::{connect, get_ts, require_wal, ts};
use crate::store::StoreError;
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How long a folded entry stays in the journal before it is deleted.
const KEEP_FOLDED: TimeDelta = TimeDelta::hours(1);

/// The longest a record waits for the disk after its commit (plus the flush itself).
pub(super) const FLUSH_WITHIN: Duration = Duration::from_millis(20);

/// The journal's file: the store's file name with `.sent` added.
pub fn journal_path(db: &Path) -> PathBuf {
    with_suffix(db, ".sent")
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The delivery side's connection: the main database, with the journal attached as `sent`
/// (created if need be).
pub(super) fn open_delivery(db: &Path) -> Result<Connection, StoreError> {
    let conn = connect(db)?;
    let journal = journal_path(db);
    conn.execute("ATTACH DATABASE ?1 AS sent", [journal.to_string_lossy()])?;
    require_wal(&conn, "sent")?;
    // Committed into the WAL without waiting for the disk; the Flusher syncs it (module docs).
    conn.pragma_update(Some("sent"), "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sent.sent (
             id INTEGER PRIMARY KEY,
             at TEXT NOT NULL
         ) STRICT;",
    )?;
    Ok(conn)
}

/// Group commit for the journal. Every send is recorded in a transaction of its own making or
/// in the one already being written when it arrives: parallel senders share a transaction
/// instead of queueing for one each. The [`Flusher`] then puts it on the disk.
#[derive(Debug)]
pub(super) struct Recorder {
    state: Mutex<Queue>,
    done: Condvar,
    flusher: Flusher,
}

#[derive(Debug, Default)]
struct Queue {
    /// Sends waiting for the next transaction, each with its ticket.
    waiting: Vec<(u64, i64, String)>,
    next_ticket: u64,
    /// A thread is writing a transaction now.
    writing: bool,
    /// The outcome of each ticket written, until its sender collects it: recorded (true),
    /// nothing to record (false), or why the transaction failed.
    outcomes: Vec<(u64, Result<bool, String>)>,
}

impl Recorder {
    /// A recorder for the journal beside database `db`.
    pub(super) fn new(db: &Path) -> Recorder {
        Recorder {
            state: Mutex::default(),
            done: Condvar::new(),
            // SQLite names a database's WAL file after it, with `-wal` added.
            flusher: Flusher::new(with_suffix(&journal_path(db), "-wal"), FLUSH_WITHIN),
        }
    }

    /// Records outbox item `id` as sent at `at` in the journal alone: safe from the daemon's
    /// own crash on return, on the disk within [`FLUSH_WITHIN`]. `Ok(false)` when there is
    /// nothing to record: the item is already sent, or unknown.
    pub(super) fn record(
        &self,
        conn: &Mutex<Connection>,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut q = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push((ticket, id, ts(at)));
        loop {
            if let Some(i) = q.outcomes.iter().position(|(t, _)| *t == ticket) {
                let (_, outcome) = q.outcomes.swap_remove(i);
                return outcome.map_err(StoreError::Data);
            }
            if q.writing {
                q = self.done.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Write everything waiting, this send included, as one transaction.
            q.writing = true;
            let batch = std::mem::take(&mut q.waiting);
            drop(q);
            let written = conn
                .lock()
                .map_err(|_| StoreError::Poisoned)
                .and_then(|mut c| write(&mut c, &batch));
            q = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            q.writing = false;
            match written {
                Ok(recorded) => {
                    if recorded.iter().any(|r| *r) {
                        self.flusher.due();
                    }
                    q.outcomes.extend(batch.iter().map(|b| b.0).zip(recorded.into_iter().map(Ok)))
                }
                Err(e) => {
                    let why = format!("recording sent replies: {e}");
                    q.outcomes.extend(batch.iter().map(|b| (b.0, Err(why.clone()))));
                }
            }
            self.done.notify_all();
        }
    }

    /// Puts every record made so far on the disk now (the end of a round, `ingest`).
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush_now()
    }
}

/// Puts the journal's committed records on the disk at most `within` after the first record
/// not yet there, one flush for all of them, from a thread of its own (started with the first
/// record, stopped and flushed when the store closes). A flush is `fdatasync` of the journal's
/// WAL file: what SQLite itself does at a commit under `synchronous=FULL`. When the WAL file
/// is gone, a checkpoint has already copied and synced everything into the journal's database.
#[derive(Debug)]
struct Flusher {
    shared: Arc<FlushShared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct FlushShared {
    wal: PathBuf,
    within: Duration,
    state: Mutex<FlushState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    /// Counts the commits with records; `flushed` is the count when the last successful flush
    /// began. Records wait for the disk while they differ.
    committed: u64,
    flushed: u64,
    /// The store is closing: flush what is dirty and stop.
    stop: bool,
    flushes: u64,
}

impl Flusher {
    fn new(wal: PathBuf, within: Duration) -> Flusher {
        let shared = FlushShared { wal, within, state: Mutex::default(), wake: Condvar::new() };
        Flusher { shared: Arc::new(shared), thread: Mutex::new(None) }
    }

    /// A record was committed: have it flushed within the bound.
    fn due(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.committed += 1;
        drop(st);
        self.shared.wake.notify_all();
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if thread.is_none() {
            let shared = Arc::clone(&self.shared);
            match std::thread::Builder::new()
                .name("journal-flush".into())
                .spawn(move || shared.run())
            {
                Ok(handle) => *thread = Some(handle),
                Err(e) => {
                    // Without the thread, the caller's record is flushed here and now.
                    tracing::warn!("sent journal: no flush thread ({e}); flushing each record");
                    drop(thread);
                    if let Err(e) = self.flush_now() {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
    }

    /// Flushes now if anything is dirty.
    fn flush_now(&self) -> Result<(), StoreError> {
        self.shared.flush_if_dirty()
    }
}

impl FlushShared {
    fn run(&self) {
        // A failing flush is said once, and its recovery once.
        let mut failing = false;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            while st.committed == st.flushed && !st.stop {
                st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if !st.stop {
                // Let the records of the next few milliseconds share this flush.
                let (next, _) = self
                    .wake
                    .wait_timeout_while(st, self.within, |s| !s.stop)
                    .unwrap_or_else(PoisonError::into_inner);
                st = next;
            }
            let stop = st.stop;
            drop(st);
            match self.flush_if_dirty() {
                Ok(()) if std::mem::take(&mut failing) => {
                    tracing::info!("sent journal: flushing works again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("{e}; trying again every {:?}", self.within);
                }
                Err(_) => {}
            }
            if stop {
                return;
            }
            st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn flush_if_dirty(&self) -> Result<(), StoreError> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // What is committed now is on the disk once the flush returns; a record committed
        // during the flush waits for the next one.
        let upto = st.committed;
        if upto == st.flushed {
            return Ok(());
        }
        drop(st);
        let flushed = match std::fs::File::open(&self.wal) {
            Ok(f) => f.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        flushed.map_err(|e| StoreError::io("flush the sent journal", &self.wal, e))?;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.flushed = st.flushed.max(upto);
        st.flushes += 1;
        Ok(())
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        self.shared.wake.notify_all();
        let thread = self.thread.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        match thread {
            Some(handle) => {
                let _ = handle.join(); // it flushes what is dirty before it stops
            }
            None => {
                if let Err(e) = self.flush_now() {
                    tracing::warn!("{e}");
                }
            }
        }
    }
}

/// One transaction recording each `(ticket, id, at)`; whether each was recorded.
fn write(conn: &mut Connection, batch: &[(u64, i64, String)]) -> Result<Vec<bool>, StoreError> {
    let tx = conn.transaction()?;
    let mut recorded = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO sent.sent (id, at)
             SELECT id, ?2 FROM main.outbox WHERE id = ?1 AND sent_at IS NULL
             ON CONFLICT (id) DO NOTHING",
        )?;
        for (_, id, at) in batch {
            recorded.push(insert.execute(params![id, at])? == 1);
        }
    }
    tx.commit()?;
    Ok(recorded)
}

/// Journal entries not yet folded into the outbox, oldest first.
pub(super) fn unfolded(conn: &Connection) -> Result<Vec<(i64, DateTime<Utc>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.at FROM sent.sent s JOIN main.outbox o ON o.id = s.id
         WHERE o.sent_at IS NULL ORDER BY s.id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, get_ts(r, 1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes `entries` (from [`unfolded`]) into the outbox and the audit trail, inside the caller's
/// open transaction on the main database. An entry already folded changes nothing.
pub(super) fn fold(
    main: &Connection,
    entries: &[(i64, DateTime<Utc>)],
) -> Result<usize, StoreError> {
    let mut folded = 0;
    for &(id, at) in entries {
        let updated: Option<(i64, String)> = main
            .prepare_cached(
                "UPDATE outbox SET sent_at = ?2, last_attempt_at = ?2, attempts = attempts + 1
                 WHERE id = ?1 AND sent_at IS NULL RETURNING message, message_id",
            )?
            .query_row(params![id, ts(at)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((message, message_id)) = updated {
            audit(main, at, Some(message), "reply_sent", &json!({"message_id": message_id}))?;
            folded += 1;
        }
    }
    Ok(folded)
}

/// Deletes the journal entries folded into the outbox and older than an hour.
pub(super) fn prune(conn: &Connection, now: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            // Correlated, so the outbox is only looked at for entries old enough (a subquery
            // over the whole outbox would read every reply's row each time).
            "DELETE FROM sent.sent WHERE at < ?1
             AND EXISTS (SELECT 1 FROM main.outbox o
                         WHERE o.id = sent.id AND o.sent_at IS NOT NULL)",
        )?
        .execute([ts(now - KEEP_FOLDED)])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The flush count, and whether records wait for the disk.
    fn flushes(f: &Flusher) -> (u64, bool) {
        let st = f.shared.state.lock().expect("state");
        (st.flushes, st.committed != st.flushed)
    }

    /// Waits (up to 5 s) until no record waits for the disk; the flush count then.
    fn settled(f: &Flusher) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (n, dirty) = flushes(f);
            if !dirty || Instant::now() > deadline {
                assert!(!dirty, "still not flushed after 5 s");
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A flusher with bound `within` over a WAL file that exists (kept with the directory).
    fn over_a_wal(within: Duration) -> (tempfile::TempDir, Flusher) {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = dir.path().join("j-wal");
        std::fs::write(&wal, b"frames").expect("wal");
        (dir, Flusher::new(wal, within))
    }

    #[test]
    fn records_made_together_share_one_flush_and_every_one_is_flushed() {
        let (_dir, f) = over_a_wal(Duration::from_millis(500));
        for _ in 0..50 {
            f.due();
        }
        assert_eq!(settled(&f), 1, "fifty records inside the bound, one flush");
        f.due();
        assert_eq!(settled(&f), 2, "a later record gets a flush of its own");
        f.flush_now().expect("nothing to flush");
        assert_eq!(flushes(&f).0, 2, "nothing dirty, nothing flushed");
    }

    #[test]
    fn closing_flushes_what_is_dirty_at_once() {
        let (_dir, f) = over_a_wal(Duration::from_secs(3600));
        f.due();
        let shared = Arc::clone(&f.shared);
        let started = Instant::now();
        drop(f);
        assert!(started.elapsed() < Duration::from_secs(60), "did not wait out the bound");
        let st = shared.state.lock().expect("state");
        assert_eq!((st.flushes, st.flushed, st.committed), (1, 1, 1));
    }

    #[test]
    fn a_wal_already_checkpointed_away_needs_no_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Flusher::new(dir.path().join("gone-wal"), Duration::from_millis(1));
        f.due();
        assert_eq!(settled(&f), 1, "counted as flushed: nothing of it is left to lose");
    }

    #[test]
    fn a_failed_flush_keeps_the_records_due_and_says_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A path under a regular file cannot be opened: not NotFound, but NotADirectory.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").expect("file");
        let f = Flusher::new(file.join("j-wal"), Duration::from_secs(3600));
        f.shared.state.lock().expect("state").committed = 1;
        let err = f.flush_now().expect_err("cannot open").to_string();
        assert!(err.contains("j-wal"), "{err}");
        assert_eq!(flushes(&f), (0, true), "still due");
    }
}
