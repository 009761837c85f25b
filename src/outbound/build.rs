//! Turns the validated `[outbound]`/`[smtp]` configuration into a ready transport, reading
//! secrets at this point and nowhere else. Owns only that translation.

use super::smtp::TokenProvider;
use super::{
    AuthMechanism, FileTransport, SendError, SendmailTransport, SmtpSettings, SmtpTls,
    SmtpTransport, Transport,
};
use crate::config::{self, Credential};
use std::sync::Arc;

/// The transport `outbound` configures. Fails on what no retry can fix: a secret or CA file
/// that cannot be read, or SMTP settings lettre refuses. Nothing connects here.
///
/// `[smtp] oauth2_token_command` needs a token source: use `transport_with_tokens`.
pub fn transport_from_config(outbound: &config::Outbound) -> Result<Box<dyn Transport>, SendError> {
    transport_with_tokens(outbound, None)
}

/// As `transport_from_config`, with `tokens` supplying XOAUTH2 access tokens when `[smtp]`
/// names an `oauth2_token_command` (the caller builds the source that runs it, shared with
/// IMAP, so one command serves both).
pub fn transport_with_tokens(
    outbound: &config::Outbound,
    tokens: Option<Arc<dyn TokenProvider>>,
) -> Result<Box<dyn Transport>, SendError> {
    Ok(match &outbound.transport {
        config::Transport::File(directory) => Box::new(FileTransport::new(directory)),
        config::Transport::Sendmail(command) => Box::new(SendmailTransport::new(command)),
        config::Transport::Smtp(smtp) => {
            let settings = smtp_settings(smtp)?;
            match (&smtp.credential, tokens) {
                (Some(Credential::TokenCommand(_)), Some(tokens)) => {
                    Box::new(SmtpTransport::with_tokens(&settings, tokens)?)
                }
                (Some(Credential::TokenCommand(_)), None) => {
                    return Err(SendError::permanent(
                        "[smtp] oauth2_token_command: no token source was given to run it",
                    ))
                }
                _ => Box::new(SmtpTransport::new(&settings)?),
            }
        }
    })
}

/// The SMTP settings for `smtp`, with its password read from the environment or file named and
/// its CA file read. A token command is not run here: tokens come from a `TokenProvider`.
pub fn smtp_settings(smtp: &config::Smtp) -> Result<SmtpSettings, SendError> {
    let tls = match smtp.tls {
        config::Tls::Implicit => SmtpTls::Implicit,
        config::Tls::StartTls => SmtpTls::StartTls,
        config::Tls::None => SmtpTls::None,
    };
    let mut settings = SmtpSettings::new(smtp.host.clone(), tls);
    settings.port = smtp.port;
    settings.username = smtp.username.clone();
    settings.timeout = smtp.timeout;
    settings.steps = smtp.steps;
    settings.helo_name = smtp.helo_name.clone();
    settings.pool_size = smtp.connections;
    // "plain" means a password, sent by PLAIN or, where a relay offers only that, LOGIN.
    settings.auth = match smtp.auth {
        config::Auth::Plain => vec![AuthMechanism::Plain, AuthMechanism::Login],
        config::Auth::XOAuth2 => vec![AuthMechanism::Xoauth2],
    };
    settings.password = match &smtp.credential {
        Some(Credential::Password(source)) => {
            Some(source.read().map_err(|e| SendError::permanent(format!("[smtp] password: {e}")))?)
        }
        None | Some(Credential::TokenCommand(_)) => None,
    };
    if let Some(path) = &smtp.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            SendError::permanent(format!("[smtp] ca_file: cannot read {}: {e}", path.display()))
        })?;
        settings.ca_pem = Some(pem);
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    fn smtp(credential: Option<Credential>) -> config::Smtp {
        config::Smtp {
            host: "relay.test".into(),
            port: 2525,
            tls: config::Tls::StartTls,
            username: Some("iapt".into()),
            auth: config::Auth::Plain,
            credential,
            ca_file: None,
            timeout: std::time::Duration::from_secs(30),
            steps: config::SmtpSteps::default(),
            helo_name: None,
            connections: 4,
        }
    }

    #[test]
    fn smtp_settings_carry_the_configured_relay_and_the_password_from_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("smtp-password");
        std::fs::write(&file, "s3cret\n").expect("write secret");
        let settings = smtp_settings(&smtp(Some(Credential::Password(SecretSource::File(file)))))
            .expect("settings");
        assert_eq!((settings.host.as_str(), settings.port), ("relay.test", 2525));
        assert_eq!(settings.tls, SmtpTls::StartTls);
        assert_eq!(settings.password.as_ref().map(|p| p.expose()), Some("s3cret"));
        assert_eq!(settings.auth, [AuthMechanism::Plain, AuthMechanism::Login]);
    }

    #[test]
    fn unreadable_password_is_reported_at_start() {
        let missing = SecretSource::File("/nonexistent/iapt-smtp-password".into());
        let err = smtp_settings(&smtp(Some(Credential::Password(missing)))).expect_err("missing");
        assert!(err.message.starts_with("[smtp] password"), "{err}");
    }

    fn outbound(smtp: config::Smtp) -> config::Outbound {
        config::Outbound {
            transport: config::Transport::Smtp(smtp),
            from: "intake@example.nhs.test".into(),
            from_name: "IAPT KPI Returns".into(),
            templates: "config/replies".into(),
        }
    }

    #[test]
    fn smtp_settings_carry_the_timeout_and_the_ca_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .expect("write ca");
        let mut config = smtp(None);
        config.timeout = std::time::Duration::from_secs(7);
        config.ca_file = Some(ca);
        let settings = smtp_settings(&config).expect("settings");
        assert_eq!(settings.timeout, std::time::Duration::from_secs(7));
        assert!(settings.ca_pem.as_deref().is_some_and(|p| p.starts_with(b"-----BEGIN")));
    }

    #[test]
    fn missing_or_non_pem_ca_file_is_reported_at_start() {
        let mut config = smtp(None);
        config.ca_file = Some("/nonexistent/iapt-ca.pem".into());
        let err = smtp_settings(&config).expect_err("missing CA");
        assert!(err.message.starts_with("[smtp] ca_file"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").expect("write ca");
        config.ca_file = Some(ca);
        let err = transport_from_config(&outbound(config)).err().expect("not PEM");
        assert!(!err.is_transient() && err.message.contains("CA certificate"), "{err}");
    }

    #[test]
    fn token_command_without_a_token_source_is_refused_at_start() {
        let mut config = smtp(Some(Credential::TokenCommand("print-token".into())));
        config.auth = config::Auth::XOAuth2;
        let settings = smtp_settings(&config).expect("settings");
        assert_eq!(settings.auth, [AuthMechanism::Xoauth2]);
        assert!(settings.password.is_none());
        let err = transport_from_config(&outbound(config)).err().expect("no token source");
        assert!(err.message.contains("token source"), "{err}");
    }
}
