//! The outbox side of the SQLite store: which replies are due, and recording each delivery
//! attempt. `mark_sent` is one short transaction, keeping the window in which a crash could
//! cause a second (identical) copy as small as the store allows (SPEC §5).

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
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, message_id, envelope_from, recipients, raw, attempts FROM outbox
             WHERE sent_at IS NULL AND failed_permanently = 0 AND next_attempt_at <= ?1
             ORDER BY id LIMIT ?2",
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
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let updated: Option<(i64, String)> = tx
            .prepare_cached(
                "UPDATE outbox SET sent_at = ?2, last_attempt_at = ?2, attempts = attempts + 1
                 WHERE id = ?1 AND sent_at IS NULL RETURNING message, message_id",
            )?
            .query_row(params![id, ts(at)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match updated {
            Some((message, message_id)) => {
                audit(&tx, at, Some(message), "reply_sent", &json!({"message_id": message_id}))?;
                tx.commit()?;
                Ok(())
            }
            None => already_sent_or_unknown(&tx, id),
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
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let updated: Option<(i64, String, i64)> = tx
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?2, last_error = ?3,
                     failed_permanently = ?4, next_attempt_at = ?5
                 WHERE id = ?1 AND sent_at IS NULL
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
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::UnknownReply(id))
    }
}
