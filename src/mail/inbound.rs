//! One inbound message as the rest of the daemon sees it: who sent it, its subject, threading
//! ids, the signs of automatic mail, a plain-text body and every attachment. Parsing never fails:
//! whatever could not be read is listed in [`Inbound::problems`] and the rest is kept.
//!
//! Owns header reading only; the MIME tree walk lives in `parts`, names and kinds in
//! `attachment`. Decisions about what the message *is* belong to `classify`.

use super::attachment::Attachment;
use super::parts;
use super::zipped::{self, ZipLimits};
use chrono::{DateTime, FixedOffset};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser};
use serde::Serialize;

/// A sender or recipient: the address lower-cased (how the registry stores submitters) and the
/// display name as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub address: String,
    pub name: Option<String>,
}

/// The header signs of automatic mail, as found (values lower-cased and trimmed). `classify`
/// decides what they mean; keeping the raw signs lets the store show *why* mail went unanswered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AutoSignals {
    /// `Auto-Submitted` (RFC 3834 §5): `no` means a person sent it; anything else is automatic.
    pub auto_submitted: Option<String>,
    /// `Precedence` (RFC 3834 §3.1.8 names `bulk`, `junk`, `list`).
    pub precedence: Option<String>,
    /// `List-Id` (RFC 2919).
    pub list_id: Option<String>,
    /// `Return-Path` without the angle brackets; `Some("")` is the null path `<>` that delivery
    /// reports carry (RFC 5321 §4.5.5).
    pub return_path: Option<String>,
    /// Every `X-Loop` value (the loop marker convention of many list and auto-reply programs).
    pub x_loop: Vec<String>,
    /// Names of the well-known non-standard headers present (see [`EXTRA_AUTO_HEADERS`]).
    pub extra_headers: Vec<String>,
}

/// Non-standard headers that automatic senders add, recorded by name. Which of them `classify`
/// treats as decisive is documented there.
pub const EXTRA_AUTO_HEADERS: &[&str] = &[
    // vacation programs and many helpdesk tools
    "X-Autoreply",
    "X-Autorespond",
    // Exim and others on their bounces
    "X-Failed-Recipients",
    // Exchange marks mail produced or redirected by an inbox rule
    "X-MS-Exchange-Inbox-Rules-Loop",
];

/// A delivery or read report (`multipart/report`, RFC 6522), or a bounce in an older free form
/// (from MAILER-DAEMON or with `X-Failed-Recipients`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// `report-type` of the `multipart/report`: `delivery-status` (RFC 3464),
    /// `disposition-notification` (a read receipt, RFC 8098)…; `None` for a free-form bounce.
    pub report_type: Option<String>,
    /// The per-recipient `Action:` values of a delivery status (`failed`, `delayed`,
    /// `delivered`, `relayed`, `expanded`), lower-cased.
    pub actions: Vec<String>,
    /// Message-ID of the message reported on, from the enclosed `message/rfc822` or
    /// `text/rfc822-headers` part (or, for a free-form bounce, a quoted `Message-ID:` line).
    pub original_message_id: Option<String>,
}

impl DeliveryReport {
    /// True when the report says a message could not be delivered: a delivery status with a
    /// `failed` action, or one whose actions could not be read (a bounce that is hard to read is
    /// still a bounce), or a free-form bounce.
    pub fn is_failure(&self) -> bool {
        match self.report_type.as_deref() {
            None => true,
            Some("delivery-status") | Some("global-delivery-status") => {
                self.actions.is_empty() || self.actions.iter().any(|a| a == "failed")
            }
            Some(_) => false,
        }
    }
}

/// A parsed inbound message. Every field is best effort; see `problems`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inbound {
    /// Message-ID without the angle brackets.
    pub message_id: Option<String>,
    /// The From mailbox (the last From header's first mailbox, as mail-parser reads it). Trust
    /// it only when `from_problem` is `None`.
    pub from: Option<Mailbox>,
    /// Why the From header does not name exactly one sender (SPEC §4a): such a message is never
    /// accepted, whoever it claims to be from.
    pub from_problem: Option<FromProblem>,
    /// The display name of a From mailbox whose address is empty (`MAILER-DAEMON <>`).
    pub from_bare_name: Option<String>,
    pub reply_to: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Decoded (RFC 2047, any charset; raw 8-bit read as Windows-1252), whitespace collapsed.
    pub subject: String,
    pub date: Option<DateTime<FixedOffset>>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub signals: AutoSignals,
    pub report: Option<DeliveryReport>,
    /// The first text body (HTML turned into text when there is no plain part), at most
    /// [`BODY_LIMIT`] bytes.
    pub body: String,
    pub attachments: Vec<Attachment>,
    /// What could not be read, in words for the audit trail: broken MIME, undecodable parts,
    /// missing headers, limits reached.
    pub problems: Vec<String>,
    /// The parts of the message's structure that were not read, each kind once, in order: where
    /// a return may have been lost. `classify` reads this, never the words in `problems`.
    pub unread: Vec<Unread>,
    /// Names of the attachments past the per-message cap, which were not read: the reply names
    /// them (SPEC §4b "nothing is silent").
    pub skipped: Vec<String>,
}

/// Why a From header does not name exactly one mailbox with a local part and a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FromProblem {
    /// No From header at all.
    Missing,
    /// More than one From header (RFC 5322 §3.6 allows exactly one).
    SeveralHeaders,
    /// One header naming several mailboxes (`From: ann, mallory` or two addresses).
    SeveralMailboxes,
    /// A group (`From: team: a@x, b@y;`).
    Group,
    /// An address without a local part (`@leeds.nhs.test`) or without a domain.
    Incomplete,
    /// An obsolete source route (`<@relay:ann@leeds.nhs.test>`, RFC 5322 §4.4).
    SourceRoute,
}

impl FromProblem {
    /// In words for the Data Collection Team.
    pub fn describe(self) -> &'static str {
        match self {
            FromProblem::Missing => "the message has no From header",
            FromProblem::SeveralHeaders => "the message has more than one From header",
            FromProblem::SeveralMailboxes => "the From header names more than one mailbox",
            FromProblem::Group => "the From header is a group of addresses",
            FromProblem::Incomplete => {
                "the From address has no local part or no domain (for example @leeds.nhs.test)"
            }
            FromProblem::SourceRoute => "the From address carries a source route",
        }
    }
}

/// A part of a message's MIME structure that was not read, so an attachment in it is unseen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unread {
    /// A multipart whose boundary is missing, never appears or is never closed: its parts could
    /// not be split, or the message was cut short.
    BrokenMime,
    /// A forwarded message nested deeper than the walk follows was not opened.
    NestingCut,
    /// Attachments past the cap were not kept.
    AttachmentCap,
    /// Only the headers were read: the MIME tree was too deep or could not be read at all.
    HeadersOnly,
    /// A spreadsheet in an attached archive could not be unpacked (a password, a limit, damage).
    ArchiveEntry,
}

impl Unread {
    /// What was not read, in words a sender understands (listed where a file name would be).
    pub fn describe(self) -> String {
        match self {
            Unread::BrokenMime => {
                "(attachments hidden by the message's damaged MIME structure)".to_string()
            }
            Unread::NestingCut => {
                format!("(a forwarded message nested more than {} levels deep)", parts::MAX_DEPTH)
            }
            Unread::AttachmentCap => {
                format!("(attachments after the first {})", parts::MAX_ATTACHMENTS)
            }
            Unread::HeadersOnly => "(the whole message: its structure could not be read)".into(),
            Unread::ArchiveEntry => {
                "(a spreadsheet in an attached archive that could not be unpacked)".into()
            }
        }
    }
}

/// Longest subject kept, in characters: far past any real subject (RFC 5322 lines stop at 998),
/// and it bounds the cost of matching names in a hostile one.
pub const SUBJECT_LIMIT: usize = 1000;
/// Most `X-Loop` values kept; a real message carries one or two.
const SIGNAL_VALUES_LIMIT: usize = 32;

/// Longest body kept: enough to route any real question, small enough that a hostile 25 MB text
/// body is not copied around.
pub const BODY_LIMIT: usize = 64 * 1024;

impl Inbound {
    /// Read a raw RFC 5322 message with the default limits for archives. Never fails:
    /// unreadable input gives an `Inbound` with empty fields and a problem saying so.
    pub fn parse(raw: &[u8]) -> Inbound {
        Inbound::parse_with(raw, ZipLimits::default())
    }

    /// [`Inbound::parse`], opening attached archives within `zip_limits`.
    pub fn parse_with(raw: &[u8], zip_limits: ZipLimits) -> Inbound {
        let mut headers_only = nesting_markers_exceed(raw, NESTING_MARKERS_LIMIT).then(|| {
            format!("more than {NESTING_MARKERS_LIMIT} nested-message markers; only the headers were read")
        });
        let parser = parser();
        let parsed = if headers_only.is_some() {
            parser.parse_headers(raw)
        } else {
            // mail-parser promises never to panic, but keeps `debug_assert!`s on states a
            // hostile MIME tree can reach (found by the `mail` fuzz target): should one fire,
            // read the headers only, as for a message nested too deep.
            std::panic::catch_unwind(|| parser.parse(raw)).unwrap_or_else(|_| {
                headers_only =
                    Some("the MIME structure could not be read; only the headers were read".into());
                parser.parse_headers(raw)
            })
        };
        let Some(message) = parsed else {
            return Inbound {
                problems: vec!["no message headers could be read".to_string()],
                ..Inbound::default()
            };
        };
        let mut inbound = Inbound {
            message_id: message.message_id().and_then(clean_id),
            from: message.from().and_then(|a| mailboxes(a).into_iter().next()),
            from_problem: from_problem(&message),
            from_bare_name: bare_name(&message),
            reply_to: message.reply_to().map(mailboxes).unwrap_or_default(),
            to: message.to().map(mailboxes).unwrap_or_default(),
            cc: message.cc().map(mailboxes).unwrap_or_default(),
            subject: subject(&message),
            date: message.date().and_then(|d| DateTime::parse_from_rfc3339(&d.to_rfc3339()).ok()),
            in_reply_to: ids(message.in_reply_to()),
            references: ids(message.references()),
            signals: signals(&message),
            ..Inbound::default()
        };
        for (present, what) in [
            (inbound.message_id.is_some(), "Message-ID"),
            (inbound.from.is_some(), "From address"),
            (inbound.date.is_some(), "Date"),
        ] {
            if !present {
                inbound.problems.push(format!("no readable {what}"));
            }
        }
        if let Some(problem) = headers_only {
            inbound.problems.push(problem);
            inbound.unread.push(Unread::HeadersOnly);
            return inbound;
        }
        let walked = parts::walk(&message);
        inbound.body = walked.body;
        inbound.attachments = walked.attachments;
        inbound.report = walked.report;
        inbound.problems.extend(walked.problems);
        inbound.unread = walked.unread;
        inbound.skipped = walked.skipped;
        unzip(&mut inbound, zip_limits);
        inbound.unread.sort();
        inbound.unread.dedup();
        if inbound.report.is_none() && inbound.looks_like_free_form_bounce() {
            inbound.report = Some(DeliveryReport {
                report_type: None,
                actions: Vec::new(),
                original_message_id: walked
                    .enclosed_message_id
                    .or_else(|| quoted_id(&inbound.body)),
            });
        }
        inbound
    }

    /// The sender's address, lower-cased, if the From header could be read.
    pub fn sender(&self) -> Option<&str> {
        self.from.as_ref().map(|m| m.address.as_str())
    }

    /// Older MTAs bounce with a plain message from MAILER-DAEMON instead of a
    /// `multipart/report`; Exim adds `X-Failed-Recipients` to those.
    fn looks_like_free_form_bounce(&self) -> bool {
        self.signals.extra_headers.iter().any(|h| h == "X-Failed-Recipients")
            || self.sender().is_some_and(is_daemon_address)
    }
}

/// Each attached archive's spreadsheets join the attachments (SPEC §4b), within the per-message
/// cap; what could not be unpacked is noted.
fn unzip(inbound: &mut Inbound, limits: ZipLimits) {
    let archives: Vec<usize> = (0..inbound.attachments.len())
        .filter(|&i| zipped::is_archive(&inbound.attachments[i]))
        .collect();
    for i in archives {
        let room = parts::MAX_ATTACHMENTS.saturating_sub(inbound.attachments.len());
        let out = zipped::spreadsheets(&inbound.attachments[i], limits, room);
        if !out.problems.is_empty() {
            inbound.unread.push(Unread::ArchiveEntry);
        }
        inbound.problems.extend(out.problems);
        inbound.attachments.extend(out.attachments);
    }
}

/// mail-parser nests `message/rfc822`, `message/global` and `multipart/digest` parts without a
/// limit, and dropping a message nested tens of thousands deep overflows the stack. Every level
/// needs one of these words in a content type, so a message holding more of them than this is
/// read for its headers only. Real mail holds a handful.
const NESTING_MARKERS_LIMIT: usize = 256;

/// Whether `raw` holds more than `limit` of the words `rfc822`, `global`, `digest` (any case).
fn nesting_markers_exceed(raw: &[u8], limit: usize) -> bool {
    // Every byte of every message passes here: one test of the byte picks the only word that
    // can start at it, so the loop stays a plain scan (a window per byte checked against all
    // three words cost 3% of the daemon's CPU in a burst).
    let mut seen = 0;
    for (i, &b) in raw.iter().enumerate() {
        let word: &[u8; 6] = match b | 0x20 {
            b'r' => b"rfc822",
            b'g' => b"global",
            b'd' => b"digest",
            _ => continue,
        };
        if raw.get(i..i + 6).is_some_and(|w| w.eq_ignore_ascii_case(word)) {
            seen += 1;
            if seen > limit {
                return true;
            }
        }
    }
    false
}

/// MAILER-DAEMON and postmaster (RFC 5321 §4.5.1) send bounces, never questions or returns.
pub fn is_daemon_address(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or_default();
    local.eq_ignore_ascii_case("mailer-daemon") || local.eq_ignore_ascii_case("postmaster")
}

/// SPEC §4a: exactly one From header holding exactly one mailbox with a local part and a domain.
fn from_problem(message: &Message<'_>) -> Option<FromProblem> {
    let headers: Vec<_> = message.headers().iter().filter(|h| h.name == HeaderName::From).collect();
    let header = match headers.as_slice() {
        [] => return Some(FromProblem::Missing),
        [one] => one,
        _ => return Some(FromProblem::SeveralHeaders),
    };
    let raw = message
        .raw_message()
        .get(header.offset_start as usize..header.offset_end as usize)
        .unwrap_or_default();
    // `<@relay.test:ann@…>` or `<@a,@b:ann@…>`: mail-parser drops the route silently.
    if raw.windows(2).any(|w| w == b"<@") {
        return Some(FromProblem::SourceRoute);
    }
    let addrs = match header.value.as_address() {
        Some(Address::List(list)) => list.as_slice(),
        Some(Address::Group(_)) => return Some(FromProblem::Group),
        None => return Some(FromProblem::Incomplete),
    };
    let [addr] = addrs else {
        return Some(if addrs.is_empty() {
            FromProblem::Incomplete
        } else {
            FromProblem::SeveralMailboxes
        });
    };
    let address = addr.address.as_deref().unwrap_or_default().trim();
    match address.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !local.contains('@') =>
        {
            None
        }
        _ => Some(FromProblem::Incomplete),
    }
}

/// The name of a From mailbox given with an empty address (`MAILER-DAEMON <>`).
fn bare_name(message: &Message<'_>) -> Option<String> {
    let Some(Address::List(list)) = message.from() else { return None };
    let addr = list.first()?;
    let empty = addr.address.as_deref().is_none_or(|a| a.trim().is_empty());
    let name = addr.name.as_deref().map(collapse).filter(|n| !n.is_empty())?;
    empty.then_some(name)
}

fn mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
    address
        .iter()
        .filter_map(|a| {
            let addr = a.address.as_deref()?.trim().to_lowercase();
            let name = a.name.as_deref().map(collapse).filter(|n| !n.is_empty());
            (!addr.is_empty()).then_some(Mailbox { address: addr, name })
        })
        .collect()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => clean_id(t).into_iter().collect(),
        HeaderValue::TextList(list) => list.iter().filter_map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    }
}

fn clean_id(id: &str) -> Option<String> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The parser, reading into structure only the headers this crate reads that way (MIME,
/// addresses, dates, message ids, the subject); the rest stay raw text. By default mail-parser
/// also takes apart every `Received:` line, of which relayed mail carries several, for nothing.
pub(crate) fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_address_headers()
        .with_date_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
}

/// The subject, decoded. mail-parser decodes RFC 2047 words (split words and mixed charsets
/// included) but reads raw 8-bit bytes as UTF-8 with replacement characters; old clients send
/// Windows-1252 there, so such a subject is decoded as Windows-1252 first and its encoded words
/// after.
fn subject(message: &Message<'_>) -> String {
    let decoded = match raw_header(message, &HeaderName::Subject) {
        Some(raw) if std::str::from_utf8(raw).is_err() => {
            let text = decode_8bit(raw);
            let synthetic = format!("Subject:{text}\r\n\r\n");
            parser()
                .parse_headers(synthetic.as_bytes())
                .and_then(|m| m.subject().map(str::to_string))
                .unwrap_or(text)
        }
        _ => message.subject().unwrap_or_default().to_string(),
    };
    let mut subject = collapse(&decoded);
    if let Some((cut, _)) = subject.char_indices().nth(SUBJECT_LIMIT) {
        subject.truncate(cut);
    }
    subject
}

fn raw_header<'m>(message: &'m Message<'_>, name: &HeaderName<'_>) -> Option<&'m [u8]> {
    message
        .headers()
        .iter()
        .find(|h| &h.name == name)
        .and_then(|h| message.raw_message().get(h.offset_start as usize..h.offset_end as usize))
}

/// Raw header bytes as text: UTF-8 when valid (RFC 6532), otherwise Windows-1252.
pub(crate) fn decode_8bit(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => text.to_string(),
        Err(_) => match charset_decoder(b"windows-1252") {
            Some(decode) => decode(raw),
            None => String::from_utf8_lossy(raw).into_owned(),
        },
    }
}

/// Unfold and collapse whitespace; drop control characters.
pub(crate) fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if !word.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

fn signals(message: &Message<'_>) -> AutoSignals {
    let mut signals = AutoSignals::default();
    for header in message.headers() {
        let name = header.name.as_str();
        let Some(raw) =
            message.raw_message().get(header.offset_start as usize..header.offset_end as usize)
        else {
            continue;
        };
        // Decoded only for the few headers that are looked at, and only when one is.
        let value = || collapse(&decode_8bit(raw)).to_lowercase();
        if name.eq_ignore_ascii_case("Auto-Submitted") {
            // RFC 3834: the keyword may carry parameters (`auto-replied; owner=…`).
            let value = value();
            let keyword = value.split(';').next().unwrap_or_default().trim();
            signals.auto_submitted.get_or_insert_with(|| keyword.to_string());
        } else if name.eq_ignore_ascii_case("Precedence") {
            signals.precedence.get_or_insert_with(value);
        } else if name.eq_ignore_ascii_case("List-Id") {
            signals.list_id.get_or_insert_with(value);
        } else if name.eq_ignore_ascii_case("Return-Path") {
            let value = value();
            let path = value.trim().trim_start_matches('<').trim_end_matches('>').trim();
            signals.return_path.get_or_insert_with(|| path.to_string());
        } else if name.eq_ignore_ascii_case("X-Loop") {
            if signals.x_loop.len() < SIGNAL_VALUES_LIMIT {
                signals.x_loop.push(value());
            }
        } else if let Some(extra) = EXTRA_AUTO_HEADERS.iter().find(|h| name.eq_ignore_ascii_case(h))
        {
            if !signals.extra_headers.iter().any(|h| h == extra) {
                signals.extra_headers.push((*extra).to_string());
            }
        }
    }
    signals
}

/// A free-form bounce quotes the original's headers in its text; the first `Message-ID:` line
/// after the bounce's own headers is the original's.
fn quoted_id(body: &str) -> Option<String> {
    body.lines().find_map(|line| {
        let line = line.trim_start_matches(['>', ' ', '\t']);
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("message-id").then(|| clean_id(value)).flatten()
    })
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
