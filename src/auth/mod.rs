//! Who sent it (SPEC §4a): whether a message carries evidence that its From domain sent it.
//!
//! Owns reading the evidence and the verdict, not what is done with it (holding, notices: the
//! pipeline). The pure parts never touch DNS or the clock: [`results`] (RFC 8601
//! Authentication-Results), [`signature`] (DKIM-Signature tags), [`headers`] (finding those
//! fields), [`settings`] (`[auth]`, alignment) and [`verdict`]. The one adapter is [`dkim`]:
//! our own DKIM check through mail-auth and DNS.
//!
//! Use: build one [`DkimVerifier`] at start when `settings.verify_dkim` is set, then for each
//! message `verify_message(raw, from_domain, &settings, verifier.as_ref())`.

pub mod dkim;
pub mod headers;
pub mod results;
pub mod settings;
pub mod signature;
pub mod verdict;

pub use dkim::{DkimError, DkimVerifier};
pub use settings::{Alignment, AuthSettings, Dns, Require, DEFAULT_SHARED_DOMAINS};
pub use verdict::{DkimOutcome, DkimResult, Method, Verification};

/// The verdict on one raw message whose single From mailbox is at `from_domain` (the caller
/// has checked there is exactly one). Reads the Authentication-Results first; only when they do
/// not verify, and `settings.verify_dkim` is set, checks the DKIM signatures with `dkim` (which
/// blocks for at most its time limit). `verified` reports the evidence whatever
/// `settings.require` says: holding is the caller's decision.
pub fn verify_message(
    raw: &[u8],
    from_domain: &str,
    settings: &AuthSettings,
    dkim: Option<&DkimVerifier>,
) -> Verification {
    let fields = headers::scan(raw);
    let from_results = verdict::decide(&fields, from_domain, settings, None);
    if from_results.verified || !settings.verify_dkim {
        return from_results;
    }
    match dkim {
        Some(verifier) => {
            let outcomes = verifier.verify(raw);
            verdict::decide(&fields, from_domain, settings, Some(&outcomes))
        }
        None => from_results,
    }
}
