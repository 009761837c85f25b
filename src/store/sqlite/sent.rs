//! The sent journal: where a reply's delivery is recorded the moment the relay accepts it.
//!
//! Filing holds the database's write lock for a whole batch (group commit), so a reply recorded
//! in the same database would either wait for that batch, which widens the window in which a
//! crash can send a second copy (SPEC §5), or stop delivery while filing runs. So the record of
//! a sent reply goes to a small database of its own beside the store, `<db>.sent` (WAL,
//! `synchronous=FULL`): one short transaction that no filing ever holds up. The delivery side
//! works on its own connection, to the main database (where it reads only what is committed)
//! with the journal attached.
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
use std::sync::{Condvar, Mutex, PoisonError};

/// How long a folded entry stays in the journal before it is deleted.
const KEEP_FOLDED: TimeDelta = TimeDelta::hours(1);

/// The journal's file: the store's file name with `.sent` added.
pub fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".sent");
    db.with_file_name(name)
}

/// The delivery side's connection: the main database, with the journal attached as `sent`
/// (created if need be).
pub(super) fn open_delivery(db: &Path) -> Result<Connection, StoreError> {
    let conn = connect(db)?;
    let journal = journal_path(db);
    conn.execute("ATTACH DATABASE ?1 AS sent", [journal.to_string_lossy()])?;
    require_wal(&conn, "sent")?;
    conn.pragma_update(Some("sent"), "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sent.sent (
             id INTEGER PRIMARY KEY,
             at TEXT NOT NULL
         ) STRICT;",
    )?;
    Ok(conn)
}

/// Group commit for the journal. Every send is recorded in a transaction of its own making or
/// in the one already being written when it arrives: parallel senders share a flush instead of
/// queueing for one each, and none waits longer than the flush in progress plus its own.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    state: Mutex<Queue>,
    done: Condvar,
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
    /// Records outbox item `id` as sent at `at`, durably, in the journal alone. `Ok(false)`
    /// when there is nothing to record: the item is already sent, or unknown.
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
