//! The IMAP source (SPEC §5, issue 4): a folder on an IMAP server drained by UID, with IDLE,
//! MOVE to the processed folder, XOAUTH2, a time limit on every command and reconnection with
//! backoff. Behind the sync `MailSource` port it owns a current-thread tokio runtime and blocks
//! on each operation.
//!
//! Keys are `imap:<UIDVALIDITY>:<UID>`. When the server changes the folder's UIDVALIDITY, keys
//! of the old validity are `Gone` and the daemon lists again under the new one; messages filed
//! before the change are recognised by the store by Message-ID or by their bytes, so nothing is
//! processed twice (SPEC §5).
//!
//! Owns the connection and the folder's messages only; must not parse messages or decide the
//! daemon's retries: any dropped or silent connection becomes a transient `SourceError`, and the
//! next call reconnects.

mod connect;
mod ops;

use super::{MailSource, Pending, SourceError};
use crate::config::{self, Credential};
use crate::oauth2::TokenSource;
use ops::{Caps, Listed};
use std::collections::HashMap;
use std::time::{Duration, Instant};

type Session = async_imap::Session<connect::Stream>;

/// Bytes fetched of one message by default: the pipeline answers an oversized message from its
/// headers, so more than twice the usual 25 MB limit is never needed.
pub const DEFAULT_FETCH_CAP: u64 = 50 * 1000 * 1000;

/// Reconnection waits: doubled from the first to the last after each failed attempt.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How long the goodbye (DONE, LOGOUT) may take when the source is dropped.
const LOGOUT_LIMIT: Duration = Duration::from_secs(1);

/// What went wrong inside, before it becomes a `SourceError`.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// The connection failed, was closed, or stayed silent past the time limit.
    #[error("{0}")]
    Connection(String),
    /// The server refused the credentials.
    #[error("{0}")]
    Refused(String),
    /// No credential could be had (unreadable password file, failing token command).
    #[error("login: {0}")]
    Login(String),
    /// The configuration cannot work (a folder name, a CA file).
    #[error("{0}")]
    Setup(String),
    /// The server answered something we cannot use.
    #[error("{0}")]
    Protocol(String),
}

impl From<Fault> for SourceError {
    fn from(f: Fault) -> Self {
        // A refused login or a bad setup will not mend by itself; everything else may.
        let transient = matches!(f, Fault::Connection(_) | Fault::Protocol(_) | Fault::Login(_));
        SourceError::Remote { message: f.to_string(), transient }
    }
}

/// A live, selected session and what we learnt when opening it.
struct Live {
    session: Session,
    caps: Caps,
    uid_validity: u32,
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
    /// Sizes from the last listing, so a fetch knows whether to cap without asking again.
    sizes: HashMap<u32, u64>,
    uid_validity: Option<u32>,
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
    /// A source that connects on first use.
    pub fn new(cfg: &config::Imap) -> Result<ImapSource, SourceError> {
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
            sizes: HashMap::new(),
            uid_validity: None,
        })
    }

    /// Connects, logs in and selects the folder now, so a wrong password or host is reported at
    /// startup rather than at the first round.
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
                    return Err(SourceError::Remote {
                        message: format!("IMAP server unreachable; next attempt in {left:.1?}"),
                        transient: true,
                    });
                }
            }
            match self.rt.block_on(open(&self.cfg, self.tokens.as_ref())) {
                Ok(live) => {
                    if self.failures > 0 {
                        tracing::info!(
                            host = self.cfg.host,
                            attempts = self.failures + 1,
                            "IMAP reconnected"
                        );
                    } else {
                        tracing::info!(
                            host = self.cfg.host,
                            folder = self.cfg.folder,
                            "IMAP connected"
                        );
                    }
                    if self.uid_validity.is_some_and(|v| v != live.uid_validity) {
                        tracing::warn!(folder = self.cfg.folder, "UIDVALIDITY changed: listing again; the store recognises messages already filed");
                        self.sizes.clear();
                    }
                    self.uid_validity = Some(live.uid_validity);
                    self.failures = 0;
                    self.next_attempt = None;
                    self.live = Some(live);
                }
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
}

/// UIDs per MOVE command, keeping the command line short (RFC 7162 §4 suggests ~8 KB).
const MOVE_SET: usize = 200;

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

/// Exponential from 1 s to 60 s, with a deterministic jitter of up to a fifth so that several
/// daemons started together do not knock in step.
fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(6));
    let base = base.min(BACKOFF_MAX);
    let spread = u64::from(std::process::id().wrapping_mul(2_654_435_761) ^ failures) % 200;
    base + base.mul_f64(spread as f64 / 1000.0)
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
    if cfg.folder != cfg.processed_folder {
        ops::ensure_folder(&mut session, &cfg.processed_folder, t).await?;
    }
    if !cfg.folder.eq_ignore_ascii_case("INBOX") {
        ops::ensure_folder(&mut session, &cfg.folder, t).await?;
    }
    let selected = ops::select(&mut session, &cfg.folder, t).await?;
    Ok(Live { session, caps, uid_validity: selected.uid_validity })
}

impl MailSource for ImapSource {
    fn pending(&mut self) -> Result<Vec<Pending>, SourceError> {
        let listed: Vec<Listed> = self.with_live(async |live, t| {
            ops::drain_announced(&mut live.session);
            ops::list(&mut live.session, t).await
        })?;
        let validity = self.uid_validity.unwrap_or(0);
        self.sizes = listed.iter().map(|l| (l.uid, l.size)).collect();
        Ok(listed
            .into_iter()
            .map(|l| Pending {
                key: key(validity, l.uid),
                received_at: l.internal_date,
                size: l.size,
            })
            .collect())
    }

    fn fetch(&mut self, key: &str) -> Result<Vec<u8>, SourceError> {
        let uid = self.uid_of(key)?;
        let known = self.sizes.get(&uid).copied();
        let cap = self.fetch_cap;
        let body = self.with_live(async |live, t| {
            let size = match known {
                Some(size) => Some(size),
                None => ops::size(&mut live.session, uid, t).await?,
            };
            ops::fetch(&mut live.session, uid, size, cap, t).await
        })?;
        // The session may have been reopened under a new validity during this call.
        self.uid_of(key)?;
        body.ok_or_else(|| SourceError::Gone { key: key.to_string() })
    }

    fn mark_processed(&mut self, key: &str) -> Result<(), SourceError> {
        let uid = self.uid_of(key)?;
        let dest = self.cfg.processed_folder.clone();
        let force_copy = self.force_copy;
        self.live()?;
        if self.uid_of(key).is_err() {
            // Reopened under a new validity: the old UID names nothing now.
            return Err(SourceError::Gone { key: key.to_string() });
        }
        self.with_live(async |live, t| {
            let mut caps = live.caps;
            caps.r#move &= !force_copy;
            ops::move_out(&mut live.session, &[uid], &dest, &caps, t).await
        })?;
        self.sizes.remove(&uid);
        Ok(())
    }

    /// Whole messages of known size within the cap come in one `UID FETCH` of the set; the rest
    /// (unknown size, over the cap, another validity) go one by one through `fetch`.
    fn fetch_many(&mut self, keys: &[String]) -> Vec<(String, Result<Vec<u8>, SourceError>)> {
        let cap = self.fetch_cap;
        let uids: Vec<u32> = keys
            .iter()
            .filter_map(|key| self.uid_of(key).ok())
            .filter(|uid| self.sizes.get(uid).is_some_and(|s| *s <= cap))
            .collect();
        let mut bodies = if uids.len() > 1 {
            self.with_live(async |live, t| ops::fetch_set(&mut live.session, &uids, t).await)
                .unwrap_or_default() // on trouble, each is fetched on its own below
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
        let dest = self.cfg.processed_folder.clone();
        let force_copy = self.force_copy;
        for chunk in uids.chunks(MOVE_SET) {
            let set: Vec<u32> = chunk.iter().map(|(_, uid)| *uid).collect();
            let moved = self.with_live(async |live, t| {
                let mut caps = live.caps;
                caps.r#move &= !force_copy;
                ops::move_out(&mut live.session, &set, &dest, &caps, t).await
            });
            match moved {
                Ok(()) => {
                    for uid in &set {
                        self.sizes.remove(uid);
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

    fn wait(&mut self, timeout: Duration) -> Result<(), SourceError> {
        if self.live.is_none() {
            // Disconnected: wait out the backoff (within `timeout`), then let the caller's next
            // call reconnect.
            let left = self
                .next_attempt
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or_default();
            std::thread::sleep(left.min(timeout));
            return Ok(());
        }
        let use_idle = self.cfg.idle;
        let Some(mut live) = self.live.take() else { return Ok(()) };
        if ops::drain_announced(&mut live.session) {
            self.live = Some(live);
            return Ok(());
        }
        let t = self.cfg.timeout;
        let outcome = if use_idle && live.caps.idle {
            let Live { session, caps, uid_validity } = live;
            self.rt.block_on(ops::idle(session, timeout, t)).map(|(session, _news)| Live {
                session,
                caps,
                uid_validity,
            })
        } else {
            self.rt.block_on(ops::poll(&mut live.session, timeout, t)).map(|_| live)
        };
        match outcome {
            Ok(live) => {
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
