//! The store (SPEC §5): every message received (raw, as a blob), its classification and outcome,
//! every return version with its figures and findings, every reply (the outbox) and an audit
//! trail. Filing a message, numbering its returns and queueing its replies is one transaction,
//! so a crash loses nothing and never files a message twice.
//!
//! `Store` is the port; `SqliteStore` (SQLite + content-addressed blobs) is the embedded default,
//! and tests use it too, on a database in a temporary directory. This module owns the database
//! and the blob directory and nothing else: it never reads mail, renders replies or sends them.

mod blobs;
mod error;
mod rules;
pub mod schema;
mod sqlite;
mod types;

pub use blobs::{is_sha256_hex, sha256_hex, Blobs};
pub use error::StoreError;
pub use rules::{norm_message_id, receipt, recipient_key};
pub use sqlite::{journal_path, SqliteStore};
pub use types::*;

use crate::outbound::Outbox;
use chrono::NaiveDate;

/// Builds the replies for a filing once the store has assigned receipts. Called inside the
/// filing's transaction, so it must be quick and must not touch the store.
pub type Render<'a> = dyn FnMut(&Assigned) -> Vec<NewReply> + 'a;

/// The store port. Synchronous: the daemon calls it from blocking threads.
pub trait Store: Outbox<Error = StoreError> + Send + Sync {
    /// A message already filed with this Message-ID or these exact bytes.
    fn find_duplicate(
        &self,
        message_id: Option<&str>,
        sha256: &str,
    ) -> Result<Option<MessageRef>, StoreError>;

    /// Keeps `bytes` durably (before filing refers to them) and returns their SHA-256.
    fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError>;

    /// Writes `bytes` ahead of a batch (see [`Store::begin_batch`]) that will name them; they
    /// are durable once that batch commits. Lets blobs be written beside the filing rather than
    /// inside it. By default the same as [`Store::put_blob`].
    fn stage_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.put_blob(bytes)
    }

    /// The bytes stored under `sha256`, verified.
    fn get_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError>;

    /// The organisation's standing accepted return for its latest period (any period).
    fn last_accepted(&self, org: &str) -> Result<Option<Prior>, StoreError>;

    /// The organisation's standing accepted return for `period` (`2011-12-Q1`).
    fn accepted(&self, org: &str, period: &str) -> Result<Option<Prior>, StoreError>;

    /// Files one message in one transaction: the message row, each return version (numbered,
    /// with its receipt, superseding the standing one when accepted), the replies `render`
    /// builds from what was assigned, the guidance log, a bounce's mark on our reply, and the
    /// audit trail. A message already filed (same bytes or Message-ID) changes nothing and
    /// comes back as `Filed::Duplicate`; `render` is then not called.
    fn file(&self, filing: &Filing, render: &mut Render<'_>) -> Result<Filed, StoreError>;

    /// Start a group commit: until [`Store::commit_batch`], every filing is made inside one
    /// transaction (each in a savepoint of its own) and blob writes skip their own flush.
    /// Nothing filed in a batch is durable — or may leave the mailbox — before `commit_batch`
    /// returns `Ok`. Reads inside the batch see its filings. A store that gains nothing from
    /// batching keeps these defaults and commits each filing on its own.
    fn begin_batch(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Flush the batch's blobs, then commit its transaction.
    fn commit_batch(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Abandon the batch: none of its filings happened.
    fn rollback_batch(&self) {}

    /// Whether replies may be sent, and recorded, while a batch is open: the store's outbox
    /// shows delivery only committed filings and records a send without waiting for the batch.
    /// When false, delivery pauses while a batch is open (see `outbound::Gate`).
    fn delivers_beside_filing(&self) -> bool {
        false
    }

    /// Bring what delivery recorded on the side into the store proper (see
    /// `delivers_beside_filing`); called when a round's delivery is over.
    fn settle(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// What the limits and the loop breaker need to know before a message is filed (SPEC §4b):
    /// mail already queued to each recipient on the day and by the mailbox in the hour, and
    /// whether the thread the message answers had its acknowledgement on the day. Reads inside
    /// an open batch see the batch's filings.
    fn look_up(&self, query: &Lookup) -> Result<Looked, StoreError>;

    /// Whether a guidance reply to `sender` was queued on `day` (UTC).
    fn guidance_sent_on(&self, sender: &str, day: NaiveDate) -> Result<bool, StoreError>;

    /// Each organisation that sent anything for `period`, with its state (see `StatusRow`).
    fn status(&self, period: &str) -> Result<Vec<StatusRow>, StoreError>;

    /// The standing accepted return of each organisation for `period`, by organisation code.
    fn standing_returns(&self, period: &str) -> Result<Vec<StandingReturn>, StoreError>;

    /// Messages held for the team that concern `period` (or no period), oldest first.
    fn held(&self, period: &str) -> Result<Vec<HeldRow>, StoreError>;

    /// Replies that failed permanently or bounced, oldest first.
    fn undelivered(&self) -> Result<Vec<Undelivered>, StoreError>;

    /// How many messages are filed.
    fn message_count(&self) -> Result<u64, StoreError>;

    /// Every version of a return for the organisation and period, oldest first.
    fn versions(&self, org: &str, period: &str) -> Result<Vec<VersionRow>, StoreError>;

    /// The replies queued for a message (by row id), in queue order.
    fn replies_for(&self, message: i64) -> Result<Vec<ReplyRow>, StoreError>;

    /// The audit trail of a message (by row id), in order.
    fn audit_for(&self, message: i64) -> Result<Vec<AuditRow>, StoreError>;
}
