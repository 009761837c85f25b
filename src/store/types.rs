//! The plain data that crosses the `Store` port: what the pipeline files, what the store
//! assigns, and what the validator, the CLI and the outbound sender read back.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything filed for one message, in one transaction (SPEC §5). The raw message is already in
/// the blobs under `sha256`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filing {
    /// Where the message came from: the Maildir file name, the IMAP UID, `stdin`.
    pub source_key: String,
    /// The message's Message-ID, with or without angle brackets.
    pub message_id: Option<String>,
    /// SHA-256 of the raw bytes: the blob holding them, and the duplicate key.
    pub sha256: String,
    /// When the message reached the mailbox (windows are judged by it).
    pub received_at: DateTime<Utc>,
    /// When it was processed: stamps the audit trail, the outbox and the guidance log.
    pub filed_at: DateTime<Utc>,
    pub from: Option<String>,
    pub subject: Option<String>,
    /// The classification (`submission`, `question`, `automatic`, …), as the pipeline names it.
    pub class: String,
    /// What was done (`accepted`, `rejected`, `held`, `routed`, …).
    pub outcome: String,
    /// Anything else worth keeping about the decision.
    pub detail: serde_json::Value,
    /// The organisation the subject names, when one was identified.
    pub org: Option<String>,
    /// The period the message concerns: as read from its return, or else the period open when
    /// it arrived. Needed for held messages to show in `status`.
    pub period: Option<String>,
    /// Held for review (sender not a submitter of `org`).
    pub held: bool,
    /// For a bounce: the Message-ID of our reply that bounced.
    pub bounce_of: Option<String>,
    /// One per return attachment, in the order the reply lists them.
    pub returns: Vec<NewReturn>,
    /// Extra audit events the pipeline wants recorded against this message.
    pub audit: Vec<AuditEvent>,
}

/// One return attachment as validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReturn {
    /// The organisation the subject names (a file naming another one is rejected, IAPT-E10).
    pub org: String,
    /// `2011-12-Q1`; `None` only for a rejected file whose period could not be read.
    pub period: Option<String>,
    pub file_name: String,
    pub attachment_sha256: String,
    pub accepted: bool,
    pub late: bool,
    pub values: BTreeMap<String, Option<i64>>,
    pub derived: BTreeMap<String, Option<f64>>,
    /// The findings in their `check --format json` shape.
    pub findings: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub event: String,
    pub detail: serde_json::Value,
}

/// A reply to queue, fully rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    /// Without angle brackets; unique across the outbox.
    pub message_id: String,
    /// `acceptance`, `rejection`, `guidance`, `forward`, `notice`, …
    pub kind: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    /// Set on a guidance reply: the sender it counts against (one per sender per day).
    pub guidance_to: Option<String>,
}

/// What the store assigned while filing, handed to the reply renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The message's row id (a stable reference for replies and the audit trail).
    pub message: i64,
    /// One per `Filing::returns`, in the same order.
    pub returns: Vec<AssignedReturn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedReturn {
    /// `IAPT-2011-12-Q1-5N1-2`; `None` when the period is unknown.
    pub receipt: Option<String>,
    /// The version number for the organisation and period, from 1.
    pub version: Option<u32>,
    /// The receipt of the standing return this accepted one replaces.
    pub supersedes: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filed {
    New(Assigned),
    /// Already filed (same bytes or same Message-ID): nothing was written.
    Duplicate(MessageRef),
}

/// A message already in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub id: i64,
    pub source_key: String,
    pub message_id: Option<String>,
    pub sha256: String,
    pub received_at: DateTime<Utc>,
    pub class: String,
    pub outcome: String,
}

/// An earlier accepted return, for the validator's comparisons (IAPT-W01, IAPT-W02).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    /// `2011-12-Q1`.
    pub period: String,
    pub receipt: String,
    pub values: BTreeMap<String, Option<i64>>,
}

/// An organisation's state for a period, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReturnState {
    Accepted,
    Late,
    Rejected,
    Held,
}

impl ReturnState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReturnState::Accepted => "accepted",
            ReturnState::Late => "late",
            ReturnState::Rejected => "rejected",
            ReturnState::Held => "held",
        }
    }
}

/// One organisation that sent anything for the period. A standing accepted return wins
/// (`accepted` or `late`); otherwise the latest of its rejected returns and held messages.
/// Organisations with nothing are not listed (the CLI shows them as `missing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRow {
    pub org: String,
    pub status: ReturnState,
    /// The standing or rejected return's receipt; `None` for held messages.
    pub receipt: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// The accepted return that stands for an organisation and period, for export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandingReturn {
    pub org: String,
    pub period: String,
    pub receipt: String,
    pub received_at: DateTime<Utc>,
    pub late: bool,
    pub values: BTreeMap<String, Option<i64>>,
    pub derived: BTreeMap<String, Option<f64>>,
}

/// A reply that did not reach its recipient: failed permanently, or bounced after sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undelivered {
    pub id: i64,
    /// Row id of the message it answered.
    pub message: i64,
    pub message_id: String,
    pub kind: String,
    pub recipients: Vec<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub bounced: bool,
}

/// One version of a return, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    pub message: i64,
    pub org: String,
    pub period: Option<String>,
    pub version: Option<u32>,
    pub receipt: Option<String>,
    pub file_name: String,
    pub attachment_sha256: String,
    pub accepted: bool,
    pub late: bool,
    /// The receipt of the version that replaced this one.
    pub superseded_by: Option<String>,
    pub values: BTreeMap<String, Option<i64>>,
    pub derived: BTreeMap<String, Option<f64>>,
    pub findings: serde_json::Value,
}

/// One queued reply and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRow {
    pub id: i64,
    pub message: i64,
    pub message_id: String,
    pub kind: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub failed_permanently: bool,
    pub bounced_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub message: Option<i64>,
    pub event: String,
    pub detail: serde_json::Value,
}
