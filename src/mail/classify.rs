//! What a message is, exactly as SPEC §4's table: automatic mail, a subject-rule failure, a
//! submission, an unauthorised submission, or a question with its route. Owns the order of the
//! checks and the keyword routing; duplicates are not decided here (the store knows what it has
//! seen) and nothing is answered here (`reply` and `pipeline` do that).

use super::attachment::AttachmentKind;
use super::inbound::{is_daemon_address, FromProblem, Inbound, Unread};
use super::route::{route, Route};
use super::subject::{match_organisation, names_iapt, OrgMatch};
use crate::collection::{Organisation, Registry, Submitter};
use serde::Serialize;

/// What `classify` needs besides the message.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyContext<'a> {
    pub registry: &'a Registry,
    /// Our own addresses (the mailbox, the From of our replies), any case.
    pub our_addresses: &'a [String],
    /// The domain of the Message-IDs we make (`…@intake.example`).
    pub message_id_domain: &'a str,
    /// The `X-Loop` value our replies carry.
    pub loop_marker: &'a str,
    /// Routing keywords from config (`[routing]`), words or phrases, any case.
    pub technical_keywords: &'a [String],
    pub content_keywords: &'a [String],
    /// Subjects of out-of-office and auto-responder replies (`[classify] automatic_subjects`):
    /// a subject starting with one of them, or ending with one written `*…`, any case.
    pub automatic_subjects: &'a [String],
    /// Subjects of delivery failures (`[classify] bounce_subjects`), matched the same way.
    pub bounce_subjects: &'a [String],
    /// Local parts of senders that never write by hand (`[classify] automatic_senders`), `*`
    /// standing for any run of characters: `*noreply*`, `bounce+*`.
    pub automatic_senders: &'a [String],
    /// `[auth] require = "aligned"`: a return needs a verified sender (SPEC §4a).
    pub require_verified: bool,
    /// This message's sender was verified (an aligned DKIM pass, SPEC §4a).
    pub verified: bool,
}

/// The row of SPEC §4's table a message falls in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum Classification {
    /// Filed, never answered. `bounce_of` is the Message-ID of one of our own messages that a
    /// delivery failure reports on, so the pipeline can record it against that reply.
    Automatic { reason: AutoReason, bounce_of: Option<String> },
    /// Answered with the subject-line rule and an example subject.
    SubjectRule { reason: SubjectProblem },
    /// An authorised sender's return: `attachments` are the indexes (into
    /// `Inbound::attachments`) of the spreadsheets to validate, `unreadable` those of TNEF
    /// wrappers (`winmail.dat`) whose sender is asked for a normal attachment. One reply covers
    /// both lists.
    Submission { org: String, attachments: Vec<usize>, unreadable: Vec<usize> },
    /// A return from an address that is not a submitter of `org`: held for review with these
    /// attachments, the Data Collection Team notified.
    Unauthorised { org: String, attachments: Vec<usize> },
    /// A return (or what may have been one) from a message whose sender could not be verified
    /// while verification is required: held as unverified, never standing (SPEC §4a).
    Unverified { org: String, attachments: Vec<usize> },
    /// The From header does not name exactly one sender: nobody can be answered or trusted, so
    /// the message is held for the team, whatever it carries (SPEC §4a).
    BadSender { problem: FromProblem, org: Option<String>, attachments: Vec<usize> },
    /// An authorised sender's message naming IAPT and an organisation with no return found, whose
    /// MIME structure was damaged where a return could have been (`unread`): the sender is asked
    /// to send the file again, as for an unreadable attachment. Without the damage it would be
    /// a question, and telling a provider their return was "forwarded as a question" is wrong.
    Damaged { org: String, unread: Vec<Unread> },
    /// IAPT and an organisation but no return attached: forwarded by `route`; `keywords` are the
    /// chosen route's keywords found (empty when nothing matched and the default route applied).
    Question { org: String, route: Route, keywords: Vec<String> },
}

impl Classification {
    /// The name the store, the log and `status` use for the class.
    pub fn name(&self) -> &'static str {
        match self {
            Classification::Automatic { .. } => "automatic",
            Classification::SubjectRule { .. } => "subject_rule",
            Classification::Submission { .. } | Classification::Damaged { .. } => "submission",
            Classification::Unauthorised { .. } => "unauthorised",
            Classification::Unverified { .. } => "unverified",
            Classification::BadSender { .. } => "bad_sender",
            Classification::Question { .. } => "question",
        }
    }
}

/// Why a message counts as automatic; the first sign found, in the order of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum AutoReason {
    /// An `X-Loop` header carries our marker: our own mail came back.
    OurLoop,
    /// The Message-ID is one we made.
    OurMessageId,
    /// From one of our own addresses.
    FromUs,
    /// A `multipart/report` (its report-type) or a free-form bounce (`bounce`).
    Report(String),
    /// From MAILER-DAEMON or postmaster.
    DaemonSender(String),
    /// From an address that never writes by hand (`no-reply@…`), by `[classify]
    /// automatic_senders`.
    AutomaticSender(String),
    /// `Return-Path: <>`.
    NullReturnPath,
    /// `Auto-Submitted` other than `no`.
    AutoSubmitted(String),
    /// `Precedence: bulk`, `junk`, `list` or `auto_reply`.
    Precedence(String),
    ListId(String),
    /// One of the decisive non-standard headers, by name.
    AutoReplyHeader(String),
    /// A subject the way out-of-office replies write it (`Automatic reply:`,
    /// `Abwesenheitsnotiz:`, `… is out of the office.`), by `[classify] automatic_subjects`.
    AutoReplySubject,
    /// A subject the way delivery failures write it (`Undeliverable:`), by `[classify]
    /// bounce_subjects`.
    BounceSubject,
    /// No From address could be read: there is nobody to answer, so it is filed like automatic
    /// mail.
    NoSender,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", content = "codes", rename_all = "snake_case")]
pub enum SubjectProblem {
    NoIapt,
    NoOrganisation,
    /// The subject names several organisations (codes): the sender is asked to add the code.
    Ambiguous(Vec<String>),
}

/// Decide what `inbound` is. The checks run in SPEC §4's order, automatic mail first, so
/// nothing automatic is ever answered. Then the sender: a From header that does not name one
/// mailbox is held for the team (nobody can be answered or trusted). Then the subject rule, so
/// a return whose subject lacks IAPT or a single organisation gets the rule explained. Then,
/// with IAPT and one organisation: spreadsheets or TNEF attached make a submission; none found
/// in a message whose structure was not fully read makes a damaged submission; nothing of the
/// kind in an intact message makes a question, which anyone may ask. A submission needs a
/// verified sender when verification is required (else it is held as unverified), and a
/// registered one (else it is held as unauthorised).
pub fn classify(inbound: &Inbound, ctx: &ClassifyContext<'_>) -> Classification {
    if let Some(reason) = automatic(inbound, ctx) {
        return Classification::Automatic { reason, bounce_of: bounce_of(inbound, ctx) };
    }
    let org = if !names_iapt(&inbound.subject) {
        Err(SubjectProblem::NoIapt)
    } else {
        match match_organisation(&inbound.subject, ctx.registry) {
            OrgMatch::One(code) => Ok(code),
            OrgMatch::None => Err(SubjectProblem::NoOrganisation),
            OrgMatch::Ambiguous(codes) => Err(SubjectProblem::Ambiguous(codes)),
        }
    };
    let of_kind = |kind: AttachmentKind| -> Vec<usize> {
        inbound
            .attachments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.kind == kind)
            .map(|(i, _)| i)
            .collect()
    };
    let (attachments, unreadable) =
        (of_kind(AttachmentKind::Spreadsheet), of_kind(AttachmentKind::Tnef));
    if let Some(problem) = inbound.from_problem.filter(|p| *p != FromProblem::Missing) {
        let org = org.ok();
        return Classification::BadSender { problem, org, attachments };
    }
    let org = match org {
        Ok(org) => org,
        Err(reason) => return Classification::SubjectRule { reason },
    };
    let nothing_found = attachments.is_empty() && unreadable.is_empty();
    if nothing_found && inbound.unread.is_empty() {
        let (route, keywords) =
            route(&inbound.subject, &inbound.body, ctx.technical_keywords, ctx.content_keywords);
        return Classification::Question { org, route, keywords };
    }
    if ctx.require_verified && !ctx.verified {
        return Classification::Unverified { org, attachments: [attachments, unreadable].concat() };
    }
    let authorised = match (ctx.registry.get(&org), inbound.sender()) {
        (Some(organisation), Some(sender)) => is_submitter(organisation, sender),
        _ => false,
    };
    if nothing_found && authorised {
        Classification::Damaged { org, unread: inbound.unread.clone() }
    } else if authorised {
        Classification::Submission { org, attachments, unreadable }
    } else {
        Classification::Unauthorised { org, attachments: [attachments, unreadable].concat() }
    }
}

/// The first sign of automatic mail, ours first (a loop is the costliest mistake), then the
/// SPEC §4 list, then the well-known extras: `X-Autoreply`, `X-Autorespond`,
/// `X-Failed-Recipients`, `Precedence: auto_reply` and out-of-office subjects.
/// `X-MS-Exchange-Inbox-Rules-Loop` is recorded but not decisive: an inbox rule may redirect a
/// person's real return from a shared mailbox, and dropping that silently is worse than
/// answering a rule once.
fn automatic(inbound: &Inbound, ctx: &ClassifyContext<'_>) -> Option<AutoReason> {
    let s = &inbound.signals;
    let marker = ctx.loop_marker.trim();
    if !marker.is_empty() && s.x_loop.iter().any(|v| v.trim().eq_ignore_ascii_case(marker)) {
        return Some(AutoReason::OurLoop);
    }
    if inbound.message_id.as_deref().is_some_and(|id| is_ours(id, ctx)) {
        return Some(AutoReason::OurMessageId);
    }
    let sender = inbound.sender().unwrap_or_default();
    if !sender.is_empty() && ctx.our_addresses.iter().any(|a| a.trim().eq_ignore_ascii_case(sender))
    {
        return Some(AutoReason::FromUs);
    }
    if let Some(report) = &inbound.report {
        let kind = report.report_type.clone().unwrap_or_else(|| "bounce".to_string());
        return Some(AutoReason::Report(kind));
    }
    if is_daemon_address(sender) {
        return Some(AutoReason::DaemonSender(sender.to_string()));
    }
    // `From: MAILER-DAEMON <>` (DragonFly and others): a name and an empty address.
    if let Some(name) = inbound.from_bare_name.as_deref().filter(|n| is_daemon_address(n)) {
        return Some(AutoReason::DaemonSender(name.to_string()));
    }
    let local = sender.rsplit_once('@').map_or("", |(l, _)| l);
    if let Some(pattern) = ctx.automatic_senders.iter().find(|p| glob(p, local)) {
        return Some(AutoReason::AutomaticSender(pattern.clone()));
    }
    if s.return_path.as_deref() == Some("") {
        return Some(AutoReason::NullReturnPath);
    }
    if let Some(value) = s.auto_submitted.as_ref().filter(|v| !v.is_empty() && *v != "no") {
        return Some(AutoReason::AutoSubmitted(value.clone()));
    }
    if let Some(value) = s
        .precedence
        .as_ref()
        .filter(|v| matches!(v.as_str(), "bulk" | "junk" | "list" | "auto_reply"))
    {
        return Some(AutoReason::Precedence(value.clone()));
    }
    if let Some(list) = s.list_id.as_ref().filter(|v| !v.is_empty()) {
        return Some(AutoReason::ListId(list.clone()));
    }
    let decisive = ["X-Autoreply", "X-Autorespond", "X-Failed-Recipients"];
    if let Some(name) = s.extra_headers.iter().find(|h| decisive.contains(&h.as_str())) {
        return Some(AutoReason::AutoReplyHeader(name.clone()));
    }
    if subject_matches(&inbound.subject, ctx.bounce_subjects) {
        return Some(AutoReason::BounceSubject);
    }
    if subject_matches(&inbound.subject, ctx.automatic_subjects) {
        return Some(AutoReason::AutoReplySubject);
    }
    // No From at all: nobody to answer. A From that is there but names no single mailbox is
    // not this: it is held for the team (see `classify`).
    let missing = matches!(inbound.from_problem, None | Some(FromProblem::Missing));
    (inbound.sender().is_none() && missing).then_some(AutoReason::NoSender)
}

/// The Message-ID of our own message that a delivery failure reports on, when the report names
/// it where reports do (the enclosed original's headers). Read receipts and delay notices are
/// not failures, and a report on someone else's message is not ours to record. A failure that
/// names nothing there is still matched by our Message-ID anywhere in it (see
/// [`is_delivery_failure`] and `ids_at_domain`).
fn bounce_of(inbound: &Inbound, ctx: &ClassifyContext<'_>) -> Option<String> {
    let report = inbound.report.as_ref().filter(|r| r.is_failure())?;
    report.original_message_id.clone().filter(|id| is_ours(id, ctx))
}

/// Whether automatic mail reports a failed delivery: a failure report, mail from MAILER-DAEMON
/// or postmaster, Exim's `X-Failed-Recipients`, or a bounce subject. An out-of-office reply
/// also names our Message-ID (in `In-Reply-To`) but is no failure, so it is never taken for one.
pub fn is_delivery_failure(reason: &AutoReason, inbound: &Inbound) -> bool {
    matches!(reason, AutoReason::DaemonSender(_) | AutoReason::BounceSubject)
        || inbound.report.as_ref().is_some_and(|r| r.is_failure())
        || inbound.signals.extra_headers.iter().any(|h| h == "X-Failed-Recipients")
}

/// Whether a subject is one of `patterns`: it starts with one (automatic replies put their
/// marker first: `Automatic reply: Re: …`), or, for a pattern written `*text`, ends with `text`
/// (Lotus Notes: `Ann Analyst is out of the office.`). Any case; trailing punctuation and
/// spaces are ignored for an ending.
fn subject_matches(subject: &str, patterns: &[String]) -> bool {
    let subject = subject.trim().to_lowercase();
    let end = subject.trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace());
    patterns.iter().any(|p| {
        let p = p.trim().to_lowercase();
        match p.strip_prefix('*') {
            Some(tail) => {
                let tail = tail.trim_end_matches(|c: char| c.is_ascii_punctuation());
                !tail.trim().is_empty() && end.ends_with(tail)
            }
            None => !p.is_empty() && subject.starts_with(&p),
        }
    })
}

/// `*` matches any run of characters, everything else itself, any case.
fn glob(pattern: &str, text: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn is_ours(message_id: &str, ctx: &ClassifyContext<'_>) -> bool {
    let domain = ctx.message_id_domain.trim();
    !domain.is_empty()
        && message_id
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.trim_end_matches('>').eq_ignore_ascii_case(domain))
}

/// Whether `sender` (lower-cased) may submit for `org`: its exact address, or any address at
/// a listed domain (the domain itself, not its subdomains: `@leeds.nhs.test` does not admit
/// `x@mail.leeds.nhs.test`, so a registry entry admits exactly what it says).
pub fn is_submitter(org: &Organisation, sender: &str) -> bool {
    let sender = sender.trim().to_lowercase();
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    org.submitters.iter().any(|s| match s {
        Submitter::Address(address) => address.eq_ignore_ascii_case(&sender),
        Submitter::Domain(d) => !domain.is_empty() && d.eq_ignore_ascii_case(domain),
    })
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
