//! Indexing finished messages off the signalling thread.
//!
//! Putting a message in the index is a SQLite transaction with an fsync:
//! milliseconds on a quiet disk, far more when many messages end at once.
//! One thread with its own connection does it for every recording, in
//! order, and never waits on a mail server (the notification worker does
//! the delivering); a recording's own thread waits for its answer.

use std::path::Path;
use std::sync::mpsc::{self, Sender};

use super::recording::RecordingDone;
use super::voicemail::{Message, VoicemailStore};
use crate::notify::queue::store_and_enqueue;

struct Job {
    message: Message,
    channels: Vec<String>,
    now: jiff::Timestamp,
    reply: Sender<Result<(), String>>,
}

/// A handle to the index thread; clones share it. The thread ends when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Indexer {
    jobs: Sender<Job>,
}

impl Indexer {
    /// Opens its own connection to the store in `dir`; `indexed` runs after
    /// each message is in (to wake the notification worker).
    pub fn spawn(dir: &Path, indexed: impl Fn() + Send + 'static) -> Result<Indexer, String> {
        let store = VoicemailStore::open(dir).map_err(|e| format!("voicemail index in {}: {e}", dir.display()))?;
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vm-index".into())
            .spawn(move || {
                for job in rx {
                    let result =
                        store_and_enqueue(&store, &job.message, &job.channels, job.now).map_err(|e| e.to_string());
                    if result.is_ok() {
                        indexed();
                    }
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| format!("voicemail index thread: {e}"))?;
        Ok(Indexer { jobs })
    }

    /// Indexes a finished recording and queues a notification on each of
    /// `channels`; blocks until done. `None` when there is no file to keep.
    pub fn keep(
        &self,
        done: &RecordingDone,
        channels: &[String],
        now: jiff::Timestamp,
    ) -> Result<Option<Message>, String> {
        let Some(path) = &done.path else {
            return Ok(None);
        };
        let message =
            Message::from_recording(&done.id, path, done.duration, &done.meta, false).map_err(|e| e.to_string())?;
        let (reply, answer) = mpsc::channel();
        let job = Job {
            message: message.clone(),
            channels: channels.to_vec(),
            now,
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| "the index thread has stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the index thread has stopped".to_string())?
            .map(|()| Some(message))
    }
}
