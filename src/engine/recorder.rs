//! The recording's adapter thread: media's decoded frames → the RTP
//! timeline → 20 ms frames for the crash-safe writer, with the level meter
//! beside it. It tells the engine (through the shell) when the caller has
//! been silent long enough, and at the end decides whether the message is
//! kept: not when shorter than the minimum or silent throughout.
//!
//! Media stays generic (it only fills a `RecordSink`); the records layer
//! stays ignorant of RTP; this thread is where the two meet, off the media
//! thread, so no disk I/O and no allocation happen on the packet path.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::CallKey;
use super::rtp_timeline::{Piece, RtpTimeline};
use crate::media::RecordSink;
use crate::media::record::{self as media_record, RecordFrame};
use crate::records::level::{FLOOR_DBFS, LevelMeter};
use crate::records::recording::{self, FRAME_SAMPLES, Frame, RecorderSender, RecordingDone, RecordingMeta};

/// Below this a frame counts as silence (a phone line's noise floor is
/// about -60 to -50 dBFS).
pub const SILENCE_BELOW_DBFS: f32 = -45.0;
/// Frames media may queue for the adapter: 5 s of 20 ms packets.
const MEDIA_QUEUE_FRAMES: usize = 250;
/// How often the adapter takes the frames media queued (5 packets a
/// leg): the recording's end and silence are noticed within this.
const TICK: Duration = Duration::from_millis(100);

/// What the adapter tells the shell about one call's recording.
#[derive(Debug)]
pub enum RecorderEvent {
    /// The caller has been silent (or sent nothing) for the silence time.
    Silence { call: CallKey },
    /// The writer stopped early (disk full); the recording should end.
    WriteFailed { call: CallKey, error: String },
    /// The writer is done; `not_kept` says why the message was thrown away,
    /// `index` what indexing a kept one gave (its id; `None`: nothing to keep).
    Finished {
        call: CallKey,
        done: Box<RecordingDone>,
        not_kept: Option<String>,
        index: Result<Option<String>, String>,
    },
}

/// How the adapter judges the message.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_length: Duration,
    pub silence: Duration,
}

/// Puts a kept message in the index (on the recording's thread, so the
/// signalling thread never waits for the disk); returns its id.
pub type Keep = Box<dyn FnOnce(&RecordingDone) -> Result<Option<String>, String> + Send>;

/// Starts the writer and the adapter; the returned sink goes to media in
/// `MediaCommand::Record`. Media dropping the sink (stop, close) ends the recording.
pub fn spawn(
    call: CallKey,
    dir: &Path,
    id: &str,
    meta: RecordingMeta,
    limits: Limits,
    events: UnboundedSender<RecorderEvent>,
    keep: Keep,
) -> std::io::Result<RecordSink> {
    spawn_with_reserve(call, dir, id, meta, limits, events, keep, recording::DISK_RESERVE_BYTES)
}

/// [`spawn`], the writer stopping when less than `reserve` bytes are free.
#[allow(clippy::too_many_arguments)]
fn spawn_with_reserve(
    call: CallKey,
    dir: &Path,
    id: &str,
    meta: RecordingMeta,
    limits: Limits,
    events: UnboundedSender<RecorderEvent>,
    keep: Keep,
    reserve: u64,
) -> std::io::Result<RecordSink> {
    let (done_tx, done_rx) = mpsc::channel();
    let (writer, handle) = recording::start_with_reserve(dir, id, meta, done_tx, reserve)?;
    let (sink, frames) = media_record::channel(MEDIA_QUEUE_FRAMES);
    std::thread::Builder::new()
        .name(format!("vm-adapter-{id}"))
        .spawn(move || {
            let mut adapter = Adapter::new(writer, limits);
            let not_kept = adapter.run(&frames, &done_rx, |note| {
                let event = match note {
                    Note::Silence => RecorderEvent::Silence { call },
                    Note::WriteFailed(error) => RecorderEvent::WriteFailed { call, error },
                };
                let _ = events.send(event);
            });
            let _ = handle.join();
            if let Some(mut done) = adapter.ended_early.take().or_else(|| done_rx.recv().ok()) {
                // A writer that stopped on an error kept its file; a message
                // judged not worth keeping must not stay behind unindexed.
                if not_kept.is_some()
                    && let Some(path) = done.path.take()
                {
                    let _ = std::fs::remove_file(path);
                }
                let index = match not_kept {
                    Some(_) => Ok(None),
                    None => keep(&done),
                };
                let _ = events.send(RecorderEvent::Finished {
                    call,
                    done: Box::new(done),
                    not_kept,
                    index,
                });
            }
        })?;
    Ok(sink)
}

/// What the adapter has to say while recording.
enum Note {
    Silence,
    WriteFailed(String),
}

/// The timeline, the 20 ms framing and the meter, around the writer.
struct Adapter {
    /// The writer's outcome when it ended before being told to (a write error).
    ended_early: Option<RecordingDone>,
    writer: Option<RecorderSender>,
    timeline: RtpTimeline,
    meter: LevelMeter,
    limits: Limits,
    /// Audio of an unfinished 20 ms frame.
    partial: Vec<i16>,
    samples: u64,
    pieces: Vec<Piece>,
    silence_reported: bool,
}

impl Adapter {
    fn new(writer: RecorderSender, limits: Limits) -> Self {
        Adapter {
            ended_early: None,
            writer: Some(writer),
            timeline: RtpTimeline::new(),
            meter: LevelMeter::new(SILENCE_BELOW_DBFS, 20),
            limits,
            partial: Vec::with_capacity(FRAME_SAMPLES),
            samples: 0,
            pieces: Vec::new(),
            silence_reported: false,
        }
    }

    /// Until media lets go of the sink; returns why the message is not kept.
    fn run(
        &mut self,
        frames: &Receiver<RecordFrame>,
        writer_done: &Receiver<RecordingDone>,
        mut note: impl FnMut(Note),
    ) -> Option<String> {
        let patience = self.limits.silence.max(TICK);
        let mut last_frame = Instant::now();
        loop {
            // Take what media queued since the last tick, then sleep: media's
            // sends then find nobody waiting and wake no one, where waiting
            // on the queue would cost a wake-up of this thread per packet.
            let mut disconnected = false;
            let now = Instant::now();
            loop {
                match frames.try_recv() {
                    Ok(frame) => {
                        last_frame = now;
                        self.push(&frame);
                        let silent_ms = self.meter.current_silence_ms();
                        if !self.silence_reported && silent_ms >= self.limits.silence.as_millis() as u64 {
                            self.silence_reported = true;
                            note(Note::Silence);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            if disconnected {
                break;
            }
            // Nothing at all from the caller for that long is silence too.
            if !self.silence_reported && now - last_frame >= patience {
                self.silence_reported = true;
                note(Note::Silence);
            }
            // The writer only ends on its own after a write error.
            if self.ended_early.is_none()
                && let Ok(done) = writer_done.try_recv()
            {
                let error = done.error.clone().unwrap_or_else(|| "the writer stopped".into());
                self.ended_early = Some(done);
                note(Note::WriteFailed(error));
            }
            std::thread::sleep(TICK);
        }
        self.end()
    }

    fn push(&mut self, frame: &RecordFrame) {
        self.timeline
            .push(frame.ssrc, frame.timestamp, frame.samples(), &mut self.pieces);
        self.write_pieces();
    }

    fn write_pieces(&mut self) {
        let pieces = std::mem::take(&mut self.pieces);
        for piece in &pieces {
            match piece {
                Piece::Audio(samples) => self.audio(samples),
                Piece::Silence(n) => self.silence(*n),
            }
        }
        self.pieces = pieces;
        self.pieces.clear();
    }

    fn audio(&mut self, mut samples: &[i16]) {
        while !samples.is_empty() {
            let take = (FRAME_SAMPLES - self.partial.len()).min(samples.len());
            self.partial.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.partial.len() == FRAME_SAMPLES {
                self.flush_frame();
            }
        }
    }

    /// A lost stretch: it completes the frame in progress, the rest goes as silence.
    fn silence(&mut self, mut n: u32) {
        if !self.partial.is_empty() {
            let fill = (FRAME_SAMPLES - self.partial.len()).min(n as usize);
            self.partial.resize(self.partial.len() + fill, 0);
            n -= fill as u32;
            if self.partial.len() == FRAME_SAMPLES {
                self.flush_frame();
            }
        }
        if n == 0 {
            return;
        }
        for _ in 0..n / FRAME_SAMPLES as u32 {
            self.meter.push_level(FLOOR_DBFS);
        }
        self.samples += u64::from(n);
        if let Some(w) = self.writer.as_mut() {
            w.push_silence(n);
        }
    }

    fn flush_frame(&mut self) {
        let mut frame = Frame {
            samples: [0; FRAME_SAMPLES],
        };
        frame.samples[..self.partial.len()].copy_from_slice(&self.partial);
        self.partial.clear();
        self.meter.push(&frame.samples);
        self.samples += FRAME_SAMPLES as u64;
        if let Some(w) = self.writer.as_mut() {
            w.push_frame(&frame);
        }
    }

    /// Finishes or aborts the writer; returns why the message is not kept.
    fn end(&mut self) -> Option<String> {
        self.timeline.finish(&mut self.pieces);
        self.write_pieces();
        if !self.partial.is_empty() {
            self.flush_frame();
        }
        let length = Duration::from_millis(self.samples / 8);
        let not_kept = if length < self.limits.min_length {
            Some(format!(
                "{:.1} s is shorter than the minimum {} s",
                length.as_secs_f64(),
                self.limits.min_length.as_secs_f64()
            ))
        } else if self.meter.silent_throughout() {
            Some("silent throughout".to_string())
        } else {
            None
        };
        if let Some(w) = self.writer.take() {
            match not_kept {
                Some(_) => w.abort(),
                None => w.finish(),
            }
        }
        not_kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Index nothing: a kept recording reports its own id.
    fn keep_file() -> Keep {
        Box::new(|done| Ok(done.path.as_ref().map(|_| done.id.clone())))
    }
    use crate::codec::Codec;
    use crate::records::test_dir;

    fn meta() -> RecordingMeta {
        RecordingMeta {
            line: "public".into(),
            caller: "0901234567".into(),
            caller_name: None,
            call_id: Some("c1".into()),
            started_at: "2026-12-01T01:00:00Z".parse().unwrap(),
        }
    }

    /// A loud-ish PCMU payload (a square wave) and PCMU silence.
    fn voice() -> Vec<u8> {
        (0..240).map(|i| if i % 16 < 8 { 0x20 } else { 0xA0 }).collect()
    }

    fn finished(rx: &mut tokio::sync::mpsc::UnboundedReceiver<RecorderEvent>) -> (Box<RecordingDone>, Option<String>) {
        loop {
            match rx.blocking_recv().expect("an outcome") {
                RecorderEvent::Finished { done, not_kept, .. } => return (done, not_kept),
                RecorderEvent::Silence { .. } | RecorderEvent::WriteFailed { .. } => {}
            }
        }
    }

    #[test]
    fn a_message_follows_rtp_time_with_losses_as_silence() {
        let dir = test_dir("adapter-keep");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let limits = Limits {
            min_length: Duration::from_secs(1),
            silence: Duration::from_secs(5),
        };
        let mut sink = spawn(1, &dir, "vm-a", meta(), limits, tx, keep_file()).unwrap();
        // 100 packets of 30 ms = 3 s, every 10th lost, two sent twice.
        for n in 0..100u32 {
            if n % 10 == 5 {
                continue;
            }
            assert!(sink.push(Codec::Pcmu, 42, 1000 + n * 240, &voice()));
            if n == 20 || n == 60 {
                assert!(sink.push(Codec::Pcmu, 42, 1000 + n * 240, &voice()));
            }
        }
        drop(sink);
        let (done, not_kept) = finished(&mut rx);
        assert_eq!(not_kept, None);
        assert_eq!(done.samples, 24_000, "3 s on the RTP clock");
        let wav = hound::WavReader::open(done.path.unwrap()).unwrap();
        assert_eq!(wav.duration(), 24_000);
    }

    #[test]
    fn short_or_silent_messages_are_not_kept() {
        let dir = test_dir("adapter-short");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let limits = Limits {
            min_length: Duration::from_secs(2),
            silence: Duration::from_secs(5),
        };
        let mut sink = spawn(1, &dir, "vm-short", meta(), limits, tx.clone(), keep_file()).unwrap();
        for n in 0..10u32 {
            sink.push(Codec::Pcmu, 1, n * 240, &voice());
        }
        drop(sink);
        let (done, not_kept) = finished(&mut rx);
        assert!(not_kept.unwrap().contains("shorter than the minimum 2 s"));
        assert_eq!(done.path, None);

        let mut sink = spawn(2, &dir, "vm-silent", meta(), limits, tx, keep_file()).unwrap();
        for n in 0..200u32 {
            sink.push(Codec::Pcmu, 1, n * 160, &[0xFF; 160]);
        }
        drop(sink);
        let (done, not_kept) = finished(&mut rx);
        assert_eq!(not_kept.as_deref(), Some("silent throughout"));
        assert_eq!(done.path, None);
    }

    #[test]
    fn a_stretch_of_silence_is_reported_once() {
        let dir = test_dir("adapter-silence");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let limits = Limits {
            min_length: Duration::ZERO,
            silence: Duration::from_secs(1),
        };
        let mut sink = spawn(7, &dir, "vm-s", meta(), limits, tx, keep_file()).unwrap();
        for n in 0..20u32 {
            sink.push(Codec::Pcmu, 1, n * 240, &voice());
        }
        for n in 20..120u32 {
            sink.push(Codec::Pcmu, 1, n * 240, &[0xFF; 240]);
        }
        drop(sink);
        let mut silences = 0;
        loop {
            match rx.blocking_recv().unwrap() {
                RecorderEvent::Silence { call } => {
                    assert_eq!(call, 7);
                    silences += 1;
                }
                RecorderEvent::Finished { not_kept, .. } => {
                    assert_eq!(not_kept, None);
                    break;
                }
                RecorderEvent::WriteFailed { error, .. } => panic!("no write error here: {error}"),
            }
        }
        assert_eq!(silences, 1);
    }

    #[test]
    fn a_writer_out_of_room_is_reported_at_once_and_what_it_wrote_is_kept() {
        let dir = test_dir("adapter-full");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let limits = Limits {
            min_length: Duration::from_millis(500),
            silence: Duration::from_secs(5),
        };
        // No disk has u64::MAX bytes free: the writer stops after its first second.
        let mut sink = spawn_with_reserve(3, &dir, "vm-full", meta(), limits, tx, keep_file(), u64::MAX).unwrap();
        let mut n = 0u32;
        let error = loop {
            sink.push(Codec::Pcmu, 1, n * 160, &voice()[..160]);
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
            if let Ok(RecorderEvent::WriteFailed { call, error }) = rx.try_recv() {
                assert_eq!(call, 3);
                break error;
            }
            assert!(n < 2000, "no write failure reported");
        };
        assert!(error.contains("No space left for recordings"), "{error}");
        drop(sink);
        let (done, not_kept) = finished(&mut rx);
        assert_eq!(not_kept, None);
        assert_eq!(done.samples, 8000, "the second before the check");
        let wav = hound::WavReader::open(done.path.expect("kept")).unwrap();
        assert_eq!(wav.duration(), 8000);
    }
}
