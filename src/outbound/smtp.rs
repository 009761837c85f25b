//! Sends replies to an SMTP relay with lettre's blocking, pooled transport, passing the stored
//! bytes through `send_raw` so what goes out is exactly what was filed.
//!
//! Owns the relay settings (TLS with an optional private CA, timeout, pool, login) and the
//! translation of the relay's answers into retry decisions. XOAUTH2 logins live in `xoauth2`.
//! Must not read files or run commands: secrets, the CA and tokens arrive from `build`.

mod xoauth2;

use super::{envelope, OutboxItem, SendError, SendErrorKind, Transport};
pub use crate::config::Secret;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::response::{Category, Code, Severity};
use lettre::transport::smtp::{PoolConfig, SmtpTransportBuilder};
use lettre::Transport as _;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
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
    /// For connecting and for each command.
    pub timeout: Duration,
    /// PEM certificate(s) of a private CA, trusted besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Idle connections kept open for the next reply; 0 opens a connection per reply.
    pub pool_size: u32,
}

impl SmtpSettings {
    /// Settings for `host` with the usual port for `tls`, no login, a 30 s timeout and a pool
    /// of 4 connections.
    pub fn new(host: impl Into<String>, tls: SmtpTls) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port: tls.default_port(),
            tls,
            username: None,
            password: None,
            auth: Vec::new(),
            timeout: Duration::from_secs(30),
            ca_pem: None,
            // The sender delivers one reply at a time, so a few connections are plenty; a
            // relay closes idle ones itself (Postfix after 300 s), and the pool notices.
            pool_size: 4,
        }
    }
}

/// A pooled connection to one relay.
#[derive(Clone)]
pub struct SmtpTransport {
    login: Login,
    relay: String,
}

#[derive(Clone)]
enum Login {
    /// No login, or a fixed password: one pooled transport for the life of the daemon.
    Fixed(lettre::SmtpTransport),
    /// XOAUTH2: the transport is rebuilt whenever the token changes.
    Token(Arc<xoauth2::TokenLogin>),
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport").field("relay", &self.relay).finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Builds the transport; nothing connects until the first send. Fails only on settings that
    /// can never work (a login without a password, a CA that is not PEM, TLS that cannot be set
    /// up, XOAUTH2 without a token source: use `with_tokens`).
    pub fn new(settings: &SmtpSettings) -> Result<SmtpTransport, SendError> {
        let builder = base_builder(settings)?;
        let relay = relay_name(settings);
        if settings.auth.contains(&AuthMechanism::Xoauth2) && settings.password.is_none() {
            return Err(SendError::permanent(format!(
                "SMTP relay {relay}: XOAUTH2 needs a token source"
            )));
        }
        let builder = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => {
                builder.credentials(Credentials::new(user.clone(), password.expose().into()))
            }
            (Some(user), None) => {
                return Err(SendError::permanent(format!("SMTP user {user} has no password")));
            }
            (None, _) => builder,
        };
        Ok(SmtpTransport { login: Login::Fixed(builder.build()), relay })
    }

    /// Builds a transport that logs in with XOAUTH2 as `settings.username`, taking each access
    /// token from `tokens`. When the relay refuses a token, it is invalidated and the reply is
    /// tried once more with a fresh one.
    pub fn with_tokens(
        settings: &SmtpSettings,
        tokens: Arc<dyn TokenProvider>,
    ) -> Result<SmtpTransport, SendError> {
        let relay = relay_name(settings);
        let user = settings.username.clone().ok_or_else(|| {
            SendError::permanent(format!("SMTP relay {relay}: XOAUTH2 needs a username"))
        })?;
        let builder = base_builder(settings)?.authentication(vec![Mechanism::Xoauth2]);
        let login = xoauth2::TokenLogin::new(builder, user, tokens);
        Ok(SmtpTransport { login: Login::Token(Arc::new(login)), relay })
    }

    /// Connects and greets the relay once (logging in if configured), so a wrong host, port,
    /// CA or credential shows at start-up.
    pub fn test_connection(&self) -> Result<(), SendError> {
        let answer = match &self.login {
            Login::Fixed(transport) => transport.test_connection(),
            Login::Token(login) => login.transport(&self.relay)?.test_connection(),
        };
        match answer {
            Ok(true) => Ok(()),
            Ok(false) => Err(SendError::transient(format!("relay {} did not answer", self.relay))),
            Err(e) => Err(classify(&self.relay, &e)),
        }
    }
}

impl Transport for SmtpTransport {
    fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
        let envelope = envelope(item)?;
        // lettre ends DATA with CRLF "." CRLF after the bytes it is given; a message that
        // already ends in CRLF would gain an empty last line, so that CRLF is left to lettre.
        let raw = item.raw.strip_suffix(b"\r\n").unwrap_or(&item.raw);
        match &self.login {
            Login::Fixed(transport) => transport
                .send_raw(&envelope, raw)
                .map(|_| ())
                .map_err(|e| classify(&self.relay, &e)),
            Login::Token(login) => login.send(&self.relay, &envelope, raw),
        }
    }
}

fn relay_name(settings: &SmtpSettings) -> String {
    format!("{}:{}", settings.host.trim(), settings.port)
}

/// Everything but the login: relay, port, TLS (system roots plus the private CA), timeout, pool.
fn base_builder(settings: &SmtpSettings) -> Result<SmtpTransportBuilder, SendError> {
    let host = settings.host.trim();
    let tls = |wrap: fn(TlsParameters) -> Tls| -> Result<Tls, SendError> {
        let mut params = TlsParameters::builder(host.to_string());
        if let Some(pem) = &settings.ca_pem {
            params = params.add_root_certificate(ca_certificate(pem)?);
        }
        params
            .build()
            .map(wrap)
            .map_err(|e| SendError::permanent(format!("TLS setup for {host}: {e}")))
    };
    let tls = match settings.tls {
        SmtpTls::Implicit => tls(Tls::Wrapper)?,
        SmtpTls::StartTls => tls(Tls::Required)?,
        SmtpTls::None => Tls::None,
    };
    let mut builder = lettre::SmtpTransport::builder_dangerous(host)
        .port(settings.port)
        .tls(tls)
        .timeout(Some(settings.timeout))
        .pool_config(PoolConfig::new().max_size(settings.pool_size));
    if !settings.auth.is_empty() {
        builder = builder.authentication(settings.auth.iter().map(|m| mechanism(*m)).collect());
    }
    Ok(builder)
}

/// The private CA; PEM text without a single certificate in it is refused rather than
/// silently trusting nothing extra.
fn ca_certificate(pem: &[u8]) -> Result<Certificate, SendError> {
    let refuse = |why: &str| SendError::permanent(format!("SMTP CA certificate: {why}"));
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(refuse("no PEM certificate found"));
    }
    Certificate::from_pem(pem).map_err(|e| refuse(&e.to_string()))
}

fn mechanism(m: AuthMechanism) -> Mechanism {
    match m {
        AuthMechanism::Plain => Mechanism::Plain,
        AuthMechanism::Login => Mechanism::Login,
        AuthMechanism::Xoauth2 => Mechanism::Xoauth2,
    }
}

fn classify(relay: &str, e: &lettre::transport::smtp::Error) -> SendError {
    // Only a reply code can blame the message; network, TLS, timeouts, garbled answers and
    // client-side refusals all leave the reply worth trying again.
    let kind = match e.status() {
        Some(code) if e.is_permanent() => code_kind(code),
        _ => SendErrorKind::Transient,
    };
    SendError { kind, message: format!("relay {relay}: {e}") }
}

/// 4xx is temporary (RFC 5321 §4.2.1). 5xx is permanent, except x3z: 530/534/535/538 are the
/// relay refusing *us* (authentication or TLS required, RFC 4954 §6), a configuration fault
/// that must not turn every queued reply into a permanent failure.
pub(crate) fn code_kind(code: Code) -> SendErrorKind {
    match (code.severity, code.category) {
        (Severity::PermanentNegativeCompletion, Category::Unspecified3) => SendErrorKind::Transient,
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
    fn deferrals_and_authentication_refusals_are_retried() {
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
        // 535 bad credentials, 530 authentication required
        assert_eq!(
            code_kind(code(p, Category::Unspecified3, Detail::Five)),
            SendErrorKind::Transient
        );
        assert_eq!(
            code_kind(code(p, Category::Unspecified3, Detail::Zero)),
            SendErrorKind::Transient
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
