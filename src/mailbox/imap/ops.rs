//! The IMAP commands the source runs on a selected session, each under the command time limit:
//! listing by UID, fetching without setting \Seen, moving out, and waiting for new mail with IDLE
//! or NOOP.
//!
//! Owns the command texts and their answers; must not reconnect or decide retries (that is
//! `super`, which drops the session on any `Fault::Connection`).

use super::connect::limit;
use super::{Fault, Session};
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response};
use async_imap::types::{Flag, UnsolicitedResponse};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// RFC 2177: re-issue IDLE at least every 29 minutes, before servers drop idle clients.
pub const IDLE_MAX: Duration = Duration::from_secs(29 * 60);

/// How often a server without IDLE is asked (NOOP) whether mail arrived.
const NOOP_EVERY: Duration = Duration::from_millis(250);

/// One message in the folder, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub uid: u32,
    pub internal_date: DateTime<Utc>,
    pub size: u64,
}

/// What SELECT told us.
#[derive(Debug, Clone, Copy)]
pub struct Selected {
    pub uid_validity: u32,
}

/// Creates `folder` unless it exists (the processed folder is ours to make). Another session
/// (a standby daemon, or this one's own earlier session still closing) may create it between
/// our LIST and CREATE: a refused CREATE is fine when the folder is there after all.
pub async fn ensure_folder(s: &mut Session, folder: &str, t: Duration) -> Result<(), Fault> {
    if listed(s, folder, t).await? {
        return Ok(());
    }
    tracing::info!(folder, "creating IMAP folder");
    match limit(t, "CREATE", s.create(folder)).await {
        Ok(()) => Ok(()),
        Err(refused) => {
            if listed(s, folder, t).await? {
                tracing::info!(folder, "IMAP folder made meanwhile by another session");
                Ok(())
            } else {
                Err(refused)
            }
        }
    }
}

/// Whether LIST shows `folder`.
async fn listed(s: &mut Session, folder: &str, t: Duration) -> Result<bool, Fault> {
    let quoted = quote(folder)?;
    let names: Vec<_> = limit(t, "LIST", async {
        let stream = s.list(Some(""), Some(&quoted)).await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await?;
    Ok(names.iter().any(|n| n.name() == folder))
}

pub async fn select(s: &mut Session, folder: &str, t: Duration) -> Result<Selected, Fault> {
    quote(folder)?; // the library quotes it; this refuses names it cannot
    let mailbox = limit(t, "SELECT", s.select(folder)).await?;
    let uid_validity =
        mailbox.uid_validity.ok_or_else(|| Fault::Protocol("SELECT gave no UIDVALIDITY".into()))?;
    Ok(Selected { uid_validity })
}

/// Every message still in the folder with its arrival time and size, oldest first. Messages
/// flagged \Deleted (a half-done move without MOVE) are left out: they are processed already.
pub async fn list(s: &mut Session, t: Duration) -> Result<Vec<Listed>, Fault> {
    // NOOP first: it lets the server tell this session about messages another session moved
    // or expunged, which a FETCH alone may still show.
    limit(t, "NOOP", s.noop()).await?;
    let fetched = limit(t, "UID FETCH (list)", async {
        let stream = s.uid_fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)").await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await?;
    let mut listed = Vec::with_capacity(fetched.len());
    for f in &fetched {
        let Some(uid) = f.uid else { continue }; // an unsolicited FETCH (flags of another)
        if f.flags().any(|fl| fl == Flag::Deleted) {
            continue;
        }
        let internal_date = f
            .internal_date()
            .ok_or_else(|| Fault::Protocol(format!("no INTERNALDATE for UID {uid}")))?
            .with_timezone(&Utc);
        let size = f.size.map(u64::from).unwrap_or(0);
        listed.push(Listed { uid, internal_date, size });
    }
    listed.sort_by_key(|l| (l.internal_date, l.uid));
    Ok(listed)
}

/// The message's bytes, at most `cap` of them (a partial fetch beyond it, so an enormous
/// message never sits whole in memory); `None` when the UID is no longer there.
pub async fn fetch(
    s: &mut Session,
    uid: u32,
    size: Option<u64>,
    cap: u64,
    t: Duration,
) -> Result<Option<Vec<u8>>, Fault> {
    let query = match size {
        Some(size) if size > cap => format!("(UID BODY.PEEK[]<0.{cap}>)"),
        _ => "(UID BODY.PEEK[])".to_string(),
    };
    let fetched = limit(t, "UID FETCH (body)", async {
        let stream = s.uid_fetch(uid.to_string(), &query).await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await?;
    // The server may answer with more than one FETCH for the UID (a flag change it reports on
    // the way): take the one that carries the body.
    Ok(fetched.iter().filter(|f| f.uid == Some(uid)).find_map(|f| f.body()).map(<[u8]>::to_vec))
}

/// Several whole messages in one command (`UID FETCH 3,4,9 (UID BODY.PEEK[])`): one round trip
/// for a batch instead of one per message. UIDs no longer there are simply absent.
pub async fn fetch_set(
    s: &mut Session,
    uids: &[u32],
    t: Duration,
) -> Result<HashMap<u32, Vec<u8>>, Fault> {
    let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let fetched = limit(t, "UID FETCH (bodies)", async {
        let stream = s.uid_fetch(set, "(UID BODY.PEEK[])").await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await?;
    Ok(fetched
        .iter()
        .filter_map(|f| Some((f.uid?, f.body()?.to_vec())))
        .filter(|(uid, _)| uids.contains(uid))
        .collect())
}

/// The size of one message, `None` when it is gone.
pub async fn size(s: &mut Session, uid: u32, t: Duration) -> Result<Option<u64>, Fault> {
    let fetched = limit(t, "UID FETCH (size)", async {
        let stream = s.uid_fetch(uid.to_string(), "(UID RFC822.SIZE)").await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await?;
    let answers: Vec<_> = fetched.iter().filter(|f| f.uid == Some(uid)).collect();
    Ok(match answers.iter().find_map(|f| f.size) {
        Some(size) => Some(u64::from(size)),
        None if answers.is_empty() => None,
        None => Some(0),
    })
}

/// Moves one message to `dest`: UID MOVE (RFC 6851) when offered, otherwise COPY, flag
/// \Deleted and expunge (only that UID with UIDPLUS, RFC 4315). A UID already gone is no error:
/// the servers answer OK with nothing done.
pub async fn move_out(
    s: &mut Session,
    uids: &[u32],
    dest: &str,
    caps: &Caps,
    t: Duration,
) -> Result<(), Fault> {
    let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    if caps.r#move {
        return limit(t, "UID MOVE", s.uid_mv(&set, dest)).await;
    }
    limit(t, "UID COPY", s.uid_copy(&set, dest)).await?;
    limit(t, "UID STORE", async {
        let stream = s.uid_store(&set, "+FLAGS.SILENT (\\Deleted)").await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await?;
    if caps.uidplus {
        limit(t, "UID EXPUNGE", async {
            let stream = s.uid_expunge(&set).await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await?;
    } else {
        limit(t, "EXPUNGE", async {
            let stream = s.expunge().await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await?;
    }
    Ok(())
}

/// What the server offers that changes how we work.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub idle: bool,
    pub r#move: bool,
    pub uidplus: bool,
}

pub async fn capabilities(s: &mut Session, t: Duration) -> Result<Caps, Fault> {
    let caps = limit(t, "CAPABILITY", s.capabilities()).await?;
    Ok(Caps {
        idle: caps.has_str("IDLE"),
        r#move: caps.has_str("MOVE"),
        uidplus: caps.has_str("UIDPLUS"),
    })
}

/// Whether a new message was announced by responses that arrived during earlier commands.
pub fn drain_announced(s: &mut Session) -> bool {
    let mut new = false;
    while let Ok(r) = s.unsolicited_responses.try_recv() {
        new |= matches!(r, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
    }
    new
}

/// IDLE for up to `wait` (at most `IDLE_MAX`), ending with DONE as soon as the server says
/// anything about the folder. Returns the session and whether mail may have arrived.
pub async fn idle(s: Session, wait: Duration, t: Duration) -> Result<(Session, bool), Fault> {
    let wait = wait.min(IDLE_MAX);
    let mut handle = s.idle();
    limit(t, "IDLE", handle.init()).await?;
    let (fut, _stop) = handle.wait_with_timeout(wait);
    // The outer limit also bounds the wait when the server keeps sending keepalives.
    let news = match tokio::time::timeout(wait + Duration::from_millis(50), fut).await {
        Ok(Ok(IdleResponse::NewData(data))) => announces_mail(data.parsed()),
        Ok(Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt)) | Err(_) => false,
        Ok(Err(e)) => return Err(Fault::Connection(format!("IDLE: {e}"))),
    };
    let session = limit(t, "DONE", handle.done()).await?;
    Ok((session, news))
}

fn announces_mail(r: &Response<'_>) -> bool {
    // EXPUNGE or flag changes are news too, but not new mail; listing again is harmless, so
    // only a pure keepalive counts as nothing.
    !matches!(r, Response::MailboxData(MailboxDatum::Flags(_)))
}

/// Without IDLE: NOOP every quarter second until mail is announced or `wait` passes.
pub async fn poll(s: &mut Session, wait: Duration, t: Duration) -> Result<bool, Fault> {
    let until = Instant::now() + wait;
    loop {
        limit(t, "NOOP", s.noop()).await?;
        if drain_announced(s) {
            return Ok(true);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        tokio::time::sleep(left.min(NOOP_EVERY)).await;
    }
}

/// A folder name as an IMAP quoted string (for LIST, whose pattern the library passes as it is;
/// SELECT, CREATE, COPY and MOVE quote by themselves). Folder names come from our config, so
/// anything that would need a literal is refused rather than escaped.
pub fn quote(folder: &str) -> Result<String, Fault> {
    if folder.is_empty() || folder.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(Fault::Setup(format!("folder name {folder:?} needs plain ASCII")));
    }
    Ok(format!("\"{}\"", folder.replace('\\', "\\\\").replace('"', "\\\"")))
}
