//! Sending replies: the `Outbox` port the store implements (replies are queued in the same
//! transaction as the filing, SPEC §5), the transports (file, sendmail, SMTP) and the sender loop
//! that delivers what is due and retries transient failures.

use chrono::{DateTime, Utc};

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
