//! Crash, fault and standby proof of SPEC §5 (issue 5), with the daemon binary as it runs in
//! production: `iapt-intake run`, long-running, killed with SIGKILL at random moments and
//! restarted (`kill.rs`, on the real Dovecot + Postfix), its store's disk filled or made
//! read-only under it (`faults.rs`), and two of them started on one mailbox and one store
//! (`standby.rs`). This file holds what they share: the daemon as a child process with its log,
//! the store's consistency check, and a small seeded random source.
//!
//! Owns test scaffolding only; what a correct answer is comes from SPEC §4–§5.

mod corpus;
mod faults;
mod faults_stack;
mod kill;
mod standby;

pub use crate::pipeline::support::daemon::{log_text, Daemon};
use iapt_intake::store::Blobs;
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_iapt-intake");

/// Within the Q1 2011/12 submission window, so returns are judged on their figures.
pub const NOW: &str = "2011-07-20T10:00:00Z";

/// SplitMix64: small, seedable and good enough to pick kill moments; printed seeds replay a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The seed from `IAPT_CRASH_SEED`, or one from the clock; printed so a failure can be
    /// replayed.
    pub fn from_env(name: &str) -> Rng {
        let seed = std::env::var("IAPT_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("{name}: seed {seed} (replay with IAPT_CRASH_SEED={seed})");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Polls `cond` every 100 ms until it holds or `limit` passes; true when it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts from the store's database, read-only beside a running daemon.
pub struct StoreView {
    conn: Connection,
}

impl StoreView {
    pub fn open(db: &Path) -> StoreView {
        let conn = Connection::open(db).expect("open the store");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
        StoreView { conn }
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.conn.query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    pub fn messages(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM messages")
    }

    /// Replies queued and not yet recorded as sent (or given up).
    pub fn replies_due(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_permanently = 0")
    }

    /// The store's Message-IDs, as filed (normalised, without angle brackets).
    pub fn message_ids(&self) -> Vec<String> {
        let mut stmt = self
            .conn
            .prepare("SELECT message_id FROM messages WHERE message_id IS NOT NULL ORDER BY id")
            .expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("query");
        rows.collect::<Result<_, _>>().expect("ids")
    }
}

/// SQLite's own check of the database, then every blob a row names — each raw message and each
/// attachment — read back and verified against its SHA-256. Returns how many blobs were checked.
pub fn assert_store_consistent(db: &Path, blobs: &Path) -> usize {
    let view = StoreView::open(db);
    let verdict: String =
        view.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(verdict, "ok", "PRAGMA integrity_check");
    let fk: i64 = view.count("SELECT COUNT(*) FROM pragma_foreign_key_check");
    assert_eq!(fk, 0, "foreign keys dangle");
    let mut stmt = view
        .conn
        .prepare("SELECT sha256 FROM messages UNION SELECT attachment_sha256 FROM return_versions")
        .expect("prepare");
    let hashes: Vec<String> =
        stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows");
    let store = Blobs::open(blobs).expect("blob dir");
    for hash in &hashes {
        if let Err(e) = store.get(hash) {
            panic!("blob {hash} named by the store is unreadable: {e}");
        }
    }
    hashes.len()
}
