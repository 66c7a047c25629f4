//! The call log: one JSON line per call, appended by a writer thread of its
//! own so a slow disk never stalls signalling. Each line is written whole and
//! flushed; closing joins the writer, so every queued record is on disk.

use std::io::Write as _;
use std::path::Path;

use tracing::error;

use crate::call::CallRecord;

pub struct CallLog {
    tx: std::sync::mpsc::Sender<Box<CallRecord>>,
    writer: std::thread::JoinHandle<()>,
}

impl CallLog {
    pub fn open(path: &Path) -> std::io::Result<CallLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Box<CallRecord>>();
        let path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("denwa-calllog".into())
            .spawn(move || {
                for record in rx {
                    let mut line = serde_json::to_vec(&record).expect("record serialises");
                    line.push(b'\n');
                    if let Err(e) = file.write_all(&line).and_then(|_| file.flush()) {
                        error!(path = %path.display(), error = %e, "cannot write the call log");
                    }
                }
            })?;
        Ok(CallLog { tx, writer })
    }

    pub fn write(&self, record: Box<CallRecord>) {
        // The writer only stops when the log is closed.
        let _ = self.tx.send(record);
    }

    /// Write every record still queued, then stop.
    pub fn close(self) {
        drop(self.tx);
        if self.writer.join().is_err() {
            error!("the call-log writer panicked; some records may be missing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_queued_before_close_is_on_disk() {
        let dir = crate::records::test_dir("call-log");
        let path = dir.join("calls.jsonl");
        let log = CallLog::open(&path).unwrap();
        for n in 0..200 {
            log.write(Box::new(CallRecord {
                time: "2026-12-01T00:00:00Z".parse().unwrap(),
                line: "public".into(),
                dialled: "public".into(),
                caller: format!("090{n:08}"),
                caller_name: None,
                call_id: format!("c{n}"),
                source: "127.0.0.1:5070".parse().unwrap(),
                action: "announce".into(),
                why: "rule 1".into(),
                codec: None,
                answered_at: None,
                ended_at: None,
                hung_up_by: None,
                final_status: 200,
                digits: String::new(),
                audio: None,
                answered_by: None,
                legs: Vec::new(),
                voicemail: None,
                note: None,
            }));
        }
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 200);
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
    }
}
