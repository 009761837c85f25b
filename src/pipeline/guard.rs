//! The mailbox is not a weapon (SPEC §4b): every automatic reply counts against a limit per
//! recipient (lower-cased, `+tag` removed) per day and against the mailbox's limit per hour;
//! past a limit the reply is kept in the store, not sent, and the team is told once. And the
//! loop breaker: a message answering our own mail without an attachment gets at most one
//! acknowledgement per thread per day.

use super::plan::{Plan, Planned};
use super::Env;
use crate::reply::ReplyKind;
use crate::store::{recipient_key, LimitHeld, Looked, Lookup};
use chrono::{DateTime, TimeDelta, Utc};

/// The question to ask the store before filing: every outside address the plan writes to (and
/// `extra`, addresses that may be written to once receipts are known), the day and the hour.
pub(super) fn lookup(
    plan: &Plan,
    extra: &[String],
    answers: &[String],
    now: DateTime<Utc>,
) -> Lookup {
    let mut recipients: Vec<String> = plan
        .replies
        .iter()
        .filter_map(|r| r.to.as_deref())
        .chain(extra.iter().map(String::as_str))
        .map(recipient_key)
        .collect();
    recipients.sort();
    recipients.dedup();
    Lookup {
        recipients,
        day: now.date_naive(),
        hour_from: now - TimeDelta::hours(1),
        answers: answers.to_vec(),
    }
}

/// Drops the acknowledgement (and guidance) of a message that answers ours when its thread
/// already had one today: an echoing autoresponder gets one answer a day, not one per echo.
/// The forward to the team stays, so a person's follow-up question is still seen.
pub(super) fn break_loops(plan: &mut Plan, answers: &[String], attachments: bool, looked: &Looked) {
    if answers.is_empty() || attachments {
        return;
    }
    let acks = |r: &Planned| matches!(r.name, "query_ack" | "guidance");
    if !plan.replies.iter().any(acks) {
        return;
    }
    if looked.thread_answered_today {
        plan.replies.retain(|r| !acks(r));
        plan.note("loop_suppressed", serde_json::json!({"answers": answers.first()}));
        plan.outcome = format!("{}_ack_suppressed", plan.outcome);
    } else {
        plan.acknowledges_thread = true;
    }
}

/// At most `[limits] guidance_per_address_per_day` subject-line guidance replies to one
/// sender (SPEC §4): past it the guidance is simply not sent (`guidance_suppressed`), and the
/// team is not troubled with it.
pub(super) fn suppress_guidance(plan: &mut Plan, looked: &Looked, limit: u32) {
    let over = |r: &Planned| {
        r.name == "guidance"
            && r.to
                .as_deref()
                .map(recipient_key)
                .and_then(|k| looked.recipients.get(&k))
                .is_some_and(|c| c.guidance >= limit)
    };
    if plan.replies.iter().any(over) {
        plan.replies.retain(|r| !over(r));
        plan.outcome = "guidance_suppressed".into();
    }
}

/// Running counts while the replies of one message are decided, so two replies of the same
/// message to one address both count.
pub(super) struct Limits<'a> {
    env: &'a Env,
    looked: Looked,
    noticed: Vec<String>,
}

/// What the limits decided for one reply.
pub(super) enum Decision {
    Send,
    /// Kept, not sent; with a notice to the team to queue beside it when it is the first reply
    /// held at this limit.
    Hold(LimitHeld, Option<Box<ReplyKind>>),
    /// Not queued at all: a notice that may go once a day and already went.
    Skip,
}

impl<'a> Limits<'a> {
    pub fn new(env: &'a Env, looked: Looked) -> Limits<'a> {
        Limits { env, looked, noticed: Vec::new() }
    }

    /// Whether a reply of `kind` (the outbox name) to `to` (None: the team) may go out, and
    /// counts it if so.
    pub fn decide(&mut self, name: &str, to: Option<&str>) -> Decision {
        let limits = &self.env.config.limits;
        let key = to.map(recipient_key);
        if let Some(key) = &key {
            let count = self.looked.recipients.entry(key.clone()).or_default();
            if name == "unverified_notice" && count.unverified_notices >= 1 {
                return Decision::Skip; // SPEC §4a: at most one a day
            }
            let (used, limit) = match name {
                "guidance" => (count.guidance, limits.guidance_per_address_per_day),
                _ => (count.replies, limits.replies_per_address_per_day),
            };
            if used >= limit {
                let first = !count.held && !self.noticed.contains(key);
                count.held = true;
                self.noticed.push(key.clone());
                let what = if name == "guidance" {
                    "subject-line guidance replies"
                } else {
                    "automatic replies"
                };
                let notice = first.then(|| {
                    Box::new(ReplyKind::LimitNotice {
                        to: self.env.config.routing.data_collection_team.clone(),
                        limit: format!("{limit} {what} a day to {key}"),
                        address: Some(key.clone()),
                    })
                });
                return Decision::Hold(LimitHeld::AddressLimit, notice);
            }
        }
        if self.looked.last_hour >= limits.replies_per_hour {
            let first = !self.looked.hour_held;
            self.looked.hour_held = true;
            let notice = first.then(|| {
                Box::new(ReplyKind::LimitNotice {
                    to: self.env.config.routing.data_collection_team.clone(),
                    limit: format!("{} automatic messages an hour", limits.replies_per_hour),
                    address: None,
                })
            });
            return Decision::Hold(LimitHeld::HourlyLimit, notice);
        }
        self.looked.last_hour += 1;
        if let Some(key) = key {
            let count = self.looked.recipients.entry(key).or_default();
            count.replies += 1;
            match name {
                "guidance" => count.guidance += 1,
                "unverified_notice" => count.unverified_notices += 1,
                _ => {}
            }
        }
        Decision::Send
    }
}
