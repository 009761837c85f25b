//! Turns the validated `[outbound]`/`[smtp]` configuration into a ready transport, reading
//! secrets at this point and nowhere else. Owns only that translation.

use super::{
    AuthMechanism, FileTransport, SendError, SendmailTransport, SmtpSettings, SmtpTls,
    SmtpTransport, Transport,
};
use crate::config::{self, Credential};

/// The transport `outbound` configures. Fails on what no retry can fix: a secret that cannot
/// be read, or SMTP settings lettre refuses. Nothing connects here.
pub fn transport_from_config(outbound: &config::Outbound) -> Result<Box<dyn Transport>, SendError> {
    Ok(match &outbound.transport {
        config::Transport::File(directory) => Box::new(FileTransport::new(directory)),
        config::Transport::Sendmail(command) => Box::new(SendmailTransport::new(command)),
        config::Transport::Smtp(smtp) => Box::new(SmtpTransport::new(&smtp_settings(smtp)?)?),
    })
}

/// The SMTP settings for `smtp`, with its password read from the environment or file named.
pub fn smtp_settings(smtp: &config::Smtp) -> Result<SmtpSettings, SendError> {
    let tls = match smtp.tls {
        config::Tls::Implicit => SmtpTls::Implicit,
        config::Tls::StartTls => SmtpTls::StartTls,
        config::Tls::None => SmtpTls::None,
    };
    let mut settings = SmtpSettings::new(smtp.host.clone(), tls);
    settings.port = smtp.port;
    settings.username = smtp.username.clone();
    settings.auth = vec![match smtp.auth {
        config::Auth::Plain => AuthMechanism::Plain,
        config::Auth::XOAuth2 => AuthMechanism::Xoauth2,
    }];
    settings.password = match &smtp.credential {
        None => None,
        Some(Credential::Password(source)) => {
            Some(source.read().map_err(|e| SendError::permanent(format!("[smtp] password: {e}")))?)
        }
        // A token expires within the hour, so it needs refreshing between sends; that comes
        // with the production SMTP work. Refused here rather than failing an hour later.
        Some(Credential::TokenCommand(_)) => {
            return Err(SendError::permanent(
                "[smtp] oauth2_token_command is not supported by this version's SMTP transport",
            ))
        }
    };
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
        assert_eq!(settings.auth, [AuthMechanism::Plain]);
    }

    #[test]
    fn unreadable_password_is_reported_at_start() {
        let missing = SecretSource::File("/nonexistent/iapt-smtp-password".into());
        let err = smtp_settings(&smtp(Some(Credential::Password(missing)))).expect_err("missing");
        assert!(err.message.starts_with("[smtp] password"), "{err}");
    }
}
