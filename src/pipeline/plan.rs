//! What to do with one classified message, before anything is filed: its class and outcome as
//! the store keeps them, whether it is held and why, the return versions, and the replies with
//! whom each counts against (SPEC §4, §4a, §4b).

use super::sender::{self, Verdict};
use super::submission::Returns;
use super::{Env, Incoming};
use crate::mail::{FromProblem, Inbound, Route};
use crate::reply::ReplyKind;
use crate::store::{AuditEvent, HeldReason};

/// One reply still to be rendered once the store has assigned receipts.
pub(super) struct Planned {
    pub kind: ReplyKind,
    /// Short name kept in the outbox (`submission`, `guidance`, `forward`, …).
    pub name: &'static str,
    /// The outside address it goes to, which the per-address limits count (SPEC §4b); `None`
    /// for mail to the team.
    pub to: Option<String>,
}

/// What the decision for a message comes to, before filing.
pub(super) struct Plan {
    pub class: &'static str,
    pub outcome: String,
    pub org: Option<String>,
    pub period: Option<String>,
    pub held: Option<HeldReason>,
    pub bounce_of: Option<String>,
    pub bounce_candidates: Vec<String>,
    pub returns: Returns,
    pub replies: Vec<Planned>,
    pub audit: Vec<AuditEvent>,
    /// The acknowledgement of a message answering ours (the loop breaker's one a day).
    pub acknowledges_thread: bool,
}

impl Plan {
    pub fn new(class: &'static str, outcome: impl Into<String>) -> Plan {
        Plan {
            class,
            outcome: outcome.into(),
            org: None,
            period: None,
            held: None,
            bounce_of: None,
            bounce_candidates: Vec::new(),
            returns: Returns::default(),
            replies: Vec::new(),
            audit: Vec::new(),
            acknowledges_thread: false,
        }
    }

    pub fn reply(mut self, name: &'static str, kind: ReplyKind, to: Option<&str>) -> Plan {
        self.replies.push(Planned { kind, name, to: to.map(str::to_string) });
        self
    }

    pub fn for_org(mut self, org: Option<&str>) -> Plan {
        self.org = org.map(str::to_string);
        self
    }

    pub fn note(&mut self, event: &str, detail: serde_json::Value) {
        self.audit.push(AuditEvent { event: event.to_string(), detail });
    }
}

/// The message and what is known about it, for the planners.
pub(super) struct Facts<'a> {
    pub env: &'a Env,
    pub msg: Incoming<'a>,
    pub sha: &'a str,
    pub inbound: &'a Inbound,
    pub verdict: &'a Verdict,
}

impl Facts<'_> {
    fn sender(&self) -> Option<&str> {
        self.inbound.sender()
    }

    /// A team notice that `org`'s message was held, with the summary and the evidence.
    fn team_notice(&self, org: Option<&str>, reason: String, unverified: bool) -> ReplyKind {
        let (summary, carry) =
            sender::summary(self.env, self.msg.raw, self.inbound, org, self.verdict);
        ReplyKind::TeamNotice {
            to: self.env.config.routing.data_collection_team.clone(),
            organisation: org.map(|o| self.env.org_ref(o)),
            reason,
            unverified,
            summary,
            evidence: self.verdict.evidence.clone(),
            carry,
        }
    }
}

pub(super) fn question(f: &Facts<'_>, org: &str, route: Route) -> Plan {
    let env = f.env;
    let route = env.route(route);
    let (team_name, team_address) = env.team(route);
    let reference = format!(
        "IAPT-Q-{}-{}",
        f.msg.received_at.format("%Y%m%d"),
        f.sha[..6].to_ascii_uppercase()
    );
    let (summary, carry) = sender::summary(env, f.msg.raw, f.inbound, Some(org), f.verdict);
    let text = matches!(carry, crate::reply::Carry::Files(_))
        .then(|| crate::echo::capped(&f.inbound.body, 4000));
    let forward = ReplyKind::QueryForward {
        to: team_address.clone(),
        reference: reference.clone(),
        route,
        summary,
        text,
        carry,
    };
    // SPEC §4a: a question whose sender could not be verified goes to the team, marked so, and
    // its claimed sender is not written to.
    let unverified = env.require_verified() && !f.verdict.verified;
    let outcome = format!("routed_{}", route.as_str());
    let mut plan =
        Plan::new("question", outcome).reply("forward", forward, None).for_org(Some(org));
    if unverified {
        plan.note("acknowledgement_withheld", serde_json::json!({"why": "unverified sender"}));
        return plan;
    }
    let ack = ReplyKind::QueryAck { reference, route, team_name, team_address };
    plan.reply("query_ack", ack, f.sender())
}

pub(super) fn subject_rule(f: &Facts<'_>, reason: &crate::mail::SubjectProblem) -> Plan {
    if f.env.require_verified() && !f.verdict.verified {
        // Nobody is written to on the word of a message that could not be verified.
        return Plan::new("subject_rule", "guidance_withheld_unverified");
    }
    let kind = ReplyKind::SubjectRule { reason: f.env.subject_problem(reason) };
    Plan::new("subject_rule", "guidance").reply("guidance", kind, f.sender())
}

pub(super) fn unauthorised(f: &Facts<'_>, org: &str) -> Plan {
    let env = f.env;
    let reason =
        "the sender's address is not registered as a submitter for this organisation".to_string();
    let notice = f.team_notice(Some(org), reason, false);
    let organisation = env.org_ref(org);
    let contact = env.config.routing.data_collection_team.clone();
    let mut plan = Plan::new("unauthorised", "held")
        .reply("notice", notice, None)
        .reply("unauthorised", ReplyKind::Unauthorised { organisation, contact }, f.sender())
        .for_org(Some(org));
    plan.held = Some(HeldReason::Unregistered);
    plan
}

/// A return whose sender could not be verified (SPEC §4a): held as unverified, the team told
/// with the evidence, and the claimed sender told once a day — when it is a registered
/// submitter of the organisation (the person whose name was used). An address nobody
/// registered is not written to: it may be anyone's.
pub(super) fn unverified(f: &Facts<'_>, org: &str) -> Plan {
    let env = f.env;
    let reason = format!("the sender could not be verified: {}", f.verdict.reason);
    let notice = f.team_notice(Some(org), reason, true);
    let mut plan =
        Plan::new("unverified", "held_unverified").reply("notice", notice, None).for_org(Some(org));
    plan.held = Some(HeldReason::Unverified);
    if sender::registered_for(&env.registry, Some(org), f.sender()).is_some() {
        let kind = ReplyKind::UnverifiedNotice {
            organisation: env.org_ref(org),
            contact: env.config.routing.data_collection_team.clone(),
        };
        plan = plan.reply("unverified_notice", kind, f.sender());
    }
    plan
}

/// A message whose From header names no single sender: held for the team, nobody answered.
pub(super) fn bad_sender(f: &Facts<'_>, problem: FromProblem, org: Option<&str>) -> Plan {
    let reason = format!("{}, so it cannot be answered or trusted", problem.describe());
    let notice = f.team_notice(org, reason, false);
    let mut plan = Plan::new("bad_sender", "held").reply("notice", notice, None).for_org(org);
    plan.held = Some(HeldReason::BadSender);
    plan
}

/// The plan turned into a hold because no reply can be addressed to the sender: the team is
/// told instead of nobody (SPEC §4b "nothing is silent").
pub(super) fn unaddressable(f: &Facts<'_>, mut plan: Plan, why: &str) -> Plan {
    let reason = format!("no reply could be addressed to the sender ({why})");
    let notice = f.team_notice(plan.org.as_deref(), reason, false);
    plan.replies.retain(|r| r.to.is_none());
    if !plan.replies.iter().any(|r| r.name == "notice") {
        plan.replies.push(Planned { kind: notice, name: "notice", to: None });
    }
    plan.held = Some(HeldReason::Unaddressable);
    plan.outcome = "held".into();
    // Held, so nothing stands; the raw message and its attachments are kept in the store.
    plan.returns = Returns::default();
    plan
}

pub(super) fn submission(org: &str, returns: Returns, sender: Option<&str>) -> Plan {
    let outcome = returns.outcome();
    let mut plan = Plan::new("submission", outcome).for_org(Some(org));
    plan.period = returns.period();
    let (name, kind) = if returns.only_unreadable() {
        (
            "ask_for_attachment",
            ReplyKind::AskForAttachment { file_names: returns.unreadable_names() },
        )
    } else {
        let kind =
            ReplyKind::Submission { files: returns.file_results(), not_read: returns.not_read() };
        ("submission", kind)
    };
    plan.returns = returns;
    plan.reply(name, kind, sender)
}
