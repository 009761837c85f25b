//! One message end to end, against the `Store` and the moment it is given: parse, recognise a
//! duplicate, keep the raw bytes, classify, validate each return, and file everything with the
//! replies it needs in ONE store transaction (SPEC §5). The caller removes the message from the
//! mailbox only after this returns `Ok`; a transient error leaves it there to be tried again.
//!
//! Owns no I/O of its own: mail comes in as bytes, time as an argument, and the store and the
//! reader (with its time limit) are the only things it calls.

mod env;
mod guard;
mod history;
mod outcome;
mod plan;
mod sender;
mod submission;

pub use env::Env;
pub use outcome::Processed;
pub use sender::{ids_at_domain, Verdict};

use crate::guarded::read_with_timeout;
use crate::mail::{classify, Attachment, Classification, Inbound, ZipLimits};
use crate::reply::{self, Original, ReplyKind};
use crate::store::{sha256_hex, Assigned, Filed, Filing, NewReply, Store, StoreError};
use crate::workbook::{ReadError, Workbook};
use chrono::{DateTime, Utc};
use plan::{Facts, Plan, Planned};
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

/// The part of processing a message that needs no store: its hash, the parse, the
/// classification and the reading of each return attachment (the costly, pure stages). Several
/// messages can be prepared at once; filing them stays in order.
pub struct Prepared {
    sha: String,
    too_large: bool,
    inbound: Inbound,
    verdict: Verdict,
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
    let zip = ZipLimits {
        entry_bytes: env.config.limits.workbook.attachment_bytes,
        total_bytes: env.config.limits.workbook.unpacked_bytes,
    };
    let inbound = Inbound::parse_with(if too_large { header_block(raw) } else { raw }, zip);
    let verdict = sender::verdict(env, raw, &inbound);
    let class = classify(&inbound, &env.classify_context(verdict.verified));
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
    Prepared {
        sha,
        too_large,
        inbound,
        verdict,
        class,
        reads,
        raw_staged: false,
        staged: HashMap::new(),
    }
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
    let Prepared { sha, too_large, inbound, verdict, class, mut reads, raw_staged, mut staged } =
        prepared;
    if let Some(existing) = store.find_duplicate(inbound.message_id.as_deref(), &sha)? {
        return Ok(Processed::duplicate(msg.source_key, &inbound, existing));
    }
    if !raw_staged {
        store.put_blob(msg.raw)?;
    }
    let facts = Facts { env, msg, sha: &sha, inbound: &inbound, verdict: &verdict };
    let sender = inbound.sender();
    let mut plan = match &class {
        Classification::Automatic { reason, bounce_of } => {
            let failure = crate::mail::is_delivery_failure(reason, &inbound);
            let candidates =
                if failure { ids_at_domain(msg.raw, env.domain()) } else { Vec::new() };
            let bounce = bounce_of.is_some() || !candidates.is_empty();
            let mut p = Plan::new("automatic", if bounce { "bounce" } else { "filed" });
            p.bounce_of = bounce_of.clone();
            p.bounce_candidates = candidates;
            p
        }
        Classification::SubjectRule { reason } => plan::subject_rule(&facts, reason),
        Classification::BadSender { problem, org, .. } => {
            plan::bad_sender(&facts, *problem, org.as_deref())
        }
        Classification::Unverified { org, .. } => plan::unverified(&facts, org),
        // Only the headers of an oversized message were parsed, so its attachments are unseen
        // and it looks like a question: answer it as the oversized return it most likely is,
        // rather than forwarding megabytes to a team.
        Classification::Question { org, .. } | Classification::Damaged { org, .. } if too_large => {
            let returns = Returns::message_too_large(env, org, msg.raw.len() as u64);
            plan::submission(org, returns, sender)
        }
        Classification::Damaged { org, unread } => {
            plan::submission(org, Returns::damaged(env, org, unread), sender)
        }
        Classification::Question { org, route, .. } => plan::question(&facts, org, *route),
        Classification::Unauthorised { org, .. } => plan::unauthorised(&facts, org),
        Classification::Submission { org, attachments, unreadable } => {
            let returns = if too_large {
                Returns::message_too_large(env, org, msg.raw.len() as u64)
            } else {
                let ctx = submission::Attached {
                    inbound: &inbound,
                    attachments,
                    unreadable,
                    reveal_history: verdict.verified,
                };
                Returns::validate(store, env, org, ctx, &mut reads, &mut staged, msg)?
            };
            plan::submission(org, returns, sender)
        }
    };
    if plan.period.is_none() {
        plan.period = env.period_open_at(msg.received_at);
    }
    if let Some(why) = unaddressable(&plan) {
        plan = plan::unaddressable(&facts, plan, &why);
    }
    let others = replacement_recipients(env, &plan, sender);
    let answers = sender::answers(&inbound, env.domain());
    let looked = store.look_up(&guard::lookup(&plan, &others, &answers, now))?;
    let spreadsheets =
        inbound.attachments.iter().any(|a| a.kind != crate::mail::AttachmentKind::Other);
    guard::suppress_guidance(&mut plan, &looked, env.config.limits.guidance_per_address_per_day);
    guard::break_loops(&mut plan, &answers, spreadsheets, &looked);
    let mut limits = guard::Limits::new(env, looked);
    let detail = serde_json::json!({
        "classification": class,
        "problems": inbound.problems,
        "attachments": inbound.attachments,
        "skipped_attachments": inbound.skipped,
        "size": msg.raw.len(),
    });
    let filing = Filing {
        source_key: msg.source_key.to_string(),
        message_id: inbound.message_id.clone(),
        sha256: sha.clone(),
        received_at: msg.received_at,
        filed_at: now,
        from: sender.map(str::to_string),
        subject: Some(inbound.subject.clone()),
        class: plan.class.to_string(),
        outcome: plan.outcome.clone(),
        detail,
        org: plan.org.clone(),
        period: plan.period.clone(),
        held: plan.held,
        verification: verdict.detail.clone(),
        fingerprint: sender::fingerprint(&inbound),
        replay_key: verdict.replay_key.clone(),
        answers: answers.clone(),
        thread_answered: plan.acknowledges_thread,
        bounce_of: plan.bounce_of.clone(),
        bounce_candidates: std::mem::take(&mut plan.bounce_candidates),
        returns: plan.returns.new_returns.clone(),
        audit: std::mem::take(&mut plan.audit),
    };
    let original = original(&inbound);
    let mut rendered: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut render = |assigned: &Assigned| -> Vec<NewReply> {
        let mut queue: Vec<(Planned, Option<crate::store::LimitHeld>)> = Vec::new();
        let replacements = replacement_notices(env, &plan, assigned, &others);
        for planned in plan
            .replies
            .iter()
            .map(|p| Planned {
                kind: plan.returns.with_receipts(&p.kind, assigned),
                name: p.name,
                to: p.to.clone(),
            })
            .chain(replacements)
        {
            match limits.decide(planned.name, planned.to.as_deref()) {
                guard::Decision::Send => queue.push((planned, None)),
                guard::Decision::Skip => {}
                guard::Decision::Hold(held, notice) => {
                    queue.push((planned, Some(held)));
                    if let Some(kind) = notice {
                        queue.push((Planned { kind: *kind, name: "limit_notice", to: None }, None));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (n, (planned, held)) in queue.iter().enumerate() {
            let id =
                format!("{}.{}{}@{}", planned.name, &sha[..24], suffix(n, planned), env.domain());
            let ctx = env.reply_context(id, now);
            match reply::render(&planned.kind, &original, &ctx, &env.templates).and_then(|r| {
                let raw = r.to_bytes()?;
                Ok(NewReply {
                    message_id: ctx.message_id.clone(),
                    kind: planned.name.to_string(),
                    envelope_from: r.envelope_from().to_string(),
                    recipients: r.recipients(),
                    raw,
                    guidance_to: (planned.name == "guidance").then(|| planned.to.clone()).flatten(),
                    counts_against: planned.to.as_deref().map(crate::store::recipient_key),
                    held: *held,
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
                // Checked before filing (`unaddressable`), so this is a template or build fault.
                Err(e) => tracing::error!(
                    source = msg.source_key,
                    reply = planned.name,
                    "reply not queued: {e}"
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
            from: sender.map(str::to_string),
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

/// A Message-ID suffix for replies of a name that occur more than once in one filing (the
/// replacement notices to each other address, a second limit notice); the first keeps the
/// plain id, so replies filed before this existed keep theirs.
fn suffix(n: usize, planned: &Planned) -> String {
    match planned.name {
        "replacement_notice" | "limit_notice" => format!(".{n}"),
        _ => String::new(),
    }
}

/// Why a reply of the plan to an outside address could not be sent, if one could not.
fn unaddressable(plan: &Plan) -> Option<String> {
    plan.replies.iter().filter_map(|r| r.to.as_deref()).find_map(|to| reply::addressable(to).err())
}

/// The organisation's other registered addresses (exact ones only: a domain entry names
/// nobody), told when an accepted return of this filing replaces a standing one (SPEC §4a).
fn replacement_recipients(env: &Env, plan: &Plan, sender: Option<&str>) -> Vec<String> {
    if !plan.returns.new_returns.iter().any(|r| r.accepted) || plan.held.is_some() {
        return Vec::new();
    }
    let Some(org) = plan.org.as_deref().and_then(|o| env.registry.get(o)) else {
        return Vec::new();
    };
    let sender = sender.map(crate::store::recipient_key).unwrap_or_default();
    org.submitters
        .iter()
        .filter_map(|s| match s {
            crate::collection::Submitter::Address(a)
                if crate::store::recipient_key(a) != sender =>
            {
                Some(a.clone())
            }
            _ => None,
        })
        .collect()
}

fn replacement_notices(env: &Env, plan: &Plan, assigned: &Assigned, to: &[String]) -> Vec<Planned> {
    let Some(org) = plan.org.as_deref() else { return Vec::new() };
    let replaced = assigned
        .returns
        .iter()
        .zip(&plan.returns.new_returns)
        .filter(|(_, r)| r.accepted)
        .filter_map(|(a, _)| Some((a.supersedes.clone()?, a.receipt.clone()?)));
    let mut out = Vec::new();
    for (old_receipt, new_receipt) in replaced {
        for address in to {
            let kind = ReplyKind::ReplacementNotice {
                to: address.clone(),
                organisation: env.org_ref(org),
                old_receipt: old_receipt.clone(),
                new_receipt: new_receipt.clone(),
            };
            out.push(Planned { kind, name: "replacement_notice", to: Some(address.clone()) });
        }
    }
    out
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
