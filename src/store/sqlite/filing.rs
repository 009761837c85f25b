//! Filing one message as one SQLite transaction: the message row, its return versions with
//! receipts and supersession, the replies, the guidance log, a bounce's mark on our reply and
//! the audit trail. Either all of it is committed or none of it.

use super::{find_duplicate, message_ref, ts, MESSAGE_REF};
use crate::store::rules::{
    check_filing, guidance_day, norm_message_id, norm_org, norm_sender, receipt, reply_message_id,
};
use crate::store::{
    Assigned, AssignedReturn, Filed, Filing, MessageRef, NewReply, NewReturn, Render, StoreError,
    FINGERPRINT_DAYS,
};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{json, Value};

pub(super) fn file(
    conn: &mut Connection,
    in_batch: bool,
    filing: &Filing,
    render: &mut Render<'_>,
) -> Result<Filed, StoreError> {
    check_filing(filing)?;
    if in_batch {
        // Inside a group commit the batch's transaction already holds the write lock; a
        // savepoint keeps this filing all-or-nothing within it.
        let sp = conn.savepoint()?;
        let filed = file_in(&sp, filing, render)?;
        if matches!(filed, Filed::New(_)) {
            sp.commit()?;
        }
        return Ok(filed);
    }
    // IMMEDIATE takes the write lock now, so no other process can file the same message
    // between the duplicate check and the insert.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let filed = file_in(&tx, filing, render)?;
    if matches!(filed, Filed::New(_)) {
        tx.commit()?;
    }
    Ok(filed)
}

/// Everything of one filing, inside the caller's transaction or savepoint. On a duplicate
/// nothing is written and the caller's scope is simply dropped.
fn file_in(tx: &Connection, filing: &Filing, render: &mut Render<'_>) -> Result<Filed, StoreError> {
    if let Some(existing) = find_same(tx, filing)? {
        return Ok(Filed::Duplicate(existing));
    }
    let at = filing.filed_at;
    let root = thread_root(tx, &filing.answers)?;
    let message = insert_message(tx, filing, root)?;
    audit(
        tx,
        at,
        Some(message),
        "filed",
        &json!({"class": filing.class, "outcome": filing.outcome, "source": filing.source_key}),
    )?;
    let mut assigned = Assigned { message, returns: Vec::with_capacity(filing.returns.len()) };
    for r in &filing.returns {
        assigned.returns.push(insert_return(tx, message, at, r)?);
    }
    for reply in render(&assigned) {
        insert_reply(tx, message, at, &reply)?;
    }
    if filing.thread_answered {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO thread_log (root, day, message) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            root.unwrap_or(message),
            guidance_day(at).to_string(),
            message
        ])?;
    }
    let candidates: Vec<String> = filing
        .bounce_of
        .iter()
        .chain(&filing.bounce_candidates)
        .filter_map(|id| norm_message_id(id))
        .collect();
    if !candidates.is_empty() {
        record_bounce(tx, message, at, &candidates)?;
    }
    for e in &filing.audit {
        audit(tx, at, Some(message), &e.event, &e.detail)?;
    }
    Ok(Filed::New(assigned))
}

/// A message already filed that this one repeats: the same bytes or Message-ID; for a message
/// without a Message-ID, the same sender and contents within [`FINGERPRINT_DAYS`] days; or the
/// same verified DKIM signature (a replay, whatever else was changed).
fn find_same(tx: &Connection, filing: &Filing) -> Result<Option<MessageRef>, StoreError> {
    if let Some(existing) = find_duplicate(tx, filing.message_id.as_deref(), &filing.sha256)? {
        return Ok(Some(existing));
    }
    if let Some(fingerprint) = &filing.fingerprint {
        let since = filing.filed_at - chrono::TimeDelta::days(FINGERPRINT_DAYS);
        let sql =
            format!("{MESSAGE_REF} WHERE fingerprint = ?1 AND filed_at >= ?2 ORDER BY id LIMIT 1");
        let found = tx
            .prepare_cached(&sql)?
            .query_row(params![fingerprint, ts(since)], message_ref)
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    let Some(key) = &filing.replay_key else { return Ok(None) };
    let sql = format!("{MESSAGE_REF} WHERE replay_key = ?1 LIMIT 1");
    Ok(tx.prepare_cached(&sql)?.query_row([key], message_ref).optional()?)
}

/// The first message of the thread that one of `answers` (our Message-IDs) belongs to: the
/// message our reply answered, or that message's own thread root.
pub(super) fn thread_root(tx: &Connection, answers: &[String]) -> Result<Option<i64>, StoreError> {
    for id in answers.iter().filter_map(|a| norm_message_id(a)).take(20) {
        let root: Option<i64> = tx
            .prepare_cached(
                "SELECT COALESCE(m.thread_root, m.id) FROM outbox o
                 JOIN messages m ON m.id = o.message WHERE o.message_id = ?1",
            )?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if root.is_some() {
            return Ok(root);
        }
    }
    Ok(None)
}

fn insert_message(tx: &Connection, f: &Filing, root: Option<i64>) -> Result<i64, StoreError> {
    let verification = (!f.verification.is_null()).then(|| f.verification.to_string());
    tx.prepare_cached(
        "INSERT INTO messages (source_key, message_id, sha256, received_at, filed_at, sender,
             subject, class, outcome, detail, org, period, held, bounce_of, held_reason,
             verification, fingerprint, replay_key, thread_root)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19)",
    )?
    .execute(params![
        f.source_key,
        f.message_id.as_deref().and_then(norm_message_id),
        f.sha256,
        ts(f.received_at),
        ts(f.filed_at),
        f.from,
        f.subject,
        f.class,
        f.outcome,
        f.detail.to_string(),
        f.org.as_deref().map(norm_org),
        f.period,
        f.held.is_some(),
        f.bounce_of.as_deref().and_then(norm_message_id),
        f.held.map(|h| h.as_str()),
        verification,
        f.fingerprint,
        f.replay_key,
        root,
    ])?;
    Ok(tx.last_insert_rowid())
}

fn insert_return(
    tx: &Connection,
    message: i64,
    at: DateTime<Utc>,
    r: &NewReturn,
) -> Result<AssignedReturn, StoreError> {
    let org = norm_org(&r.org);
    let numbered = match r.period.as_ref().filter(|_| r.numbered || r.accepted) {
        Some(period) => {
            let last: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(version), 0) FROM return_versions
                     WHERE org = ?1 AND period = ?2",
                )?
                .query_row(params![org, period], |row| row.get(0))?;
            let version = u32::try_from(last + 1).map_err(|e| StoreError::Data(e.to_string()))?;
            Some((version, receipt(period, &org, version)))
        }
        None => None,
    };
    let (version, receipt) = (numbered.as_ref().map(|n| n.0), numbered.map(|n| n.1));
    tx.prepare_cached(
        "INSERT INTO return_versions (message, org, period, version, receipt, file_name,
             attachment_sha256, status, late, values_json, derived_json, findings_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        message,
        org,
        r.period,
        version,
        receipt,
        r.file_name,
        r.attachment_sha256,
        if r.accepted { "accepted" } else { "rejected" },
        r.late,
        serde_json::to_string(&r.values)?,
        serde_json::to_string(&r.derived)?,
        r.findings.to_string(),
    ])?;
    let id = tx.last_insert_rowid();
    let supersedes = if r.accepted { supersede(tx, id, &org, r.period.as_deref())? } else { None };
    let detail = json!({"receipt": receipt, "file": r.file_name, "accepted": r.accepted,
                        "late": r.late, "supersedes": supersedes});
    audit(tx, at, Some(message), "return_filed", &detail)?;
    Ok(AssignedReturn { receipt, version, supersedes })
}

/// Marks the standing accepted return for the organisation and period (if any, other than the
/// new one) as superseded by `new`, and returns its receipt.
fn supersede(
    tx: &Connection,
    new: i64,
    org: &str,
    period: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let old: Option<(i64, Option<String>)> = tx
        .prepare_cached(
            // The standing index holds just these rows; the planner would otherwise take the
            // (period, org) index and read every version's row (figures and all) to check them.
            "SELECT id, receipt FROM return_versions INDEXED BY return_versions_standing
             WHERE org = ?1 AND period = ?2 AND status = 'accepted'
               AND superseded_by IS NULL AND id <> ?3",
        )?
        .query_row(params![org, period, new], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((old_id, old_receipt)) = old else { return Ok(None) };
    tx.prepare_cached("UPDATE return_versions SET superseded_by = ?1 WHERE id = ?2")?
        .execute(params![new, old_id])?;
    Ok(old_receipt)
}

fn insert_reply(
    tx: &Connection,
    message: i64,
    at: DateTime<Utc>,
    reply: &NewReply,
) -> Result<(), StoreError> {
    let message_id = reply_message_id(reply)?;
    tx.prepare_cached(
        "INSERT INTO outbox (message, message_id, kind, envelope_from, recipients, raw,
             created_at, next_attempt_at, counts_against, held_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)",
    )?
    .execute(params![
        message,
        message_id,
        reply.kind,
        reply.envelope_from,
        serde_json::to_string(&reply.recipients)?,
        reply.raw,
        ts(at),
        reply.counts_against,
        reply.held.map(|h| h.as_str()),
    ])?;
    if let Some(to) = &reply.guidance_to {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO guidance_log (sender, day, message) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![norm_sender(to), guidance_day(at).to_string(), message])?;
    }
    let detail = json!({"message_id": message_id, "kind": reply.kind, "to": reply.recipients});
    audit(tx, at, Some(message), "reply_queued", &detail)?;
    if let Some(held) = reply.held {
        let detail = json!({"message_id": message_id, "kind": reply.kind, "limit": held});
        audit(tx, at, Some(message), "reply_held_at_limit", &detail)?;
    }
    Ok(())
}

/// A bounce of one of our replies: marks the reply and records the event against the message
/// it answered, where the Data Collection Team will look. `candidates` are our Message-IDs the
/// bounce names, most trusted first; the first that is in the outbox is the reply that bounced.
fn record_bounce(
    tx: &Connection,
    bounce: i64,
    at: DateTime<Utc>,
    candidates: &[String],
) -> Result<(), StoreError> {
    let mut found: Option<(i64, i64, &str)> = None;
    for ours in candidates.iter().take(20) {
        found = tx
            .prepare_cached("SELECT id, message FROM outbox WHERE message_id = ?1")?
            .query_row([ours], |r| Ok((r.get(0)?, r.get(1)?, ours.as_str())))
            .optional()?;
        if found.is_some() {
            break;
        }
    }
    let Some((reply, original, ours)) = found else {
        let detail = json!({"bounce_of": candidates.first()});
        return audit(tx, at, Some(bounce), "bounce_unmatched", &detail);
    };
    tx.prepare_cached(
        "UPDATE outbox SET bounced_at = ?1, bounced_by = ?2 WHERE id = ?3 AND bounced_at IS NULL",
    )?
    .execute(params![ts(at), bounce, reply])?;
    let detail = json!({"reply": ours, "bounce_message": bounce});
    audit(tx, at, Some(original), "reply_bounced", &detail)?;
    audit(tx, at, Some(bounce), "bounce_matched", &json!({"reply": ours, "original": original}))
}

pub(super) fn audit(
    tx: &Connection,
    at: DateTime<Utc>,
    message: Option<i64>,
    event: &str,
    detail: &Value,
) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO audit (at, message, event, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![ts(at), message, event, detail.to_string()])?;
    Ok(())
}
