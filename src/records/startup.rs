//! Bringing voicemail up when denwa starts, and what the shell keeps of it.
//!
//! [`start`] runs once, before any call is taken:
//!
//! 1. recordings a crash left in `tmp/` are repaired ([`recording::recover`]),
//!    indexed with `recovered = true` and their notifications queued, in one
//!    transaction each, so nobody misses a message because denwa died;
//! 2. retention archives or deletes messages older than `retention_days`;
//! 3. the notification worker starts (pending deliveries from the last run
//!    are due at once).
//!
//! The [`VoicemailService`] it returns answers "is this line's box full?"
//! for the policy's voicemail step, indexes finished recordings, and stops
//! the worker on shutdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::db;
use super::indexer::Indexer;
use super::recording::{self, RecordingDone, RecordingMeta};
use super::voicemail::{BoxUsage, Message, RetentionAction, StoreError, VoicemailStore};
use crate::notify::NotifyConfig;
use crate::notify::alert::{self, BoxFull, BoxFullGate, FullBox};
use crate::notify::queue::store_and_enqueue;
use crate::notify::worker::NotifyWorker;

/// How much one line's box may hold; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BoxLimits {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// Old messages are archived or deleted after `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
    pub action: RetentionAction,
}

/// `[voicemail]`, compiled by the config.
#[derive(Debug, Clone, PartialEq)]
pub struct VoicemailSettings {
    /// Recordings and the index (`voicemail.sqlite`) live here.
    pub dir: PathBuf,
    /// Limits of every line's box, unless `per_line` says otherwise.
    pub limits: BoxLimits,
    /// Overrides by line name.
    pub per_line: BTreeMap<String, BoxLimits>,
    pub retention: Option<Retention>,
}

impl VoicemailSettings {
    pub fn limits_for(&self, line: &str) -> BoxLimits {
        self.per_line.get(line).copied().unwrap_or(self.limits)
    }
}

/// Voicemail while denwa runs: the index, the limits and the notification worker.
pub struct VoicemailService {
    settings: VoicemailSettings,
    notify: NotifyConfig,
    store: VoicemailStore,
    worker: NotifyWorker,
    /// Puts finished messages in the index, off the signalling thread.
    indexer: Indexer,
    /// Numbers the message ids this process hands out.
    next_id: std::sync::atomic::AtomicU32,
    /// When a full box deserves an alert (a mutex: the service is shared by reference).
    gate: Mutex<BoxFullGate>,
    /// The last recording that ended on an error (disk full), for the status.
    last_error: Mutex<Option<RecordingError>>,
}

/// A recording that ended on an error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordingError {
    /// The message id (kept or not).
    pub message: String,
    pub line: String,
    pub error: String,
    pub at: jiff::Timestamp,
}

/// Voicemail's part of the status snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VoicemailStatus {
    pub full_boxes: Vec<FullBox>,
    pub last_error: Option<RecordingError>,
}

/// What start-up found in `tmp/`, for the log and for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupReport {
    /// Ids of recovered recordings now in the index.
    pub recovered: Vec<String>,
    /// Recordings that could not be kept, with why.
    pub lost: Vec<(String, String)>,
    /// Ids archived or deleted by retention.
    pub retired: Vec<String>,
}

/// Recovers, applies retention and starts the notification worker.
/// `now` is the wall clock (timestamps in the index must survive restarts).
pub fn start(
    settings: &VoicemailSettings,
    notify: &NotifyConfig,
    now: jiff::Timestamp,
) -> Result<VoicemailService, String> {
    start_with_report(settings, notify, now).map(|(service, _)| service)
}

/// [`start`], also returning what it found.
pub fn start_with_report(
    settings: &VoicemailSettings,
    notify: &NotifyConfig,
    now: jiff::Timestamp,
) -> Result<(VoicemailService, StartupReport), String> {
    let dir = &settings.dir;
    let store = VoicemailStore::open(dir).map_err(|e| format!("voicemail in {}: {e}", dir.display()))?;
    let mut report = StartupReport {
        recovered: Vec::new(),
        lost: Vec::new(),
        retired: Vec::new(),
    };
    for found in recording::recover(dir) {
        match (&found.path, &found.error) {
            (Some(path), _) => {
                let meta = found.meta.clone().unwrap_or_else(|| unknown_caller(path, now));
                let indexed = Message::from_recording(&found.id, path, found.duration, &meta, true)
                    .map_err(StoreError::from)
                    .and_then(|m| store_and_enqueue(&store, &m, &notify.channels_for(&m.line), now));
                match indexed {
                    Ok(()) => {
                        tracing::warn!(
                            message = %found.id, line = %meta.line, caller = %meta.caller,
                            seconds = found.duration.as_secs(),
                            "voicemail recovered after a crash (the end may be cut); notifications queued"
                        );
                        report.recovered.push(found.id);
                    }
                    Err(e) => {
                        tracing::error!(message = %found.id, file = %path.display(), error = %e,
                            "a recovered voicemail could not be indexed; the file is kept");
                        report.lost.push((found.id, e.to_string()));
                    }
                }
            }
            (None, error) => {
                let why = error.clone().unwrap_or_else(|| "not kept".into());
                tracing::warn!(message = %found.id, error = %why, "an interrupted voicemail recording was not kept");
                report.lost.push((found.id, why));
            }
        }
    }
    report.retired = retire(&store, settings.retention, now)?;
    let sent =
        alert::latest_by_line(store.connection()).map_err(|e| format!("voicemail alerts in {}: {e}", dir.display()))?;
    let worker = NotifyWorker::spawn(dir, notify.clone())
        .map_err(|e| format!("voicemail notifications in {}: {e}", dir.display()))?;
    let indexer = Indexer::spawn(dir, worker.waker())?;
    Ok((
        VoicemailService {
            settings: settings.clone(),
            notify: notify.clone(),
            store,
            worker,
            indexer,
            next_id: Default::default(),
            gate: Mutex::new(BoxFullGate::with_sent(sent)),
            last_error: Mutex::new(None),
        },
        report,
    ))
}

/// Archives or deletes what retention says is too old; returns their ids.
fn retire(store: &VoicemailStore, retention: Option<Retention>, now: jiff::Timestamp) -> Result<Vec<String>, String> {
    let Some(retention) = retention else {
        return Ok(Vec::new());
    };
    let retired = store
        .apply_retention(now, retention.days, retention.action)
        .map_err(|e| format!("voicemail retention in {}: {e}", store.dir().display()))?;
    if !retired.is_empty() {
        tracing::info!(
            count = retired.len(),
            action = ?retention.action,
            days = retention.days,
            "old voicemail retired"
        );
    }
    Ok(retired)
}

/// The sidecar was lost: keep the audio under an unknown caller, received
/// when the file was last written.
fn unknown_caller(path: &Path, now: jiff::Timestamp) -> RecordingMeta {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .unwrap_or(now);
    RecordingMeta {
        line: String::new(),
        caller: "unknown".into(),
        caller_name: None,
        call_id: None,
        started_at: modified,
    }
}

impl VoicemailService {
    /// The voicemail directory: give it to [`recording::start`].
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// The index database (for `denwa voicemail` and backups).
    pub fn store_path(&self) -> PathBuf {
        self.settings.dir.join(db::DB_FILE)
    }

    /// A fresh id for a recording (a file name, too): the local time it
    /// started, this run's sequence number and a random tag,
    /// `vm-20260301-140703-0002a3f2`.
    pub fn new_message_id(&self, now: jiff::Timestamp) -> String {
        let zone = self
            .notify
            .time_zone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        // The sequence keeps this process's ids apart however many messages
        // start in one second; the random part, another run's in the same second.
        let sequence = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u16;
        let mut tag = [0u8; 2];
        if getrandom::fill(&mut tag).is_err() {
            tag = (now.subsec_millisecond() as u16).to_be_bytes();
        }
        format!(
            "vm-{}-{sequence:04x}{:02x}{:02x}",
            now.to_zoned(zone).strftime("%Y%m%d-%H%M%S"),
            tag[0],
            tag[1]
        )
    }

    /// Whether `line`'s box has reached a limit, so the voicemail step
    /// should fall through to the rule's next step. A database error counts
    /// as full: better the announcement than a message nobody can find.
    pub fn box_full(&self, line: &str) -> bool {
        self.box_state(line).0
    }

    /// Whether the box is full, and its usage when it could be read.
    fn box_state(&self, line: &str) -> (bool, Option<BoxUsage>) {
        let limits = self.settings.limits_for(line);
        if limits.max_messages.is_none() && limits.max_bytes.is_none() {
            return (false, None);
        }
        match self.store.usage(line) {
            Ok(usage) => {
                let full = limits.max_messages.is_some_and(|max| usage.messages >= max)
                    || limits.max_bytes.is_some_and(|max| usage.bytes >= max);
                (full, Some(usage))
            }
            Err(e) => {
                tracing::error!(line, error = %e, "voicemail box usage unreadable; treating the box as full");
                (true, None)
            }
        }
    }

    /// [`box_full`](Self::box_full) for a caller about to leave a message
    /// at `now`: a full box also alerts the owner on the line's channels
    /// (at most once until it has room again, or once an hour; see
    /// [`BoxFullGate`]). The alert is stored and sent by the notification
    /// worker: this never waits for the disk or the network.
    pub fn check_box(&self, line: &str, caller: &str, caller_name: Option<&str>, now: jiff::Timestamp) -> bool {
        let (full, usage) = self.box_state(line);
        let alert = self
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(line, full, now);
        if alert {
            let limits = self.settings.limits_for(line);
            let usage = usage.unwrap_or_default();
            self.worker.alert(BoxFull {
                line: line.to_string(),
                messages: usage.messages,
                bytes: usage.bytes,
                max_messages: limits.max_messages,
                max_bytes: limits.max_bytes,
                caller: caller.to_string(),
                caller_name: caller_name.map(str::to_string),
                at: now,
            });
        }
        full
    }

    /// A recording ended on `error` (it is logged by the caller); the status shows it.
    pub fn recording_failed(&self, done: &RecordingDone, error: &str, now: jiff::Timestamp) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(RecordingError {
            message: done.id.clone(),
            line: done.meta.line.clone(),
            error: error.to_string(),
            at: now,
        });
    }

    /// What the status snapshot shows of voicemail.
    pub fn status(&self) -> VoicemailStatus {
        VoicemailStatus {
            full_boxes: self.full_boxes(),
            last_error: self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Lines whose box was full at their last check (for the status snapshot).
    pub fn full_boxes(&self) -> Vec<FullBox> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner()).full_boxes()
    }

    /// Applies retention again (start-up already did): call it once a day
    /// from a timer so a long-running denwa keeps its boxes tidy.
    pub fn apply_retention(&self, now: jiff::Timestamp) -> Result<Vec<String>, String> {
        retire(&self.store, self.settings.retention, now)
    }

    /// Indexes a finished recording and queues its notifications (on the
    /// index thread; this waits for it). `None` when nothing was kept
    /// (aborted, or no file).
    pub fn keep(&self, done: &RecordingDone, now: jiff::Timestamp) -> Result<Option<Message>, String> {
        self.indexer.keep(done, &self.notify.channels_for(&done.meta.line), now)
    }

    /// For a recording's own thread: indexes its message when it ends.
    pub fn indexer(&self) -> Indexer {
        self.indexer.clone()
    }

    /// The notification channels a message on `line` goes to now.
    pub fn channels_for(&self, line: &str) -> Vec<String> {
        self.notify.channels_for(line)
    }

    /// A reloaded config: new limits and retention now, new channels for
    /// the next messages. The directory stays (it needs a restart).
    pub fn reload(&mut self, settings: &VoicemailSettings, notify: &NotifyConfig) {
        if settings.dir != self.settings.dir {
            tracing::warn!(
                running = %self.settings.dir.display(), configured = %settings.dir.display(),
                "voicemail.dir changed: restart denwa to use the new directory"
            );
        }
        self.settings = VoicemailSettings {
            dir: self.settings.dir.clone(),
            ..settings.clone()
        };
        self.notify = notify.clone();
        self.worker.reload(notify.clone());
    }

    /// Stops the notification worker after the attempt in progress.
    pub fn stop(self) {
        self.worker.stop();
    }
}

#[cfg(test)]
#[path = "startup_tests.rs"]
mod tests;
