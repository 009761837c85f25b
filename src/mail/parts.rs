//! The MIME tree walk: the body text, every attachment (forwarded `message/rfc822` parts
//! included, to a fixed depth), the delivery report of a `multipart/report`, and the signs of
//! broken MIME. Reads mail-parser's tree only; decides nothing about the message.

use super::attachment::{safe_file_name, sniff_kind, Attachment};
use super::inbound::{collapse, decode_8bit, DeliveryReport, Unread, BODY_LIMIT};
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// Forwarded messages are followed this deep (a forward of a forward of a forward); deeper
/// ones are noted as a problem. mail-parser itself stops decoding encoded nesting at 3.
pub const MAX_DEPTH: usize = 3;
/// More attachments than any real return message carries; the rest are noted, not kept.
pub const MAX_ATTACHMENTS: usize = 100;
/// Multiparts per message whose closing delimiter is looked for; a hostile message with
/// thousands of them has only this many checked.
const MAX_BOUNDARY_CHECKS: usize = 20;

#[derive(Default)]
pub(super) struct Walked {
    pub body: String,
    pub attachments: Vec<Attachment>,
    pub report: Option<DeliveryReport>,
    /// Message-ID of the first forwarded or enclosed message (a free-form bounce's original).
    pub enclosed_message_id: Option<String>,
    pub problems: Vec<String>,
    /// What of the structure was not read, recorded with the problem that describes it.
    pub unread: Vec<Unread>,
    /// The names of attachments past [`MAX_ATTACHMENTS`], not kept (at most [`MAX_SKIPPED`]).
    pub skipped: Vec<String>,
}

/// Names of attachments past the cap that are listed (the rest are counted in `problems`).
pub const MAX_SKIPPED: usize = 1000;

pub(super) fn walk(message: &Message<'_>) -> Walked {
    let mut walked = Walked { body: body(message), ..Walked::default() };
    collect(message, 0, &mut walked);
    walked.report = report(message);
    walked
}

fn body(message: &Message<'_>) -> String {
    let mut text = message.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    if text.len() > BODY_LIMIT {
        let mut end = BODY_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn collect(message: &Message<'_>, depth: usize, walked: &mut Walked) {
    note_broken_parts(message, depth, walked);
    for &id in &message.attachments {
        let Some(part) = message.parts.get(id as usize) else { continue };
        let bytes: &[u8] = match &part.body {
            PartType::Message(nested) => {
                if walked.enclosed_message_id.is_none() {
                    walked.enclosed_message_id = nested.message_id().map(str::to_string);
                }
                if depth + 1 > MAX_DEPTH {
                    walked.problems.push(format!(
                        "forwarded message nested deeper than {MAX_DEPTH} levels was not opened"
                    ));
                    walked.unread.push(Unread::NestingCut);
                } else {
                    collect(nested, depth + 1, walked);
                }
                continue;
            }
            PartType::Multipart(_) => continue,
            PartType::Text(text) | PartType::Html(text) => text.as_bytes(),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes,
        };
        let recovered = part.is_encoding_problem.then(|| recover(part, bytes)).flatten();
        let bytes = recovered.as_deref().unwrap_or(bytes);
        if walked.attachments.len() >= MAX_ATTACHMENTS {
            if !walked.unread.contains(&Unread::AttachmentCap) {
                walked.problems.push(format!(
                    "more than {MAX_ATTACHMENTS} attachments; the rest were not kept"
                ));
                walked.unread.push(Unread::AttachmentCap);
            }
            if walked.skipped.len() < MAX_SKIPPED {
                let number = MAX_ATTACHMENTS + walked.skipped.len() + 1;
                let declared = part.attachment_name().map(collapse);
                walked.skipped.push(safe_file_name(declared.as_deref(), number));
            }
            continue;
        }
        walked.attachments.push(attachment(part, bytes, depth, walked.attachments.len() + 1));
    }
}

/// mail-parser reads a part it could not finish (a missing boundary, say) as raw text; when the
/// part declared base64 or quoted-printable, decoding that text recovers the file as far as it
/// came, which lets the validator say precisely what is wrong with it.
fn recover(part: &MessagePart<'_>, raw: &[u8]) -> Option<Vec<u8>> {
    let encoding = part.content_transfer_encoding()?.trim().to_ascii_lowercase();
    let text = raw.trim_ascii();
    match encoding.as_str() {
        "base64" => base64_decode(text),
        "quoted-printable" => quoted_printable_decode(text),
        _ => None,
    }
}

fn attachment(part: &MessagePart<'_>, bytes: &[u8], depth: usize, number: usize) -> Attachment {
    let declared = part.attachment_name().map(collapse);
    let name = safe_file_name(declared.as_deref(), number);
    let content_type = content_type(part);
    Attachment {
        kind: sniff_kind(&name, &content_type, bytes),
        danger: super::danger::danger(&name, &content_type, bytes),
        container: None,
        name,
        declared_name: declared,
        content_type,
        depth,
        size: bytes.len(),
        bytes: bytes.to_vec(),
    }
}

/// `type/subtype`, lower-case; empty when the part declares none.
fn content_type(part: &MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Parts mail-parser had to recover, multiparts it could not split (no boundary parameter, or
/// one that never appears: it then keeps the whole body as one part), and multiparts whose
/// closing delimiter never comes (RFC 2046 §5.1.1 requires a `--boundary--` line): the message
/// is still used, and the audit trail says it was damaged. The last two may hide a return, so
/// they are also recorded as [`Unread::BrokenMime`]. One pass over the lines finds every closing
/// delimiter, so a hostile message with many multiparts costs no more than a few.
fn note_broken_parts(message: &Message<'_>, depth: usize, walked: &mut Walked) {
    let mut open: Vec<(usize, String)> = Vec::new();
    for (index, part) in message.parts.iter().enumerate() {
        if part.is_encoding_problem {
            walked.problems.push(format!(
                "part {index} (depth {depth}) was cut short or badly encoded; read as far as possible"
            ));
        }
        let multipart =
            part.content_type().is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart"));
        let split = matches!(part.body, PartType::Multipart(_));
        // An empty body (a header block parsed alone) hides nothing.
        if multipart && !split && !part.contents().trim_ascii().is_empty() {
            walked.problems.push(format!(
                "multipart part {index} (depth {depth}) could not be split: its boundary is missing or never appears"
            ));
            walked.unread.push(Unread::BrokenMime);
        }
        if let (PartType::Multipart(_), Some(ct)) = (&part.body, part.content_type()) {
            if let Some(boundary) = ct.attribute("boundary") {
                if open.len() < MAX_BOUNDARY_CHECKS {
                    open.push((index, format!("--{boundary}--")));
                }
            }
        }
    }
    if open.is_empty() {
        return;
    }
    for line in message.raw_message().split(|&b| b == b'\n') {
        if line.starts_with(b"--") {
            let line = line.trim_ascii_end();
            open.retain(|(_, closing)| line != closing.as_bytes());
        }
    }
    for (index, _) in open {
        walked.problems.push(format!(
            "multipart part {index} (depth {depth}) has no closing boundary; the message may be cut short"
        ));
        walked.unread.push(Unread::BrokenMime);
    }
}

/// The delivery or read report of a `multipart/report` (RFC 6522) anywhere in the message's
/// own tree: its report-type, the per-recipient actions (RFC 3464) and the Message-ID of the
/// message it reports on.
fn report(message: &Message<'_>) -> Option<DeliveryReport> {
    let report_part = message.parts.iter().find(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
    });
    let Some(report_part) = report_part else {
        // An abuse or spam report (ARF, RFC 5965) that some providers send as multipart/mixed:
        // its `message/feedback-report` part says what it is wherever it stands.
        let arf = message.parts.iter().any(|p| content_type(p) == "message/feedback-report");
        return arf.then(|| DeliveryReport {
            report_type: Some("feedback-report".into()),
            actions: Vec::new(),
            original_message_id: None,
        });
    };
    let report_type = report_part
        .content_type()
        .and_then(|ct| ct.attribute("report-type"))
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut report = DeliveryReport {
        report_type: Some(report_type),
        actions: Vec::new(),
        original_message_id: None,
    };
    for part in &message.parts {
        let enclosed_id = match (&part.body, content_type(part).as_str()) {
            (PartType::Message(original), _) => original.message_id().map(str::to_string),
            (_, "message/delivery-status" | "message/global-delivery-status") => {
                report.actions.extend(actions(&decode_8bit(part.contents())));
                None
            }
            (_, "text/rfc822-headers" | "message/global-headers" | "message/rfc822") => {
                crate::mail::inbound::parser()
                    .parse_headers(part.contents())
                    .and_then(|m| m.message_id().map(str::to_string))
            }
            _ => None,
        };
        report.original_message_id = report.original_message_id.or(enclosed_id);
    }
    Some(report)
}

/// RFC 3464 §2.3.3: each recipient block has `Action: failed|delayed|delivered|relayed|expanded`.
fn actions(status: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("action").then(|| {
                value.split(['(', ';']).next().unwrap_or_default().trim().to_ascii_lowercase()
            })
        })
        .collect()
}
