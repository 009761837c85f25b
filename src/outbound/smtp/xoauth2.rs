//! XOAUTH2 logins to the relay: an access token from a `TokenProvider` as the SASL secret of
//! each new connection, and one retry with a fresh token when the relay refuses the one in
//! hand (tokens expire within the hour, and may be revoked earlier).
//!
//! Owns only that. Must not run the token command itself: the provider does (the daemon's
//! `oauth2_token_command` source, shared with IMAP).

use super::conn::{Conn, Failure, Link};
use super::SendError;
use crate::config::Secret;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::Error as SmtpError;
use std::sync::Arc;

/// Where XOAUTH2 access tokens come from. The daemon's token-command source implements it;
/// tests use a fixed list.
pub trait TokenProvider: Send + Sync {
    /// A token believed valid now: the cached one, or a freshly fetched one.
    fn token(&self) -> Result<Secret, String>;

    /// The relay refused the last token: forget it, so the next `token` fetches a new one.
    fn invalidate(&self);
}

pub(super) struct TokenLogin {
    user: String,
    tokens: Arc<dyn TokenProvider>,
}

impl TokenLogin {
    pub(super) fn new(user: String, tokens: Arc<dyn TokenProvider>) -> TokenLogin {
        TokenLogin { user, tokens }
    }

    /// A new connection logged in with the provider's token, or with a fresh one if the relay
    /// refused it. Pooled connections keep the login they made, whatever the token is now.
    pub(super) async fn open(&self, link: &Link, relay: &str) -> Result<Conn, SendError> {
        match self.try_open(link, relay).await? {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                let why = refusal(&e);
                tracing::info!(
                    relay,
                    "relay refused the XOAUTH2 token ({why}); trying a fresh one"
                );
                self.tokens.invalidate();
            }
        }
        self.try_open(link, relay).await?.map_err(|e| {
            let why = refusal(&e);
            let mut err = Failure::Login(e).into_send_error(relay);
            err.message = format!("relay {relay} refused a fresh XOAUTH2 token too ({why})");
            err
        })
    }

    /// The connection, or the relay's refusal of the token (inner error), or any other failure.
    async fn try_open(
        &self,
        link: &Link,
        relay: &str,
    ) -> Result<Result<Conn, SmtpError>, SendError> {
        // Fetched before connecting: a token that cannot be had is the fault to report.
        let token = self
            .tokens
            .token()
            .map_err(|e| SendError::transient(format!("relay {relay}: no XOAUTH2 token: {e}")))?;
        let credentials = Credentials::new(self.user.clone(), token.expose().to_string());
        match link.open(Some((&[Mechanism::Xoauth2], &credentials))).await {
            Ok(conn) => Ok(Ok(conn)),
            Err(Failure::Login(e)) if token_refused(&e) => Ok(Err(e)),
            Err(f) => Err(f.into_send_error(relay)),
        }
    }
}

/// The refusal in words that point the right way. A relay refusing by challenge (RFC 7628
/// §3.2.2) reaches us as lettre's own "This mechanism does not expect a challenge", which would
/// send whoever reads the log looking at the client.
fn refusal(e: &SmtpError) -> String {
    match e.status() {
        Some(_) => e.to_string(),
        None => {
            "the token was not accepted: the relay answered AUTH with an error challenge".into()
        }
    }
}

/// Whether `e`, the relay's answer to AUTH, may be the relay refusing the token: 535
/// "authentication credentials invalid" (RFC 4954 §6; Microsoft 365 says 535 5.7.3), or an
/// error from lettre's client side, which is what a refusal sent as a 334 JSON challenge
/// (RFC 7628 §3.2.2, Dovecot and Gmail) turns into. Either way one retry with a fresh token
/// costs a token fetch and is never repeated.
fn token_refused(e: &SmtpError) -> bool {
    match e.status() {
        Some(code) => u16::from(code) == 535,
        None => e.is_client(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{OutboxItem, SmtpSettings, SmtpTls, SmtpTransport, Transport};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Hands out `token-1`, `token-2`, … and counts invalidations.
    #[derive(Default)]
    struct Counting {
        issued: AtomicUsize,
        invalidated: AtomicUsize,
    }

    impl TokenProvider for Counting {
        fn token(&self) -> Result<Secret, String> {
            let n = self.invalidated.load(Ordering::SeqCst) + 1;
            self.issued.fetch_add(1, Ordering::SeqCst);
            Ok(Secret::new(format!("token-{n}")))
        }

        fn invalidate(&self) {
            self.invalidated.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Broken;

    impl TokenProvider for Broken {
        fn token(&self) -> Result<Secret, String> {
            Err("token command exited with status 1".into())
        }

        fn invalidate(&self) {}
    }

    fn settings() -> SmtpSettings {
        let mut s = SmtpSettings::new("127.0.0.1", SmtpTls::None);
        // A port nothing listens on: refused at once.
        s.port = 9;
        s.username = Some("intake@example.nhs.test".into());
        s.timeout = std::time::Duration::from_secs(2);
        s
    }

    fn item() -> OutboxItem {
        OutboxItem {
            id: 1,
            message_id: "r1@iapt.test".into(),
            envelope_from: "intake@example.nhs.test".into(),
            recipients: vec!["analyst@leeds.nhs.test".into()],
            raw: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            attempts: 0,
        }
    }

    #[test]
    fn a_refusal_by_error_challenge_is_told_as_the_token_refused_not_as_our_fault() {
        // What lettre returns when the relay answers AUTH XOAUTH2 with an error challenge.
        let credentials = Credentials::new("u".into(), "t".into());
        let e = Mechanism::Xoauth2
            .response(&credentials, Some("eyJzdGF0dXMiOiI0MDEifQ=="))
            .expect_err("a challenge");
        assert!(e.to_string().contains("does not expect a challenge"), "{e}");
        let told = refusal(&e);
        assert!(!told.contains("does not expect"), "{told}");
        assert!(told.contains("token was not accepted"), "{told}");
        assert!(token_refused(&e), "a fresh token is tried");
    }

    #[test]
    fn a_token_that_cannot_be_fetched_leaves_the_reply_queued() {
        let transport = SmtpTransport::with_tokens(&settings(), Arc::new(Broken)).expect("built");
        let err = transport.send(&item()).expect_err("no token");
        assert!(err.is_transient(), "{err}");
        assert!(err.message.contains("status 1"), "{err}");
    }

    #[test]
    fn a_relay_that_is_down_does_not_cost_the_token() {
        let tokens = Arc::new(Counting::default());
        let transport = SmtpTransport::with_tokens(&settings(), tokens.clone()).expect("built");
        let err = transport.send(&item()).expect_err("nothing listens");
        assert!(err.is_transient(), "{err}");
        assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn xoauth2_without_a_username_or_a_token_source_is_refused_at_start() {
        let mut s = settings();
        s.username = None;
        assert!(SmtpTransport::with_tokens(&s, Arc::new(Counting::default())).is_err());
        let mut s = settings();
        s.auth = vec![crate::outbound::AuthMechanism::Xoauth2];
        let err = SmtpTransport::new(&s).expect_err("no token source");
        assert!(err.message.contains("token source"), "{err}");
    }
}
