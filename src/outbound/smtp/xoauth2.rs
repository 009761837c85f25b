//! XOAUTH2 logins to the relay: an access token from a `TokenProvider` as the SASL secret,
//! a pooled lettre transport per token, and one retry with a fresh token when the relay
//! refuses the one in hand (tokens expire within the hour, and may be revoked earlier).
//!
//! Owns only that. Must not run the token command itself: the provider does (the daemon's
//! `oauth2_token_command` source, shared with IMAP).

use super::{classify, SendError};
use crate::config::Secret;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{Error as SmtpError, SmtpTransportBuilder};
use lettre::Transport as _;
use std::sync::{Arc, Mutex, PoisonError};

/// Where XOAUTH2 access tokens come from. The daemon's token-command source implements it;
/// tests use a fixed list.
pub trait TokenProvider: Send + Sync {
    /// A token believed valid now: the cached one, or a freshly fetched one.
    fn token(&self) -> Result<Secret, String>;

    /// The relay refused the last token: forget it, so the next `token` fetches a new one.
    fn invalidate(&self);
}

pub(super) struct TokenLogin {
    /// Relay, TLS, timeout, pool and the XOAUTH2 mechanism; no credentials.
    base: SmtpTransportBuilder,
    user: String,
    tokens: Arc<dyn TokenProvider>,
    /// The token the pooled transport logs in with, and that transport.
    current: Mutex<Option<(Secret, lettre::SmtpTransport)>>,
}

impl TokenLogin {
    pub(super) fn new(
        base: SmtpTransportBuilder,
        user: String,
        tokens: Arc<dyn TokenProvider>,
    ) -> TokenLogin {
        TokenLogin { base, user, tokens, current: Mutex::new(None) }
    }

    /// The pooled transport for the provider's current token, rebuilt when the token changed.
    /// Connections already logged in with an older token stay usable until they close.
    pub(super) fn transport(&self, relay: &str) -> Result<lettre::SmtpTransport, SendError> {
        let token = self
            .tokens
            .token()
            .map_err(|e| SendError::transient(format!("relay {relay}: no XOAUTH2 token: {e}")))?;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((in_use, transport)) = current.as_ref() {
            if *in_use == token {
                return Ok(transport.clone());
            }
        }
        let credentials = Credentials::new(self.user.clone(), token.expose().to_string());
        let transport = self.base.clone().credentials(credentials).build();
        if let Some((_, old)) = current.replace((token, transport.clone())) {
            old.shutdown();
        }
        Ok(transport)
    }

    pub(super) fn send(
        &self,
        relay: &str,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<(), SendError> {
        match self.transport(relay)?.send_raw(envelope, raw) {
            Ok(_) => return Ok(()),
            Err(e) if token_refused(&e) => {
                tracing::info!(relay, error = %e, "relay refused the XOAUTH2 token; trying a fresh one");
                self.tokens.invalidate();
            }
            Err(e) => return Err(classify(relay, &e)),
        }
        self.transport(relay)?.send_raw(envelope, raw).map(|_| ()).map_err(|e| {
            let mut err = classify(relay, &e);
            if token_refused(&e) {
                // lettre's words for a refusal by challenge ("does not expect a challenge")
                // would send whoever reads `status` looking in the wrong place.
                err.message = format!("relay {relay} refused a fresh XOAUTH2 token too: {e}");
            }
            err
        })
    }
}

/// Whether `e` may be the relay refusing the token: 535 "authentication credentials invalid"
/// (RFC 4954 §6; Microsoft 365 says 535 5.7.3), or an error from lettre's client side, which
/// is what a refusal sent as a 334 JSON challenge (RFC 7628 §3.2.2, Dovecot and Gmail) turns
/// into. Either way one retry with a fresh token costs a token fetch and is never repeated.
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
