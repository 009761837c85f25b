//! Reply subjects: the original subject, once, with the outcome after it —
//! `Re: IAPT KPI Q1 2011/12 Leeds PCT — accepted, receipt IAPT-2011-12-Q1-5N1-2`. Replying to our
//! own reply neither stacks `Re: Re:` nor keeps the earlier outcome.

use super::{ReplyKind, Route, SubjectProblem};

/// Between the original subject and the outcome.
const DASH: &str = " — ";

/// A subject cut to this many characters: enough for any real one, and a hostile one stays small.
const MAX_CHARS: usize = 200;

/// How our outcomes begin, so a reply to one of our replies drops the old outcome.
const OUR_OUTCOMES: [&str; 6] =
    ["accepted", "rejected", "not filed", "not accepted", "question received", "subject line"];

pub(crate) fn subject(kind: &ReplyKind, original: &str) -> String {
    let base = base(original);
    let base = if base.is_empty() { "(no subject)".to_string() } else { base };
    match kind {
        ReplyKind::TeamNotice { unverified: true, .. } => {
            format!("Held as unverified: {base}")
        }
        ReplyKind::TeamNotice { .. } => format!("Held for review: {base}"),
        ReplyKind::LimitNotice { .. } => format!("Limit reached, replies kept: {base}"),
        ReplyKind::ReplacementNotice { organisation, new_receipt, .. } => {
            format!("IAPT KPI return for {} replaced, receipt {new_receipt}", organisation.code)
        }
        ReplyKind::QueryForward { reference, route, .. } => {
            let what = match route {
                Route::Technical => "technical question",
                Route::Content => "content question",
            };
            format!("Fwd: {base}{DASH}{what}, reference {reference}")
        }
        _ => format!("Re: {base}{DASH}{}", outcome(kind)),
    }
}

fn outcome(kind: &ReplyKind) -> String {
    match kind {
        ReplyKind::Submission { files, .. } => {
            let accepted: Vec<_> = files.iter().filter(|f| f.is_accepted()).collect();
            let rejected = files.len() - accepted.len();
            let errors: usize =
                files.iter().filter(|f| !f.is_accepted()).map(|f| f.report.errors().count()).sum();
            let receipts: Vec<&str> =
                accepted.iter().filter_map(|f| f.receipt.as_deref()).collect();
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            match (accepted.len(), rejected) {
                (0, 0) => "not filed: no return found".into(),
                (1, 0) if receipts.is_empty() => "accepted".into(),
                (1, 0) => format!("accepted, receipt {}", receipts.join(", ")),
                (n, 0) => format!("{n} accepted, receipts {}", receipts.join(", ")),
                (0, 1) => format!("rejected, {}", plural(errors, "error")),
                (0, n) => format!("{n} rejected, {}", plural(errors, "error")),
                (a, r) => format!("{a} accepted, {r} rejected"),
            }
        }
        ReplyKind::SubjectRule { reason } => match reason {
            SubjectProblem::NoIapt => "subject line needs IAPT".into(),
            SubjectProblem::NoOrganisation => "subject line needs your organisation".into(),
            SubjectProblem::Ambiguous(_) => "subject line: which organisation? add its code".into(),
        },
        ReplyKind::Unauthorised { organisation, .. } => {
            format!("not accepted: address not registered for {}", organisation.code)
        }
        ReplyKind::QueryAck { reference, .. } => {
            format!("question received, reference {reference}")
        }
        ReplyKind::AskForAttachment { .. } => {
            "not filed: please resend as an .xlsx attachment".into()
        }
        ReplyKind::UnverifiedNotice { .. } => {
            "not accepted: your address could not be verified".into()
        }
        ReplyKind::TeamNotice { .. }
        | ReplyKind::QueryForward { .. }
        | ReplyKind::LimitNotice { .. }
        | ReplyKind::ReplacementNotice { .. } => String::new(),
    }
}

/// The subject as a one-line, bounded text (see `echo`): control and format characters (a
/// folded or hostile header, a bidi override) removed, runs of space become one.
pub(crate) fn clean(subject: &str) -> String {
    crate::echo::capped(subject, MAX_CHARS)
}

/// The original subject without reply/forward prefixes (any language's usual ones, any number of
/// them) and without an outcome we added earlier.
fn base(original: &str) -> String {
    let mut s = clean(original);
    loop {
        let trimmed = strip_prefix(&s);
        if trimmed.len() == s.len() {
            break;
        }
        s = trimmed.to_string();
    }
    if let Some(at) = s.find(DASH) {
        let tail = s[at + DASH.len()..].to_ascii_lowercase();
        let tail = tail.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        if OUR_OUTCOMES.iter().any(|o| tail.starts_with(o)) {
            s.truncate(at);
        }
    }
    s.trim().to_string()
}

/// One `Re:`, `RE[2]:`, `Fwd:`, `FW:`, `AW:`, `SV:`, `WG:`, `TR:` prefix off the front.
fn strip_prefix(s: &str) -> &str {
    let word: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let known = ["re", "fw", "fwd", "aw", "sv", "wg", "tr", "antw", "vs"];
    if !known.contains(&word.to_ascii_lowercase().as_str()) {
        return s;
    }
    let mut rest = &s[word.len()..];
    if let Some(after) = rest.strip_prefix('[') {
        match after.find(']') {
            Some(end) if after[..end].chars().all(|c| c.is_ascii_digit()) => {
                rest = &after[end + 1..]
            }
            _ => return s,
        }
    }
    match rest.trim_start().strip_prefix(':') {
        Some(after) => after.trim_start(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::OrgRef;

    fn unauthorised() -> ReplyKind {
        ReplyKind::Unauthorised {
            organisation: OrgRef { code: "5N1".into(), name: "Leeds PCT".into() },
            contact: "dct@ic.nhs.test".into(),
        }
    }

    #[test]
    fn reply_prefixes_do_not_stack() {
        for original in
            ["IAPT KPI Q1 Leeds", "Re: IAPT KPI Q1 Leeds", "RE: re[2]: Fwd:  IAPT KPI Q1 Leeds"]
        {
            assert_eq!(
                subject(&unauthorised(), original),
                "Re: IAPT KPI Q1 Leeds — not accepted: address not registered for 5N1"
            );
        }
    }

    #[test]
    fn an_earlier_outcome_of_ours_is_replaced_but_the_senders_own_dash_stays() {
        let again = "Re: IAPT KPI Q1 Leeds — rejected, 2 errors";
        assert!(subject(&unauthorised(), again).starts_with("Re: IAPT KPI Q1 Leeds — not acc"));
        let theirs = "IAPT KPI — Leeds revised";
        assert!(subject(&unauthorised(), theirs).starts_with("Re: IAPT KPI — Leeds revised — "));
    }

    #[test]
    fn words_that_only_look_like_prefixes_stay() {
        assert_eq!(base("Return for Q1"), "Return for Q1");
        assert_eq!(base("Tr: Leeds"), "Leeds");
        assert_eq!(base("Re IAPT"), "Re IAPT");
    }

    #[test]
    fn hostile_subjects_become_one_bounded_line() {
        let s = clean(&format!("IAPT\r\nBcc: x@y.test\t{}", "A".repeat(5000)));
        assert!(!s.contains('\n') && !s.contains('\r'));
        assert_eq!(s.chars().count(), MAX_CHARS);
        assert_eq!(base(""), "");
        assert!(subject(&unauthorised(), "").starts_with("Re: (no subject) — "));
    }
}
