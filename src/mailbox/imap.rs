//! The IMAP source (SPEC §5): a folder on an IMAP server drained by UID, with IDLE, MOVE to the
//! processed folder, XOAUTH2, a time limit on every command and reconnection with backoff.
//! Behind the sync `MailSource` port it owns a current-thread tokio runtime and blocks on each
//! operation.
//!
//! It asks the server as little as it can: after a full listing when a session opens, each
//! `pending` is one command, `UID FETCH n:*` for the UIDs above the highest seen, never a
//! listing of the folder. Between rounds an IDLE is held until the server speaks about the
//! folder (EXISTS), its 29-minute refresh, or shutdown; without IDLE the source looks once per
//! poll interval. NOOP is sent only to keep a session that has no IDLE from being logged out as
//! idle.
//!
//! Keys are `imap:<UIDVALIDITY>:<UID>`. When the server changes the folder's UIDVALIDITY, keys
//! of the old validity are `Gone` and the daemon lists again under the new one; messages filed
//! before the change are recognised by the store by Message-ID or by their bytes, so nothing is
//! processed twice (SPEC §5).
//!
//! Owns the connection and the folder's messages only; must not parse messages or decide the
//! daemon's retries: any dropped or silent connection becomes a transient `SourceError`, and the
//! next call reconnects.

mod answer;
mod connect;
mod ops;
mod utf7;

use super::{MailSource, Pending, SourceError};
use crate::config::{self, Credential};
use crate::oauth2::TokenSource;
use crate::shutdown::Shutdown;
use answer::News;
use ops::{Caps, Listed};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use utf7::{decode as decode_folder_name, encode as encode_folder_name};

type Session = async_imap::Session<connect::Stream>;

/// Bytes fetched of one message by default: the pipeline answers an oversized message from its
/// headers, so more than twice the usual 25 MB limit is never needed.
pub const DEFAULT_FETCH_CAP: u64 = 50 * 1000 * 1000;

/// Reconnection waits: doubled from the first to the last after each failed attempt.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A session without IDLE that has said nothing for this long is sent a NOOP, well before the
/// 30 minutes after which a server may log an idle client out (RFC 3501 §5.4).
const KEEPALIVE: Duration = Duration::from_secs(20 * 60);

/// How long the goodbye (DONE, LOGOUT) may take when the source is dropped.
const LOGOUT_LIMIT: Duration = Duration::from_secs(1);

/// UIDs per MOVE command, keeping the command line short (RFC 7162 §4 suggests ~8 KB).
const MOVE_SET: usize = 200;

/// What went wrong inside, before it becomes a `SourceError`.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// The connection failed, was closed, the server said BYE, or it stayed silent past the
    /// time limit: the session is dropped.
    #[error("{0}")]
    Connection(String),
    /// The server refused the login. Not always for good: Microsoft 365 answers
    /// `NO AUTHENTICATE failed.` during its own incidents, so it is tried again with backoff.
    #[error("{0}")]
    Refused(String),
    /// No credential could be had (unreadable password file, failing token command).
    #[error("login: {0}")]
    Login(String),
    /// The configuration cannot work (a CA file, a TLS name, a folder the server cannot make).
    #[error("{0}")]
    Setup(String),
    /// The server answered something we cannot use.
    #[error("{0}")]
    Protocol(String),
    /// The server refused a command (NO or BAD); the session goes on.
    #[error("{0}")]
    Command(String),
}

impl From<Fault> for SourceError {
    fn from(f: Fault) -> Self {
        // Only a configuration that cannot work will not mend by itself.
        let transient = !matches!(f, Fault::Setup(_));
        SourceError::Remote { message: f.to_string(), transient }
    }
}

/// A live, selected session and what we learnt when opening it.
struct Live {
    session: Session,
    caps: Caps,
    uid_validity: u32,
    /// The processed folder as the server names it (modified UTF-7, its own case).
    processed: String,
    /// What the server announced since the last listing.
    news: News,
    /// When the last command was answered, for the keepalive.
    last_command: Instant,
}

/// The IMAP folder named in `[imap]` as a `MailSource`.
pub struct ImapSource {
    cfg: config::Imap,
    rt: tokio::runtime::Runtime,
    tokens: Option<TokenSource>,
    live: Option<Live>,
    /// Failed connection attempts in a row, and when the next may be made.
    failures: u32,
    next_attempt: Option<Instant>,
    fetch_cap: u64,
    force_copy: bool,
    idle_refresh: Duration,
    uid_validity: Option<u32>,
    /// Messages listed and not yet moved out, by UID, under `uid_validity`.
    known: BTreeMap<u32, Listed>,
    /// The highest UID listed under `uid_validity`: new mail is `UID FETCH highest+1:*`.
    highest: u32,
    /// A full listing is due (a new session, or another client removed messages).
    relist: bool,
    last_look: Option<Instant>,
}

impl std::fmt::Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource")
            .field("host", &self.cfg.host)
            .field("folder", &self.cfg.folder)
            .field("connected", &self.live.is_some())
            .finish()
    }
}

impl ImapSource {
    /// A source that connects on first use. Fails only on what is the configuration's own (a
    /// CA file that cannot be read, a host that is no TLS name): nothing is sent yet, so an
    /// outage at start is met by the first call and retried, never reported here.
    pub fn new(cfg: &config::Imap) -> Result<ImapSource, SourceError> {
        connect::check(cfg)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SourceError::io("start the IMAP runtime for", "imap", e))?;
        let tokens = match &cfg.credential {
            Credential::TokenCommand(cmd) => Some(TokenSource::new(cmd.clone())),
            Credential::Password(_) => None,
        };
        Ok(ImapSource {
            cfg: cfg.clone(),
            rt,
            tokens,
            live: None,
            failures: 0,
            next_attempt: None,
            fetch_cap: DEFAULT_FETCH_CAP,
            force_copy: false,
            idle_refresh: ops::IDLE_MAX,
            uid_validity: None,
            known: BTreeMap::new(),
            highest: 0,
            relist: true,
            last_look: None,
        })
    }

    /// Connects, logs in and selects the folder now (for tools and tests that want to know at
    /// once; the daemon uses [`ImapSource::new`] and rides out an outage at start).
    pub fn connect(cfg: &config::Imap) -> Result<ImapSource, SourceError> {
        let mut source = ImapSource::new(cfg)?;
        source.live()?;
        Ok(source)
    }

    /// Fetch at most this many bytes of one message (default [`DEFAULT_FETCH_CAP`]).
    pub fn with_fetch_cap(mut self, bytes: u64) -> Self {
        self.fetch_cap = bytes.max(1);
        self
    }

    /// Move with COPY + \Deleted + EXPUNGE even when the server offers MOVE (to test the path
    /// servers without MOVE take).
    pub fn without_move(mut self) -> Self {
        self.force_copy = true;
        self
    }

    /// Re-issue IDLE after `every` instead of 29 minutes (to test the refresh).
    pub fn with_idle_refresh(mut self, every: Duration) -> Self {
        self.idle_refresh = every.min(ops::IDLE_MAX);
        self
    }

    /// Whether a session is open now.
    pub fn is_connected(&self) -> bool {
        self.live.is_some()
    }

    /// The open session, opening one if there is none (unless the backoff says not yet).
    fn live(&mut self) -> Result<&mut Live, SourceError> {
        if self.live.is_none() {
            if let Some(at) = self.next_attempt {
                let left = at.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    return Err(SourceError::Backoff { left });
                }
            }
            match self.rt.block_on(open(&self.cfg, self.tokens.as_ref())) {
                Ok(live) => self.opened(live),
                Err(fault) => {
                    self.failures += 1;
                    let pause = backoff(self.failures);
                    self.next_attempt = Some(Instant::now() + pause);
                    tracing::warn!(
                        host = self.cfg.host,
                        attempt = self.failures,
                        "IMAP connection failed, next attempt in {pause:.1?}: {fault}"
                    );
                    return Err(fault.into());
                }
            }
        }
        self.live.as_mut().ok_or_else(|| SourceError::Remote {
            message: "no IMAP session".into(),
            transient: true,
        })
    }

    fn opened(&mut self, live: Live) {
        if self.failures > 0 {
            tracing::info!(host = self.cfg.host, attempts = self.failures + 1, "IMAP reconnected");
        } else {
            tracing::info!(host = self.cfg.host, folder = self.cfg.folder, "IMAP connected");
        }
        if self.uid_validity.is_some_and(|v| v != live.uid_validity) {
            tracing::warn!(
                folder = self.cfg.folder,
                "UIDVALIDITY changed: listing again; the store recognises messages already filed"
            );
            self.known.clear();
            self.highest = 0;
        }
        self.uid_validity = Some(live.uid_validity);
        self.failures = 0;
        self.next_attempt = None;
        // Anything may have happened while there was no session.
        self.relist = true;
        self.live = Some(live);
    }

    /// Runs `op` on the live session; a connection fault drops the session so the next call
    /// reconnects (at once: only failed connects wait).
    fn with_live<T>(
        &mut self,
        op: impl AsyncFnOnce(&mut Live, Duration) -> Result<T, Fault>,
    ) -> Result<T, SourceError> {
        let t = self.cfg.timeout;
        self.live()?;
        let Some(live) = self.live.as_mut() else {
            return Err(SourceError::Remote { message: "no IMAP session".into(), transient: true });
        };
        let result = self.rt.block_on(op(live, t));
        live.last_command = Instant::now();
        if let Err(Fault::Connection(reason)) = &result {
            tracing::warn!(host = self.cfg.host, "IMAP connection dropped: {reason}");
            self.live = None;
        }
        result.map_err(SourceError::from)
    }

    /// `imap:<validity>:<uid>` → the UID, if the key belongs to the current validity.
    fn uid_of(&self, key: &str) -> Result<u32, SourceError> {
        let (validity, uid) = parse_key(key)?;
        match self.uid_validity {
            Some(current) if current != validity => Err(SourceError::Gone { key: key.into() }),
            _ => Ok(uid),
        }
    }

    /// Lists what is new: everything after a new session or another client's EXPUNGE, else
    /// the UIDs above the highest seen (one command either way).
    fn refresh(&mut self) -> Result<(), SourceError> {
        let full = self.relist || self.live()?.news.expunged;
        let after = if full { 0 } else { self.highest };
        let listed = self.with_live(async |live, t| {
            let mut listed = ops::list_after(live, after, t).await?;
            if !full && live.news.expunged {
                // Another client removed messages meanwhile (we heard it on the way): which
                // ones only a full listing tells.
                listed = ops::list_after(live, 0, t).await?;
            }
            let full = full || live.news.expunged;
            live.news = News::default();
            Ok((full, listed))
        })?;
        let (full, listed) = listed;
        if full {
            self.known.clear();
        }
        for l in listed {
            self.highest = self.highest.max(l.uid);
            self.known.insert(l.uid, l);
        }
        (self.relist, self.last_look) = (false, Some(Instant::now()));
        Ok(())
    }

    /// Without IDLE: one look per `poll` after the last, with a NOOP only when the session
    /// would otherwise stay silent past [`KEEPALIVE`].
    fn poll(&mut self, poll: Duration, stop: &Shutdown) -> Result<(), SourceError> {
        let due = self.last_look.map(|at| at + poll).unwrap_or_else(Instant::now);
        loop {
            let now = Instant::now();
            if now >= due {
                return Ok(());
            }
            let quiet_since = self.live.as_ref().map(|l| l.last_command).unwrap_or(now);
            let keepalive = quiet_since + KEEPALIVE;
            if !stop.sleep(due.min(keepalive).saturating_duration_since(now)) {
                return Ok(());
            }
            if Instant::now() >= keepalive && Instant::now() < due {
                self.with_live(async |live, t| ops::noop(live, t).await)?;
                if self.live.as_ref().is_some_and(|l| l.news.exists) {
                    return Ok(());
                }
            }
        }
    }
}

/// Parses `imap:<validity>:<uid>`.
pub fn parse_key(key: &str) -> Result<(u32, u32), SourceError> {
    let invalid = || SourceError::InvalidKey { key: key.to_string() };
    let rest = key.strip_prefix("imap:").ok_or_else(invalid)?;
    let (validity, uid) = rest.split_once(':').ok_or_else(invalid)?;
    let validity: u32 = validity.parse().map_err(|_| invalid())?;
    let uid: u32 = uid.parse().map_err(|_| invalid())?;
    if uid == 0 {
        return Err(invalid());
    }
    Ok((validity, uid))
}

pub fn key(uid_validity: u32, uid: u32) -> String {
    format!("imap:{uid_validity}:{uid}")
}

/// Exponential from 1 s to 60 s, shortened by a deterministic jitter of up to a fifth so that
/// several daemons started together do not knock in step; never under 1 s nor over 60 s.
fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(6));
    let base = base.min(BACKOFF_MAX);
    let spread = u64::from(std::process::id().wrapping_mul(2_654_435_761) ^ failures) % 200;
    base.saturating_sub(base.mul_f64(spread as f64 / 1000.0)).max(BACKOFF_FIRST)
}

async fn open(cfg: &config::Imap, tokens: Option<&TokenSource>) -> Result<Live, Fault> {
    let t = cfg.timeout;
    let mut session = match connect::open(cfg, tokens).await {
        // A refused token may only have expired: fetch a fresh one and try once more.
        Err(Fault::Refused(reason)) if tokens.is_some() => {
            tracing::info!("XOAUTH2 token refused, fetching a fresh one: {reason}");
            if let Some(tokens) = tokens {
                tokens.invalidate();
            }
            connect::open(cfg, tokens).await?
        }
        other => other?,
    };
    let caps = ops::capabilities(&mut session, t).await?;
    let processed = ops::find_folder(&mut session, &cfg.processed_folder, true, t).await?;
    let folder = ops::find_folder(&mut session, &cfg.folder, true, t).await?;
    let uid_validity = ops::select(&mut session, &folder, t).await?;
    Ok(Live {
        session,
        caps,
        uid_validity,
        processed,
        news: News::default(),
        last_command: Instant::now(),
    })
}

impl MailSource for ImapSource {
    fn pending(&mut self) -> Result<Vec<Pending>, SourceError> {
        self.refresh()?;
        let validity = self.uid_validity.unwrap_or(0);
        let mut pending: Vec<Pending> = self
            .known
            .values()
            .map(|l| Pending {
                key: key(validity, l.uid),
                received_at: l.internal_date,
                size: l.size,
            })
            .collect();
        pending.sort_by(|a, b| (a.received_at, &a.key).cmp(&(b.received_at, &b.key)));
        Ok(pending)
    }

    fn fetch(&mut self, key: &str) -> Result<Vec<u8>, SourceError> {
        let uid = self.uid_of(key)?;
        let known = self.known.get(&uid).map(|l| l.size);
        let cap = self.fetch_cap;
        let body = self.with_live(async |live, t| {
            let size = match known {
                Some(size) => Some(size),
                None => ops::size(live, uid, t).await?,
            };
            ops::fetch(live, uid, size, cap, t).await
        })?;
        // The session may have been reopened under a new validity during this call.
        self.uid_of(key)?;
        body.ok_or_else(|| {
            self.known.remove(&uid);
            SourceError::Gone { key: key.to_string() }
        })
    }

    fn mark_processed(&mut self, key: &str) -> Result<(), SourceError> {
        match self.mark_processed_many(&[key.to_string()]).pop() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Whole messages of known size within the cap come in one `UID FETCH` of the set; the rest
    /// (unknown size, over the cap, another validity) go one by one through `fetch`.
    fn fetch_many(&mut self, keys: &[String]) -> Vec<(String, Result<Vec<u8>, SourceError>)> {
        let cap = self.fetch_cap;
        let uids: Vec<u32> = keys
            .iter()
            .filter_map(|key| self.uid_of(key).ok())
            .filter(|uid| self.known.get(uid).is_some_and(|l| l.size <= cap))
            .collect();
        let mut bodies = if uids.len() > 1 {
            self.with_live(async |live, t| ops::fetch_set(live, &uids, t).await).unwrap_or_default()
        // on trouble, each is fetched on its own below
        } else {
            Default::default()
        };
        keys.iter()
            .map(|key| {
                let body = self
                    .uid_of(key)
                    .ok()
                    .and_then(|uid| bodies.remove(&uid))
                    .map(Ok)
                    .unwrap_or_else(|| self.fetch(key));
                (key.clone(), body)
            })
            .collect()
    }

    /// A committed batch leaves the folder in a few commands (`UID MOVE 1,2,3…`), not one round
    /// trip per message.
    fn mark_processed_many(&mut self, keys: &[String]) -> Vec<(String, SourceError)> {
        let mut failed = Vec::new();
        let mut uids = Vec::new();
        for key in keys {
            match self.uid_of(key) {
                Ok(uid) => uids.push((key, uid)),
                Err(e) => failed.push((key.clone(), e)),
            }
        }
        let force_copy = self.force_copy;
        for chunk in uids.chunks(MOVE_SET) {
            let set: Vec<u32> = chunk.iter().map(|(_, uid)| *uid).collect();
            let before = self.uid_validity;
            let moved = self.with_live(async |live, t| {
                let mut caps = live.caps;
                caps.r#move &= !force_copy;
                ops::move_out(live, &set, &caps, t).await
            });
            let moved = match moved {
                // Reopened under a new validity: the old UIDs name nothing now.
                Ok(()) if self.uid_validity != before => Err(SourceError::Remote {
                    message: "UIDVALIDITY changed".into(),
                    transient: true,
                }),
                other => other,
            };
            match moved {
                Ok(()) => {
                    for uid in &set {
                        self.known.remove(uid);
                    }
                }
                Err(e) => {
                    let transient = e.is_transient();
                    let message = e.to_string();
                    failed.extend(chunk.iter().map(|(k, _)| {
                        ((*k).clone(), SourceError::Remote { message: message.clone(), transient })
                    }));
                }
            }
        }
        failed
    }

    fn wait(&mut self, poll: Duration, stop: &Shutdown) -> Result<(), SourceError> {
        let Some(live) = self.live.as_ref() else {
            // Disconnected: wait out the backoff (within `poll`), then let the caller's next
            // call reconnect.
            let left = self
                .next_attempt
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or_default();
            stop.sleep(left.min(poll));
            return Ok(());
        };
        if self.relist || live.news.exists || live.news.expunged {
            return Ok(()); // something to list already
        }
        if !(self.cfg.idle && live.caps.idle) {
            return self.poll(poll, stop);
        }
        let Some(live) = self.live.take() else { return Ok(()) };
        let t = self.cfg.timeout;
        match self.rt.block_on(ops::idle(live, self.idle_refresh, t, stop.wait())) {
            Ok((mut live, woke)) => {
                live.last_command = Instant::now();
                tracing::debug!(?woke, "IDLE ended");
                self.live = Some(live);
                Ok(())
            }
            Err(fault) => {
                // Waiting may end early; the next call reconnects, or reports the outage.
                tracing::warn!(
                    host = self.cfg.host,
                    "IMAP connection dropped while waiting: {fault}"
                );
                Ok(())
            }
        }
    }
}

impl Drop for ImapSource {
    fn drop(&mut self) {
        if let Some(mut live) = self.live.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(LOGOUT_LIMIT, live.session.logout()).await
            });
        }
    }
}

#[cfg(test)]
mod tests;
