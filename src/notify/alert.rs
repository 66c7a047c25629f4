//! Alerts for the owner, delivered on the same channels and the same
//! persistent queue as new messages. One kind so far: a line's box was full
//! and a caller could not leave a message.
//!
//! [`BoxFullGate`] decides when to alert (pure, on the caller's clock): at
//! most once per line until the box has room again, and again after
//! [`REPEAT_AFTER`] if it stays full. [`record`] stores an alert and queues
//! its deliveries in one transaction; the worker does that off the
//! signalling thread (see [`super::worker::NotifyWorker::alert`]).

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::NotifyConfig;
use super::queue::enqueue_alert_on;

/// The `kind` of a full-box alert in the `alerts` table (and the webhook's `event`).
pub const BOX_FULL: &str = "box_full";

/// A box that stays full is reported again after this long.
pub const REPEAT_AFTER: Duration = Duration::from_secs(3600);

/// What a full-box alert says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxFull {
    /// The line (number name) whose box is full.
    pub line: String,
    pub messages: u64,
    pub bytes: u64,
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    /// The caller who could not leave a message, and when.
    pub caller: String,
    pub caller_name: Option<String>,
    pub at: jiff::Timestamp,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: i64,
    pub created_at: jiff::Timestamp,
    pub box_full: BoxFull,
}

/// Stores the alert and queues one delivery per channel, in one
/// transaction; returns the alert's id.
pub fn record(conn: &Connection, alert: &BoxFull, channels: &[String], now: jiff::Timestamp) -> rusqlite::Result<i64> {
    let tx = conn.unchecked_transaction()?;
    let details = serde_json::to_string(alert).expect("an alert serialises");
    tx.execute(
        "INSERT INTO alerts (kind, line, created_at_ms, details) VALUES (?1, ?2, ?3, ?4)",
        params![BOX_FULL, alert.line, now.as_millisecond(), details],
    )?;
    let id = tx.last_insert_rowid();
    for channel in channels {
        enqueue_alert_on(&tx, id, channel, now)?;
    }
    tx.commit()?;
    Ok(id)
}

/// The alert with this id, if it is still there.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Alert>> {
    conn.query_row(
        "SELECT created_at_ms, details FROM alerts WHERE id = ?1 AND kind = ?2",
        params![id, BOX_FULL],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )
    .optional()?
    .map(|(ms, details)| {
        let created_at =
            jiff::Timestamp::from_millisecond(ms).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, ms))?;
        let box_full = serde_json::from_str(&details)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into()))?;
        Ok(Alert {
            id,
            created_at,
            box_full,
        })
    })
    .transpose()
}

/// The latest full-box alert of each line, so a restart does not repeat
/// an alert sent minutes ago.
pub fn latest_by_line(conn: &Connection) -> rusqlite::Result<Vec<(String, jiff::Timestamp)>> {
    let mut stmt =
        conn.prepare("SELECT line, MAX(created_at_ms) FROM alerts WHERE kind = ?1 GROUP BY line ORDER BY line")?;
    let rows = stmt.query_map([BOX_FULL], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|row| {
        let (line, ms) = row?;
        let at = jiff::Timestamp::from_millisecond(ms).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(1, ms))?;
        Ok((line, at))
    })
    .collect()
}

/// A line whose box was full when last checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FullBox {
    pub line: String,
    /// When the owner was last alerted about it.
    pub alerted_at: jiff::Timestamp,
    /// Callers turned away since denwa started.
    pub callers_turned_away: u64,
}

#[derive(Debug, Clone)]
struct GateEntry {
    alerted_at: jiff::Timestamp,
    full_now: bool,
    turned_away: u64,
}

/// When a full box deserves an alert. Sans-IO: every call takes `now`.
#[derive(Debug, Clone, Default)]
pub struct BoxFullGate {
    lines: BTreeMap<String, GateEntry>,
}

impl BoxFullGate {
    /// A gate that remembers the alerts already sent (from [`latest_by_line`]).
    pub fn with_sent(sent: impl IntoIterator<Item = (String, jiff::Timestamp)>) -> Self {
        let lines = sent
            .into_iter()
            .map(|(line, alerted_at)| {
                let entry = GateEntry {
                    alerted_at,
                    full_now: false,
                    turned_away: 0,
                };
                (line, entry)
            })
            .collect();
        BoxFullGate { lines }
    }

    /// The box of `line` was checked at `now` for a caller: returns whether
    /// to alert the owner. Room in the box re-arms the alert.
    pub fn observe(&mut self, line: &str, full: bool, now: jiff::Timestamp) -> bool {
        if !full {
            self.lines.remove(line);
            return false;
        }
        match self.lines.get_mut(line) {
            Some(entry) => {
                entry.full_now = true;
                entry.turned_away += 1;
                let since = now.duration_since(entry.alerted_at);
                if since.unsigned_abs() >= REPEAT_AFTER && since.is_positive() {
                    entry.alerted_at = now;
                    return true;
                }
                false
            }
            None => {
                let entry = GateEntry {
                    alerted_at: now,
                    full_now: true,
                    turned_away: 1,
                };
                self.lines.insert(line.to_string(), entry);
                true
            }
        }
    }

    /// Lines found full at their last check, for the status snapshot.
    pub fn full_boxes(&self) -> Vec<FullBox> {
        self.lines
            .iter()
            .filter(|(_, e)| e.full_now)
            .map(|(line, e)| FullBox {
                line: line.clone(),
                alerted_at: e.alerted_at,
                callers_turned_away: e.turned_away,
            })
            .collect()
    }
}

/// What every channel is told about a full box.
#[derive(Debug, Clone)]
pub struct AlertNotice {
    pub alert: BoxFull,
    /// `at` in the configured zone, `2025-03-01 14:03 JST`.
    pub local_time: String,
}

impl AlertNotice {
    pub fn new(alert: BoxFull, config: &NotifyConfig) -> Self {
        let local_time = alert
            .at
            .to_zoned(config.zone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string();
        AlertNotice { alert, local_time }
    }

    pub fn caller_display(&self) -> String {
        match &self.alert.caller_name {
            Some(name) => format!("{name} <{}>", self.alert.caller),
            None => self.alert.caller.clone(),
        }
    }

    /// One sentence: the box, its usage, the caller turned away.
    pub fn summary(&self) -> String {
        let a = &self.alert;
        format!(
            "voicemail box for line {} is full: {} messages / {} bytes; a caller at {} could not leave a message",
            a.line, a.messages, a.bytes, self.local_time
        )
    }

    pub fn subject(&self) -> String {
        format!(
            "Voicemail box full on {}: {} could not leave a message",
            self.alert.line,
            self.caller_display()
        )
    }

    pub fn body(&self) -> String {
        let a = &self.alert;
        let limit = |max: Option<u64>| max.map_or("no limit".to_string(), |m| m.to_string());
        format!(
            "The {summary}.\n\n\
             Caller:   {caller}\n\
             Time:     {time}\n\
             Messages: {messages} (limit {max_messages})\n\
             Bytes:    {bytes} (limit {max_bytes})\n\n\
             Callers get the rule's next step until there is room. Make room with\n\
             `denwa voicemail list --line {line}` and `denwa voicemail delete ID`.\n\
             You are told again in an hour if the box stays full and callers keep trying.\n",
            summary = self.summary(),
            caller = self.caller_display(),
            time = self.local_time,
            messages = a.messages,
            max_messages = limit(a.max_messages),
            bytes = a.bytes,
            max_bytes = limit(a.max_bytes),
            line = a.line,
        )
    }

    /// The JSON body a webhook receives.
    pub fn payload(&self) -> serde_json::Value {
        let a = &self.alert;
        json!({
            "event": BOX_FULL,
            "line": a.line,
            "messages": a.messages,
            "bytes": a.bytes,
            "max_messages": a.max_messages,
            "max_bytes": a.max_bytes,
            "caller": a.caller,
            "caller_name": a.caller_name,
            "time": a.at.to_string(),
            "local_time": self.local_time,
            "summary": self.summary(),
        })
    }

    /// The environment a command channel's program gets.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let a = &self.alert;
        let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        vec![
            ("DENWA_VM_EVENT", BOX_FULL.to_string()),
            ("DENWA_VM_LINE", a.line.clone()),
            ("DENWA_VM_CALLER", a.caller.clone()),
            ("DENWA_VM_CALLER_NAME", a.caller_name.clone().unwrap_or_default()),
            ("DENWA_VM_TIME", a.at.to_string()),
            ("DENWA_VM_LOCAL_TIME", self.local_time.clone()),
            ("DENWA_VM_BOX_MESSAGES", a.messages.to_string()),
            ("DENWA_VM_BOX_BYTES", a.bytes.to_string()),
            ("DENWA_VM_BOX_MAX_MESSAGES", opt(a.max_messages)),
            ("DENWA_VM_BOX_MAX_BYTES", opt(a.max_bytes)),
            ("DENWA_VM_SUMMARY", self.summary()),
        ]
    }
}

#[cfg(test)]
#[path = "alert_tests.rs"]
mod tests;
