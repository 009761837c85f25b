//! The SQLite schema as an ordered list of migration steps. `PRAGMA user_version` records how
//! many steps a database has had; opening it applies the rest, each in its own transaction.
//! A later version of the program only appends steps: never edit or reorder a released one.

use super::StoreError;
use rusqlite::Connection;

/// Step `n` (from 1) brings a database from version `n - 1` to `n`.
pub const MIGRATIONS: &[&str] = &[
    // 1: messages, return versions and the audit trail.
    "CREATE TABLE messages (
        id          INTEGER PRIMARY KEY,
        source_key  TEXT NOT NULL,
        message_id  TEXT UNIQUE,
        sha256      TEXT NOT NULL UNIQUE,
        received_at TEXT NOT NULL,
        filed_at    TEXT NOT NULL,
        sender      TEXT,
        subject     TEXT,
        class       TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        detail      TEXT NOT NULL DEFAULT '{}',
        org         TEXT,
        period      TEXT,
        held        INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1)),
        bounce_of   TEXT
    ) STRICT;
    CREATE INDEX messages_held ON messages (period, org) WHERE held = 1;

    CREATE TABLE return_versions (
        id                INTEGER PRIMARY KEY,
        message           INTEGER NOT NULL REFERENCES messages (id),
        org               TEXT NOT NULL,
        period            TEXT,
        version           INTEGER,
        receipt           TEXT UNIQUE,
        file_name         TEXT NOT NULL,
        attachment_sha256 TEXT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
        late              INTEGER NOT NULL DEFAULT 0 CHECK (late IN (0, 1)),
        values_json       TEXT NOT NULL,
        derived_json      TEXT NOT NULL,
        findings_json     TEXT NOT NULL,
        superseded_by     INTEGER REFERENCES return_versions (id),
        UNIQUE (org, period, version),
        CHECK (status = 'rejected' OR period IS NOT NULL)
    ) STRICT;
    CREATE INDEX return_versions_standing ON return_versions (org, period)
        WHERE status = 'accepted' AND superseded_by IS NULL;
    CREATE INDEX return_versions_period ON return_versions (period, org);
    CREATE INDEX return_versions_message ON return_versions (message);

    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      TEXT NOT NULL,
        message INTEGER REFERENCES messages (id),
        event   TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT '{}'
    ) STRICT;
    CREATE INDEX audit_message ON audit (message);",
    // 2: the outbox and the guidance log.
    "CREATE TABLE outbox (
        id                 INTEGER PRIMARY KEY,
        message            INTEGER NOT NULL REFERENCES messages (id),
        message_id         TEXT NOT NULL UNIQUE,
        kind               TEXT NOT NULL,
        envelope_from      TEXT NOT NULL,
        recipients         TEXT NOT NULL,
        raw                BLOB NOT NULL,
        created_at         TEXT NOT NULL,
        attempts           INTEGER NOT NULL DEFAULT 0,
        next_attempt_at    TEXT NOT NULL,
        last_attempt_at    TEXT,
        sent_at            TEXT,
        last_error         TEXT,
        failed_permanently INTEGER NOT NULL DEFAULT 0 CHECK (failed_permanently IN (0, 1))
    ) STRICT;
    CREATE INDEX outbox_due ON outbox (next_attempt_at)
        WHERE sent_at IS NULL AND failed_permanently = 0;
    CREATE INDEX outbox_message ON outbox (message);

    CREATE TABLE guidance_log (
        sender  TEXT NOT NULL,
        day     TEXT NOT NULL,
        message INTEGER NOT NULL REFERENCES messages (id),
        PRIMARY KEY (sender, day)
    ) STRICT, WITHOUT ROWID;",
    // 3: bounces of our replies, recorded against the reply.
    "ALTER TABLE outbox ADD COLUMN bounced_at TEXT;
    ALTER TABLE outbox ADD COLUMN bounced_by INTEGER REFERENCES messages (id);",
    // 4: who sent it and not a weapon (SPEC §4a, §4b): why a message is held and the verdict on
    // its sender; duplicates without a Message-ID and replayed signatures; threads of replies
    // to our own mail; replies kept at a limit and whom they count against.
    "ALTER TABLE messages ADD COLUMN held_reason TEXT;
    UPDATE messages SET held_reason = 'unregistered' WHERE held = 1;
    ALTER TABLE messages ADD COLUMN verification TEXT;
    ALTER TABLE messages ADD COLUMN fingerprint TEXT;
    ALTER TABLE messages ADD COLUMN replay_key TEXT;
    ALTER TABLE messages ADD COLUMN thread_root INTEGER REFERENCES messages (id);
    CREATE INDEX messages_fingerprint ON messages (fingerprint, filed_at)
        WHERE fingerprint IS NOT NULL;
    CREATE UNIQUE INDEX messages_replay ON messages (replay_key) WHERE replay_key IS NOT NULL;

    CREATE TABLE thread_log (
        root    INTEGER NOT NULL REFERENCES messages (id),
        day     TEXT NOT NULL,
        message INTEGER NOT NULL REFERENCES messages (id),
        PRIMARY KEY (root, day)
    ) STRICT, WITHOUT ROWID;

    ALTER TABLE outbox ADD COLUMN counts_against TEXT;
    ALTER TABLE outbox ADD COLUMN held_reason TEXT;
    CREATE INDEX outbox_counts ON outbox (counts_against, created_at)
        WHERE counts_against IS NOT NULL;
    CREATE INDEX outbox_created ON outbox (created_at);",
];

/// The version a fully migrated database has.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// The database's schema version.
pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies the steps the database has not had yet. A database newer than this program is
/// refused rather than used half-understood.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, latest())
}

/// Applies steps up to version `target` (tests build old databases with it).
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let found = version(conn)?;
    if found > latest() {
        return Err(StoreError::SchemaTooNew { found, known: latest() });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().take(target as usize).skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Read again under the write lock: another process opening the same new store at the
        // same moment (a standby daemon, `status`) may have applied this step meanwhile.
        if version(&tx)? > n as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", n as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_applies_in_order_and_is_recorded() {
        let mut conn = Connection::open_in_memory().expect("open");
        for v in 1..=latest() {
            migrate_to(&mut conn, v).expect("migrate");
            assert_eq!(version(&conn).expect("version"), v);
        }
        migrate(&mut conn).expect("again is a no-op");
        assert_eq!(version(&conn).expect("version"), latest());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", latest() + 1).expect("set");
        assert!(matches!(migrate(&mut conn), Err(StoreError::SchemaTooNew { .. })));
    }
}
