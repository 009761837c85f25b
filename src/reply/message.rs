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

/// The original message to carry on a forward or notice. RFC 2046 §5.2.1 lets `message/rfc822`
/// travel only as 7bit or 8bit, so line ends are made CRLF; an original that still cannot (a NUL,
/// a line over 998 octets) goes as a base64 `.eml` file instead, which every client opens too.
pub(crate) fn original_attachment(raw: &[u8]) -> Attachment {
    let data = crlf(raw);
    let fits = !data.contains(&0) && data.split(|b| *b == b'\n').all(|l| l.len() <= MAX_LINE + 1);
    let content_type = if fits { "message/rfc822" } else { "application/octet-stream" };
    Attachment { file_name: "original.eml".into(), content_type: content_type.into(), data }
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
        // Checked by `original_attachment`: CRLF lines within limits, no NUL.
        let encoding = if a.data.is_ascii() {
            ContentTransferEncoding::SevenBit
        } else {
            ContentTransferEncoding::EightBit
        };
        Ok(attachment.body(Body::dangerous_pre_encoded(a.data.clone(), encoding), content_type))
    } else {
        Ok(attachment.body(a.data.clone(), content_type))
    }
}
