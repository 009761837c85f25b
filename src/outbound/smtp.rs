//! Sends replies to an SMTP relay over connections it opens itself (TCP_NODELAY set, see
//! `conn`) and keeps in a pool, passing the stored bytes through unchanged so what goes out is
//! exactly what was filed.
//!
//! Owns the relay settings (TLS with an optional private CA, timeout, pool, login), the runtime
//! the async SMTP client runs on behind the sync `Transport`, and the translation of the relay's
//! answers into retry decisions. Connections and the pool live in `conn`, XOAUTH2 logins in
//! `xoauth2`. Must not read files or run commands: secrets, the CA and tokens arrive from
//! `build`.

mod conn;
#[cfg(test)]
mod pool_tests;
mod transaction;
mod xoauth2;

use super::{envelope, OutboxItem, SendError, SendErrorKind, Transport};
pub use crate::config::{Secret, SmtpSteps};
use crate::shutdown::Shutdown;
use conn::{Conn, Link, Pool, Security};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::{Category, Code, Severity};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_rustls::rustls::pki_types::ServerName;
pub use xoauth2::TokenProvider;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (submissions port 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// No encryption: only for a relay on loopback or a trusted local network.
    None,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Implicit => 465,
            SmtpTls::StartTls => 587,
            SmtpTls::None => 25,
        }
    }
}

/// SASL mechanisms the relay may be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
    /// OAuth 2.0 bearer token as the password (Microsoft 365 / NHSmail, where basic auth is off).
    Xoauth2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Mechanisms to try, in order; empty means lettre's default (PLAIN, then LOGIN).
    pub auth: Vec<AuthMechanism>,
    /// For connecting, TLS and each command outside a mail transaction.
    pub timeout: Duration,
    /// For each step of a mail transaction (RFC 5321 §4.5.3.2).
    pub steps: SmtpSteps,
    /// The EHLO name; `None`: this host's name when fully qualified, else an address literal.
    pub helo_name: Option<String>,
    /// PEM certificate(s) of a private CA, trusted besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Idle connections kept open for the next reply; 0 opens a connection per reply. One
    /// connection carries one reply at a time, so the daemon's parallel senders want as many.
    pub pool_size: u32,
}

impl SmtpSettings {
    /// Settings for `host` with the usual port for `tls`, no login, a 30 s timeout, RFC 5321's
    /// step limits and a pool of 4 connections.
    pub fn new(host: impl Into<String>, tls: SmtpTls) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port: tls.default_port(),
            tls,
            username: None,
            password: None,
            auth: Vec::new(),
            timeout: Duration::from_secs(30),
            steps: SmtpSteps::default(),
            helo_name: None,
            ca_pem: None,
            // One per parallel sender in the daemon (DELIVERY_WORKERS); idle ones are closed
            // after a minute, before the relay drops them itself (Postfix after 300 s).
            pool_size: 4,
        }
    }
}

/// A pool of connections to one relay. Clones share the pool and the runtime.
#[derive(Clone)]
pub struct SmtpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    relay: String,
    link: Link,
    login: Login,
    pool: Pool,
    /// Two worker threads drive the sockets; each sending thread blocks on its own reply.
    runtime: Runtime,
    /// Set by the daemon: a send waiting for the relay ends early on shutdown.
    stop: OnceLock<Shutdown>,
}

enum Login {
    None,
    Password(Vec<Mechanism>, Credentials),
    /// XOAUTH2: a token is fetched for each new connection, and replaced once if refused.
    Token(xoauth2::TokenLogin),
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport").field("relay", &self.inner.relay).finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Builds the transport; nothing connects until the first send. Fails only on settings that
    /// can never work (a login without a password, a CA that is not PEM, TLS that cannot be set
    /// up, XOAUTH2 without a token source: use `with_tokens`).
    pub fn new(settings: &SmtpSettings) -> Result<SmtpTransport, SendError> {
        let link = link(settings)?;
        let relay = relay_name(settings);
        if settings.auth.contains(&AuthMechanism::Xoauth2) && settings.password.is_none() {
            return Err(SendError::permanent(format!(
                "SMTP relay {relay}: XOAUTH2 needs a token source"
            )));
        }
        let login = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => Login::Password(
                mechanisms(settings),
                Credentials::new(user.clone(), password.expose().into()),
            ),
            (Some(user), None) => {
                return Err(SendError::permanent(format!("SMTP user {user} has no password")));
            }
            (None, _) => Login::None,
        };
        SmtpTransport::build(settings, link, relay, login)
    }

    /// Builds a transport that logs in with XOAUTH2 as `settings.username`, taking each access
    /// token from `tokens`. When the relay refuses a token, it is invalidated and the login is
    /// tried once more with a fresh one.
    pub fn with_tokens(
        settings: &SmtpSettings,
        tokens: Arc<dyn TokenProvider>,
    ) -> Result<SmtpTransport, SendError> {
        let link = link(settings)?;
        let relay = relay_name(settings);
        let user = settings.username.clone().ok_or_else(|| {
            SendError::permanent(format!("SMTP relay {relay}: XOAUTH2 needs a username"))
        })?;
        let login = Login::Token(xoauth2::TokenLogin::new(user, tokens));
        SmtpTransport::build(settings, link, relay, login)
    }

    fn build(
        settings: &SmtpSettings,
        link: Link,
        relay: String,
        login: Login,
    ) -> Result<SmtpTransport, SendError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("smtp")
            .enable_all()
            .build()
            .map_err(|e| SendError::transient(format!("SMTP relay {relay}: runtime: {e}")))?;
        let pool = Pool::new(settings.pool_size);
        let runtime = Runtime(Some(runtime));
        let stop = OnceLock::new();
        Ok(SmtpTransport { inner: Arc::new(Inner { relay, link, login, pool, runtime, stop }) })
    }

    /// Connects and greets the relay once (logging in if configured), so a wrong host, port,
    /// CA or credential shows at start-up. The connection then waits in the pool.
    pub fn test_connection(&self) -> Result<(), SendError> {
        let inner = &self.inner;
        inner.runtime.block_on(async {
            let mut conn = inner.open().await?;
            let alive = tokio::time::timeout(inner.link.timeout, conn.test_connected()).await;
            if !matches!(alive, Ok(true)) {
                return Err(SendError::transient(format!("relay {} did not answer", inner.relay)));
            }
            inner.pool.put_back(conn);
            Ok(())
        })?
    }
}

impl Transport for SmtpTransport {
    /// Blocks the calling thread until the relay answers; must not be called from inside an
    /// async runtime.
    fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
        let envelope = envelope(item)?;
        let inner = &self.inner;
        inner.runtime.block_on(inner.send(&envelope, &item.raw))?
    }

    fn watch_shutdown(&self, stop: &Shutdown) {
        let _ = self.inner.stop.set(stop.clone());
    }
}

impl Inner {
    /// One reply on a pooled or new connection. A connection that saw any failure is dropped:
    /// lettre aborts it anyway, and its state is unknown after a timeout.
    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), SendError> {
        let mut conn = match self.pool.take(self.link.timeout).await {
            Some(conn) => conn,
            None => self.open().await?,
        };
        conn.send(envelope, raw, &self.link.steps, self.stop.get())
            .await
            .map_err(|f| f.into_send_error(&self.relay))?;
        self.pool.put_back(conn);
        Ok(())
    }

    /// A new connection, logged in.
    async fn open(&self) -> Result<Conn, SendError> {
        let opened = match &self.login {
            Login::None => self.link.open(None).await,
            Login::Password(mechanisms, credentials) => {
                self.link.open(Some((mechanisms, credentials))).await
            }
            Login::Token(login) => return login.open(&self.link, &self.relay).await,
        };
        opened.map_err(|f| f.into_send_error(&self.relay))
    }
}

impl Drop for Inner {
    /// Says QUIT on the idle connections, unless dropped inside an async runtime (where
    /// blocking is not allowed); the relay then sees the sockets close.
    fn drop(&mut self) {
        let idle = self.pool.drain();
        if idle.is_empty() || tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        let quits = idle.into_iter().map(conn::quit_now);
        let _ = self.runtime.block_on(futures_util::future::join_all(quits));
    }
}

/// The runtime, shut down without waiting when the transport goes, which is also safe when
/// the last clone is dropped inside another runtime.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output, SendError> {
        match &self.0 {
            Some(rt) => Ok(rt.block_on(fut)),
            None => Err(SendError::transient("SMTP transport shut down")),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn relay_name(settings: &SmtpSettings) -> String {
    format!("{}:{}", settings.host.trim(), settings.port)
}

/// The mechanisms to offer: those configured, or lettre's default (PLAIN, then LOGIN).
fn mechanisms(settings: &SmtpSettings) -> Vec<Mechanism> {
    if settings.auth.is_empty() {
        DEFAULT_MECHANISMS.to_vec()
    } else {
        settings.auth.iter().map(|m| mechanism(*m)).collect()
    }
}

/// Everything but the login: relay, port, TLS (system roots plus the private CA), timeout.
fn link(settings: &SmtpSettings) -> Result<Link, SendError> {
    let host = settings.host.trim().to_string();
    let security = match settings.tls {
        SmtpTls::None => Security::None,
        SmtpTls::StartTls => {
            let mut params = TlsParameters::builder(host.clone());
            if let Some(pem) = &settings.ca_pem {
                params = params.add_root_certificate(ca_certificate(pem)?);
            }
            let params = params
                .build()
                .map_err(|e| SendError::permanent(format!("TLS setup for {host}: {e}")))?;
            Security::StartTls(params)
        }
        SmtpTls::Implicit => {
            let connector = crate::tls::connector(settings.ca_pem.as_deref())
                .map_err(|e| SendError::permanent(format!("SMTP CA certificate: {e}")))?;
            let name = ServerName::try_from(host.clone()).map_err(|e| {
                SendError::permanent(format!("SMTP host {host:?} is not a TLS server name: {e}"))
            })?;
            Security::Implicit(connector, name)
        }
    };
    Ok(Link {
        host,
        port: settings.port,
        security,
        timeout: settings.timeout,
        steps: settings.steps,
        hello: settings.helo_name.as_deref().map(client_id),
    })
}

/// A configured EHLO name: a host name, or an address literal (`[192.0.2.1]`, `[IPv6:…]`).
fn client_id(name: &str) -> ClientId {
    let literal = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
    match literal {
        Some(ip) => match ip.strip_prefix("IPv6:").unwrap_or(ip).parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => ClientId::Ipv4(v4),
            Ok(std::net::IpAddr::V6(v6)) => ClientId::Ipv6(v6),
            Err(_) => ClientId::Domain(name.to_string()),
        },
        None => ClientId::Domain(name.to_string()),
    }
}

/// The private CA; PEM text without a single certificate in it is refused rather than
/// silently trusting nothing extra.
fn ca_certificate(pem: &[u8]) -> Result<Certificate, SendError> {
    let refuse = |why: &str| SendError::permanent(format!("SMTP CA certificate: {why}"));
    crate::tls::pem_certificates(pem).map_err(|e| refuse(&e.to_string()))?;
    Certificate::from_pem(pem).map_err(|e| refuse(&e.to_string()))
}

fn mechanism(m: AuthMechanism) -> Mechanism {
    match m {
        AuthMechanism::Plain => Mechanism::Plain,
        AuthMechanism::Login => Mechanism::Login,
        AuthMechanism::Xoauth2 => Mechanism::Xoauth2,
    }
}

/// 4xx is temporary (RFC 5321 §4.2.1). 5xx is permanent, except x3z: 530/534/535/538 are the
/// relay refusing *us* (authentication or TLS required, RFC 4954 §6), the same for every reply:
/// delivery pauses rather than turning every queued reply into a permanent failure.
pub(crate) fn code_kind(code: Code) -> SendErrorKind {
    match (code.severity, code.category) {
        (Severity::PermanentNegativeCompletion, Category::Unspecified3) => SendErrorKind::Refused,
        (Severity::PermanentNegativeCompletion, _) => SendErrorKind::Permanent,
        _ => SendErrorKind::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::transport::smtp::response::Detail;

    fn code(severity: Severity, category: Category, detail: Detail) -> Code {
        Code::new(severity, category, detail)
    }

    #[test]
    fn mailbox_and_content_refusals_are_permanent() {
        let p = Severity::PermanentNegativeCompletion;
        // 550 mailbox unavailable, 553 bad mailbox name, 554 transaction failed, 501 bad address
        assert_eq!(
            code_kind(code(p, Category::MailSystem, Detail::Zero)),
            SendErrorKind::Permanent
        );
        assert_eq!(
            code_kind(code(p, Category::MailSystem, Detail::Three)),
            SendErrorKind::Permanent
        );
        assert_eq!(
            code_kind(code(p, Category::MailSystem, Detail::Four)),
            SendErrorKind::Permanent
        );
        assert_eq!(code_kind(code(p, Category::Syntax, Detail::One)), SendErrorKind::Permanent);
    }

    #[test]
    fn deferrals_are_retried_and_authentication_refusals_pause_delivery() {
        let t = Severity::TransientNegativeCompletion;
        let p = Severity::PermanentNegativeCompletion;
        // 421 closing, 450 mailbox busy, 452 insufficient storage
        assert_eq!(
            code_kind(code(t, Category::Connections, Detail::One)),
            SendErrorKind::Transient
        );
        assert_eq!(
            code_kind(code(t, Category::MailSystem, Detail::Zero)),
            SendErrorKind::Transient
        );
        assert_eq!(code_kind(code(t, Category::MailSystem, Detail::Two)), SendErrorKind::Transient);
        // 535 bad credentials, 530 authentication required: the same for every reply
        assert_eq!(
            code_kind(code(p, Category::Unspecified3, Detail::Five)),
            SendErrorKind::Refused
        );
        assert_eq!(
            code_kind(code(p, Category::Unspecified3, Detail::Zero)),
            SendErrorKind::Refused
        );
    }

    #[test]
    fn secret_never_shows_in_debug_output() {
        let mut settings = SmtpSettings::new("relay.test", SmtpTls::StartTls);
        settings.username = Some("iapt".into());
        settings.password = Some(Secret::new("hunter2"));
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
        assert_eq!(settings.port, 587);
    }

    #[test]
    fn login_without_password_is_refused_before_any_connection() {
        let mut settings = SmtpSettings::new("relay.test", SmtpTls::None);
        settings.username = Some("iapt".into());
        let err = SmtpTransport::new(&settings).expect_err("no password");
        assert!(err.message.contains("no password"), "{err}");
    }
}
