//! The verdict (SPEC §4a): from the message's Authentication-Results and DKIM-Signature fields,
//! the From domain, `[auth]` and the results of our own DKIM check, whether the message is
//! verified, how, and why not in words the Data Collection Team understands. PURE.
//!
//! The rules, and nothing else verifies:
//! - only the topmost Authentication-Results whose authserv-id is trusted counts: the receiving
//!   server prepends its own and removes copies of it arriving from outside, so a trusted-id
//!   field below it was written by someone else, and untrusted ids count nowhere;
//! - it verifies with `dkim=pass` and `header.d` aligned with the From domain (equal under
//!   strict alignment; the same organisational domain under relaxed), or under relaxed with
//!   `dmarc=pass` and `header.from` equal to the From domain;
//! - or our own DKIM check passed a signature whose `d=` is aligned the same way.

use super::headers::{Field, Kind};
use super::results::{self, AuthResults, MethodResult};
use super::settings::{normalise_domain, Alignment, AuthSettings};
use super::signature::{self, DkimTags};
use serde::{Deserialize, Serialize};

/// Evidence lines kept, and the length of each.
const MAX_EVIDENCE: usize = 8;
const MAX_LINE: usize = 400;

/// How a message was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    AuthenticationResults,
    Dkim,
    None,
}

/// The verdict, stored with the message and shown by `status`/`show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub verified: bool,
    pub method: Method,
    /// The signing (or DMARC) domain that was aligned with the From domain.
    pub aligned_domain: Option<String>,
    /// The trusted authserv-id whose Authentication-Results was read, when there was one.
    pub authserv_id: Option<String>,
    /// One sentence (or a few joined by `; `) for the team and the notice.
    pub reason: String,
    /// The fields considered and our own DKIM results, one line each, trimmed and capped.
    pub evidence: Vec<String>,
    /// The `b=` (whitespace removed) of the aligned passing signature: the same signature
    /// arriving again is a replay, whatever its Message-ID.
    pub replay_key: Option<String>,
    /// Not verified only for now: a DNS lookup for an aligned signature failed temporarily.
    /// Hold the message and check again later rather than telling the sender it failed.
    pub temporary: bool,
}

/// The result of checking one signature ourselves (RFC 8601 §2.7.1 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimResult {
    Pass,
    Fail,
    Neutral,
    TempError,
    PermError,
}

/// One signature as our own DKIM check saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimOutcome {
    /// `d=`, lower-cased (empty when the signature could not be read).
    pub domain: String,
    pub selector: String,
    pub result: DkimResult,
    /// Why it did not pass, in plain words.
    pub reason: Option<String>,
    /// The signature's `b=`, whitespace removed.
    pub b: String,
}

/// The verdict on `fields` (topmost first) for a message whose single From mailbox is at
/// `from_domain`. `dkim` holds our own DKIM results when that check ran.
pub fn decide(
    fields: &[Field],
    from_domain: &str,
    settings: &AuthSettings,
    dkim: Option<&[DkimOutcome]>,
) -> Verification {
    let from = normalise_domain(from_domain);
    let signatures: Vec<DkimTags> = fields
        .iter()
        .filter(|f| f.kind == Kind::DkimSignature)
        .filter_map(|f| signature::parse(&f.value).ok())
        .collect();
    let mut v = Verification {
        verified: false,
        method: Method::None,
        aligned_domain: None,
        authserv_id: None,
        reason: String::new(),
        evidence: Vec::new(),
        replay_key: None,
        temporary: false,
    };
    let mut why_not = Vec::new();
    match trusted_field(fields, settings, &mut v.evidence) {
        Trusted::Found(id, ar) => {
            v.authserv_id = Some(id.clone());
            match from_results(&id, &ar, &from, settings, &signatures) {
                Ok((domain, replay_key)) => {
                    v.verified = true;
                    v.method = Method::AuthenticationResults;
                    v.reason = format!(
                        "the receiving server {id} reported a verified signature for {domain}"
                    );
                    v.aligned_domain = Some(domain);
                    v.replay_key = replay_key;
                    return v;
                }
                Err((why, temporary)) => {
                    why_not.push(why);
                    v.temporary |= temporary;
                }
            }
        }
        Trusted::Unreadable(id, err) => {
            v.authserv_id = Some(id.clone());
            why_not.push(format!("the Authentication-Results of {id} could not be read ({err})"));
        }
        Trusted::NotFound => why_not.push(if settings.trusted_authserv_ids.is_empty() {
            "no Authentication-Results is trusted ([auth] trusted_authserv_ids is empty)".into()
        } else {
            "no Authentication-Results from a trusted server".into()
        }),
    }
    match dkim {
        Some(outcomes) => {
            for o in outcomes {
                push_evidence(&mut v.evidence, &outcome_line(o));
            }
            if let Some(o) = outcomes
                .iter()
                .find(|o| o.result == DkimResult::Pass && settings.aligned(&o.domain, &from))
            {
                v.verified = true;
                v.method = Method::Dkim;
                v.reason = format!("the DKIM signature of {} verified", o.domain);
                v.aligned_domain = Some(o.domain.clone());
                v.replay_key = Some(o.b.clone()).filter(|b| !b.is_empty());
                v.temporary = false;
                return v;
            }
            let (why, temporary) = from_outcomes(outcomes, &from, settings);
            why_not.push(why);
            v.temporary |= temporary;
        }
        None if settings.verify_dkim => {
            why_not.push("our own DKIM check was not available".into());
        }
        // A trusted server has spoken; what it said is the reason.
        None if v.authserv_id.is_some() => {}
        None if signatures.is_empty() => why_not.push("no DKIM signature".into()),
        None => why_not.push(
            "the message is DKIM-signed but iapt-intake does not check signatures itself \
             ([auth] verify_dkim is off)"
                .into(),
        ),
    }
    v.reason = match why_not.as_slice() {
        [first, second] if second == "no DKIM signature" => format!("{first} and {second}"),
        _ => why_not.join("; "),
    };
    v
}

enum Trusted {
    Found(String, AuthResults),
    Unreadable(String, results::ParseError),
    NotFound,
}

/// The topmost Authentication-Results of a trusted authserv-id; every field looked at goes
/// into the evidence with what was made of it.
fn trusted_field(fields: &[Field], settings: &AuthSettings, evidence: &mut Vec<String>) -> Trusted {
    let mut found = Trusted::NotFound;
    for f in fields.iter().filter(|f| f.kind == Kind::AuthenticationResults) {
        let line = |note: &str| format!("Authentication-Results ({note}):{}", f.value);
        if !matches!(found, Trusted::NotFound) {
            push_evidence(evidence, &line("ignored: below the trusted one"));
            continue;
        }
        let parsed = results::parse(&f.value);
        // An unreadable field still names its server by its first word.
        let id = match &parsed {
            Ok(ar) => ar.authserv_id.clone(),
            Err(_) => leading_word(&f.value),
        };
        match (id, parsed) {
            (None, _) => push_evidence(evidence, &line("ignored: it names no authserv-id")),
            (Some(id), _) if !settings.trusts(&id) => {
                push_evidence(evidence, &line(&format!("ignored: {} is not trusted", clean(&id))))
            }
            (Some(id), Ok(ar)) => {
                push_evidence(evidence, &line("trusted"));
                found = Trusted::Found(id, ar);
            }
            (Some(id), Err(e)) => {
                push_evidence(evidence, &line("trusted, unreadable"));
                found = Trusted::Unreadable(id, e);
            }
        }
    }
    found
}

fn leading_word(value: &str) -> Option<String> {
    let w: String =
        value.trim_start().chars().take_while(|c| !c.is_whitespace() && *c != ';').collect();
    (!w.is_empty() && !w.contains('=')).then_some(w)
}

/// `Ok((aligned domain, replay key))`, or why not and whether only for now.
fn from_results(
    id: &str,
    ar: &AuthResults,
    from: &str,
    settings: &AuthSettings,
    signatures: &[DkimTags],
) -> Result<(String, Option<String>), (String, bool)> {
    let dkim: Vec<&MethodResult> = ar.results.iter().filter(|r| r.method == "dkim").collect();
    for r in dkim.iter().filter(|r| r.result == "pass") {
        let Some(d) = signer(r) else { continue };
        if settings.aligned(&d, from) {
            return Ok((d.clone(), replay_key(r, &d, signatures)));
        }
    }
    let dmarc_pass = ar.results.iter().find(|r| {
        r.method == "dmarc"
            && r.result == "pass"
            && r.prop("header", "from").is_some_and(|f| normalise_domain(f) == from)
    });
    if dmarc_pass.is_some() && settings.alignment == Alignment::Relaxed {
        let key = signatures
            .iter()
            .find(|s| s.d.as_deref().is_some_and(|d| settings.aligned(d, from)))
            .and_then(|s| s.b.clone());
        return Ok((from.to_string(), key));
    }
    let mut said = Vec::new();
    let mut temporary = false;
    for r in dkim.iter().take(3) {
        let d = signer(r).unwrap_or_else(|| "an unnamed domain".into());
        if r.result == "pass" {
            said.push(not_aligned(
                &format!("the receiving server {id} reported DKIM passed"),
                &d,
                from,
                settings,
            ));
        } else {
            temporary |= r.result == "temperror" && settings.aligned(&d, from);
            let reason =
                r.reason.as_deref().map(|x| format!(" ({})", clean(x))).unwrap_or_default();
            said.push(format!(
                "the receiving server {id} reported dkim={} for {d}{reason}",
                r.result
            ));
        }
    }
    if dkim.is_empty() {
        said.push(if ar.none {
            format!("the receiving server {id} checked nothing (none)")
        } else {
            format!("the receiving server {id} reported no DKIM result")
        });
    }
    if dmarc_pass.is_some() {
        said.push(format!(
            "its dmarc=pass for {from} counts only with [auth] alignment = \"relaxed\""
        ));
    }
    Err((said.join("; "), temporary))
}

/// `header.d`, or the domain of `header.i` (`@leeds.nhs.test`), lower-cased.
fn signer(r: &MethodResult) -> Option<String> {
    let d = r.prop("header", "d").map(str::to_string).or_else(|| {
        r.prop("header", "i").and_then(|i| i.rsplit_once('@')).map(|(_, d)| d.to_string())
    })?;
    let d = normalise_domain(&d);
    (!d.is_empty()).then_some(d)
}

/// The `b=` of the signature an A-R result names: by its `header.b` prefix when given, else
/// the first signature of that domain (and selector, when given).
fn replay_key(r: &MethodResult, d: &str, signatures: &[DkimTags]) -> Option<String> {
    let of_domain = |s: &&DkimTags| s.d.as_deref() == Some(d);
    let found = match r.prop("header", "b") {
        Some(prefix) => signatures.iter().filter(of_domain).find(|s| s.matches_b_prefix(prefix)),
        None => {
            let selector = r.prop("header", "s").map(str::to_ascii_lowercase);
            signatures.iter().filter(of_domain).find(|s| selector.is_none() || s.s == selector)
        }
    };
    found.and_then(|s| s.b.clone())
}

fn from_outcomes(outcomes: &[DkimOutcome], from: &str, settings: &AuthSettings) -> (String, bool) {
    if outcomes.is_empty() {
        return ("no DKIM signature".into(), false);
    }
    let mut said = Vec::new();
    let mut temporary = false;
    for o in outcomes.iter().take(3) {
        let d = if o.domain.is_empty() { "an unnamed domain" } else { &o.domain };
        let reason = o.reason.as_deref().map(clean).unwrap_or_else(|| "no reason given".into());
        said.push(match o.result {
            DkimResult::Pass => not_aligned("DKIM passed", d, from, settings),
            DkimResult::TempError => {
                temporary |= settings.aligned(d, from);
                format!("the DKIM key of {d} could not be fetched for now ({reason})")
            }
            _ => format!("the DKIM signature of {d} did not verify: {reason}"),
        });
    }
    (said.join("; "), temporary)
}

fn not_aligned(what: &str, d: &str, from: &str, settings: &AuthSettings) -> String {
    match settings.alignment {
        Alignment::Strict => {
            format!("{what} for {d}, which is not the From domain {from} (strict alignment)")
        }
        Alignment::Relaxed => format!(
            "{what} for {d}, which is not in the organisational domain of the From domain {from}"
        ),
    }
}

fn outcome_line(o: &DkimOutcome) -> String {
    let result = serde_json::to_value(o.result)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let reason = o.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    format!("our DKIM check: d={} s={}: {result}{reason}", o.domain, o.selector)
}

fn push_evidence(evidence: &mut Vec<String>, line: &str) {
    if evidence.len() < MAX_EVIDENCE {
        evidence.push(clean(line));
    }
}

/// One line: whitespace runs become one space, control and format characters (bidi overrides,
/// zero-width) go, and the length is capped.
fn clean(s: &str) -> String {
    let mut out = String::new();
    let (mut space, mut len) = (false, 0usize);
    for c in s.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_format(c) {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
            len += 1;
        }
        out.push(c);
        len += 1;
        if len >= MAX_LINE {
            out.push('…');
            break;
        }
    }
    out
}

fn is_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{00ad}')
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
