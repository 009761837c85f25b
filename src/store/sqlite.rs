//! The embedded default store: one SQLite database (WAL, `synchronous=FULL`, foreign keys on)
//! beside a blob directory, and a small journal of sent replies (`sent`, flushed within 20 ms).
//! One connection behind a mutex files; a second one, with the journal attached, serves
//! delivery, so replies go out and are recorded while a batch is being filed. SQLite serialises writers anyway, and
//! `busy_timeout` lets a second process (`ingest` beside `run`) wait its turn instead of failing.

mod filing;
mod outbox;
mod sent;

pub use sent::journal_path;

use super::rules::{norm_message_id, norm_org, StatusBuilder};
use super::{
    schema, AuditRow, Blobs, Filed, Filing, HeldReason, HeldRow, Looked, Lookup, MessageRef, Prior,
    RecipientCount, Render, ReplyRow, ReturnState, StandingReturn, StatusRow, Store, StoreError,
    Undelivered, VersionRow,
};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long a statement waits for another process's write lock before giving up (transient).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Delivery's connection: reads only committed rows, records sends in the journal.
    delivery: Mutex<Connection>,
    recorder: sent::Recorder,
    blobs: Blobs,
    path: PathBuf,
    /// A group commit is open (see `Store::begin_batch`).
    in_batch: AtomicBool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `db_path` and the blobs under `blob_dir`,
    /// and brings the schema up to date.
    pub fn open(db_path: impl AsRef<Path>, blob_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = db_path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::io("create", parent, e))?;
        }
        let mut conn = connect(&path)?;
        schema::migrate(&mut conn)?;
        let blobs = Blobs::open(blob_dir.as_ref())?;
        let delivery = sent::open_delivery(&path)?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            delivery: Mutex::new(delivery),
            recorder: sent::Recorder::new(&path),
            blobs,
            path,
            in_batch: AtomicBool::new(false),
        };
        // Sends recorded since the last fold (or before a crash) reach the outbox now.
        store.settle()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// A group commit is open (between `begin_batch` and its commit or rollback).
    pub fn in_batch(&self) -> bool {
        self.in_batch.load(Ordering::SeqCst)
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Never taken while holding the main database's write lock (a delivery thread holding it
    /// may be waiting for that lock).
    fn delivery(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.delivery.lock().map_err(|_| StoreError::Poisoned)
    }
}

/// A connection to the database at `path` as every part of the store uses it: WAL, full sync,
/// foreign keys on, a busy timeout, and statements prepared once.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Filing and delivery run the same few statements for every message: parse each once.
    conn.set_prepared_statement_cache_capacity(64);
    // One plan per statement whatever the bound values: otherwise a statement that a partial
    // index might serve is planned again on every execution, undoing the cache above.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    require_wal(&conn, "main")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each filing in a batch is a savepoint, whose undo copies of the pages it changes go to a
    // temporary file by default: tens of megabytes of writes in a burst, for data only ever
    // needed to undo one filing. They are a filing's few pages, so memory holds them.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Puts database `schema` of `conn` in WAL mode, or says why it is not.
fn require_wal(conn: &Connection, schema: &str) -> Result<(), StoreError> {
    let mode = wal_mode(conn, schema)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Data(format!(
            "{schema} journal_mode is {mode}, WAL was asked for"
        )));
    }
    Ok(())
}

/// Switch to WAL. On a brand-new database file that other processes are opening at the same
/// moment, SQLite can answer BUSY here without calling the busy handler, so it is retried for
/// up to the busy timeout.
fn wal_mode(conn: &Connection, schema: &str) -> Result<String, StoreError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let sql = format!("PRAGMA {schema}.journal_mode = WAL");
    loop {
        match conn.query_row(&sql, [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// Times are stored as RFC 3339 UTC with fixed microseconds, so text order is time order.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn conversion(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

pub(super) fn get_ts(r: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let s: String = r.get(idx)?;
    DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|e| conversion(idx, e))
}

pub(super) fn get_opt_ts(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match r.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => get_ts(r, idx).map(Some),
    }
}

pub(super) fn get_json<T: DeserializeOwned>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = r.get(idx)?;
    serde_json::from_str(&s).map_err(|e| conversion(idx, e))
}

fn get_u32(r: &Row<'_>, idx: usize) -> rusqlite::Result<u32> {
    let n: i64 = r.get(idx)?;
    u32::try_from(n)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, Box::new(e)))
}

fn get_opt_u32(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u32>> {
    match r.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => get_u32(r, idx).map(Some),
    }
}

pub(super) const MESSAGE_REF: &str =
    "SELECT id, source_key, message_id, sha256, received_at, class, outcome FROM messages";

pub(super) fn message_ref(r: &Row<'_>) -> rusqlite::Result<MessageRef> {
    Ok(MessageRef {
        id: r.get(0)?,
        source_key: r.get(1)?,
        message_id: r.get(2)?,
        sha256: r.get(3)?,
        received_at: get_ts(r, 4)?,
        class: r.get(5)?,
        outcome: r.get(6)?,
    })
}

pub(super) fn find_duplicate(
    conn: &Connection,
    message_id: Option<&str>,
    sha256: &str,
) -> Result<Option<MessageRef>, StoreError> {
    let message_id = message_id.and_then(norm_message_id);
    let sql = format!("{MESSAGE_REF} WHERE sha256 = ?1 OR message_id = ?2 ORDER BY id LIMIT 1");
    Ok(conn.prepare_cached(&sql)?.query_row(params![sha256, message_id], message_ref).optional()?)
}

fn prior(conn: &Connection, org: &str, period: Option<&str>) -> Result<Option<Prior>, StoreError> {
    let sql = "SELECT period, receipt, values_json FROM return_versions
               WHERE org = ?1 AND (?2 IS NULL OR period = ?2)
                 AND status = 'accepted' AND superseded_by IS NULL
               ORDER BY period DESC, id DESC LIMIT 1";
    let row = conn.prepare_cached(sql)?.query_row(params![norm_org(org), period], |r| {
        Ok(Prior { period: r.get(0)?, receipt: r.get(1)?, values: get_json(r, 2)? })
    });
    Ok(row.optional()?)
}

impl Store for SqliteStore {
    fn find_duplicate(
        &self,
        message_id: Option<&str>,
        sha256: &str,
    ) -> Result<Option<MessageRef>, StoreError> {
        find_duplicate(&*self.conn()?, message_id, sha256)
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.blobs.put(bytes)
    }

    fn stage_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.blobs.stage(bytes)
    }

    fn get_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        self.blobs.get(sha256)
    }

    fn last_accepted(&self, org: &str) -> Result<Option<Prior>, StoreError> {
        prior(&*self.conn()?, org, None)
    }

    fn accepted(&self, org: &str, period: &str) -> Result<Option<Prior>, StoreError> {
        prior(&*self.conn()?, org, Some(period))
    }

    fn file(&self, filing: &Filing, render: &mut Render<'_>) -> Result<Filed, StoreError> {
        let in_batch = self.in_batch.load(Ordering::SeqCst);
        filing::file(&mut *self.conn()?, in_batch, filing, render)
    }

    fn begin_batch(&self) -> Result<(), StoreError> {
        // Read before the write lock is taken (see `delivery`); folded inside the batch.
        let entries = sent::unfolded(&*self.delivery()?)?;
        let conn = self.conn()?;
        if self.in_batch.load(Ordering::SeqCst) {
            return Err(StoreError::Data("a batch is already open".into()));
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        if let Err(e) = sent::fold(&conn, &entries) {
            let _ = conn.execute_batch("ROLLBACK"); // the error that matters is the first
            return Err(e);
        }
        self.in_batch.store(true, Ordering::SeqCst);
        self.blobs.set_deferred(true);
        Ok(())
    }

    fn delivers_beside_filing(&self) -> bool {
        true
    }

    /// Flushes the journal, folds it into the outbox, then deletes the entries folded long ago
    /// (the one place the journal is kept short: each round's end, `ingest`, and every
    /// opening).
    fn settle(&self) -> Result<(), StoreError> {
        self.recorder.flush()?;
        let entries = sent::unfolded(&*self.delivery()?)?;
        if !entries.is_empty() {
            let mut conn = self.conn()?;
            if self.in_batch.load(Ordering::SeqCst) {
                return Ok(()); // the batch folds them at its next start
            }
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            sent::fold(&tx, &entries)?;
            tx.commit()?;
        }
        sent::prune(&*self.delivery()?, Utc::now())?;
        Ok(())
    }

    fn commit_batch(&self) -> Result<(), StoreError> {
        let conn = self.conn()?;
        if !self.in_batch.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Blobs first: a committed row must never name a blob that could vanish in a power cut.
        let committed = self.blobs.flush().and_then(|()| Ok(conn.execute_batch("COMMIT")?));
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK"); // the error that matters is the first
        }
        self.in_batch.store(false, Ordering::SeqCst);
        self.blobs.set_deferred(false);
        committed
    }

    fn rollback_batch(&self) {
        if let Ok(conn) = self.conn() {
            if self.in_batch.swap(false, Ordering::SeqCst) {
                let _ = conn.execute_batch("ROLLBACK"); // nothing more to do if it fails
            }
        }
        self.blobs.set_deferred(false);
    }

    fn guidance_sent_on(&self, sender: &str, day: NaiveDate) -> Result<bool, StoreError> {
        let sql = "SELECT EXISTS (SELECT 1 FROM guidance_log WHERE sender = ?1 AND day = ?2)";
        let sender = super::rules::norm_sender(sender);
        let conn = self.conn()?;
        let found =
            conn.prepare_cached(sql)?.query_row(params![sender, day.to_string()], |r| r.get(0))?;
        Ok(found)
    }

    fn look_up(&self, q: &Lookup) -> Result<Looked, StoreError> {
        let conn = self.conn()?;
        let day_from = ts(q.day.and_time(chrono::NaiveTime::MIN).and_utc());
        let day_to =
            ts((q.day + chrono::TimeDelta::days(1)).and_time(chrono::NaiveTime::MIN).and_utc());
        let mut looked = Looked::default();
        for key in &q.recipients {
            let count = conn
                .prepare_cached(
                    "SELECT COUNT(*) FILTER (WHERE held_reason IS NULL),
                            COUNT(*) FILTER (WHERE held_reason IS NULL AND kind = 'guidance'),
                            COUNT(*) FILTER (WHERE held_reason IS NULL
                                             AND kind = 'unverified_notice'),
                            COUNT(*) FILTER (WHERE held_reason IS NOT NULL) > 0
                     FROM outbox INDEXED BY outbox_counts
                     WHERE counts_against = ?1 AND created_at >= ?2 AND created_at < ?3",
                )?
                .query_row(params![key, day_from, day_to], |r| {
                    Ok(RecipientCount {
                        replies: get_u32(r, 0)?,
                        guidance: get_u32(r, 1)?,
                        unverified_notices: get_u32(r, 2)?,
                        held: r.get(3)?,
                    })
                })?;
            looked.recipients.insert(key.clone(), count);
        }
        let (last_hour, hour_held) = conn
            .prepare_cached(
                "SELECT COUNT(*) FILTER (WHERE held_reason IS NULL),
                        COUNT(*) FILTER (WHERE held_reason = 'hourly_limit') > 0
                 FROM outbox WHERE created_at >= ?1 AND kind <> 'limit_notice'",
            )?
            .query_row([ts(q.hour_from)], |r| Ok((get_u32(r, 0)?, r.get(1)?)))?;
        looked.last_hour = last_hour;
        looked.hour_held = hour_held;
        if let Some(root) = filing::thread_root(&conn, &q.answers)? {
            looked.thread_answered_today = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM thread_log WHERE root = ?1 AND day = ?2)",
                )?
                .query_row(params![root, q.day.to_string()], |r| r.get(0))?;
        }
        Ok(looked)
    }

    fn status(&self, period: &str) -> Result<Vec<StatusRow>, StoreError> {
        let conn = self.conn()?;
        let mut b = StatusBuilder::default();
        // Rejected returns and held messages, in filing order.
        let sql = "SELECT org, receipt, received_at, kind FROM (
                       SELECT rv.org, rv.receipt, m.received_at, 'rejected' AS kind,
                              m.id AS mid, rv.id AS rid
                       FROM return_versions rv JOIN messages m ON m.id = rv.message
                       WHERE rv.period = ?1 AND rv.status = 'rejected'
                     UNION ALL
                       SELECT org, NULL, received_at,
                              CASE held_reason WHEN 'unverified' THEN 'unverified' ELSE 'held' END,
                              id, 0 FROM messages
                       WHERE held = 1 AND period = ?1 AND org IS NOT NULL)
                   ORDER BY mid, rid";
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([period], |r| {
            let kind: String = r.get(3)?;
            let status = match kind.as_str() {
                "held" => ReturnState::Held,
                "unverified" => ReturnState::Unverified,
                _ => ReturnState::Rejected,
            };
            Ok(StatusRow { org: r.get(0)?, status, receipt: r.get(1)?, received_at: get_ts(r, 2)? })
        })?;
        for row in rows {
            b.later_attempt(row?);
        }
        for s in standing(&conn, period)? {
            b.standing(&s.org, &s.receipt, s.late, s.received_at);
        }
        Ok(b.finish())
    }

    fn standing_returns(&self, period: &str) -> Result<Vec<StandingReturn>, StoreError> {
        standing(&*self.conn()?, period)
    }

    fn held(&self, period: &str) -> Result<Vec<HeldRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, org, sender, subject, received_at, held_reason, verification
             FROM messages WHERE held = 1 AND (period = ?1 OR period IS NULL) ORDER BY id",
        )?;
        let rows = stmt.query_map([period], |r| {
            let reason: Option<String> = r.get(5)?;
            let verification: Option<String> = r.get(6)?;
            Ok(HeldRow {
                id: r.get(0)?,
                org: r.get(1)?,
                sender: r.get(2)?,
                subject: r.get(3)?,
                received_at: get_ts(r, 4)?,
                reason: reason.as_deref().and_then(HeldReason::parse),
                verification: verification
                    .and_then(|v| serde_json::from_str(&v).ok())
                    .unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn undelivered(&self) -> Result<Vec<Undelivered>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, message, message_id, kind, recipients, attempts, last_error,
                    bounced_at IS NOT NULL, held_reason
             FROM outbox
             WHERE failed_permanently = 1 OR bounced_at IS NOT NULL
                OR (held_reason IS NOT NULL AND sent_at IS NULL)
             ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Undelivered {
                id: r.get(0)?,
                message: r.get(1)?,
                message_id: r.get(2)?,
                kind: r.get(3)?,
                recipients: get_json(r, 4)?,
                attempts: get_u32(r, 5)?,
                last_error: r.get(6)?,
                bounced: r.get(7)?,
                held: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn message_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn()?.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn versions(&self, org: &str, period: &str) -> Result<Vec<VersionRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT rv.message, rv.org, rv.period, rv.version, rv.receipt, rv.file_name,
                    rv.attachment_sha256, rv.status = 'accepted', rv.late, s.receipt,
                    rv.values_json, rv.derived_json, rv.findings_json
             FROM return_versions rv LEFT JOIN return_versions s ON s.id = rv.superseded_by
             WHERE rv.org = ?1 AND rv.period = ?2 ORDER BY rv.id",
        )?;
        let rows = stmt.query_map(params![norm_org(org), period], |r| {
            Ok(VersionRow {
                message: r.get(0)?,
                org: r.get(1)?,
                period: r.get(2)?,
                version: get_opt_u32(r, 3)?,
                receipt: r.get(4)?,
                file_name: r.get(5)?,
                attachment_sha256: r.get(6)?,
                accepted: r.get(7)?,
                late: r.get(8)?,
                superseded_by: r.get(9)?,
                values: get_json(r, 10)?,
                derived: get_json(r, 11)?,
                findings: get_json(r, 12)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn replies_for(&self, message: i64) -> Result<Vec<ReplyRow>, StoreError> {
        // Through the journal: a send not yet folded into the outbox is a send all the same.
        let conn = self.delivery()?;
        let mut stmt = conn.prepare(
            "SELECT o.id, o.message, o.message_id, o.kind, o.recipients, o.raw,
                    o.attempts + (o.sent_at IS NULL AND s.id IS NOT NULL), o.next_attempt_at,
                    COALESCE(o.sent_at, s.at), o.last_error, o.failed_permanently, o.bounced_at
             FROM main.outbox o LEFT JOIN sent.sent s ON s.id = o.id
             WHERE o.message = ?1 ORDER BY o.id",
        )?;
        let rows = stmt.query_map([message], |r| {
            Ok(ReplyRow {
                id: r.get(0)?,
                message: r.get(1)?,
                message_id: r.get(2)?,
                kind: r.get(3)?,
                recipients: get_json(r, 4)?,
                raw: r.get(5)?,
                attempts: get_u32(r, 6)?,
                next_attempt_at: get_ts(r, 7)?,
                sent_at: get_opt_ts(r, 8)?,
                last_error: r.get(9)?,
                failed_permanently: r.get(10)?,
                bounced_at: get_opt_ts(r, 11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit_for(&self, message: i64) -> Result<Vec<AuditRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT at, message, event, detail FROM audit WHERE message = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([message], |r| {
            Ok(AuditRow {
                at: get_ts(r, 0)?,
                message: r.get(1)?,
                event: r.get(2)?,
                detail: get_json(r, 3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn standing(conn: &Connection, period: &str) -> Result<Vec<StandingReturn>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT rv.org, rv.period, rv.receipt, m.received_at, rv.late, rv.values_json, rv.derived_json
         FROM return_versions rv JOIN messages m ON m.id = rv.message
         WHERE rv.period = ?1 AND rv.status = 'accepted' AND rv.superseded_by IS NULL
         ORDER BY rv.org",
    )?;
    let rows = stmt.query_map([period], |r| {
        Ok(StandingReturn {
            org: r.get(0)?,
            period: r.get(1)?,
            receipt: r.get(2)?,
            received_at: get_ts(r, 3)?,
            late: r.get(4)?,
            values: get_json(r, 5)?,
            derived: get_json(r, 6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
