//! One IMAP command and everything the server says until its tagged completion, read here
//! rather than through async-imap's command helpers: those end a FETCH's stream at any tagged
//! line without looking at its status, and end it silently when the server says `* BYE` and
//! closes, so a refusal or a goodbye looked like an empty answer. Here a NO or BAD is a
//! [`Fault::Command`], a BYE or a closed connection a [`Fault::Connection`], and the untagged
//! news that came on the way (EXISTS, EXPUNGE) is kept for the caller.
//!
//! Owns reading responses; must not decide what a command means for the mailbox (`ops` does).

use super::{Fault, Session};
use async_imap::imap_proto::{
    AttributeValue, Capability, MailboxDatum, NameAttribute, Response, ResponseCode, Status,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// INTERNALDATE as IMAP writes it (RFC 3501 §9 date-time), e.g. `17-Jul-1996 02:44:25 -0700`.
const DATE_TIME: &str = "%d-%b-%Y %H:%M:%S %z";

/// One message's attributes from a FETCH answer.
#[derive(Debug, Default)]
pub struct Fetched {
    pub uid: Option<u32>,
    pub deleted: bool,
    pub size: Option<u64>,
    pub internal_date: Option<DateTime<Utc>>,
    pub body: Option<Vec<u8>>,
}

/// One name from a LIST answer, as the server wrote it (modified UTF-7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub name: String,
    pub delimiter: Option<String>,
    /// `\Noselect` or `\NonExistent`: a level of the hierarchy, not a folder to use.
    pub unusable: bool,
}

/// What the server said about the selected folder without being asked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct News {
    /// `* n EXISTS`: mail may have arrived.
    pub exists: bool,
    /// `* n EXPUNGE` or `* VANISHED`: messages left the folder.
    pub expunged: bool,
}

impl News {
    pub fn add(&mut self, other: News) {
        self.exists |= other.exists;
        self.expunged |= other.expunged;
    }
}

/// Everything a command's answer carried.
#[derive(Debug, Default)]
pub struct Answer {
    pub fetched: Vec<Fetched>,
    pub names: Vec<Name>,
    pub capabilities: Vec<String>,
    pub uid_validity: Option<u32>,
    pub news: News,
}

/// Runs `command` under the time limit `t` and reads its answer to the tagged completion.
pub async fn run(s: &mut Session, command: &str, what: &str, t: Duration) -> Result<Answer, Fault> {
    match tokio::time::timeout(t, read(s, command, what)).await {
        Ok(answer) => answer,
        Err(_) => Err(Fault::Connection(format!("{what}: no answer within {t:?}"))),
    }
}

async fn read(s: &mut Session, command: &str, what: &str) -> Result<Answer, Fault> {
    let lost = |e: &dyn std::fmt::Display| Fault::Connection(format!("{what}: {e}"));
    let id = s.run_command(command).await.map_err(|e| lost(&e))?;
    let mut answer = Answer::default();
    loop {
        let Some(response) = s.read_response().await.map_err(|e| lost(&e))? else {
            return Err(Fault::Connection(format!(
                "{what}: the server closed the connection without answering"
            )));
        };
        match response.parsed() {
            Response::Done { tag, status, outcome } if *tag == id => {
                let text = outcome.information.as_deref().unwrap_or("").trim().to_string();
                return match status {
                    Status::Ok => Ok(answer),
                    Status::No | Status::Bad => {
                        Err(Fault::Command(format!("{what} refused: {text}")))
                    }
                    _ => Err(Fault::Protocol(format!("{what}: unexpected answer {text}"))),
                };
            }
            Response::Data { status: Status::Bye, outcome } => {
                let text = outcome.information.as_deref().unwrap_or("").trim();
                return Err(Fault::Connection(format!(
                    "{what}: the server said BYE instead of answering: {text}"
                )));
            }
            Response::Data { outcome, .. } => {
                if let Some(ResponseCode::UidValidity(v)) = outcome.code {
                    answer.uid_validity = Some(v);
                }
            }
            Response::Fetch(_, attributes) => answer.fetched.push(fetched(attributes)),
            Response::MailboxData(MailboxDatum::Exists(_)) => answer.news.exists = true,
            Response::MailboxData(MailboxDatum::List(list)) => answer.names.push(Name {
                name: list.name.to_string(),
                delimiter: list.delimiter.as_deref().map(str::to_string),
                unusable: list.name_attributes.iter().any(|a| {
                    matches!(a, NameAttribute::NoSelect)
                        || matches!(a, NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent"))
                }),
            }),
            Response::Capabilities(caps) => {
                answer.capabilities.extend(caps.iter().map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                    Capability::Auth(m) => format!("AUTH={}", m.to_ascii_uppercase()),
                    Capability::Atom(a) => a.to_ascii_uppercase(),
                }));
            }
            Response::Expunge(_) | Response::Vanished { .. } => answer.news.expunged = true,
            // Another tag, a continuation, flags, quota…: nothing we act on.
            _ => {}
        }
    }
}

fn fetched(attributes: &[AttributeValue<'_>]) -> Fetched {
    let mut f = Fetched::default();
    for a in attributes {
        match a {
            AttributeValue::Uid(uid) => f.uid = Some(*uid),
            AttributeValue::Flags(flags) => {
                f.deleted = flags.iter().any(|fl| fl.eq_ignore_ascii_case("\\Deleted"))
            }
            AttributeValue::Rfc822Size(size) => f.size = Some(u64::from(*size)),
            AttributeValue::InternalDate(d) => {
                f.internal_date = DateTime::parse_from_str(d.trim(), DATE_TIME)
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            }
            AttributeValue::BodySection { data: Some(data), .. }
            | AttributeValue::Rfc822(Some(data)) => f.body = Some(data.to_vec()),
            _ => {}
        }
    }
    f
}

/// A string as an IMAP quoted string (RFC 3501 §9 `quoted`); names are already modified UTF-7,
/// so only `"` and `\` need escaping and nothing needs a literal.
pub fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
