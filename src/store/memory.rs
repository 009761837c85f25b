//! `MemoryStore`: the in-memory twin of `SqliteStore`, with the same rules (shared through
//! `rules`), for the pipeline's unit tests. A filing works on a copy of the tables and swaps it
//! in at the end, which is this store's transaction. Nothing here survives the process.

use super::rules::{
    check_filing, guidance_day, norm_message_id, norm_org, norm_sender, receipt, reply_message_id,
    StatusBuilder,
};
use super::{
    is_sha256_hex, sha256_hex, Assigned, AssignedReturn, AuditRow, Filed, Filing, MessageRef,
    NewReply, NewReturn, Prior, Render, ReplyRow, ReturnState, StandingReturn, StatusRow, Store,
    StoreError, Undelivered, VersionRow,
};
use crate::outbound::{Outbox, OutboxItem};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
}

#[derive(Debug, Default, Clone)]
struct Tables {
    messages: Vec<Message>,
    versions: Vec<VersionRow>,
    outbox: Vec<Reply>,
    guidance: BTreeSet<(String, NaiveDate)>,
    audit: Vec<AuditRow>,
}

#[derive(Debug, Clone)]
struct Message {
    r: MessageRef,
    org: Option<String>,
    period: Option<String>,
    held: bool,
}

#[derive(Debug, Clone)]
struct Reply {
    row: ReplyRow,
    envelope_from: String,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn tables(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.tables.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl Tables {
    fn duplicate(&self, message_id: Option<&str>, sha256: &str) -> Option<MessageRef> {
        let id = message_id.and_then(norm_message_id);
        self.messages
            .iter()
            .find(|m| m.r.sha256 == sha256 || (id.is_some() && m.r.message_id == id))
            .map(|m| m.r.clone())
    }

    fn received_at(&self, message: i64) -> DateTime<Utc> {
        self.messages[(message - 1) as usize].r.received_at
    }

    fn audit(&mut self, at: DateTime<Utc>, message: i64, event: &str, detail: serde_json::Value) {
        self.audit.push(AuditRow { at, message: Some(message), event: event.into(), detail });
    }

    fn prior(&self, org: &str, period: Option<&str>) -> Option<Prior> {
        let org = norm_org(org);
        self.versions
            .iter()
            .filter(|v| v.org == org && is_standing(v))
            .filter(|v| period.is_none() || v.period.as_deref() == period)
            // Latest period first, then the latest version (rows are in filing order).
            .max_by(|a, b| a.period.cmp(&b.period))
            .map(|v| Prior {
                period: v.period.clone().unwrap_or_default(),
                receipt: v.receipt.clone().unwrap_or_default(),
                values: v.values.clone(),
            })
    }

    fn insert_return(&mut self, message: i64, at: DateTime<Utc>, r: &NewReturn) -> AssignedReturn {
        let org = norm_org(&r.org);
        let (version, rcpt) = match &r.period {
            Some(p) => {
                let last = self
                    .versions
                    .iter()
                    .filter(|v| v.org == org && v.period.as_ref() == Some(p))
                    .filter_map(|v| v.version)
                    .max()
                    .unwrap_or(0);
                (Some(last + 1), Some(receipt(p, &org, last + 1)))
            }
            None => (None, None),
        };
        let mut supersedes = None;
        if r.accepted {
            if let Some(old) = self
                .versions
                .iter_mut()
                .find(|v| v.org == org && v.period == r.period && is_standing(v))
            {
                old.superseded_by = rcpt.clone();
                supersedes = old.receipt.clone();
            }
        }
        self.versions.push(VersionRow {
            message,
            org,
            period: r.period.clone(),
            version,
            receipt: rcpt.clone(),
            file_name: r.file_name.clone(),
            attachment_sha256: r.attachment_sha256.clone(),
            accepted: r.accepted,
            late: r.late,
            superseded_by: None,
            values: r.values.clone(),
            derived: r.derived.clone(),
            findings: r.findings.clone(),
        });
        let detail = json!({"receipt": rcpt, "file": r.file_name, "accepted": r.accepted,
                            "late": r.late, "supersedes": supersedes});
        self.audit(at, message, "return_filed", detail);
        AssignedReturn { receipt: rcpt, version, supersedes }
    }

    fn insert_reply(
        &mut self,
        message: i64,
        at: DateTime<Utc>,
        reply: &NewReply,
    ) -> Result<(), StoreError> {
        let message_id = reply_message_id(reply)?;
        if self.outbox.iter().any(|o| o.row.message_id == message_id) {
            return Err(StoreError::InvalidFiling(format!(
                "reply Message-ID {message_id} is already queued"
            )));
        }
        self.outbox.push(Reply {
            row: ReplyRow {
                id: self.outbox.len() as i64 + 1,
                message,
                message_id: message_id.clone(),
                kind: reply.kind.clone(),
                recipients: reply.recipients.clone(),
                raw: reply.raw.clone(),
                attempts: 0,
                next_attempt_at: at,
                sent_at: None,
                last_error: None,
                failed_permanently: false,
                bounced_at: None,
            },
            envelope_from: reply.envelope_from.clone(),
        });
        if let Some(to) = &reply.guidance_to {
            self.guidance.insert((norm_sender(to), guidance_day(at)));
        }
        let detail = json!({"message_id": message_id, "kind": reply.kind, "to": reply.recipients});
        self.audit(at, message, "reply_queued", detail);
        Ok(())
    }

    fn record_bounce(&mut self, bounce: i64, at: DateTime<Utc>, ours: &str) {
        let Some(reply) = self.outbox.iter_mut().find(|o| o.row.message_id == ours) else {
            return self.audit(at, bounce, "bounce_unmatched", json!({"bounce_of": ours}));
        };
        reply.row.bounced_at.get_or_insert(at);
        let original = reply.row.message;
        self.audit(at, original, "reply_bounced", json!({"reply": ours, "bounce_message": bounce}));
        self.audit(at, bounce, "bounce_matched", json!({"reply": ours, "original": original}));
    }

    fn standing(&self, period: &str) -> Vec<StandingReturn> {
        let mut rows: Vec<StandingReturn> = self
            .versions
            .iter()
            .filter(|v| v.period.as_deref() == Some(period) && is_standing(v))
            .map(|v| StandingReturn {
                org: v.org.clone(),
                period: period.to_owned(),
                receipt: v.receipt.clone().unwrap_or_default(),
                received_at: self.received_at(v.message),
                late: v.late,
                values: v.values.clone(),
                derived: v.derived.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.org.cmp(&b.org));
        rows
    }

    fn reply_mut(&mut self, id: i64) -> Result<&mut Reply, StoreError> {
        self.outbox.iter_mut().find(|o| o.row.id == id).ok_or(StoreError::UnknownReply(id))
    }
}

fn is_standing(v: &VersionRow) -> bool {
    v.accepted && v.superseded_by.is_none()
}

fn file_into(t: &mut Tables, f: &Filing, render: &mut Render<'_>) -> Result<Assigned, StoreError> {
    let at = f.filed_at;
    let message = t.messages.len() as i64 + 1;
    t.messages.push(Message {
        r: MessageRef {
            id: message,
            source_key: f.source_key.clone(),
            message_id: f.message_id.as_deref().and_then(norm_message_id),
            sha256: f.sha256.clone(),
            received_at: f.received_at,
            class: f.class.clone(),
            outcome: f.outcome.clone(),
        },
        org: f.org.as_deref().map(norm_org),
        period: f.period.clone(),
        held: f.held,
    });
    let detail = json!({"class": f.class, "outcome": f.outcome, "source": f.source_key});
    t.audit(at, message, "filed", detail);
    let returns = f.returns.iter().map(|r| t.insert_return(message, at, r)).collect();
    let assigned = Assigned { message, returns };
    for reply in render(&assigned) {
        t.insert_reply(message, at, &reply)?;
    }
    if let Some(ours) = f.bounce_of.as_deref().and_then(norm_message_id) {
        t.record_bounce(message, at, &ours);
    }
    for e in &f.audit {
        t.audit(at, message, &e.event, e.detail.clone());
    }
    Ok(assigned)
}

impl Store for MemoryStore {
    fn find_duplicate(
        &self,
        message_id: Option<&str>,
        sha256: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        Ok(self.tables()?.duplicate(message_id, sha256))
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = sha256_hex(bytes);
        let mut blobs = self.blobs.lock().map_err(|_| StoreError::Poisoned)?;
        blobs.entry(hash.clone()).or_insert_with(|| bytes.to_vec());
        Ok(hash)
    }

    fn get_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        if !is_sha256_hex(sha256) {
            return Err(StoreError::BadHash(sha256.to_owned()));
        }
        let blobs = self.blobs.lock().map_err(|_| StoreError::Poisoned)?;
        blobs.get(sha256).cloned().ok_or_else(|| StoreError::BlobMissing(sha256.to_owned()))
    }

    fn last_accepted(&self, org: &str) -> Result<Option<Prior>, StoreError> {
        Ok(self.tables()?.prior(org, None))
    }

    fn accepted(&self, org: &str, period: &str) -> Result<Option<Prior>, StoreError> {
        Ok(self.tables()?.prior(org, Some(period)))
    }

    fn file(&self, filing: &Filing, render: &mut Render<'_>) -> Result<Filed, StoreError> {
        check_filing(filing)?;
        let mut tables = self.tables()?;
        if let Some(existing) = tables.duplicate(filing.message_id.as_deref(), &filing.sha256) {
            return Ok(Filed::Duplicate(existing));
        }
        let mut next = tables.clone();
        let assigned = file_into(&mut next, filing, render)?;
        *tables = next;
        Ok(Filed::New(assigned))
    }

    fn guidance_sent_on(&self, sender: &str, day: NaiveDate) -> Result<bool, StoreError> {
        Ok(self.tables()?.guidance.contains(&(norm_sender(sender), day)))
    }

    fn status(&self, period: &str) -> Result<Vec<StatusRow>, StoreError> {
        let t = self.tables()?;
        let mut attempts: Vec<(i64, StatusRow)> = t
            .versions
            .iter()
            .filter(|v| v.period.as_deref() == Some(period) && !v.accepted)
            .map(|v| {
                let row = StatusRow {
                    org: v.org.clone(),
                    status: ReturnState::Rejected,
                    receipt: v.receipt.clone(),
                    received_at: t.received_at(v.message),
                };
                (v.message, row)
            })
            .collect();
        for m in t.messages.iter().filter(|m| m.held && m.period.as_deref() == Some(period)) {
            if let Some(org) = &m.org {
                let row = StatusRow {
                    org: org.clone(),
                    status: ReturnState::Held,
                    receipt: None,
                    received_at: m.r.received_at,
                };
                attempts.push((m.r.id, row));
            }
        }
        attempts.sort_by_key(|(message, _)| *message); // stable: a message's returns keep order
        let mut b = StatusBuilder::default();
        for (_, row) in attempts {
            b.later_attempt(row);
        }
        for s in t.standing(period) {
            b.standing(&s.org, &s.receipt, s.late, s.received_at);
        }
        Ok(b.finish())
    }

    fn standing_returns(&self, period: &str) -> Result<Vec<StandingReturn>, StoreError> {
        Ok(self.tables()?.standing(period))
    }

    fn undelivered(&self) -> Result<Vec<Undelivered>, StoreError> {
        let t = self.tables()?;
        let rows = t
            .outbox
            .iter()
            .map(|o| &o.row)
            .filter(|r| r.failed_permanently || r.bounced_at.is_some());
        Ok(rows
            .map(|r| Undelivered {
                id: r.id,
                message: r.message,
                message_id: r.message_id.clone(),
                kind: r.kind.clone(),
                recipients: r.recipients.clone(),
                attempts: r.attempts,
                last_error: r.last_error.clone(),
                bounced: r.bounced_at.is_some(),
            })
            .collect())
    }

    fn message_count(&self) -> Result<u64, StoreError> {
        Ok(self.tables()?.messages.len() as u64)
    }

    fn versions(&self, org: &str, period: &str) -> Result<Vec<VersionRow>, StoreError> {
        let org = norm_org(org);
        let t = self.tables()?;
        let rows =
            t.versions.iter().filter(|v| v.org == org && v.period.as_deref() == Some(period));
        Ok(rows.cloned().collect())
    }

    fn replies_for(&self, message: i64) -> Result<Vec<ReplyRow>, StoreError> {
        let t = self.tables()?;
        Ok(t.outbox.iter().filter(|o| o.row.message == message).map(|o| o.row.clone()).collect())
    }

    fn audit_for(&self, message: i64) -> Result<Vec<AuditRow>, StoreError> {
        let t = self.tables()?;
        Ok(t.audit.iter().filter(|a| a.message == Some(message)).cloned().collect())
    }
}

impl Outbox for MemoryStore {
    type Error = StoreError;

    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let t = self.tables()?;
        let due = t.outbox.iter().filter(|o| {
            o.row.sent_at.is_none() && !o.row.failed_permanently && o.row.next_attempt_at <= now
        });
        Ok(due
            .take(limit)
            .map(|o| OutboxItem {
                id: o.row.id,
                message_id: o.row.message_id.clone(),
                envelope_from: o.envelope_from.clone(),
                recipients: o.row.recipients.clone(),
                raw: o.row.raw.clone(),
                attempts: o.row.attempts,
            })
            .collect())
    }

    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        let reply = t.reply_mut(id)?;
        if reply.row.sent_at.is_some() {
            return Ok(());
        }
        reply.row.sent_at = Some(at);
        reply.row.attempts += 1;
        let (message, message_id) = (reply.row.message, reply.row.message_id.clone());
        t.audit(at, message, "reply_sent", json!({"message_id": message_id}));
        Ok(())
    }

    fn mark_failed(
        &self,
        id: i64,
        at: DateTime<Utc>,
        error: &str,
        permanent: bool,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        let reply = t.reply_mut(id)?;
        if reply.row.sent_at.is_some() {
            return Ok(());
        }
        let r = &mut reply.row;
        r.attempts += 1;
        r.last_error = Some(error.to_owned());
        r.failed_permanently = permanent;
        r.next_attempt_at = retry_at.unwrap_or(at);
        let (message, message_id, attempts) = (r.message, r.message_id.clone(), r.attempts);
        if permanent || attempts == 1 {
            let event = if permanent { "reply_failed" } else { "reply_retrying" };
            let detail = json!({"message_id": message_id, "error": error, "attempts": attempts,
                                "retry_at": retry_at.map(|t| t.to_rfc3339())});
            t.audit(at, message, event, detail);
        }
        Ok(())
    }
}
