//! The voicemail index: one row per kept message, in the database of
//! [`super::db`], with its recording in the same directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::db;
#[cfg(doc)]
use super::recording::RecordingDone;
use super::recording::RecordingMeta;

/// Errors of the voicemail store, each telling what to do.
#[derive(Debug)]
pub enum StoreError {
    Db(rusqlite::Error),
    Io(std::io::Error),
    NotFound(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "voicemail database: {e}"),
            StoreError::Io(e) => write!(f, "voicemail files: {e}"),
            StoreError::NotFound(id) => {
                write!(f, "no voicemail with id {id} (see `denwa voicemail list`)")
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    New,
    Heard,
    Archived,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::New => "new",
            MessageState::Heard => "heard",
            MessageState::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "new" => Some(MessageState::New),
            "heard" => Some(MessageState::Heard),
            "archived" => Some(MessageState::Archived),
            _ => None,
        }
    }
}

/// One voicemail message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: String,
    /// The shop's number that was called.
    pub line: String,
    pub caller: String,
    pub caller_name: Option<String>,
    pub received_at: jiff::Timestamp,
    pub duration_ms: u64,
    /// The recording's file name, relative to the voicemail directory.
    pub file: String,
    pub size_bytes: u64,
    pub state: MessageState,
    /// Found in tmp/ after a crash and repaired.
    pub recovered: bool,
    pub call_id: Option<String>,
}

impl Message {
    /// The index entry for a kept recording (from [`RecordingDone`] or
    /// [`Recovered`](super::recording::Recovered)); `path` must be inside the
    /// voicemail directory. Its size is read from the file.
    pub fn from_recording(
        id: &str,
        path: &Path,
        duration: Duration,
        meta: &RecordingMeta,
        recovered: bool,
    ) -> std::io::Result<Self> {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other(format!("bad recording path {}", path.display())))?
            .to_string();
        Ok(Message {
            id: id.to_string(),
            line: meta.line.clone(),
            caller: meta.caller.clone(),
            caller_name: meta.caller_name.clone(),
            received_at: meta.started_at,
            duration_ms: duration.as_millis() as u64,
            file,
            size_bytes: std::fs::metadata(path)?.len(),
            state: MessageState::New,
            recovered,
            call_id: meta.call_id.clone(),
        })
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}

/// Which messages [`VoicemailStore::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub line: Option<String>,
    pub only_new: bool,
    /// Archived messages are left out unless asked for.
    pub include_archived: bool,
}

/// Counts for "mailbox full" decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BoxUsage {
    pub messages: u64,
    pub new: u64,
    pub bytes: u64,
}

/// What retention does with old messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionAction {
    Archive,
    Delete,
}

/// The voicemail index and the directory holding the recordings.
pub struct VoicemailStore {
    conn: Connection,
    dir: PathBuf,
}

const COLUMNS: &str = "id, line, caller, caller_name, received_at_ms, duration_ms, file, \
                       size_bytes, state, recovered, call_id";

impl VoicemailStore {
    /// Opens the index in `dir` (creating the directory and database).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let conn = db::open(&dir.join(db::DB_FILE))?;
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The connection, for the notification queue sharing this database.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Absolute path of a message's recording.
    pub fn file_path(&self, message: &Message) -> PathBuf {
        self.dir.join(&message.file)
    }

    pub fn insert(&self, m: &Message) -> Result<()> {
        self.conn.execute(
            &format!("INSERT INTO messages ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            params![
                m.id,
                m.line,
                m.caller,
                m.caller_name,
                m.received_at.as_millisecond(),
                m.duration_ms as i64,
                m.file,
                m.size_bytes as i64,
                m.state.as_str(),
                m.recovered,
                m.call_id
            ],
        )?;
        Ok(())
    }

    /// Newest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Message>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM messages
             WHERE (?1 IS NULL OR line = ?1)
               AND (?2 = 0 OR state = 'new')
               AND (?3 = 1 OR state != 'archived')
             ORDER BY received_at_ms DESC, id"
        ))?;
        let rows = stmt.query_map(
            params![filter.line, filter.only_new, filter.include_archived],
            row_to_message,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn get(&self, id: &str) -> Result<Message> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"),
                [id],
                row_to_message,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    pub fn mark(&self, id: &str, state: MessageState) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE messages SET state = ?2 WHERE id = ?1",
            params![id, state.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }

    /// Deletes the row (and its pending notifications) and the recording.
    /// The row goes first: a crash in between leaves an orphan file, never a
    /// row pointing at nothing.
    pub fn delete(&self, id: &str) -> Result<()> {
        let message = self.get(id)?;
        self.conn.execute("DELETE FROM messages WHERE id = ?1", [id])?;
        match std::fs::remove_file(self.file_path(&message)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Messages, new messages and bytes on one line (archived ones included:
    /// they still take space).
    pub fn usage(&self, line: &str) -> Result<BoxUsage> {
        self.usage_where("line = ?1", [line])
    }

    /// The same over all lines.
    pub fn total_usage(&self) -> Result<BoxUsage> {
        self.usage_where("1 = 1", [])
    }

    fn usage_where<P: rusqlite::Params>(&self, condition: &str, params: P) -> Result<BoxUsage> {
        Ok(self.conn.query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(state = 'new'), 0), COALESCE(SUM(size_bytes), 0)
                 FROM messages WHERE {condition}"
            ),
            params,
            |r| {
                Ok(BoxUsage {
                    messages: r.get::<_, i64>(0)? as u64,
                    new: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                })
            },
        )?)
    }

    /// Archives or deletes messages received more than `days` days before
    /// `now`; returns their ids. Archiving leaves already archived ones alone.
    pub fn apply_retention(&self, now: jiff::Timestamp, days: u32, action: RetentionAction) -> Result<Vec<String>> {
        let cutoff = now.as_millisecond() - i64::from(days) * 86_400_000;
        let mut stmt = self.conn.prepare(
            "SELECT id FROM messages WHERE received_at_ms < ?1
               AND (?2 = 0 OR state != 'archived') ORDER BY received_at_ms",
        )?;
        let archive = action == RetentionAction::Archive;
        let ids: Vec<String> = stmt
            .query_map(params![cutoff, archive], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in &ids {
            match action {
                RetentionAction::Archive => self.mark(id, MessageState::Archived)?,
                RetentionAction::Delete => self.delete(id)?,
            }
        }
        Ok(ids)
    }
}

fn row_to_message(r: &Row<'_>) -> rusqlite::Result<Message> {
    let state: String = r.get(8)?;
    let received_ms: i64 = r.get(4)?;
    Ok(Message {
        id: r.get(0)?,
        line: r.get(1)?,
        caller: r.get(2)?,
        caller_name: r.get(3)?,
        received_at: jiff::Timestamp::from_millisecond(received_ms)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(4, received_ms))?,
        duration_ms: r.get::<_, i64>(5)? as u64,
        file: r.get(6)?,
        size_bytes: r.get::<_, i64>(7)? as u64,
        state: MessageState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                8,
                rusqlite::types::Type::Text,
                format!("unknown message state {state:?}").into(),
            )
        })?,
        recovered: r.get(9)?,
        call_id: r.get(10)?,
    })
}

#[cfg(test)]
#[path = "voicemail_tests.rs"]
pub(crate) mod tests;
