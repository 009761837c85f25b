//! The outbox side of the SQLite store: which replies are due, and recording each delivery
//! attempt, on the delivery connection. `mark_sent` is one short transaction in the sent
//! journal, which no filing holds up, keeping the window in which a crash could cause a second
//! (identical) copy small (SPEC §5; see the journal's module for when a record is on the disk).

use super::filing::audit;
use super::{get_json, get_u32, ts, SqliteStore};
use crate::outbound::{Outbox, OutboxItem};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde_json::json;

impl Outbox for SqliteStore {
    type Error = StoreError;

    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let mut conn = self.delivery()?;
        // The journal is read first, then the outbox: an entry gone from the journal was
        // folded into the outbox before it went, so the later outbox read shows it as sent.
        let tx = conn.transaction()?;
        tx.prepare_cached("SELECT count(*) FROM sent.sent WHERE id = 0")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        let items = {
            let mut stmt = tx.prepare_cached(
                "SELECT o.id, o.message_id, o.envelope_from, o.recipients, o.raw, o.attempts
                 FROM main.outbox o
                 WHERE o.sent_at IS NULL AND o.failed_permanently = 0 AND o.next_attempt_at <= ?1
                   AND o.held_reason IS NULL
                   AND NOT EXISTS (SELECT 1 FROM sent.sent s WHERE s.id = o.id)
                 ORDER BY o.id LIMIT ?2",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![ts(now), limit], |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    message_id: r.get(1)?,
                    envelope_from: r.get(2)?,
                    recipients: get_json(r, 3)?,
                    raw: r.get(4)?,
                    attempts: get_u32(r, 5)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        Ok(items)
    }

    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        if self.recorder.record(&self.delivery, id, at)? {
            Ok(())
        } else {
            already_sent_or_unknown(&*self.delivery()?, id)
        }
    }

    fn mark_failed(
        &self,
        id: i64,
        at: DateTime<Utc>,
        error: &str,
        permanent: bool,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        // Deferred: the write lock is taken on the main database alone (an immediate
        // transaction would lock the journal too), after any open batch commits.
        let mut conn = self.delivery()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let updated: Option<(i64, String, i64)> = tx
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?2, last_error = ?3,
                     failed_permanently = ?4, next_attempt_at = ?5
                 WHERE id = ?1 AND sent_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM sent.sent WHERE sent.id = ?1)
                 RETURNING message, message_id, attempts",
            )?
            .query_row(params![id, ts(at), error, permanent, ts(retry_at.unwrap_or(at))], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((message, message_id, attempts)) = updated else {
            return already_sent_or_unknown(&tx, id);
        };
        // A long outage retries many times; the trail keeps the first failure and the final
        // verdict, and the row itself keeps the count and the latest error.
        if permanent || attempts == 1 {
            let event = if permanent { "reply_failed" } else { "reply_retrying" };
            let detail = json!({"message_id": message_id, "error": error, "attempts": attempts,
                                "retry_at": retry_at.map(|t| t.to_rfc3339())});
            audit(&tx, at, Some(message), event, &detail)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// An attempt recorded for a reply already marked sent changes nothing (a sender retrying its
/// bookkeeping is harmless); an id that was never queued is an error.
fn already_sent_or_unknown(tx: &rusqlite::Connection, id: i64) -> Result<(), StoreError> {
    let exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM main.outbox WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::UnknownReply(id))
    }
}

impl SqliteStore {
    /// Puts replies that failed for good back in the queue, due at `at`: those with the outbox
    /// ids `ids`, or every one when `ids` is `None` (`iapt-intake requeue`). A reply that was
    /// sent (a bounce) stays as it is. Each requeued reply gets an audit line saying `by`.
    /// Returns the ids put back, in order.
    pub fn requeue_failed(
        &self,
        ids: Option<&[i64]>,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.delivery()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        // Failed for good, or kept at a limit of SPEC §4b: the team decides either way.
        let failed: Vec<(i64, i64, String, Option<String>)> = tx
            .prepare(
                "SELECT id, message, message_id, COALESCE(last_error, 'kept at ' || held_reason)
                 FROM main.outbox
                 WHERE (failed_permanently = 1 OR held_reason IS NOT NULL)
                   AND sent_at IS NULL AND bounced_at IS NULL
                 ORDER BY id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let mut requeued = Vec::new();
        for (id, message, message_id, error) in failed {
            if ids.is_some_and(|ids| !ids.contains(&id)) {
                continue;
            }
            tx.prepare_cached(
                "UPDATE main.outbox SET failed_permanently = 0, held_reason = NULL,
                     next_attempt_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, ts(at)])?;
            let detail = json!({"message_id": message_id, "previous_error": error, "by": by});
            audit(&tx, at, Some(message), "reply_requeued", &detail)?;
            requeued.push(id);
        }
        tx.commit()?;
        Ok(requeued)
    }
}
