//! The voicemail database: one SQLite file holding the message index and the
//! notification queue, so enqueueing a notification and indexing its message
//! can happen in one transaction, and deleting a message drops its deliveries.
//!
//! Journal mode WAL lets the notification worker read while the call side
//! writes. `synchronous = FULL`: every commit reaches the disk before it
//! returns. Voicemail writes are a few a day, so the extra fsync per commit
//! costs nothing, while NORMAL could lose the last committed index row (and a
//! notification) on power loss even though its recording was fsynced.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Name of the database file inside the voicemail directory.
pub const DB_FILE: &str = "voicemail.sqlite";

/// Schema migrations, applied in order; `user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    // 1: messages and their notification deliveries.
    "CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        line TEXT NOT NULL,
        caller TEXT NOT NULL,
        caller_name TEXT,
        received_at_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        file TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('new', 'heard', 'archived')),
        recovered INTEGER NOT NULL DEFAULT 0,
        call_id TEXT
    );
    CREATE INDEX messages_line ON messages (line, received_at_ms);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        channel TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        next_attempt_at_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
        last_error TEXT,
        UNIQUE (message_id, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at_ms);",
    // 2: alerts for the owner (a full box), delivered on the same queue: a
    // delivery is for a message or for an alert, never both.
    "CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        line TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX alerts_line ON alerts (kind, line, created_at_ms);
    CREATE TABLE deliveries_v2 (
        id INTEGER PRIMARY KEY,
        message_id TEXT REFERENCES messages (id) ON DELETE CASCADE,
        alert_id INTEGER REFERENCES alerts (id) ON DELETE CASCADE,
        channel TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        next_attempt_at_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
        last_error TEXT,
        CHECK ((message_id IS NULL) != (alert_id IS NULL)),
        UNIQUE (message_id, channel),
        UNIQUE (alert_id, channel)
    );
    INSERT INTO deliveries_v2 (id, message_id, channel, attempts, created_at_ms, next_attempt_at_ms, state, last_error)
        SELECT id, message_id, channel, attempts, created_at_ms, next_attempt_at_ms, state, last_error FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v2 RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at_ms);",
];

/// Opens (creating if needed) the database at `path` and brings its schema up
/// to date.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    migrate(&conn)?;
    Ok(conn)
}

/// An in-memory database with the current schema (tests, dry runs).
pub fn open_in_memory() -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    configure(&conn)?;
    migrate(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Another connection (the notification worker) may hold the write lock
    // for a moment; wait instead of failing.
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let version = usize::try_from(version).unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {version} is newer than this denwa knows ({}); upgrade denwa",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema version this build writes.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_records_the_version() {
        let dir = tempdir("db-migrate");
        let path = dir.join(DB_FILE);
        let conn = open(&path).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version as usize, schema_version());
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        // Reopening does not re-run migration 1 (it would fail: table exists).
        open(&path).unwrap();
    }

    #[test]
    fn version_2_keeps_the_deliveries_of_version_1() {
        let dir = tempdir("db-v1");
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).unwrap();
        configure(&conn).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO messages VALUES ('vm-1', 'public', '090', NULL, 0, 1000, 'vm-1.wav', 44, 'new', 0, NULL);
             INSERT INTO deliveries (message_id, channel, created_at_ms, next_attempt_at_ms, state)
                 VALUES ('vm-1', 'mail', 5, 5, 'pending');",
        )
        .unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let kept: (String, String, Option<i64>) = conn
            .query_row("SELECT message_id, channel, alert_id FROM deliveries", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(kept, ("vm-1".into(), "mail".into(), None));
        // Deleting the message still drops its deliveries.
        conn.execute("DELETE FROM messages", []).unwrap();
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempdir("db-newer");
        let path = dir.join(DB_FILE);
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = open(&path).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }

    pub(crate) fn tempdir(name: &str) -> std::path::PathBuf {
        crate::records::test_dir(name)
    }
}
