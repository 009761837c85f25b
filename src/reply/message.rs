//! A rendered [`Reply`] → RFC 5322 bytes with lettre's message builder, and the checks that make
//! building succeed: addresses that parse, ids that are plain, an original that can travel as
//! `message/rfc822`.

use super::{Attachment, Mailbox, Reply, ReplyError};
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// RFC 5322 §2.1.1: a line is at most 998 octets before CRLF.
const MAX_LINE: usize = 998;

pub(crate) fn check_address(role: &'static str, address: &str) -> Result<(), ReplyError> {
    address.trim().parse::<lettre::Address>().map(drop).map_err(|e| ReplyError::Address {
        role,
        address: address.to_string(),
        reason: e.to_string(),
    })
}

fn mailbox(role: &'static str, m: &Mailbox) -> Result<lettre::message::Mailbox, ReplyError> {
    let address = m.address.trim().parse::<lettre::Address>().map_err(|e| ReplyError::Address {
        role,
        address: m.address.clone(),
        reason: e.to_string(),
    })?;
    Ok(lettre::message::Mailbox::new(m.name.clone(), address))
}

/// The original message to carry on a forward or notice, always as `message/rfc822`, so the
/// team's client opens it as the message it is. Line ends are made CRLF. RFC 2046 §5.2.1 allows
/// such a part only in 7bit, 8bit or binary; one with a NUL or a line over 998 octets (which no
/// 7bit or 8bit body may have) is labelled `binary`, the bytes unchanged (see
/// `attachment_part`).
pub(crate) fn original_attachment(raw: &[u8]) -> Attachment {
    let data = crlf(raw);
    Attachment { file_name: "original.eml".into(), content_type: "message/rfc822".into(), data }
}

/// Whether `data` (CRLF lines) may travel as 7bit or 8bit: no NUL, no line over 998 octets.
fn line_safe(data: &[u8]) -> bool {
    !data.contains(&0) && data.split(|b| *b == b'\n').all(|l| l.len() <= MAX_LINE + 1)
}

/// Every line end as CRLF (a bare CR or LF included).
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// An id fit for a header: printable ASCII, no brackets or spaces, not absurdly long.
pub(crate) fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && id.chars().all(|c| c.is_ascii_graphic() && c != '<' && c != '>')
}

impl Reply {
    /// The message as it goes on the wire: `From`, `To`, `Reply-To`, `Subject` (RFC 2047 when
    /// not ASCII), `Date`, `Message-ID`, `In-Reply-To`, `References`, the extra headers, a plain
    /// UTF-8 text body and any attachment. The same reply always gives the same bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ReplyError> {
        let build = |e: &dyn std::fmt::Display| ReplyError::Build(e.to_string());
        let mut b = Message::builder()
            .from(mailbox("our", &self.from)?)
            .to(mailbox("recipient", &self.to)?)
            .subject(self.subject.clone())
            .date(SystemTime::from(self.date))
            .message_id(Some(format!("<{}>", self.message_id)));
        if let Some(reply_to) = &self.reply_to {
            b = b.reply_to(mailbox("reply-to", reply_to)?);
        }
        if let Some(id) = &self.in_reply_to {
            b = b.in_reply_to(format!("<{id}>"));
        }
        if !self.references.is_empty() {
            let refs: Vec<String> = self.references.iter().map(|r| format!("<{r}>")).collect();
            b = b.references(refs.join(" "));
        }
        for (name, value) in &self.headers {
            let name = HeaderName::new_from_ascii(name.clone()).map_err(|e| build(&e))?;
            b = b.raw_header(HeaderValue::new(name, value.clone()));
        }
        let text = SinglePart::plain(self.body.clone());
        let message = if self.attachments.is_empty() {
            b.singlepart(text)
        } else {
            let mut parts = MultiPart::mixed().boundary(self.boundary()).singlepart(text);
            for a in &self.attachments {
                parts = parts.singlepart(attachment_part(a)?);
            }
            b.multipart(parts)
        };
        Ok(message.map_err(|e| build(&e))?.formatted())
    }

    /// A boundary fixed by the content, so the bytes are repeatable; a SHA-256 of what the parts
    /// hold cannot occur inside them by accident.
    fn boundary(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.message_id.as_bytes());
        h.update(self.body.as_bytes());
        for a in &self.attachments {
            h.update(&a.data);
        }
        format!("=_iapt_{}", &hex::encode(h.finalize())[..32])
    }
}

fn attachment_part(a: &Attachment) -> Result<SinglePart, ReplyError> {
    let content_type =
        ContentType::parse(&a.content_type).map_err(|e| ReplyError::Build(e.to_string()))?;
    let attachment = lettre::message::Attachment::new(a.file_name.clone());
    if a.content_type.eq_ignore_ascii_case("message/rfc822") {
        // CRLF lines (`original_attachment`); 7bit or 8bit where they fit, else binary.
        let encoding = if !line_safe(&a.data) {
            ContentTransferEncoding::Binary
        } else if a.data.is_ascii() {
            ContentTransferEncoding::SevenBit
        } else {
            ContentTransferEncoding::EightBit
        };
        Ok(attachment.body(Body::dangerous_pre_encoded(a.data.clone(), encoding), content_type))
    } else {
        Ok(attachment.body(a.data.clone(), content_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(raw: &[u8]) -> String {
        let part = attachment_part(&original_attachment(raw)).expect("part");
        String::from_utf8_lossy(&part.formatted()).into_owned()
    }

    #[test]
    fn the_original_always_travels_as_message_rfc822_with_its_bytes_unchanged() {
        let plain = part(b"Subject: q\nFrom: a@leeds.nhs.test\n\nHello\n");
        assert!(plain.contains("Content-Type: message/rfc822"), "{plain}");
        assert!(plain.contains("Content-Transfer-Encoding: 7bit"), "{plain}");
        assert!(plain.contains("Subject: q\r\nFrom: a@leeds.nhs.test\r\n\r\nHello\r\n"), "{plain}");
        // A line over 998 octets (Outlook's HTML can have them) no 7bit or 8bit body may carry:
        // it goes as binary, still a message the team's client opens, not an .eml file.
        let long = format!("Subject: q\r\n\r\n{}\r\n", "x".repeat(2000));
        let shown = part(long.as_bytes());
        assert!(shown.contains("Content-Type: message/rfc822"), "{shown}");
        assert!(shown.contains("Content-Transfer-Encoding: binary"), "{shown}");
        assert!(shown.contains(&long), "the long line arrives whole");
        assert!(!shown.contains("octet-stream"));
    }
}
