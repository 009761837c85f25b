//! The DKIM adapter: iapt-intake's own check of a message's signatures (`[auth] verify_dkim`),
//! with mail-auth doing the cryptography and hickory (through mail-auth) the DNS, `"system"` or
//! one nameserver (`[auth] dns`). Not pure: it talks to DNS.
//!
//! mail-auth is async; the pipeline and the CLI are not. The verifier owns a small
//! current-thread tokio runtime and its `verify` blocks on it: callable from any thread that is
//! not itself running async code (the daemon's blocking threads, the CLI), and several threads
//! may call it at once. A runtime of its own keeps the resolver's sockets and cache in one place
//! whoever calls. The work is the async [`check`]; when the daemon moves onto one runtime, that
//! function is awaited there and this wrapper goes.
//!
//! Bounds: at most [`MAX_SIGNATURES`] signatures are checked (each costs DNS lookups); the whole
//! check stops after the time limit (default [`DEFAULT_TIMEOUT`]) so a silent DNS server cannot
//! hang the pipeline, and what was not answered by then is a `temperror`, which says "not
//! verified for now". A panic in the third-party code on hostile input becomes a `permerror`
//! for the message instead of taking the caller down.

use super::settings::Dns;
use super::signature;
use super::verdict::{DkimOutcome, DkimResult};
use mail_auth::hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, Error as AuthError, MessageAuthenticator};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Signatures checked per message; real mail carries one to three.
pub const MAX_SIGNATURES: usize = 5;
/// The whole check of one message, DNS included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("cannot start the DKIM checker: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("cannot set up DNS for the DKIM checker ({0}); check [auth] dns")]
    Dns(String),
}

pub struct DkimVerifier {
    // An Option only so that Drop can shut it down without blocking (a runtime dropped inside
    // async code would otherwise panic).
    runtime: Option<tokio::runtime::Runtime>,
    authenticator: MessageAuthenticator,
    timeout: Duration,
}

impl std::fmt::Debug for DkimVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimVerifier").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl DkimVerifier {
    /// A verifier asking `dns`. Reads `/etc/resolv.conf` for `Dns::System`; sends nothing yet.
    pub fn new(dns: &Dns) -> Result<DkimVerifier, DkimError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let authenticator = {
            let _inside = runtime.enter();
            match dns {
                Dns::System => MessageAuthenticator::new_system_conf(),
                Dns::Server(addr) => {
                    let servers =
                        NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                    let mut opts = ResolverOpts::default();
                    // Two tries of 2 s each fit in the 5 s limit of the whole check.
                    opts.timeout = Duration::from_secs(2);
                    opts.attempts = 2;
                    MessageAuthenticator::new(
                        ResolverConfig::from_parts(None, vec![], servers),
                        opts,
                    )
                }
            }
            .map_err(|e| DkimError::Dns(e.to_string()))?
        };
        Ok(DkimVerifier { runtime: Some(runtime), authenticator, timeout: DEFAULT_TIMEOUT })
    }

    /// The same verifier with another limit on the whole check of one message.
    pub fn with_timeout(mut self, timeout: Duration) -> DkimVerifier {
        self.timeout = timeout;
        self
    }

    /// Checks the signatures of `raw` (at most [`MAX_SIGNATURES`], topmost first); one outcome
    /// each, none for an unsigned message. Blocks for at most the time limit (plus parsing).
    pub fn verify(&self, raw: &[u8]) -> Vec<DkimOutcome> {
        let Some(runtime) = &self.runtime else { return Vec::new() };
        let run = catch_unwind(AssertUnwindSafe(|| {
            runtime.block_on(check(&self.authenticator, self.timeout, raw))
        }));
        run.unwrap_or_else(|_| {
            vec![DkimOutcome {
                domain: String::new(),
                selector: String::new(),
                result: DkimResult::PermError,
                reason: Some("the DKIM checker could not read this message".into()),
                b: String::new(),
            }]
        })
    }
}

impl Drop for DkimVerifier {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The check itself, on whatever tokio runtime awaits it.
pub async fn check(
    authenticator: &MessageAuthenticator,
    timeout: Duration,
    raw: &[u8],
) -> Vec<DkimOutcome> {
    let Some(mut message) = AuthenticatedMessage::parse(raw) else { return Vec::new() };
    message.dkim_headers.truncate(MAX_SIGNATURES);
    // Named by our own tag parser: the b= as written, and a name even for a signature
    // mail-auth could not parse.
    let named: Vec<(String, String, String)> = message
        .dkim_headers
        .iter()
        .map(|h| {
            let tags = signature::parse(&String::from_utf8_lossy(h.value)).unwrap_or_default();
            (tags.d.unwrap_or_default(), tags.s.unwrap_or_default(), tags.b.unwrap_or_default())
        })
        .collect();
    let outputs = tokio::time::timeout(timeout, authenticator.verify_dkim(&message)).await;
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(_) => {
            let reason = format!("no answer from DNS within {} s", timeout.as_secs_f32());
            return named
                .into_iter()
                .map(|(domain, selector, b)| DkimOutcome {
                    domain,
                    selector,
                    result: DkimResult::TempError,
                    reason: Some(reason.clone()),
                    b,
                })
                .collect();
        }
    };
    outputs
        .iter()
        .zip(named)
        .map(|(out, (domain, selector, b))| {
            let (result, error) = match out.result() {
                mail_auth::DkimResult::Pass => (DkimResult::Pass, None),
                mail_auth::DkimResult::Fail(e) => (DkimResult::Fail, Some(e)),
                mail_auth::DkimResult::Neutral(e) => (DkimResult::Neutral, Some(e)),
                mail_auth::DkimResult::PermError(e) => (DkimResult::PermError, Some(e)),
                mail_auth::DkimResult::TempError(e) => (DkimResult::TempError, Some(e)),
                mail_auth::DkimResult::None => (DkimResult::Neutral, None),
            };
            let reason = match (result, error) {
                (DkimResult::Pass, _) => None,
                (_, Some(e)) => Some(explain(e, &domain, &selector)),
                (_, None) => Some("no result".into()),
            };
            DkimOutcome { domain, selector, result, reason, b }
        })
        .collect()
}

/// mail-auth's error in words a Data Collection Team member can act on.
fn explain(e: &AuthError, domain: &str, selector: &str) -> String {
    let key = format!("{selector}._domainkey.{domain}");
    match e {
        AuthError::FailedBodyHashMatch => {
            "the body was changed after signing (body hash mismatch)".into()
        }
        AuthError::FailedVerification => {
            "the signature does not match the message: a signed header \
             such as From, To or Subject was changed after signing (or the key is not the signer's)"
                .into()
        }
        AuthError::FailedAuidMatch => "the signature's i= identity is outside its domain".into(),
        AuthError::RevokedPublicKey => format!("the key at {key} has been revoked"),
        AuthError::SignatureExpired => "the signature has expired (x=)".into(),
        AuthError::DnsRecordNotFound(code) => format!("no DKIM key is published at {key} ({code})"),
        AuthError::DnsError(err) => format!("the DNS lookup of {key} failed: {err}"),
        AuthError::InvalidRecordType => format!("the record at {key} is not a usable DKIM key"),
        AuthError::ParseError => {
            format!("the signature (or the key record at {key}) cannot be read")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn signed_many(n: usize) -> Vec<u8> {
        let mut m = String::new();
        for i in 0..n {
            m.push_str(&format!(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d{i}.leeds.nhs.test; s=sel;\r\n\
                 \th=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=QUJD{i}\r\n"
            ));
        }
        m.push_str("From: ann@leeds.nhs.test\r\nSubject: IAPT Leeds\r\n\r\n");
        m.into_bytes()
    }

    #[test]
    fn at_most_five_signatures_are_checked_and_a_silent_dns_is_a_temperror_in_time() {
        let silent = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let dns = Dns::Server(silent.local_addr().expect("addr"));
        let verifier =
            DkimVerifier::new(&dns).expect("verifier").with_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let outcomes = verifier.verify(&signed_many(12));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(outcomes.len(), MAX_SIGNATURES);
        assert!(outcomes.iter().all(|o| o.result == DkimResult::TempError), "{outcomes:?}");
        assert_eq!(outcomes[0].domain, "d0.leeds.nhs.test");
        assert_eq!(outcomes[0].b, "QUJD0");
        assert!(verifier.verify(b"From: a@b.test\r\n\r\nunsigned").is_empty());
        assert!(verifier.verify(b"").is_empty());
    }

    #[test]
    fn usable_from_the_daemons_blocking_threads_and_dropped_inside_async_code() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let verifier = DkimVerifier::new(&Dns::Server("127.0.0.1:9".parse().expect("addr")))
                .expect("verifier");
            let verifier = tokio::task::spawn_blocking(move || {
                assert!(verifier.verify(b"From: a@b.test\r\n\r\nunsigned").is_empty());
                verifier
            })
            .await
            .expect("blocking task");
            drop(verifier); // inside async code: must not panic
        });
    }
}
