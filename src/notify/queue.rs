//! The persistent delivery queue (table `deliveries`). It reads no clock:
//! every call takes `now`, so back-off is tested on a virtual clock, and
//! times are wall-clock timestamps because they must survive a restart.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{Attempt, RetryPolicy};
use crate::records::db;
use crate::records::voicemail::{Message, VoicemailStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    fn parse(s: &str) -> Self {
        match s {
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            _ => DeliveryState::Pending,
        }
    }
}

/// One message (or one alert) to be delivered on one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    /// The message this tells about; `None` for an alert.
    pub message_id: Option<String>,
    /// The alert (see [`super::alert`]) this tells about; `None` for a message.
    pub alert_id: Option<i64>,
    pub channel: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: jiff::Timestamp,
    pub next_attempt_at: jiff::Timestamp,
    pub state: DeliveryState,
    pub last_error: Option<String>,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    RetryAt(jiff::Timestamp),
    /// Failed for good: retrying could not help, or `give_up_after` passed.
    GaveUp,
}

/// Indexes `message` and queues one delivery per channel, in one
/// transaction: either both happen or neither.
pub fn store_and_enqueue(
    store: &VoicemailStore,
    message: &Message,
    channels: &[String],
    now: jiff::Timestamp,
) -> Result<(), crate::records::voicemail::StoreError> {
    let tx = store.connection().unchecked_transaction()?;
    store.insert(message)?;
    for channel in channels {
        enqueue_on(&tx, &message.id, channel, now)?;
    }
    tx.commit()?;
    Ok(())
}

/// Queues one delivery of alert `alert_id` on `channel`.
pub(super) fn enqueue_alert_on(
    conn: &Connection,
    alert_id: i64,
    channel: &str,
    now: jiff::Timestamp,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO deliveries
           (alert_id, channel, created_at_ms, next_attempt_at_ms, state)
         VALUES (?1, ?2, ?3, ?3, 'pending')",
        params![alert_id, channel, now.as_millisecond()],
    )?;
    Ok(n == 1)
}

fn enqueue_on(conn: &Connection, message_id: &str, channel: &str, now: jiff::Timestamp) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO deliveries
           (message_id, channel, created_at_ms, next_attempt_at_ms, state)
         VALUES (?1, ?2, ?3, ?3, 'pending')",
        params![message_id, channel, now.as_millisecond()],
    )?;
    Ok(n == 1)
}

fn ts(ms: i64) -> rusqlite::Result<jiff::Timestamp> {
    jiff::Timestamp::from_millisecond(ms).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, ms))
}

const COLUMNS: &str =
    "id, message_id, alert_id, channel, attempts, created_at_ms, next_attempt_at_ms, state, last_error";

fn row_to_delivery(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        message_id: r.get(1)?,
        alert_id: r.get(2)?,
        channel: r.get(3)?,
        attempts: r.get(4)?,
        created_at: ts(r.get(5)?)?,
        next_attempt_at: ts(r.get(6)?)?,
        state: DeliveryState::parse(&r.get::<_, String>(7)?),
        last_error: r.get(8)?,
    })
}

/// The queue over its own connection to the voicemail database.
pub struct Queue {
    conn: Connection,
    retry: RetryPolicy,
}

impl Queue {
    /// Opens the queue in the voicemail directory `dir`. Pending deliveries
    /// left by an earlier run are simply due again.
    pub fn open(dir: &std::path::Path, retry: RetryPolicy) -> rusqlite::Result<Self> {
        Ok(Self::with_connection(db::open(&dir.join(db::DB_FILE))?, retry))
    }

    pub fn with_connection(conn: Connection, retry: RetryPolicy) -> Self {
        Queue { conn, retry }
    }

    pub fn set_retry(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    /// Queues a delivery for an indexed message; false if it was already queued.
    pub fn enqueue(&self, message_id: &str, channel: &str, now: jiff::Timestamp) -> rusqlite::Result<bool> {
        enqueue_on(&self.conn, message_id, channel, now)
    }

    /// The pending delivery that is most overdue at `now`, if any.
    pub fn next_due(&self, now: jiff::Timestamp) -> rusqlite::Result<Option<Delivery>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM deliveries
                     WHERE state = 'pending' AND next_attempt_at_ms <= ?1
                     ORDER BY next_attempt_at_ms, id LIMIT 1"
                ),
                [now.as_millisecond()],
                row_to_delivery,
            )
            .optional()
    }

    /// When the next pending delivery is due (possibly already).
    pub fn next_wakeup(&self) -> rusqlite::Result<Option<jiff::Timestamp>> {
        let ms: Option<i64> = self.conn.query_row(
            "SELECT MIN(next_attempt_at_ms) FROM deliveries WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        ms.map(ts).transpose()
    }

    /// Records an attempt's result and schedules the next one.
    pub fn on_result(&self, delivery: &Delivery, attempt: &Attempt, now: jiff::Timestamp) -> rusqlite::Result<Outcome> {
        let attempts = delivery.attempts + 1;
        let (state, next, error, outcome) = match attempt {
            Attempt::Delivered => ("delivered", now, None, Outcome::Delivered),
            Attempt::Permanent(e) => ("failed", now, Some(e.as_str()), Outcome::GaveUp),
            Attempt::Failed(e) => {
                let next = now + self.retry.delay_after(attempts);
                let expired = self
                    .retry
                    .give_up_after
                    .is_some_and(|limit| next.duration_since(delivery.created_at).unsigned_abs() > limit);
                if expired {
                    ("failed", now, Some(e.as_str()), Outcome::GaveUp)
                } else {
                    ("pending", next, Some(e.as_str()), Outcome::RetryAt(next))
                }
            }
        };
        self.conn.execute(
            "UPDATE deliveries SET attempts = ?2, state = ?3, next_attempt_at_ms = ?4,
                    last_error = COALESCE(?5, last_error)
             WHERE id = ?1",
            params![delivery.id, attempts, state, next.as_millisecond(), error],
        )?;
        Ok(outcome)
    }

    /// Deliveries of one message (or all), oldest first: for `voicemail show`.
    pub fn list(&self, message_id: Option<&str>) -> rusqlite::Result<Vec<Delivery>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM deliveries WHERE (?1 IS NULL OR message_id = ?1) ORDER BY id"
        ))?;
        let rows = stmt.query_map([message_id], row_to_delivery)?;
        rows.collect()
    }

    /// Puts failed deliveries back in the queue, due at `now` (after the
    /// owner fixed the SMTP settings); returns how many.
    pub fn retry_failed(&self, now: jiff::Timestamp) -> rusqlite::Result<usize> {
        self.conn.execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, created_at_ms = ?1,
                    next_attempt_at_ms = ?1 WHERE state = 'failed'",
            [now.as_millisecond()],
        )
    }
}
