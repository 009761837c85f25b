//! The plain data that crosses the `Store` port: what the pipeline files, what the store
//! assigns, and what the validator, the CLI and the outbound sender read back.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything filed for one message, in one transaction (SPEC §5). The raw message is already in
/// the blobs under `sha256`.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Held for review, and why: never filed as a standing return until the team decides.
    pub held: Option<HeldReason>,
    /// The verdict on who sent it, with its evidence (SPEC §4a), as `auth` gave it.
    pub verification: serde_json::Value,
    /// For a message without a Message-ID: its sender and contents, so the same message again
    /// within [`FINGERPRINT_DAYS`] days is recognised as a duplicate (SPEC §4b).
    pub fingerprint: Option<String>,
    /// The verified DKIM signature it carries: the same signature twice is a replay, however
    /// the rest of the message was changed (SPEC §4a).
    pub replay_key: Option<String>,
    /// Our own Message-IDs this message answers (`In-Reply-To`, `References`): the store files
    /// it in that thread.
    pub answers: Vec<String>,
    /// An acknowledgement was queued for a message that answers ours: counts against the
    /// thread's one a day (SPEC §4b loops).
    pub thread_answered: bool,
    /// Further Message-IDs of ours found anywhere in a delivery failure, tried in order after
    /// `bounce_of` to find the reply that bounced.
    pub bounce_candidates: Vec<String>,
    /// For a bounce: the Message-ID of our reply that bounced.
    pub bounce_of: Option<String>,
    /// One per return attachment, in the order the reply lists them.
    pub returns: Vec<NewReturn>,
    /// Extra audit events the pipeline wants recorded against this message.
    pub audit: Vec<AuditEvent>,
}

/// How long a fingerprint (see [`Filing::fingerprint`]) keeps recognising a duplicate.
pub const FINGERPRINT_DAYS: i64 = 7;

/// Why a message is held for the Data Collection Team instead of being answered as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldReason {
    /// The sender is not a registered submitter of the organisation.
    Unregistered,
    /// The sender could not be verified (SPEC §4a): `status` shows `unverified`.
    Unverified,
    /// The From header names no single sender.
    BadSender,
    /// No reply could be addressed to the sender.
    Unaddressable,
}

impl HeldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HeldReason::Unregistered => "unregistered",
            HeldReason::Unverified => "unverified",
            HeldReason::BadSender => "bad_sender",
            HeldReason::Unaddressable => "unaddressable",
        }
    }

    pub fn parse(s: &str) -> Option<HeldReason> {
        [
            HeldReason::Unregistered,
            HeldReason::Unverified,
            HeldReason::BadSender,
            HeldReason::Unaddressable,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// One return attachment as validated.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// False for a rejected file that is for another organisation than `org` (IAPT-E10): it is
    /// kept, but takes no version number or receipt of `org` (SPEC §4b).
    pub numbered: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub event: String,
    pub detail: serde_json::Value,
}

/// A reply to queue, fully rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The address it counts against for the limits of SPEC §4b (see `recipient_key`); `None`
    /// for mail to the team itself.
    pub counts_against: Option<String>,
    /// Kept, not sent: a limit of SPEC §4b was reached. Shown by `status`.
    pub held: Option<LimitHeld>,
}

/// Which limit kept a reply from being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHeld {
    /// `[limits] replies_per_address_per_day` (or the guidance limit) for its recipient.
    AddressLimit,
    /// `[limits] replies_per_hour` for the whole mailbox.
    HourlyLimit,
}

impl LimitHeld {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHeld::AddressLimit => "address_limit",
            LimitHeld::HourlyLimit => "hourly_limit",
        }
    }
}

/// What the limits and the loop breaker need to know before a message is filed: earlier mail
/// to its recipients, the mailbox's last hour, and the thread it answers (see
/// [`Store::look_up`](super::Store::look_up)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Recipient keys (`recipient_key`) to count for.
    pub recipients: Vec<String>,
    /// The UTC day the per-address limits count.
    pub day: chrono::NaiveDate,
    /// The start of the hour the mailbox limit counts.
    pub hour_from: DateTime<Utc>,
    /// Our Message-IDs the message answers.
    pub answers: Vec<String>,
}

/// The answers to a [`Lookup`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Looked {
    /// By recipient key: replies queued (and not held) on the day, guidance among them, and
    /// whether one was already held there (so the team was told).
    pub recipients: BTreeMap<String, RecipientCount>,
    /// Automatic mail queued (and not held) by the mailbox since `hour_from`.
    pub last_hour: u32,
    /// A reply was already held at the hourly limit since `hour_from` (the team was told).
    pub hour_held: bool,
    /// The message answers ours in a thread that already had an acknowledgement on the day.
    pub thread_answered_today: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecipientCount {
    pub replies: u32,
    pub guidance: u32,
    /// Notices that a return in this address's name could not be verified (one a day).
    pub unverified_notices: u32,
    pub held: bool,
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
    /// Held because the sender could not be verified (SPEC §4a); never standing.
    Unverified,
}

impl ReturnState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReturnState::Accepted => "accepted",
            ReturnState::Late => "late",
            ReturnState::Rejected => "rejected",
            ReturnState::Held => "held",
            ReturnState::Unverified => "unverified",
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
    /// Kept at a limit rather than failed (SPEC §4b).
    pub held: Option<String>,
}

/// A message held for the team, with why and the verdict on its sender (SPEC §4a).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldRow {
    pub id: i64,
    pub org: Option<String>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub received_at: DateTime<Utc>,
    pub reason: Option<HeldReason>,
    /// As [`Filing::verification`] stored it (null when no verdict was recorded).
    pub verification: serde_json::Value,
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
