//! The running engine's status, as one snapshot: the shell publishes it on
//! a watch channel, and every reader (the status file that `denwa status`
//! reads, later an HTTP endpoint) takes the same thing from there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

/// How often the status is published even when nothing changed, so a reader
/// can tell a live engine from a stopped one.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// What `denwa status` reads.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatusFile {
    pub updated_at: jiff::Timestamp,
    /// How often the engine rewrites this file, even when nothing changed
    /// (missing in files from older versions, which wrote every 5 s).
    #[serde(default = "refresh_every_s")]
    pub refresh_every_s: u64,
    pub pid: u32,
    pub listen: SocketAddr,
    pub active_calls: usize,
    /// The media thread's counters (packets, errors, pacing slips, NAT).
    pub media: serde_json::Value,
    /// Each number's registration with the provider.
    pub registrations: Vec<serde_json::Value>,
    /// Each staff phone binding (device, reachability, round trip).
    #[serde(default)]
    pub phones: Vec<serde_json::Value>,
    /// Full voicemail boxes and the last recording error (null without voicemail).
    #[serde(default)]
    pub voicemail: serde_json::Value,
}

fn refresh_every_s() -> u64 {
    REFRESH_EVERY.as_secs()
}

impl StatusFile {
    /// How old the report is at `now` (zero if the clocks disagree).
    pub fn age(&self, now: jiff::Timestamp) -> Duration {
        Duration::try_from(now.duration_since(self.updated_at)).unwrap_or(Duration::ZERO)
    }

    pub fn refresh_every(&self) -> Duration {
        Duration::from_secs(self.refresh_every_s.max(1))
    }
}

/// The publishing side; `subscribe` gives readers.
pub type StatusSender = tokio::sync::watch::Sender<Option<Arc<StatusFile>>>;

pub fn channel() -> StatusSender {
    tokio::sync::watch::channel(None).0
}

/// Write each published snapshot to `path`, atomically (temp file + rename,
/// so a reader never sees half), off the signalling loop. Ends when the
/// sender is dropped, after writing the last snapshot.
pub fn write_file_task(status: &StatusSender, path: PathBuf) -> tokio::task::JoinHandle<()> {
    let mut rx = status.subscribe();
    tokio::spawn(async move {
        loop {
            let changed = rx.changed().await;
            let snapshot = rx.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                let path = path.clone();
                let _ = tokio::task::spawn_blocking(move || write(&path, &snapshot)).await;
            }
            if changed.is_err() {
                return;
            }
        }
    })
}

fn write(path: &Path, status: &StatusFile) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(status).expect("status serialises"))?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        debug!(path = %path.display(), error = %e, "cannot write the status file");
    }
}
