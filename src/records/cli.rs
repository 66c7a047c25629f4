//! `denwa voicemail …`: each function does one subcommand on the voicemail
//! directory and returns what to print (a table, or JSON with `json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::voicemail::{Filter, Message, MessageState, Result, StoreError, VoicemailStore};

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data serializes")
}

fn duration_text(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// Times are shown in `zone` (the config's time zone).
fn local(m: &Message, zone: &jiff::tz::TimeZone) -> String {
    m.received_at
        .to_zoned(zone.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// `denwa voicemail list [--line N] [--new] [--all] [--json]`
pub fn list(dir: &Path, filter: &Filter, zone: &jiff::tz::TimeZone, json: bool) -> Result<String> {
    let store = VoicemailStore::open(dir)?;
    let messages = store.list(filter)?;
    if json {
        return Ok(to_json(&messages));
    }
    if messages.is_empty() {
        return Ok("no voicemail\n".into());
    }
    let mut out = format!(
        "{:<24} {:<16} {:<16} {:<24} {:>6} {:<8}\n",
        "ID", "RECEIVED", "LINE", "CALLER", "LENGTH", "STATE"
    );
    for m in &messages {
        let caller = match &m.caller_name {
            Some(name) => format!("{} ({name})", m.caller),
            None => m.caller.clone(),
        };
        let state = if m.recovered {
            format!("{}*", m.state.as_str())
        } else {
            m.state.as_str().to_string()
        };
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<16} {:<24} {:>6} {:<8}",
            m.id,
            local(m, zone),
            m.line,
            caller,
            duration_text(m.duration_ms),
            state
        );
    }
    if messages.iter().any(|m| m.recovered) {
        out.push_str("* recovered after a crash; the end may be cut\n");
    }
    Ok(out)
}

#[derive(Serialize)]
struct DeliveryRow {
    channel: String,
    state: String,
    attempts: u32,
    last_error: Option<String>,
}

fn deliveries(store: &VoicemailStore, id: &str) -> Result<Vec<DeliveryRow>> {
    let mut stmt = store
        .connection()
        .prepare("SELECT channel, state, attempts, last_error FROM deliveries WHERE message_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([id], |r| {
        Ok(DeliveryRow {
            channel: r.get(0)?,
            state: r.get(1)?,
            attempts: r.get(2)?,
            last_error: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `denwa voicemail show ID [--json]`: the message and its notifications.
pub fn show(dir: &Path, id: &str, zone: &jiff::tz::TimeZone, json: bool) -> Result<String> {
    let store = VoicemailStore::open(dir)?;
    let m = store.get(id)?;
    let notifications = deliveries(&store, id)?;
    let file = store.file_path(&m);
    if json {
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(flatten)]
            message: &'a Message,
            path: &'a Path,
            notifications: &'a [DeliveryRow],
        }
        return Ok(to_json(&Shown {
            message: &m,
            path: &file,
            notifications: &notifications,
        }));
    }
    let mut out = String::new();
    let _ = writeln!(out, "id:        {}", m.id);
    let _ = writeln!(out, "line:      {}", m.line);
    let _ = writeln!(out, "caller:    {}", m.caller);
    if let Some(name) = &m.caller_name {
        let _ = writeln!(out, "name:      {name}");
    }
    let _ = writeln!(out, "received:  {} ({})", local(&m, zone), m.received_at);
    let _ = writeln!(out, "length:    {}", duration_text(m.duration_ms));
    let _ = writeln!(out, "state:     {}", m.state.as_str());
    if m.recovered {
        let _ = writeln!(out, "recovered: yes (after a crash; the end may be cut)");
    }
    if let Some(call_id) = &m.call_id {
        let _ = writeln!(out, "call-id:   {call_id}");
    }
    let _ = writeln!(out, "file:      {} ({} bytes)", file.display(), m.size_bytes);
    for d in &notifications {
        let _ = write!(
            out,
            "notify:    {} {} after {} attempt(s)",
            d.channel, d.state, d.attempts
        );
        match &d.last_error {
            Some(e) if d.state != "delivered" => {
                let _ = writeln!(out, ": {e}");
            }
            _ => out.push('\n'),
        }
    }
    Ok(out)
}

/// `denwa voicemail play ID`: the file to hand to a player; marks a new
/// message heard.
pub fn play(dir: &Path, id: &str) -> Result<PathBuf> {
    let store = VoicemailStore::open(dir)?;
    let m = store.get(id)?;
    let path = store.file_path(&m);
    if !path.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the recording {} is missing", path.display()),
        )));
    }
    if m.state == MessageState::New {
        store.mark(id, MessageState::Heard)?;
    }
    Ok(path)
}

/// `denwa voicemail export ID DEST`: copies the WAV to DEST (a file, or a
/// directory to put `<id>.wav` in); returns what to print.
pub fn export(dir: &Path, id: &str, dest: &Path) -> Result<String> {
    let store = VoicemailStore::open(dir)?;
    let m = store.get(id)?;
    let target = if dest.is_dir() {
        dest.join(&m.file)
    } else {
        dest.to_path_buf()
    };
    let bytes = std::fs::copy(store.file_path(&m), &target)?;
    Ok(format!("exported {} to {} ({bytes} bytes)\n", m.id, target.display()))
}

/// `denwa voicemail mark ID new|heard|archived`
pub fn mark(dir: &Path, id: &str, state: &str) -> Result<String> {
    let state = MessageState::parse(state).ok_or_else(|| {
        StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unknown state {state:?}: use new, heard or archived"),
        ))
    })?;
    VoicemailStore::open(dir)?.mark(id, state)?;
    Ok(format!("{id} is now {}\n", state.as_str()))
}

/// `denwa voicemail delete ID`
pub fn delete(dir: &Path, id: &str) -> Result<String> {
    VoicemailStore::open(dir)?.delete(id)?;
    Ok(format!("deleted {id}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::test_dir;
    use crate::records::voicemail::tests::message;

    #[test]
    fn list_show_play_export_mark_delete() {
        let dir = test_dir("cli");
        let store = VoicemailStore::open(&dir).unwrap();
        let m = message("vm-a", "+81312345678", "2025-03-01T05:07:00Z");
        std::fs::write(store.file_path(&m), b"RIFF....").unwrap();
        store.insert(&m).unwrap();
        let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();

        let table = list(&dir, &Filter::default(), &tokyo, false).unwrap();
        assert!(table.contains("vm-a"), "{table}");
        assert!(table.contains("2025-03-01 14:07"), "{table}");
        assert!(table.contains("0:13"), "{table}");
        let parsed: serde_json::Value =
            serde_json::from_str(&list(&dir, &Filter::default(), &tokyo, true).unwrap()).unwrap();
        assert_eq!(parsed[0]["id"], "vm-a");
        assert_eq!(parsed[0]["state"], "new");

        let shown = show(&dir, "vm-a", &tokyo, false).unwrap();
        assert!(shown.contains("Tanaka"), "{shown}");
        let shown: serde_json::Value = serde_json::from_str(&show(&dir, "vm-a", &tokyo, true).unwrap()).unwrap();
        assert_eq!(shown["caller"], "+819011112222");
        assert!(shown["notifications"].as_array().unwrap().is_empty());

        assert_eq!(play(&dir, "vm-a").unwrap(), dir.join("vm-a.wav"));
        assert_eq!(store.get("vm-a").unwrap().state, MessageState::Heard);

        let out = test_dir("cli-export");
        export(&dir, "vm-a", &out).unwrap();
        assert_eq!(std::fs::read(out.join("vm-a.wav")).unwrap(), b"RIFF....");

        assert!(mark(&dir, "vm-a", "bogus").is_err());
        mark(&dir, "vm-a", "archived").unwrap();
        assert_eq!(list(&dir, &Filter::default(), &tokyo, false).unwrap(), "no voicemail\n");
        delete(&dir, "vm-a").unwrap();
        assert!(
            show(&dir, "vm-a", &tokyo, false)
                .unwrap_err()
                .to_string()
                .contains("no voicemail with id")
        );
    }
}
