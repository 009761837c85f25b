//! Sending replies: the `Outbox` port the store implements (replies are queued in the same
//! transaction as the filing, SPEC §5), the transports (file, sendmail, SMTP) and the sender loop
//! that delivers what is due and retries transient failures.
//!
//! Owns getting stored reply bytes to the relay (or the reply folder) unchanged. Must not render
//! replies (that is `reply`) or know how the store keeps its queue (only the `Outbox` port).

use chrono::{DateTime, Utc};

pub mod build;
pub mod file;
pub mod gate;
pub mod memory;
pub mod sender;
pub mod sendmail;
pub mod smtp;

pub use build::{smtp_settings, transport_from_config, transport_with_tokens};
pub use file::FileTransport;
pub use gate::Gate;
pub use memory::{MemoryOutbox, MemoryTransport, OutboxState};
pub use sender::{backoff, deliver_due, deliver_due_gated, deliver_due_with, DeliveryStats};
pub use sendmail::SendmailTransport;
pub use smtp::{AuthMechanism, Secret, SmtpSettings, SmtpTls, SmtpTransport};

/// One queued reply, fully rendered: re-sending it sends the identical bytes (same Message-ID),
/// so a rare second copy after a crash is shown once by mail clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    /// Without angle brackets.
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    /// Delivery attempts made so far.
    pub attempts: u32,
}

/// The store's side of delivery. Implemented by every `Store`.
pub trait Outbox {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Replies not yet sent whose next attempt is due at `now`, oldest first.
    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, Self::Error>;

    /// The relay accepted the reply. Recorded as soon as it answers, to keep the window for a
    /// duplicate copy as short as the store allows.
    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<(), Self::Error>;

    /// Delivery failed. A permanent failure (5xx, bad address) is final and shown in `status`;
    /// a transient one is retried at `retry_at`.
    fn mark_failed(
        &self,
        id: i64,
        at: DateTime<Utc>,
        error: &str,
        permanent: bool,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), Self::Error>;
}

/// One way of handing a rendered reply to the world. Sync: the daemon calls it on a blocking
/// thread. The bytes in `item.raw` go out unchanged, so a resend is the identical message.
pub trait Transport: Send + Sync {
    fn send(&self, item: &OutboxItem) -> Result<(), SendError>;

    /// From now on, a send waiting on the relay ends early when `stop` is requested (a reply
    /// whose end of data was sent gets a short grace for its answer). Transports that never
    /// wait long ignore it.
    fn watch_shutdown(&self, _stop: &crate::shutdown::Shutdown) {}
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&self, item: &OutboxItem) -> Result<(), SendError> {
        (**self).send(item)
    }

    fn watch_shutdown(&self, stop: &crate::shutdown::Shutdown) {
        (**self).watch_shutdown(stop)
    }
}

/// Whether trying the same reply again later can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// The relay is down, busy or misconfigured, or said 4xx: retry with backoff.
    Transient,
    /// The relay refused this reply for good (5xx for the recipient or content, a malformed
    /// address): record it and never retry.
    Permanent,
    /// The relay refused *us*, not this reply — our sender at MAIL FROM (Microsoft 365's
    /// `550 5.7.60 … send as this sender`), our login — so every reply would fail alike:
    /// delivery pauses, the replies stay queued, and it resumes when the refusal clears.
    Refused,
    /// The whole reply went out and the relay's answer to its end did not come: the relay may
    /// have taken it. Not sent again before `retry_after` has passed (the rest of the
    /// end-of-data limit, RFC 5321 §4.5.3.2.6), so a slow relay does not get copies.
    Unanswered { retry_after: std::time::Duration },
}

/// A failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} delivery failure: {message}", match .kind {
    SendErrorKind::Transient | SendErrorKind::Unanswered { .. } => "temporary",
    SendErrorKind::Permanent => "permanent",
    SendErrorKind::Refused => "mailbox-wide",
})]
pub struct SendError {
    pub kind: SendErrorKind,
    pub message: String,
}

impl SendError {
    pub fn new(kind: SendErrorKind, message: impl Into<String>) -> SendError {
        SendError { kind, message: message.into() }
    }

    pub fn transient(message: impl Into<String>) -> SendError {
        SendError { kind: SendErrorKind::Transient, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError { kind: SendErrorKind::Permanent, message: message.into() }
    }

    /// Whether the reply stays queued to be tried again (everything but a permanent refusal).
    pub fn is_transient(&self) -> bool {
        self.kind != SendErrorKind::Permanent
    }
}

/// The SMTP envelope of an item; an address the relay could never accept is permanent.
/// An empty `envelope_from` is the null reverse-path `<>` (RFC 5321 §4.5.5).
pub(crate) fn envelope(item: &OutboxItem) -> Result<lettre::address::Envelope, SendError> {
    let parse = |a: &str| {
        a.parse::<lettre::Address>()
            .map_err(|e| SendError::permanent(format!("bad address {a:?}: {e}")))
    };
    let from = match item.envelope_from.trim() {
        "" => None,
        from => Some(parse(from)?),
    };
    let to = item.recipients.iter().map(|r| parse(r.trim())).collect::<Result<Vec<_>, _>>()?;
    lettre::address::Envelope::new(from, to)
        .map_err(|e| SendError::permanent(format!("bad envelope: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(from: &str, to: &[&str]) -> OutboxItem {
        OutboxItem {
            id: 1,
            message_id: "r1@iapt.test".into(),
            envelope_from: from.into(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
            raw: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            attempts: 0,
        }
    }

    #[test]
    fn envelope_keeps_sender_and_every_recipient() {
        let env = envelope(&item("iapt@dct.test", &["a@leeds.nhs.test", "b@leeds.nhs.test"]))
            .expect("valid envelope");
        assert_eq!(env.from().map(|a| a.to_string()).as_deref(), Some("iapt@dct.test"));
        assert_eq!(env.to().len(), 2);
    }

    #[test]
    fn empty_sender_is_the_null_reverse_path() {
        let env = envelope(&item("", &["a@leeds.nhs.test"])).expect("valid envelope");
        assert!(env.from().is_none());
    }

    #[test]
    fn malformed_or_missing_recipients_are_permanent() {
        for to in [&["not an address"][..], &[][..]] {
            let err = envelope(&item("iapt@dct.test", to)).expect_err("invalid");
            assert!(!err.is_transient(), "{to:?}: {err}");
        }
    }
}
