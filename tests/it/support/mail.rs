//! Messages as a mail client sends them (headers, then a `multipart/mixed` body with a text part
//! and base64 attachments), and our replies read back with mail-parser into the fields a person
//! checks in their mail client.

use mail_parser::{HeaderValue, MessageParser, MimeHeaders};

pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const BOUNDARY: &str = "=_e2e_boundary_7f3a";

/// A message under construction. Everything is fixed text, so the same test builds the same
/// bytes every run.
#[derive(Debug, Clone)]
pub struct Mail {
    headers: Vec<(String, String)>,
    body: String,
    attachments: Vec<(String, String, Vec<u8>)>,
}

impl Mail {
    /// `From`, `To` us, `Subject`, a fixed `Date` and `Message-ID: <id>`, received through the
    /// trusted receiving server, which found a valid signature of the From domain (see
    /// [`Mail::authentication`] and [`Mail::unsigned`]).
    pub fn new(from: &str, subject: &str, id: &str) -> Mail {
        let domain = from.rsplit_once('@').map_or("", |(_, d)| d).trim_end_matches('>');
        let stamp = format!("{}; dkim=pass header.d={domain} header.s=test", super::MX);
        let headers = vec![
            ("Authentication-Results".into(), stamp),
            ("Return-Path".into(), format!("<{from}>")),
            ("From".into(), format!("Ann Analyst <{from}>")),
            ("To".into(), format!("IAPT KPI Returns <{}>", super::US)),
            ("Subject".into(), subject.into()),
            ("Date".into(), "Wed, 20 Jul 2011 10:00:00 +0100".into()),
            ("Message-ID".into(), format!("<{id}>")),
        ];
        Mail { headers, body: "Please find our return attached.\r\n".into(), attachments: vec![] }
    }

    /// The receiving server's verdict instead of a pass (`dkim=fail header.d=…`), or another
    /// server's header entirely (`mx.evil.test; dkim=pass …`).
    pub fn authentication(self, value: &str) -> Mail {
        self.header("Authentication-Results", value)
    }

    /// No Authentication-Results at all: nothing says who sent it.
    pub fn unsigned(mut self) -> Mail {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Authentication-Results"));
        self
    }

    /// Adds a header, or replaces the one of that name.
    pub fn header(mut self, name: &str, value: &str) -> Mail {
        match self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(h) => h.1 = value.into(),
            None => self.headers.push((name.into(), value.into())),
        }
        self
    }

    pub fn body(mut self, text: &str) -> Mail {
        self.body = text.replace('\n', "\r\n");
        self
    }

    pub fn attach(mut self, name: &str, content_type: &str, bytes: Vec<u8>) -> Mail {
        self.attachments.push((name.into(), content_type.into(), bytes));
        self
    }

    pub fn xlsx(self, name: &str, bytes: Vec<u8>) -> Mail {
        self.attach(name, XLSX, bytes)
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("MIME-Version: 1.0\r\n");
        if self.attachments.is_empty() {
            out.push_str("Content-Type: text/plain; charset=us-ascii\r\n\r\n");
            out.push_str(&self.body);
            return out.into_bytes();
        }
        out.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n\
             This is a multi-part message in MIME format.\r\n\r\n--{BOUNDARY}\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n{}\r\n",
            self.body
        ));
        for (name, content_type, bytes) in &self.attachments {
            out.push_str(&format!(
                "--{BOUNDARY}\r\nContent-Type: {content_type}; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            ));
            for line in base64(bytes).as_bytes().chunks(76) {
                out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                out.push_str("\r\n");
            }
        }
        out.push_str(&format!("--{BOUNDARY}--\r\n"));
        out.into_bytes()
    }
}

/// Standard base64 (RFC 4648 §4), written out because no base64 crate is a dependency and the
/// tests need only the encoder.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A reply as its recipient's mail client shows it.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub from: String,
    pub to: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub auto_submitted: Option<String>,
    pub x_loop: Option<String>,
    pub body: String,
    /// (file name, bytes) of each attachment (a forwarded original, a held message).
    pub attachments: Vec<(String, Vec<u8>)>,
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => vec![],
    }
}

/// Parses raw reply bytes; panics (failing the test) if they are not a message.
pub fn reply_of(raw: &[u8]) -> Reply {
    let m = MessageParser::default().parse(raw).expect("the reply parses as a message");
    let first = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_string)
    };
    let raw_header = |name: &str| m.header_raw(name).map(|v| v.trim().to_string());
    Reply {
        from: first(m.from()).unwrap_or_default(),
        to: m
            .to()
            .map(|a| a.iter().filter_map(|a| a.address()).map(str::to_string).collect())
            .unwrap_or_default(),
        reply_to: first(m.reply_to()),
        subject: m.subject().unwrap_or_default().to_string(),
        message_id: m.message_id().unwrap_or_default().to_string(),
        in_reply_to: ids(m.in_reply_to()).into_iter().next(),
        references: ids(m.references()),
        auto_submitted: raw_header("Auto-Submitted"),
        x_loop: raw_header("X-Loop"),
        body: m.body_text(0).map(|b| b.replace("\r\n", "\n")).unwrap_or_default(),
        attachments: m
            .attachments()
            .map(|a| (a.attachment_name().unwrap_or_default().to_string(), a.contents().to_vec()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in cases {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }
}
