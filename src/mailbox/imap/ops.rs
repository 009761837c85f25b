//! The IMAP commands the source runs, each under the command time limit: finding folders as the
//! server names them, listing new mail by UID range, fetching without setting \Seen, moving out,
//! and waiting for mail with one IDLE held until the server speaks (or NOOP, only to keep a
//! session alive).
//!
//! Owns the command texts and what their answers mean; must not reconnect or decide retries
//! (that is `super`, which drops the session on any `Fault::Connection`).

use super::answer::{self, quoted, Answer, Name};
use super::connect::limit;
use super::{utf7, Fault, Live, Session};
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response, Status};
use async_imap::types::UnsolicitedResponse;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

/// RFC 2177: re-issue IDLE at least every 29 minutes, before servers drop idle clients.
pub const IDLE_MAX: Duration = Duration::from_secs(29 * 60);

/// One message in the folder, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub uid: u32,
    pub internal_date: DateTime<Utc>,
    pub size: u64,
}

/// What the server offers that changes how we work.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub idle: bool,
    pub r#move: bool,
    pub uidplus: bool,
}

pub async fn capabilities(s: &mut Session, t: Duration) -> Result<Caps, Fault> {
    let caps = answer::run(s, "CAPABILITY", "CAPABILITY", t).await?.capabilities;
    let has = |c: &str| caps.iter().any(|x| x == c);
    Ok(Caps { idle: has("IDLE"), r#move: has("MOVE"), uidplus: has("UIDPLUS") })
}

/// The server's own name for the folder the config calls `name`, creating it if `create` and
/// the server has none. Names are compared as the server reports them (decoded from modified
/// UTF-7): the exact name first, else the one name that differs only in case — which a server
/// returns for our LIST pattern only when it treats names without regard to case (Exchange), or
/// treats `INBOX` so in a hierarchy under it (Cyrus's `INBOX.Processed` for `Inbox.Processed`).
/// INBOX itself is always `INBOX` (RFC 3501 §5.1).
pub async fn find_folder(
    s: &mut Session,
    name: &str,
    create: bool,
    t: Duration,
) -> Result<String, Fault> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    let encoded = utf7::encode(name);
    if let Some(found) = pick(&list(s, &encoded, t).await?, name) {
        return Ok(found);
    }
    if !create {
        return Err(Fault::Setup(format!("the IMAP server has no folder {name:?}")));
    }
    tracing::info!(folder = name, "creating IMAP folder");
    let refused = match answer::run(s, &format!("CREATE {}", quoted(&encoded)), "CREATE", t).await {
        Ok(_) => return Ok(pick(&list(s, &encoded, t).await?, name).unwrap_or(encoded)),
        Err(Fault::Command(why)) => why,
        Err(other) => return Err(other),
    };
    // Refused: another session may have made it meanwhile (a standby daemon, or this one's own
    // earlier session still closing), or the server holds it under a name our pattern missed.
    let all = list(s, "*", t).await?;
    match pick(&all, name) {
        Some(found) => {
            tracing::info!(
                folder = name,
                server_name = found,
                "IMAP folder found after CREATE was refused"
            );
            Ok(found)
        }
        None => Err(Fault::Setup(format!("cannot use IMAP folder {name:?}: {refused}"))),
    }
}

async fn list(s: &mut Session, pattern: &str, t: Duration) -> Result<Vec<Name>, Fault> {
    Ok(answer::run(s, &format!("LIST \"\" {}", quoted(pattern)), "LIST", t).await?.names)
}

/// The server's name for `wanted` among `names`: exact, else the only case-insensitive match.
fn pick(names: &[Name], wanted: &str) -> Option<String> {
    let usable: Vec<(&Name, String)> = names
        .iter()
        .filter(|n| !n.unusable)
        .map(|n| (n, utf7::decode(&n.name).unwrap_or_else(|| n.name.clone())))
        .collect();
    if let Some((n, _)) = usable.iter().find(|(_, shown)| shown == wanted) {
        return Some(n.name.clone());
    }
    let wanted = wanted.to_lowercase();
    let mut alike = usable.iter().filter(|(_, shown)| shown.to_lowercase() == wanted);
    match (alike.next(), alike.next()) {
        (Some((n, _)), None) => Some(n.name.clone()),
        _ => None,
    }
}

/// SELECT, returning the folder's UIDVALIDITY.
pub async fn select(s: &mut Session, server_name: &str, t: Duration) -> Result<u32, Fault> {
    let answer = answer::run(s, &format!("SELECT {}", quoted(server_name)), "SELECT", t).await?;
    answer.uid_validity.ok_or_else(|| Fault::Protocol("SELECT gave no UIDVALIDITY".into()))
}

/// A command on the selected folder; what it announced on the way is kept in `live.news`.
async fn on_folder(
    live: &mut Live,
    command: &str,
    what: &str,
    t: Duration,
) -> Result<Answer, Fault> {
    let answer = answer::run(&mut live.session, command, what, t).await?;
    live.news.add(answer.news);
    Ok(answer)
}

/// The messages with a UID above `after`, oldest first: one command, `UID FETCH after+1:*`
/// (the whole folder when `after` is 0). Messages flagged \Deleted (a half-done move without
/// MOVE) are left out: they are processed already. A server answers `n:*` with the last message
/// even when `n` is past it (RFC 3501 §6.4.8), so UIDs not above `after` are dropped here.
pub async fn list_after(live: &mut Live, after: u32, t: Duration) -> Result<Vec<Listed>, Fault> {
    let from = after.saturating_add(1);
    let command = format!("UID FETCH {from}:* (UID FLAGS RFC822.SIZE INTERNALDATE)");
    let answer = on_folder(live, &command, "UID FETCH (list)", t).await?;
    let mut listed = Vec::with_capacity(answer.fetched.len());
    for f in answer.fetched {
        // An unsolicited FETCH (flags of another message) carries no UID.
        let Some(uid) = f.uid.filter(|uid| *uid > after) else { continue };
        if f.deleted {
            continue;
        }
        let internal_date = f
            .internal_date
            .ok_or_else(|| Fault::Protocol(format!("no INTERNALDATE for UID {uid}")))?;
        listed.push(Listed { uid, internal_date, size: f.size.unwrap_or(0) });
    }
    listed.sort_by_key(|l| (l.internal_date, l.uid));
    Ok(listed)
}

/// The message's bytes, at most `cap` of them (a partial fetch beyond it, so an enormous
/// message never sits whole in memory); `None` when the UID is no longer there.
pub async fn fetch(
    live: &mut Live,
    uid: u32,
    size: Option<u64>,
    cap: u64,
    t: Duration,
) -> Result<Option<Vec<u8>>, Fault> {
    let query = match size {
        Some(size) if size > cap => format!("(UID BODY.PEEK[]<0.{cap}>)"),
        _ => "(UID BODY.PEEK[])".to_string(),
    };
    let answer =
        on_folder(live, &format!("UID FETCH {uid} {query}"), "UID FETCH (body)", t).await?;
    // The server may answer with more than one FETCH for the UID (a flag change it reports on
    // the way): take the one that carries the body.
    Ok(answer.fetched.into_iter().filter(|f| f.uid == Some(uid)).find_map(|f| f.body))
}

/// Several whole messages in one command (`UID FETCH 3,4,9 (UID BODY.PEEK[])`): one round trip
/// for a batch instead of one per message. UIDs no longer there are simply absent.
pub async fn fetch_set(
    live: &mut Live,
    uids: &[u32],
    t: Duration,
) -> Result<HashMap<u32, Vec<u8>>, Fault> {
    let command = format!("UID FETCH {} (UID BODY.PEEK[])", set(uids));
    let answer = on_folder(live, &command, "UID FETCH (bodies)", t).await?;
    Ok(answer
        .fetched
        .into_iter()
        .filter_map(|f| Some((f.uid?, f.body?)))
        .filter(|(uid, _)| uids.contains(uid))
        .collect())
}

/// The size of one message, `None` when it is gone.
pub async fn size(live: &mut Live, uid: u32, t: Duration) -> Result<Option<u64>, Fault> {
    let answer =
        on_folder(live, &format!("UID FETCH {uid} (UID RFC822.SIZE)"), "UID FETCH (size)", t)
            .await?;
    let answers: Vec<_> = answer.fetched.iter().filter(|f| f.uid == Some(uid)).collect();
    Ok(match answers.iter().find_map(|f| f.size) {
        Some(size) => Some(size),
        None if answers.is_empty() => None,
        None => Some(0),
    })
}

/// Moves messages to the processed folder: UID MOVE (RFC 6851) when offered, otherwise COPY,
/// flag \Deleted and expunge (only those UIDs with UIDPLUS, RFC 4315). A UID already gone is no
/// error: the servers answer OK with nothing done. A refusal (NO) is a `Fault::Command`, and the
/// session stays. The EXPUNGEs our own move causes are not news.
pub async fn move_out(
    live: &mut Live,
    uids: &[u32],
    caps: &Caps,
    t: Duration,
) -> Result<(), Fault> {
    let before = live.news;
    let result = move_set(live, &set(uids), caps, t).await;
    live.news.expunged = before.expunged;
    result
}

async fn move_set(live: &mut Live, set: &str, caps: &Caps, t: Duration) -> Result<(), Fault> {
    let dest = quoted(&live.processed);
    if caps.r#move {
        return on_folder(live, &format!("UID MOVE {set} {dest}"), "UID MOVE", t).await.map(drop);
    }
    on_folder(live, &format!("UID COPY {set} {dest}"), "UID COPY", t).await?;
    let store = format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)");
    on_folder(live, &store, "UID STORE", t).await?;
    if caps.uidplus {
        on_folder(live, &format!("UID EXPUNGE {set}"), "UID EXPUNGE", t).await?;
    } else {
        on_folder(live, "EXPUNGE", "EXPUNGE", t).await?;
    }
    Ok(())
}

fn set(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// NOOP: keeps a session that is not in IDLE from being logged out as idle (servers may after
/// 30 minutes, RFC 3501 §5.4), and hears what the server has to tell.
pub async fn noop(live: &mut Live, t: Duration) -> Result<(), Fault> {
    on_folder(live, "NOOP", "NOOP", t).await.map(drop)
}

/// Why an IDLE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// The server announced mail (EXISTS) or something we do not know (listed again).
    News,
    /// `wait` passed (at most [`IDLE_MAX`]): time to re-issue IDLE.
    Refresh,
    /// Shutdown was requested.
    Stopped,
}

/// One IDLE held until the server announces mail, `wait` passes or `stop` resolves, then DONE.
/// Keepalives (`* OK Still here`) and news that is not mail (a flag changed by another client,
/// an EXPUNGE, which is noted in `live.news`) do not end it.
pub async fn idle(
    mut live: Live,
    wait: Duration,
    t: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(Live, Woke), Fault> {
    let wait = wait.min(IDLE_MAX);
    let mut handle = live.session.idle();
    limit(t, "IDLE", handle.init()).await?;
    let deadline = tokio::time::Instant::now() + wait;
    tokio::pin!(stop);
    let woke = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (fut, _interrupt) = handle.wait_with_timeout(left);
        let response = tokio::select! {
            r = fut => Some(r),
            () = &mut stop => None,
        };
        let Some(response) = response else { break Woke::Stopped };
        match response {
            Ok(IdleResponse::NewData(data)) => match data.parsed() {
                Response::MailboxData(MailboxDatum::Exists(_)) => {
                    live.news.exists = true;
                    break Woke::News;
                }
                Response::Expunge(_) | Response::Vanished { .. } => live.news.expunged = true,
                Response::Fetch(..) | Response::MailboxData(MailboxDatum::Recent(_)) => {}
                Response::MailboxData(MailboxDatum::Flags(_)) => {}
                Response::Data { status: Status::Bye, outcome } => {
                    let text = outcome.information.as_deref().unwrap_or("").trim();
                    return Err(Fault::Connection(format!("IDLE: the server said BYE: {text}")));
                }
                _ => break Woke::News,
            },
            // The time ran out, or the connection closed (found out by DONE below).
            Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt) => {
                if tokio::time::Instant::now() >= deadline {
                    break Woke::Refresh;
                }
                break Woke::News;
            }
            Err(e) => return Err(Fault::Connection(format!("IDLE: {e}"))),
        }
    };
    live.session = limit(t, "DONE", handle.done()).await?;
    if drain(&mut live.session)? {
        live.news.exists = true;
    }
    Ok((live, woke))
}

/// Reads what async-imap kept aside during IDLE (responses not about the IDLE itself): whether
/// mail was announced, or an error if the server said BYE.
pub fn drain(s: &mut Session) -> Result<bool, Fault> {
    let mut news = false;
    while let Ok(r) = s.unsolicited_responses.try_recv() {
        match r {
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_) => news = true,
            UnsolicitedResponse::Other(data) => {
                if let Response::Data { status: Status::Bye, outcome } = data.parsed() {
                    let text = outcome.information.as_deref().unwrap_or("").trim().to_string();
                    return Err(Fault::Connection(format!("the server said BYE: {text}")));
                }
            }
            _ => {}
        }
    }
    Ok(news)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Name {
        Name { name: n.into(), delimiter: Some("/".into()), unusable: false }
    }

    #[test]
    fn a_folder_is_picked_exactly_else_by_the_one_name_alike_in_case() {
        let names = [name("Processed"), name("processed"), name("Other")];
        assert_eq!(pick(&names, "processed").as_deref(), Some("processed"));
        assert_eq!(pick(&names, "PROCESSED"), None, "two alike: neither is guessed");
        assert_eq!(pick(&[name("Processed")], "processed").as_deref(), Some("Processed"));
        assert_eq!(
            pick(&[name("INBOX.Processed")], "Inbox.Processed").as_deref(),
            Some("INBOX.Processed")
        );
        let utf7 = [name("Verarbeitet/R&APw-ckl&AOQ-ufer")];
        assert_eq!(
            pick(&utf7, "Verarbeitet/Rückläufer").as_deref(),
            Some("Verarbeitet/R&APw-ckl&AOQ-ufer")
        );
        assert_eq!(
            pick(&utf7, "verarbeitet/rückläufer").as_deref(),
            Some("Verarbeitet/R&APw-ckl&AOQ-ufer")
        );
        let hierarchy = [Name { unusable: true, ..name("Processed") }];
        assert_eq!(pick(&hierarchy, "Processed"), None, "a \\Noselect level is no folder");
    }
}
