//! One message end to end, against the `Store` and the moment it is given: parse, recognise a
//! duplicate, keep the raw bytes, classify, validate each return, and file everything with the
//! replies it needs in ONE store transaction (SPEC §5). The caller removes the message from the
//! mailbox only after this returns `Ok`; a transient error leaves it there to be tried again.
//!
//! Owns no I/O of its own: mail comes in as bytes, time as an argument, and the store and the
//! reader (with its time limit) are the only things it calls.

mod env;
mod history;
mod outcome;
mod submission;

pub use env::Env;
pub use outcome::Processed;

use crate::guarded::read_with_timeout;
use crate::mail::{classify, Attachment, Classification, Inbound};
use crate::reply::{self, Original, ReplyKind};
use crate::store::{sha256_hex, Assigned, AuditEvent, Filed, Filing, NewReply, Store, StoreError};
use crate::workbook::{ReadError, Workbook};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use submission::Returns;

/// A message as the mailbox handed it over.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub raw: &'a [u8],
    /// Stable id in the source (Maildir file name, IMAP UID, `stdin-…`).
    pub source_key: &'a str,
    /// When it reached the mailbox: windows are judged by this, not by when it is processed.
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl PipelineError {
    /// Transient: leave the message in the mailbox and try again later.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Store(e) => e.is_transient(),
        }
    }
}

/// One reply still to be rendered once the store has assigned receipts.
struct Planned {
    kind: ReplyKind,
    /// Short name kept in the outbox (`acceptance`, `guidance`, `forward`, …).
    name: &'static str,
    guidance_to: Option<String>,
}

/// What the decision for a message comes to, before filing.
struct Plan {
    class: &'static str,
    outcome: String,
    org: Option<String>,
    period: Option<String>,
    held: bool,
    bounce_of: Option<String>,
    returns: Returns,
    replies: Vec<Planned>,
    audit: Vec<AuditEvent>,
}

impl Plan {
    fn new(class: &'static str, outcome: impl Into<String>) -> Plan {
        Plan {
            class,
            outcome: outcome.into(),
            org: None,
            period: None,
            held: false,
            bounce_of: None,
            returns: Returns::default(),
            replies: Vec::new(),
            audit: Vec::new(),
        }
    }

    fn reply(mut self, name: &'static str, kind: ReplyKind) -> Plan {
        self.replies.push(Planned { kind, name, guidance_to: None });
        self
    }
}

/// The part of processing a message that needs no store: its hash, the parse, the
/// classification and the reading of each return attachment (the costly, pure stages). Several
/// messages can be prepared at once; filing them stays in order.
pub struct Prepared {
    sha: String,
    too_large: bool,
    inbound: Inbound,
    class: Classification,
    /// Each return attachment as read, by attachment index.
    reads: HashMap<usize, Result<Workbook, ReadError>>,
    /// Blobs already written by [`stage_blobs`]: the raw message's, and each return
    /// attachment's hash by attachment index.
    raw_staged: bool,
    staged: HashMap<usize, String>,
}

/// Prepare one message (see [`Prepared`]).
pub fn prepare(env: &Env, raw: &[u8]) -> Prepared {
    let sha = sha256_hex(raw);
    let too_large = raw.len() as u64 > env.config.limits.message_bytes;
    // Over the limit, only the header block is parsed: enough to answer, nothing large decoded.
    let inbound = if too_large { Inbound::parse(header_block(raw)) } else { Inbound::parse(raw) };
    let class = classify(&inbound, &env.classify_context());
    let limits = env.config.limits;
    let reads = return_attachments(&class, too_large, &inbound)
        .map(|(i, att)| {
            let read = read_with_timeout(
                att.bytes.clone(),
                &att.name,
                limits.workbook,
                limits.attachment_timeout,
            );
            (i, read)
        })
        .collect();
    Prepared { sha, too_large, inbound, class, reads, raw_staged: false, staged: HashMap::new() }
}

/// The return attachments of a submission that was parsed whole, with their indexes.
fn return_attachments<'m>(
    class: &'m Classification,
    too_large: bool,
    inbound: &'m Inbound,
) -> impl Iterator<Item = (usize, &'m Attachment)> {
    let indexes: &[usize] = match class {
        Classification::Submission { attachments, .. } if !too_large => attachments,
        _ => &[],
    };
    indexes.iter().filter_map(|&i| inbound.attachments.get(i).map(|att| (i, att)))
}

/// Write the blobs a prepared message will be filed with (the raw message and each return
/// attachment) ahead of its filing, with [`Store::stage_blob`]. A blob that cannot be written
/// here is simply written again by the filing, which reports the trouble where it matters.
pub fn stage_blobs<S: Store + ?Sized>(store: &S, prepared: &mut Prepared, raw: &[u8]) {
    prepared.raw_staged = store.stage_blob(raw).is_ok();
    let staged = return_attachments(&prepared.class, prepared.too_large, &prepared.inbound)
        .filter_map(|(i, att)| store.stage_blob(&att.bytes).ok().map(|sha| (i, sha)))
        .collect();
    prepared.staged = staged;
}

/// Process one message. `now` stamps the filing and the replies; `msg.received_at` judges windows.
pub fn process<S: Store + ?Sized>(
    store: &S,
    env: &Env,
    msg: Incoming<'_>,
    now: DateTime<Utc>,
) -> Result<Processed, PipelineError> {
    process_prepared(store, env, msg, prepare(env, msg.raw), now)
}

/// Process a message prepared by [`prepare`] from `msg.raw`.
pub fn process_prepared<S: Store + ?Sized>(
    store: &S,
    env: &Env,
    msg: Incoming<'_>,
    prepared: Prepared,
    now: DateTime<Utc>,
) -> Result<Processed, PipelineError> {
    let Prepared { sha, too_large, inbound, class, mut reads, raw_staged, mut staged } = prepared;
    if let Some(existing) = store.find_duplicate(inbound.message_id.as_deref(), &sha)? {
        return Ok(Processed::duplicate(msg.source_key, &inbound, existing));
    }
    if !raw_staged {
        store.put_blob(msg.raw)?;
    }
    let mut plan = match &class {
        Classification::Automatic { bounce_of, .. } => {
            let mut p =
                Plan::new("automatic", if bounce_of.is_some() { "bounce" } else { "filed" });
            p.bounce_of = bounce_of.clone();
            p
        }
        Classification::SubjectRule { reason } => subject_rule(store, env, &inbound, reason, now)?,
        // Only the headers of an oversized message were parsed, so its attachments are unseen
        // and it looks like a question: answer it as the oversized return it most likely is,
        // rather than forwarding megabytes to a team.
        Classification::Question { org, .. } | Classification::Damaged { org, .. } if too_large => {
            submission(org, Returns::message_too_large(env, org, msg.raw.len() as u64))
        }
        Classification::Damaged { org, unread } => {
            submission(org, Returns::damaged(env, org, unread))
        }
        Classification::Question { org, route, .. } => question(env, msg, &sha, org, *route),
        Classification::Unauthorised { org, .. } => unauthorised(env, msg, org),
        Classification::Submission { org, attachments, unreadable } => {
            let returns = if too_large {
                Returns::message_too_large(env, org, msg.raw.len() as u64)
            } else {
                let ctx = submission::Attached { inbound: &inbound, attachments, unreadable };
                Returns::validate(store, env, org, ctx, &mut reads, &mut staged, msg)?
            };
            submission(org, returns)
        }
    };
    if plan.period.is_none() {
        plan.period = env.period_open_at(msg.received_at);
    }
    let detail = serde_json::json!({
        "classification": class,
        "problems": inbound.problems,
        "attachments": inbound.attachments,
        "size": msg.raw.len(),
    });
    let filing = Filing {
        source_key: msg.source_key.to_string(),
        message_id: inbound.message_id.clone(),
        sha256: sha.clone(),
        received_at: msg.received_at,
        filed_at: now,
        from: inbound.sender().map(str::to_string),
        subject: Some(inbound.subject.clone()),
        class: plan.class.to_string(),
        outcome: plan.outcome.clone(),
        detail,
        org: plan.org.clone(),
        period: plan.period.clone(),
        held: plan.held,
        bounce_of: plan.bounce_of.clone(),
        returns: plan.returns.new_returns.clone(),
        audit: std::mem::take(&mut plan.audit),
    };
    let original = original(&inbound);
    let mut rendered: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut render = |assigned: &Assigned| -> Vec<NewReply> {
        let mut out = Vec::new();
        for planned in &plan.replies {
            let kind = plan.returns.with_receipts(&planned.kind, assigned);
            let ctx =
                env.reply_context(format!("{}.{}@{}", planned.name, &sha[..24], env.domain()), now);
            match reply::render(&kind, &original, &ctx, &env.templates).and_then(|r| {
                let raw = r.to_bytes()?;
                Ok(NewReply {
                    message_id: ctx.message_id.clone(),
                    kind: planned.name.to_string(),
                    envelope_from: r.envelope_from().to_string(),
                    recipients: r.recipients(),
                    raw,
                    guidance_to: planned.guidance_to.clone(),
                })
            }) {
                Ok(reply) => {
                    rendered.push((
                        planned.name.to_string(),
                        reply.message_id.clone(),
                        reply.recipients.clone(),
                    ));
                    out.push(reply);
                }
                // Nobody to answer (an unusable From address): the message is still filed.
                Err(e) => tracing::warn!(
                    source = msg.source_key,
                    reply = planned.name,
                    "reply not sent: {e}"
                ),
            }
        }
        out
    };
    match store.file(&filing, &mut render)? {
        Filed::Duplicate(existing) => Ok(Processed::duplicate(msg.source_key, &inbound, existing)),
        Filed::New(assigned) => Ok(Processed {
            source_key: msg.source_key.to_string(),
            message_id: inbound.message_id.clone(),
            from: inbound.sender().map(str::to_string),
            class: plan.class.to_string(),
            outcome: plan.outcome,
            org: plan.org,
            // Only accepted returns have a receipt as far as people are concerned; a rejected
            // version is numbered in the store but never shown as a receipt.
            receipts: assigned
                .returns
                .iter()
                .zip(&plan.returns.new_returns)
                .filter(|(_, r)| r.accepted)
                .filter_map(|(a, _)| a.receipt.clone())
                .collect(),
            replies: rendered,
        }),
    }
}

/// The header block of a message (up to the first blank line, at most 1 MB).
fn header_block(raw: &[u8]) -> &[u8] {
    let cap = &raw[..raw.len().min(1 << 20)];
    let end = cap
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| cap.windows(2).position(|w| w == b"\n\n").map(|i| i + 2));
    &cap[..end.unwrap_or(cap.len())]
}

fn original(inbound: &Inbound) -> Original {
    Original {
        from_address: inbound.sender().unwrap_or_default().to_string(),
        from_name: inbound.from.as_ref().and_then(|m| m.name.clone()),
        subject: inbound.subject.clone(),
        message_id: inbound.message_id.clone(),
        references: inbound.references.clone(),
    }
}

fn subject_rule<S: Store + ?Sized>(
    store: &S,
    env: &Env,
    inbound: &Inbound,
    reason: &crate::mail::SubjectProblem,
    now: DateTime<Utc>,
) -> Result<Plan, PipelineError> {
    let sender = inbound.sender().unwrap_or_default().to_string();
    // At most one guidance reply per sender per day (SPEC §4): a sender stuck in a loop, or a
    // colleague forwarding everything, must not get a flood.
    if store.guidance_sent_on(&sender, now.date_naive())? {
        return Ok(Plan::new("subject_rule", "guidance_suppressed"));
    }
    let reason = env.subject_problem(reason);
    let mut plan = Plan::new("subject_rule", "guidance");
    plan.replies.push(Planned {
        kind: ReplyKind::SubjectRule { reason },
        name: "guidance",
        guidance_to: Some(sender),
    });
    Ok(plan)
}

fn question(env: &Env, msg: Incoming<'_>, sha: &str, org: &str, route: crate::mail::Route) -> Plan {
    let route = env.route(route);
    let (team_name, team_address) = env.team(route);
    let reference =
        format!("IAPT-Q-{}-{}", msg.received_at.format("%Y%m%d"), sha[..6].to_ascii_uppercase());
    let mut plan = Plan::new("question", format!("routed_{}", route.as_str()))
        .reply(
            "forward",
            ReplyKind::QueryForward {
                to: team_address.clone(),
                reference: reference.clone(),
                route,
                original: msg.raw.to_vec(),
            },
        )
        .reply("query_ack", ReplyKind::QueryAck { reference, route, team_name, team_address });
    plan.org = Some(org.to_string());
    plan
}

fn unauthorised(env: &Env, msg: Incoming<'_>, org: &str) -> Plan {
    let organisation = env.org_ref(org);
    let team = env.config.routing.data_collection_team.clone();
    let mut plan = Plan::new("unauthorised", "held")
        .reply(
            "notice",
            ReplyKind::TeamNotice {
                to: team.clone(),
                organisation: Some(organisation.clone()),
                reason:
                    "the sender's address is not registered as a submitter for this organisation"
                        .into(),
                original: msg.raw.to_vec(),
            },
        )
        .reply("unauthorised", ReplyKind::Unauthorised { organisation, contact: team });
    plan.org = Some(org.to_string());
    plan.held = true;
    plan
}

fn submission(org: &str, returns: Returns) -> Plan {
    let outcome = returns.outcome();
    let mut plan = Plan::new("submission", outcome);
    plan.org = Some(org.to_string());
    plan.period = returns.period();
    let kind = if returns.only_unreadable() {
        ReplyKind::AskForAttachment { file_names: returns.unreadable_names() }
    } else {
        ReplyKind::Submission { files: returns.file_results() }
    };
    plan.returns = returns;
    plan.reply(
        if matches!(kind, ReplyKind::AskForAttachment { .. }) {
            "ask_for_attachment"
        } else {
            "submission"
        },
        kind,
    )
}
