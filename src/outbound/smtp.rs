//! Sends replies to an SMTP relay with lettre's blocking, pooled transport, passing the stored
//! bytes through `send_raw` so what goes out is exactly what was filed.
//!
//! Owns the relay settings and the translation of the relay's answers into retry decisions.

use super::{envelope, OutboxItem, SendError, SendErrorKind, Transport};
pub use crate::config::Secret;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::{Category, Code, Severity};
use lettre::Transport as _;
use std::fmt;
use std::time::Duration;

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
}

impl SmtpSettings {
    /// Settings for `host` with the usual port for `tls`, no login, and a 30 s timeout.
    pub fn new(host: impl Into<String>, tls: SmtpTls) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port: tls.default_port(),
            tls,
            username: None,
            password: None,
            auth: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A pooled connection to one relay.
#[derive(Clone)]
pub struct SmtpTransport {
    inner: lettre::SmtpTransport,
    relay: String,
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport").field("relay", &self.relay).finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Builds the transport; nothing connects until the first send. Fails only on settings that
    /// can never work (a login without a password, TLS that cannot be set up).
    pub fn new(settings: &SmtpSettings) -> Result<SmtpTransport, SendError> {
        let host = settings.host.trim();
        let tls = |wrap: fn(TlsParameters) -> Tls| {
            TlsParameters::new(host.to_string())
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
            .timeout(Some(settings.timeout));
        match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => {
                builder =
                    builder.credentials(Credentials::new(user.clone(), password.expose().into()));
            }
            (Some(user), None) => {
                return Err(SendError::permanent(format!("SMTP user {user} has no password")));
            }
            (None, _) => {}
        }
        if !settings.auth.is_empty() {
            builder = builder.authentication(settings.auth.iter().map(|m| mechanism(*m)).collect());
        }
        Ok(SmtpTransport { inner: builder.build(), relay: format!("{host}:{}", settings.port) })
    }

    /// Connects and greets the relay once, so a wrong host or port shows at start-up.
    pub fn test_connection(&self) -> Result<(), SendError> {
        match self.inner.test_connection() {
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
        self.inner.send_raw(&envelope, raw).map(|_| ()).map_err(|e| classify(&self.relay, &e))
    }
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
