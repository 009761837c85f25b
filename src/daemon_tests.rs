//! Tests of the daemon's rounds on a SQLite store in a temporary directory, with the in-memory
//! source and transport.
use super::*;
use crate::collection::{Collections, Registry};
use crate::config::Config;
use crate::mailbox::MemorySource;
use crate::outbound::MemoryTransport;
use crate::reply::Templates;
use crate::store::{Filing, NewReply, SqliteStore};
use chrono::TimeZone;

/// The default config, but for a mailbox-wide hourly limit above the bursts these tests make
/// and no sender verification (the messages carry no evidence): these tests are about rounds;
/// the limits and verification have tests of their own in the pipeline's.
fn env() -> Env {
    let text = "[limits]\nreplies_per_hour = 100000\n[auth]\nrequire = \"none\"\n";
    let config = Config::parse(std::path::Path::new("t.toml"), text).expect("config");
    let templates = Templates::shipped().expect("shipped templates");
    Env::new(config, Collections::from_definitions(Vec::new()), Registry::default(), templates)
}

/// A daemon over `store`, `source` and `transport` that believes it is `at`.
fn daemon_at<'a, S: Store, M: MailSource, T: Transport + ?Sized>(
    store: &'a S,
    source: M,
    transport: &'a T,
    env: &'a Env,
    at: DateTime<Utc>,
) -> Daemon<'a, S, M, T> {
    Daemon {
        store,
        source,
        transport,
        env,
        clock: Clock::starting_at(Some(at)),
        shutdown: Shutdown::default(),
    }
}

/// A store on disk, in a directory that lives as long as the returned guard.
fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        SqliteStore::open(dir.path().join("t.db"), dir.path().join("blobs")).expect("store");
    (dir, store)
}

fn queue(store: &SqliteStore, i: usize, at: DateTime<Utc>) {
    let filing = Filing {
        source_key: format!("m{i}"),
        message_id: Some(format!("m{i}@test")),
        sha256: format!("{i:064x}"),
        received_at: at,
        filed_at: at,
        from: Some("a@leeds.nhs.test".into()),
        subject: Some("IAPT".into()),
        class: "automatic".into(),
        outcome: "filed".into(),
        detail: serde_json::Value::Null,
        org: None,
        period: None,
        ..Filing::default()
    };
    let mut render = |_: &crate::store::Assigned| {
        vec![NewReply {
            message_id: format!("r{i}@example.nhs.test"),
            kind: "test".into(),
            envelope_from: "iapt.returns@example.nhs.test".into(),
            recipients: vec!["a@leeds.nhs.test".into()],
            raw: b"Subject: x\r\n\r\nx\r\n".to_vec(),
            ..NewReply::default()
        }]
    };
    store.file(&filing, &mut render).expect("filed");
}

#[test]
fn fetch_groups_stay_within_the_byte_budget_and_keep_every_message_once() {
    let at = Utc.with_ymd_and_hms(2011, 7, 20, 10, 0, 0).single().expect("time");
    let p = |key: &str, size: u64| Pending { key: key.into(), received_at: at, size };
    let pending = [p("a", 3), p("b", 4), p("c", 9), p("d", 2), p("e", 2), p("f", 6)];
    let groups = by_size(&pending, 8);
    let keys: Vec<Vec<&str>> =
        groups.iter().map(|g| g.iter().map(|p| p.key.as_str()).collect()).collect();
    assert_eq!(keys, vec![vec!["a", "b"], vec!["c"], vec!["d", "e"], vec!["f"]]);
    assert!(by_size(&[], 8).is_empty());
}

#[test]
fn a_burst_is_filed_in_batches_that_start_small_and_keep_every_message_once() {
    let at = Utc.with_ymd_and_hms(2011, 7, 20, 10, 0, 0).single().expect("time");
    let pending: Vec<Pending> = (0..FILING_BATCH * 2 + 3)
        .map(|i| Pending { key: format!("m{i}"), received_at: at, size: 1 })
        .collect();
    let sizes: Vec<usize> = batches(&pending).iter().map(|b| b.len()).collect();
    assert_eq!(sizes[0], FIRST_BATCH);
    assert!(sizes.windows(2).all(|w| w[1] >= w[0] || w[1] < FILING_BATCH), "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= FILING_BATCH), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), pending.len());
    let filed = batches(&pending).concat();
    let keys: Vec<&str> = filed.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, pending.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), "in order");
    assert_eq!(batches(&pending[..3]).len(), 1);
    assert!(batches(&[]).is_empty());
}

#[test]
fn one_round_delivers_every_due_reply_even_beyond_one_batch() {
    let at = Utc.with_ymd_and_hms(2011, 7, 20, 10, 0, 0).single().expect("time");
    let (_dir, store) = temp_store();
    for i in 0..DELIVERY_BATCH + 1 {
        queue(&store, i, at);
    }
    let transport = MemoryTransport::new();
    let env = env();
    let mut daemon = daemon_at(&store, MemorySource::new(), &transport, &env, at);
    let round = daemon.round().expect("round");
    assert_eq!(round.delivery.sent, DELIVERY_BATCH + 1);
    assert_eq!(transport.sent().len(), DELIVERY_BATCH + 1);
    assert_eq!(daemon.round().expect("second round").delivery.sent, 0, "nothing sent twice");
}

#[test]
fn a_sigterm_right_after_on_signals_returns_requests_shutdown_instead_of_killing() {
    let shutdown = Shutdown::default();
    shutdown.on_signals().expect("handlers installed");
    // At once, before the handler thread has had any chance to run.
    let sent = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(std::process::id().to_string())
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !shutdown.requested() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(shutdown.requested(), "SIGTERM did not reach the handler");
}

#[test]
fn a_mailbox_outage_does_not_stop_the_daemon() {
    let at = Utc.with_ymd_and_hms(2011, 7, 20, 10, 0, 0).single().expect("time");
    let (_dir, store) = temp_store();
    let transport = MemoryTransport::new();
    let env = env();
    let source = MemorySource::new();
    source.push(
        "m1",
        at,
        "From: a@leeds.nhs.test\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nAway.\r\n",
    );
    source.set_offline(true);
    let mut daemon = daemon_at(&store, source.clone(), &transport, &env, at);
    let shutdown = daemon.shutdown.clone();
    let result = std::thread::scope(|scope| {
        let running = scope.spawn(move || daemon.run(Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(500));
        assert!(!running.is_finished(), "the daemon gave up during the outage");
        source.set_offline(false);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while source.processed().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        shutdown.request();
        running.join().expect("daemon thread")
    });
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(source.processed(), ["m1"], "filed once the mailbox was back");
    assert_eq!(store.message_count().expect("count"), 1);
}

/// Replies go out while later batches are being filed, but only for filings already
/// committed: on a real SQLite store, over several batches, every reply handed to the relay is
/// one another connection can already read, some go out while a batch is open, and every
/// message is filed and answered exactly once.
#[test]
fn replies_go_out_during_filing_but_only_for_committed_filings() {
    use crate::store::SqliteStore;
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Watching<'s> {
        store: &'s SqliteStore,
        inner: MemoryTransport,
        during_filing: AtomicUsize,
        uncommitted: AtomicUsize,
    }
    impl Transport for Watching<'_> {
        fn send(
            &self,
            item: &crate::outbound::OutboxItem,
        ) -> Result<(), crate::outbound::SendError> {
            if self.store.in_batch() {
                self.during_filing.fetch_add(1, Ordering::SeqCst);
            }
            // A separate connection sees only what is committed.
            let outside = rusqlite::Connection::open(self.store.path()).expect("open");
            let seen: i64 = outside
                .query_row(
                    "SELECT count(*) FROM outbox WHERE message_id = ?1",
                    [&item.message_id],
                    |r| r.get(0),
                )
                .expect("query");
            if seen != 1 {
                self.uncommitted.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_micros(300)); // a relay's round trip
            self.inner.send(item)
        }
    }
    let at = Utc.with_ymd_and_hms(2011, 7, 20, 10, 0, 0).single().expect("time");
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        SqliteStore::open(dir.path().join("db.sqlite"), dir.path().join("blobs")).expect("store");
    let count = FILING_BATCH * 3 + 7;
    let source = MemorySource::new();
    for i in 0..count {
        // No IAPT in the subject: each sender gets the subject-line guidance, once.
        let raw = format!(
            "From: analyst{i}@leeds.nhs.test\r\nTo: iapt.returns@example.nhs.test\r\n\
             Subject: our figures {i}\r\nMessage-ID: <m{i}@leeds.nhs.test>\r\n\r\nHello.\r\n"
        );
        source.push(&format!("m{i:03}"), at, raw);
    }
    let transport = Watching {
        store: &store,
        inner: MemoryTransport::new(),
        during_filing: AtomicUsize::new(0),
        uncommitted: AtomicUsize::new(0),
    };
    let env = env();
    let mut daemon = daemon_at(&store, source.clone(), &transport, &env, at);
    let round = daemon.round().expect("round");
    assert_eq!(round.processed.len(), count);
    assert_eq!(source.processed().len(), count, "every message moved out");
    assert_eq!(transport.uncommitted.load(Ordering::SeqCst), 0, "a reply before its commit");
    assert!(
        transport.during_filing.load(Ordering::SeqCst) > 0,
        "delivery waited for the filing instead of running beside it"
    );
    let mut ids: Vec<String> = transport.inner.sent().into_iter().map(|i| i.message_id).collect();
    assert_eq!(ids.len(), count, "one reply each");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "no reply sent twice");
    assert_eq!(round.delivery.sent, count);
    assert_eq!(daemon.round().expect("second round").delivery.sent, 0);
}
