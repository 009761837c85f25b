//! The whole pipeline on real files: each kind of message of SPEC §4 is processed by
//! `pipeline::process` into a SQLite store on disk, and the test checks what the Data Collection
//! Team and the sender would see: the class and outcome filed, the receipts, the replies queued
//! and, read back with mail-parser, their headers and text. Full reply bodies for a few cases
//! are golden files in `tests/fixtures/pipeline/`. Exactly-once, windows and the crash between
//! filing and sending are in `pipeline/once.rs`.

#[path = "support/mod.rs"]
pub mod support;

mod kinds;
mod once;

use iapt_intake::pipeline::{self, Env, Incoming, Processed};
use iapt_intake::store::{sha256_hex, MessageRef, ReplyRow, SqliteStore, Store};
use std::path::Path;
use support::{at, reply_of, Reply, Settings};

/// A store on disk in a temporary directory and the environment the commands would build.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: SqliteStore,
    pub env: Env,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(Settings::default())
    }

    pub fn with(settings: Settings) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = support::env(dir.path(), &settings);
        let store = open(dir.path());
        Harness { dir, store, env }
    }

    /// Processes `raw` as received at `received` and handled at `now` (RFC 3339).
    pub fn process_at(&self, raw: &[u8], key: &str, received: &str, now: &str) -> Processed {
        let msg = Incoming { raw, source_key: key, received_at: at(received) };
        pipeline::process(&self.store, &self.env, msg, at(now)).expect("processed")
    }

    /// Processes `raw` received and handled at `when`, under a source key made from its hash.
    pub fn process(&self, raw: &[u8], when: &str) -> Processed {
        let key = format!("new/{}", &sha256_hex(raw)[..12]);
        self.process_at(raw, &key, when, when)
    }

    /// The filed message with these bytes.
    pub fn filed(&self, raw: &[u8]) -> MessageRef {
        self.store.find_duplicate(None, &sha256_hex(raw)).expect("store").expect("filed")
    }

    /// The replies queued for the message with these bytes, in queue order.
    pub fn queued(&self, raw: &[u8]) -> Vec<ReplyRow> {
        self.store.replies_for(self.filed(raw).id).expect("replies")
    }

    /// The queued reply of `kind` for the message with these bytes, parsed.
    pub fn reply(&self, raw: &[u8], kind: &str) -> Reply {
        let rows = self.queued(raw);
        let row = rows.iter().find(|r| r.kind == kind).unwrap_or_else(|| {
            let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
            panic!("no {kind} reply queued; queued: {kinds:?}")
        });
        reply_of(&row.raw)
    }
}

pub fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("var/iapt-intake.db"), dir.join("var/blobs")).expect("open store")
}

/// The lines of a body that mention `needle`, for messages when an assertion fails.
pub fn lines_with<'a>(body: &'a str, needle: &str) -> Vec<&'a str> {
    body.lines().filter(|l| l.contains(needle)).collect()
}

/// A body with its line wrapping undone, for phrases that may wrap.
pub fn flat(body: &str) -> String {
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}
