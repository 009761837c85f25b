//! Replies: what happened to a message (plain data) → the reply's text from the editable
//! templates → an RFC 5322 message. PURE: templates arrive as text, the Message-ID and the date
//! are given by the caller, and nothing here reads files, the clock or the network — so the same
//! outcome always gives the same bytes, and a reply re-sent after a crash is identical.
//!
//! Owns the wording and headers of every message the daemon sends (SPEC §4 "Every reply"). It
//! does not decide what a message is (`mail`), judge a return (`validate`) or send (`outbound`).

mod body;
mod message;
mod subject;
mod template;
mod texts;

#[cfg(test)]
mod golden;

use crate::collection::{Definition, Organisation};
use crate::report::Report;
use chrono::{DateTime, Utc};

pub use template::TemplateProblem;
pub use texts::{Templates, TEMPLATE_NAMES};

/// Everything that can go wrong here. Template problems are found when the templates are loaded;
/// an address problem means there is no one to answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("the reply templates have {} problem(s):\n{}", .0.len(), list(.0))]
    Templates(Vec<TemplateProblem>),
    #[error("cannot write to {role} address {address:?}: {reason}")]
    Address { role: &'static str, address: String, reason: String },
    #[error("cannot build the reply message: {0}")]
    Build(String),
}

fn list(problems: &[TemplateProblem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

/// The message being answered, as the mail module read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    pub from_address: String,
    pub from_name: Option<String>,
    /// Decoded (RFC 2047 already undone).
    pub subject: String,
    /// With or without angle brackets.
    pub message_id: Option<String>,
    /// The original's own `References`, oldest first.
    pub references: Vec<String>,
}

/// An organisation as a reply names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRef {
    pub code: String,
    pub name: String,
}

impl From<&Organisation> for OrgRef {
    fn from(o: &Organisation) -> OrgRef {
        OrgRef { code: o.code.clone(), name: o.name.clone() }
    }
}

/// Why the subject line could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectProblem {
    NoIapt,
    NoOrganisation,
    /// The name matched several organisations: the candidates, to choose a code from.
    Ambiguous(Vec<OrgRef>),
}

/// Where a question was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Submitting, files, the mailbox, deadlines, access: the Data Collection Team.
    Technical,
    /// Definitions and what a KPI counts: the content contacts.
    Content,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Technical => "technical",
            Route::Content => "content",
        }
    }
}

/// A measure's short label, from the year's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureLabel {
    pub id: String,
    pub label: String,
}

/// A derived rate's label and target (a fraction: 0.0375), from the year's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLabel {
    pub id: String,
    pub label: String,
    pub target: Option<f64>,
}

/// The outcome for one attachment of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct FileResult {
    pub file_name: String,
    /// Accepted exactly when it has no errors.
    pub report: Report,
    /// The receipt given to an accepted return.
    pub receipt: Option<String>,
    /// The receipt this return supersedes (a resubmission).
    pub replaces: Option<String>,
    pub organisation_name: Option<String>,
    /// `Q1 2011/12`.
    pub period_label: Option<String>,
    /// Accepted after the deadline.
    pub late: bool,
    /// Labels in the definition's order; empty when no definition applied (an unreadable file).
    pub measures: Vec<MeasureLabel>,
    pub rates: Vec<RateLabel>,
}

impl FileResult {
    /// A result with no receipt and no labels yet; see [`FileResult::with_definition`].
    pub fn new(file_name: impl Into<String>, report: Report) -> FileResult {
        FileResult {
            file_name: file_name.into(),
            report,
            receipt: None,
            replaces: None,
            organisation_name: None,
            period_label: None,
            late: false,
            measures: Vec::new(),
            rates: Vec::new(),
        }
    }

    /// Take the measure labels and rate targets from the year's definition.
    pub fn with_definition(mut self, definition: &Definition) -> FileResult {
        self.measures = definition
            .measures
            .iter()
            .map(|m| MeasureLabel { id: m.id.clone(), label: m.label.clone() })
            .collect();
        self.rates = definition
            .derived
            .iter()
            .map(|d| RateLabel { id: d.id.clone(), label: d.label.clone(), target: d.target })
            .collect();
        self
    }

    pub fn is_accepted(&self) -> bool {
        self.report.is_valid()
    }
}

/// What the Data Collection Team needs to judge a message at a glance, at the top of every
/// forward and notice (SPEC §4b): whether the sender was verified and how, whether they are a
/// registered submitter, and each attachment with what it really is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub verified: bool,
    /// How it was verified, or why not, in one line.
    pub verification: String,
    /// `Some(org)` when the sender is a registered submitter of that organisation.
    pub registered_for: Option<OrgRef>,
    pub attachments: Vec<AttachmentLine>,
}

/// One attachment as the summary lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentLine {
    pub name: String,
    /// What the content shows it is (`a PDF document`, `a program (executable)`).
    pub real_type: String,
    /// Why it was not passed on (a program, a script, macros), when it was not.
    pub withheld: Option<String>,
}

/// What a forward or notice carries: the original message whole, or, when it holds something
/// that must not be passed on, only its safe attachments (the rest are named in the summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carry {
    Original(Vec<u8>),
    Files(Vec<Attachment>),
}

/// What the reply is about.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyKind {
    /// One reply covering every attachment of a submission; `not_read` names attachments and
    /// parts of the message that were not read at all (past the per-message limit, in an
    /// archive that could not be unpacked), so nothing is dropped silently.
    Submission { files: Vec<FileResult>, not_read: Vec<String> },
    /// The subject line lacks IAPT or an organisation, or names several.
    SubjectRule { reason: SubjectProblem },
    /// The sender is not registered for the organisation; `contact` is whom to ask.
    Unauthorised { organisation: OrgRef, contact: String },
    /// To the Data Collection Team (`to`): a message was held for review, and why; `evidence`
    /// is what the verdict on the sender rests on.
    TeamNotice {
        to: String,
        organisation: Option<OrgRef>,
        reason: String,
        /// Held because the sender could not be verified (SPEC §4a).
        unverified: bool,
        summary: Summary,
        evidence: Vec<String>,
        carry: Carry,
    },
    /// To the sender: the question went to `team_name` and has this reference.
    QueryAck { reference: String, route: Route, team_name: String, team_address: String },
    /// The question itself, to the team (`to`), `Reply-To` the sender, with the summary first
    /// (and a first line saying so when the sender could not be verified).
    QueryForward {
        to: String,
        reference: String,
        route: Route,
        summary: Summary,
        /// The sender's own words, shown when the original is not attached whole.
        text: Option<String>,
        carry: Carry,
    },
    /// The return came as winmail.dat (TNEF) or an attachment we cannot read as a spreadsheet.
    AskForAttachment { file_names: Vec<String> },
    /// To a registered submitter: a return in their name could not be verified (SPEC §4a).
    UnverifiedNotice { organisation: OrgRef, contact: String },
    /// To the organisation's other registered addresses: an accepted return replaced the one
    /// that stood (SPEC §4a).
    ReplacementNotice { to: String, organisation: OrgRef, old_receipt: String, new_receipt: String },
    /// To the team (`to`), once: a limit of SPEC §4b was reached and replies are being kept.
    LimitNotice { to: String, limit: String, address: Option<String> },
}

/// What the caller decides for every reply: who we are, and the Message-ID and Date, so that
/// rendering is repeatable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyContext {
    pub from_address: String,
    pub from_name: String,
    /// Completes a Message-ID given without a domain.
    pub our_domain: String,
    /// The `X-Loop` value that marks mail as ours.
    pub loop_marker: String,
    /// With or without angle brackets; `local` alone gets `@our_domain`.
    pub message_id: String,
    pub date: DateTime<Utc>,
}

/// A name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// A file carried by a reply (the original message on forwards and notices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A rendered reply: plain data, turned into bytes by [`Reply::to_bytes`].
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub to: Mailbox,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    /// Without angle brackets, as every id here.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub message_id: String,
    pub date: DateTime<Utc>,
    /// Further headers: `Auto-Submitted`, `X-Loop`, …
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub attachments: Vec<Attachment>,
}

impl Reply {
    /// The SMTP envelope sender: our own address, so bounces come back to the mailbox and are
    /// recorded against the submission (SPEC §4).
    pub fn envelope_from(&self) -> &str {
        &self.from.address
    }

    pub fn recipients(&self) -> Vec<String> {
        vec![self.to.address.clone()]
    }
}

/// Whether a reply can be addressed to `address` (the message builder accepts it), or why not.
pub fn addressable(address: &str) -> Result<(), String> {
    message::check_address("recipient", address).map_err(|e| e.to_string())
}

/// Render the reply for `kind` to the message `original`.
pub fn render(
    kind: &ReplyKind,
    original: &Original,
    ctx: &ReplyContext,
    templates: &Templates,
) -> Result<Reply, ReplyError> {
    let sender = Mailbox {
        name: original
            .from_name
            .as_deref()
            .map(|n| crate::echo::capped(n, crate::echo::NAME_MAX))
            .filter(|n| !n.is_empty()),
        address: original.from_address.trim().to_string(),
    };
    message::check_address("our", &ctx.from_address)?;
    // Mail to the team goes out even when the sender's address is unusable (that is often why
    // it goes out); only then is there no Reply-To.
    let sender_ok = message::check_address("sender", &sender.address);
    let team = |to: &str| -> Result<Mailbox, ReplyError> {
        message::check_address("team", to)?;
        Ok(Mailbox { name: None, address: to.trim().to_string() })
    };
    let (to, reply_to, attachments) = match kind {
        ReplyKind::TeamNotice { to, carry, .. } | ReplyKind::QueryForward { to, carry, .. } => {
            let carried = match carry {
                Carry::Original(raw) => vec![message::original_attachment(raw)],
                Carry::Files(files) => files.clone(),
            };
            (team(to)?, sender_ok.is_ok().then(|| sender.clone()), carried)
        }
        ReplyKind::LimitNotice { to, .. } => (team(to)?, None, Vec::new()),
        ReplyKind::ReplacementNotice { to, .. } => {
            message::check_address("recipient", to)?;
            (Mailbox { name: None, address: to.trim().to_string() }, None, Vec::new())
        }
        _ => {
            sender_ok?;
            (sender.clone(), None, Vec::new())
        }
    };
    let text = templates.render(kind, &body::common(original, ctx), body::scope(kind));
    let (in_reply_to, references) = threading(original);
    Ok(Reply {
        to,
        from: Mailbox { name: Some(ctx.from_name.clone()), address: ctx.from_address.clone() },
        reply_to,
        subject: subject::subject(kind, &original.subject),
        in_reply_to,
        references,
        message_id: full_id(&ctx.message_id, &ctx.our_domain),
        date: ctx.date,
        headers: vec![
            // RFC 3834 §5: every message we send answers another; other responders stay quiet.
            ("Auto-Submitted".into(), "auto-replied".into()),
            ("X-Loop".into(), ctx.loop_marker.clone()),
            // Exchange (NHSmail) honours this: no out-of-office or auto-reply back to us. Bounces
            // are not suppressed: they are recorded against the submission.
            ("X-Auto-Response-Suppress".into(), "OOF, AutoReply".into()),
        ],
        body: body::finish(&text),
        attachments,
    })
}

/// At most this many ids in `References`: the first (the thread's root) and the latest.
const MAX_REFERENCES: usize = 20;

/// `In-Reply-To` the original; `References` the original's references and then the original
/// (RFC 5322 §3.6.4), so every client threads the reply under it. Ids that could not stand in a
/// header (spaces, non-ASCII: hostile input) are left out rather than passed on.
fn threading(original: &Original) -> (Option<String>, Vec<String>) {
    let in_reply_to =
        original.message_id.as_deref().map(bare_id).filter(|id| message::plain_id(id));
    let mut references: Vec<String> = Vec::new();
    // Only the ends of a hostile chain of thousands are looked at, so dedup stays cheap.
    let all = &original.references;
    let ends = all.iter().take(1).chain(all.iter().skip(1).rev().take(4 * MAX_REFERENCES).rev());
    let earlier = ends.map(|r| bare_id(r)).filter(|r| Some(r) != in_reply_to.as_ref());
    for id in earlier.chain(in_reply_to.clone()) {
        if message::plain_id(&id) && !references.contains(&id) {
            references.push(id);
        }
    }
    if references.len() > MAX_REFERENCES {
        references.drain(1..references.len() - (MAX_REFERENCES - 1));
    }
    (in_reply_to, references)
}

/// A message id without angle brackets or surrounding space.
fn bare_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').trim().to_string()
}

fn full_id(id: &str, domain: &str) -> String {
    let id = bare_id(id);
    if id.contains('@') || domain.trim().is_empty() {
        id
    } else {
        format!("{id}@{}", domain.trim())
    }
}
