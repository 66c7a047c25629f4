//! What denwa keeps and publishes: the call log, the status snapshot,
//! voicemail recordings and their index.
//!
//! - [`call_log`]: one JSON line per call, by a writer thread joined at shutdown.
//! - [`status`]: the engine's status, published on a watch channel; the
//!   status file is one reader of it.
//! - [`recording`]: the crash-safe writer thread that turns decoded audio
//!   frames into a WAV file, and [`recording::recover`] for what a crash left.
//! - [`level`]: RMS level per frame, so the caller can tell silence from speech.
//! - [`db`]: the SQLite database (schema and its versions) shared by the
//!   voicemail index and the notification queue.
//! - [`voicemail`]: the voicemail index (messages, states, retention).
//! - [`startup`]: recovery, retention and the notification worker at start-up;
//!   [`startup::VoicemailService`] is what the shell keeps while running.
//! - [`cli`]: what `denwa voicemail …` prints.

pub mod call_log;
pub mod cli;
pub mod db;
pub mod indexer;
pub mod level;
pub mod recording;
pub mod startup;
pub mod status;
pub mod voicemail;
pub mod wav_repair;

/// A fresh, empty directory for one test, inside one folder per test
/// process under the system temp dir; that folder is removed when the
/// process exits, so test runs leave nothing behind.
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static CLEANUP: std::sync::Once = std::sync::Once::new();
    extern "C" fn remove_test_dirs() {
        let _ = std::fs::remove_dir_all(test_dirs_parent());
    }
    // SAFETY: atexit only stores the function pointer; the function
    // touches nothing but the file system.
    CLEANUP.call_once(|| unsafe {
        libc::atexit(remove_test_dirs);
    });
    let dir = test_dirs_parent().join(format!("{}-{name}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
fn test_dirs_parent() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("denwa-test-{}", std::process::id()))
}
