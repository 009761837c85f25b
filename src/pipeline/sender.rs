//! What the pipeline knows about who sent a message (SPEC §4a): the verdict on the sender with
//! its evidence, whether the sender is a registered submitter, the summary every forward and
//! notice starts with (SPEC §4b), and the keys that recognise a message again when its
//! Message-ID cannot (a fingerprint for mail without one, a replayed signature).

use super::Env;
use crate::collection::Registry;
use crate::mail::{self, classify::is_submitter, Inbound};
use crate::reply::{AttachmentLine, Carry, OrgRef, Summary};
use crate::store::sha256_hex;

/// The verdict on a message's sender, as the pipeline uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub verified: bool,
    /// How it was verified, or why it was not, in one line for the team.
    pub reason: String,
    /// The headers the verdict rests on, for the team notice and the store.
    pub evidence: Vec<String>,
    /// The verified DKIM signature: the same one again is a replay.
    pub replay_key: Option<String>,
    /// Everything above as stored with the message.
    pub detail: serde_json::Value,
}

impl Verdict {
    /// A message whose From header names no single sender has nobody to verify.
    pub fn no_sender(problem: &str) -> Verdict {
        Verdict {
            verified: false,
            reason: problem.to_string(),
            evidence: Vec::new(),
            replay_key: None,
            detail: serde_json::json!({"verified": false, "reason": problem}),
        }
    }
}

/// The verdict on `inbound`'s sender (see `Env::verify`).
pub fn verdict(env: &Env, raw: &[u8], inbound: &Inbound) -> Verdict {
    match (inbound.from_problem, inbound.sender()) {
        (None, Some(sender)) => env.verify(raw, sender),
        (Some(problem), _) => Verdict::no_sender(problem.describe()),
        (None, None) => Verdict::no_sender("the message has no readable From address"),
    }
}

/// The organisation `sender` is a registered submitter of, if it is one of `org`'s.
pub fn registered_for(
    registry: &Registry,
    org: Option<&str>,
    sender: Option<&str>,
) -> Option<OrgRef> {
    let organisation = registry.get(org?)?;
    is_submitter(organisation, sender?).then(|| OrgRef::from(organisation))
}

/// The summary for the team, and what the forward or notice may carry: the original whole, or
/// only the safe attachments when any attachment is dangerous (SPEC §4b).
pub fn summary(
    env: &Env,
    raw: &[u8],
    inbound: &Inbound,
    org: Option<&str>,
    v: &Verdict,
) -> (Summary, Carry) {
    let attachments: Vec<AttachmentLine> = inbound
        .attachments
        .iter()
        .map(|a| AttachmentLine {
            name: match &a.container {
                Some(zip) => format!("{} (in {zip})", a.name),
                None => a.name.clone(),
            },
            real_type: mail::danger::real_type(&a.name, &a.bytes),
            withheld: a.danger.map(|d| d.describe().to_string()),
        })
        .collect();
    let summary = Summary {
        verified: v.verified,
        verification: v.reason.clone(),
        registered_for: registered_for(&env.registry, org, inbound.sender()),
        attachments,
    };
    let dangerous = inbound.attachments.iter().any(|a| a.danger.is_some());
    let carry = if dangerous {
        Carry::Files(
            inbound
                .attachments
                .iter()
                .filter(|a| a.danger.is_none() && a.container.is_none())
                .map(|a| crate::reply::Attachment {
                    file_name: a.name.clone(),
                    content_type: "application/octet-stream".into(),
                    data: a.bytes.clone(),
                })
                .collect(),
        )
    } else {
        Carry::Original(raw.to_vec())
    };
    (summary, carry)
}

/// For a message without a Message-ID: its sender and what it carries (each attachment's hash;
/// the subject and text when it carries none), so the same message resent within a week is
/// recognised (SPEC §4b). Received lines and dates may differ between two copies; this does not.
pub fn fingerprint(inbound: &Inbound) -> Option<String> {
    if inbound.message_id.is_some() {
        return None;
    }
    let mut parts: Vec<String> = inbound.attachments.iter().map(|a| sha256_hex(&a.bytes)).collect();
    parts.sort();
    if parts.is_empty() {
        parts.push(inbound.subject.clone());
        parts.push(inbound.body.clone());
    }
    let sender = inbound.sender().unwrap_or_default();
    Some(sha256_hex(format!("v1\0{sender}\0{}", parts.join("\0")).as_bytes()))
}

/// Our own Message-IDs that `inbound` answers (`In-Reply-To`, `References`), for the loop breaker.
pub fn answers(inbound: &Inbound, domain: &str) -> Vec<String> {
    inbound
        .in_reply_to
        .iter()
        .chain(inbound.references.iter().rev())
        .filter(|id| at_domain(id, domain))
        .take(20)
        .cloned()
        .collect()
}

fn at_domain(id: &str, domain: &str) -> bool {
    !domain.is_empty()
        && id
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.trim_end_matches('>').eq_ignore_ascii_case(domain))
}

/// Every `<…@domain>` Message-ID in `raw` (the first 4 MB), in order, each once: a bounce
/// names the message it bounces somewhere — in an attached original, in a quoted header, in an
/// Exchange NDR's text — and this finds it wherever it is (SPEC §4b).
pub fn ids_at_domain(raw: &[u8], domain: &str) -> Vec<String> {
    let raw = &raw[..raw.len().min(4 << 20)];
    let needle = format!("@{}>", domain.to_ascii_lowercase());
    let lower = raw.to_ascii_lowercase();
    let mut ids = Vec::new();
    let mut from = 0;
    while ids.len() < 20 {
        let Some(at) = find(&lower[from..], needle.as_bytes()) else { break };
        let end = from + at + needle.len() - 1;
        let start = raw[..from + at].iter().rposition(|&b| b == b'<').map(|p| p + 1);
        if let Some(start) = start.filter(|s| from + at - s < 250) {
            let id = String::from_utf8_lossy(&raw[start..end]).to_string();
            if id.bytes().all(|b| b.is_ascii_graphic() && b != b'<') && !ids.contains(&id) {
                ids.push(id);
            }
        }
        from = end + 1;
    }
    ids
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_ids_are_found_anywhere_in_a_bounce() {
        let ndr = b"Your message did not reach some recipients.\r\n\r\n\
            Original message headers:\r\nMessage-ID: <submission.0a1b2c@example.nhs.test>\r\n\
            In-Reply-To: <ann-1@leeds.nhs.test>\r\nReferences: <x@Example.NHS.test>";
        assert_eq!(
            ids_at_domain(ndr, "example.nhs.test"),
            vec!["submission.0a1b2c@example.nhs.test", "x@Example.NHS.test"]
        );
        assert!(ids_at_domain(b"no ids here", "example.nhs.test").is_empty());
    }

    #[test]
    fn the_fingerprint_ignores_everything_but_sender_and_contents() {
        let one = b"From: ann@leeds.nhs.test\r\nReceived: by a\r\nSubject: IAPT Leeds\r\n\r\nhi";
        let two = b"Received: by b\r\nFrom: ann@leeds.nhs.test\r\nSubject: IAPT Leeds\r\n\r\nhi";
        let (a, b) = (Inbound::parse(one), Inbound::parse(two));
        assert!(fingerprint(&a).is_some());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let other = Inbound::parse(b"From: bob@leeds.nhs.test\r\nSubject: IAPT Leeds\r\n\r\nhi");
        assert_ne!(fingerprint(&a), fingerprint(&other));
        let with_id = Inbound::parse(b"Message-ID: <m@x>\r\nFrom: a@b.test\r\n\r\nhi");
        assert_eq!(fingerprint(&with_id), None);
    }
}
