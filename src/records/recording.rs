//! Crash-safe voicemail recording.
//!
//! The media thread must never block on a disk, so it hands decoded frames to
//! a writer thread over a bounded channel ([`RecorderSender::push_frame`]
//! never blocks; a frame that does not fit is written as silence later, so the
//! recording keeps its true length). The writer thread:
//!
//! - writes 8 kHz 16-bit mono WAV to `<dir>/tmp/<id>.wav`, next to a sidecar
//!   `<dir>/tmp/<id>.json` with who called (written and fsynced first);
//! - rewrites the header at least once per second of audio, so a SIGKILL loses
//!   at most a second and leaves a file [`recover`] can repair;
//! - on `Finish` fsyncs the file, renames it to `<dir>/<id>.wav` and fsyncs
//!   the directory, so the file is either complete in place or still in tmp/;
//! - on a write error (disk full) stops writing, repairs the header over what
//!   reached the disk and keeps that, reporting the error;
//! - stops the same way, a little earlier, when less than [`DISK_RESERVE_BYTES`]
//!   are left: the index and the notification queue live on the same disk,
//!   and a message kept but not indexed is one nobody finds.
//!
//! The outcome comes back as a [`RecordingDone`] on the channel the caller gave.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wav_repair::repair_wav;

pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// How many frames may wait for the writer: 5 s of audio.
pub const CHANNEL_FRAMES: usize = 250;
/// Free space a recording leaves on its disk for the index (SQLite and its
/// write-ahead log) and the notification queue. Checked once a second, so
/// it must be well above a second of audio (16 KB).
pub const DISK_RESERVE_BYTES: u64 = 128 * 1024;
/// The header is rewritten after this many samples (one second).
const FLUSH_EVERY_SAMPLES: u64 = SAMPLE_RATE as u64;
/// How often an idle writer looks at its queue (the adapter hands over
/// frames at this pace too).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// One 20 ms frame of decoded audio.
#[derive(Clone, Copy)]
pub struct Frame {
    pub samples: [i16; FRAME_SAMPLES],
}

/// What the writer thread is told.
// Frames travel by value: the bounded channel's slots are allocated once, so
// the media thread's packet path allocates nothing (a Box would, per frame).
#[allow(clippy::large_enum_variant)]
pub enum RecorderInput {
    Frame(Frame),
    /// This many samples of silence (lost or comfort-noise packets).
    Silence(u32),
    /// Keep the recording.
    Finish,
    /// Throw the recording away (the caller hung up before the beep).
    Abort,
}

/// Who left the message; stored beside the audio so a recording recovered
/// after a crash can still be indexed with its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingMeta {
    pub line: String,
    pub caller: String,
    pub caller_name: Option<String>,
    pub call_id: Option<String>,
    pub started_at: jiff::Timestamp,
}

/// The outcome of one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingDone {
    pub id: String,
    /// Where the kept recording is; `None` when aborted or nothing was kept.
    pub path: Option<PathBuf>,
    pub samples: u64,
    pub duration: Duration,
    /// Why the recording ended early or was not kept whole (disk full, the
    /// sender went away without `Finish`, `Abort`).
    pub error: Option<String>,
    pub meta: RecordingMeta,
}

/// The media thread's end of a recording. Dropping it without [`finish`]
/// keeps what was recorded, with an error saying so.
///
/// [`finish`]: RecorderSender::finish
pub struct RecorderSender {
    tx: SyncSender<RecorderInput>,
    /// Samples that did not fit in the channel, still to be sent as silence.
    dropped_samples: u32,
    end: Arc<EndSignal>,
}

impl RecorderSender {
    /// Queues a frame without blocking. If the writer is behind, the frame is
    /// counted and written as silence once there is room.
    pub fn push_frame(&mut self, frame: &Frame) {
        if self.dropped_samples > 0 {
            match self.tx.try_send(RecorderInput::Silence(self.dropped_samples)) {
                Ok(()) => self.dropped_samples = 0,
                Err(_) => {
                    self.dropped_samples = self.dropped_samples.saturating_add(FRAME_SAMPLES as u32);
                    return;
                }
            }
        }
        match self.tx.try_send(RecorderInput::Frame(*frame)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped_samples = self.dropped_samples.saturating_add(FRAME_SAMPLES as u32)
            }
            // The writer ended (write error); its result is on its way.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Queues silence (e.g. a gap in RTP) without blocking.
    pub fn push_silence(&mut self, samples: u32) {
        let total = self.dropped_samples.saturating_add(samples);
        match self.tx.try_send(RecorderInput::Silence(total)) {
            Ok(()) => self.dropped_samples = 0,
            Err(_) => self.dropped_samples = total,
        }
    }

    /// Ends the recording and keeps it. Never blocks: if the channel is
    /// full, the end is signalled beside it (the writer looks once it has
    /// drained the queue and the sender is gone).
    pub fn finish(self) {
        self.end.how.store(END_FINISH, Ordering::Release);
        if self.dropped_samples > 0 && self.tx.try_send(RecorderInput::Silence(self.dropped_samples)).is_err() {
            self.end.trailing_silence.store(self.dropped_samples, Ordering::Release);
            return;
        }
        let _ = self.tx.try_send(RecorderInput::Finish);
    }

    /// Ends the recording and deletes it. Never blocks.
    pub fn abort(self) {
        self.end.how.store(END_ABORT, Ordering::Release);
        let _ = self.tx.try_send(RecorderInput::Abort);
    }
}

// 0: the sender has not said (it was dropped).
const END_FINISH: u8 = 1;
const END_ABORT: u8 = 2;

/// How the sender ended, for when the channel had no room to say so.
#[derive(Default)]
struct EndSignal {
    how: AtomicU8,
    /// Dropped samples still to be written as silence before finishing.
    trailing_silence: AtomicU32,
}

/// Starts a writer thread recording into `<dir>/tmp/<id>.wav`. The result is
/// sent on `done` when the recording ends. Fails at once if the id is not a
/// plain file name or the files cannot be created.
pub fn start(
    dir: &Path,
    id: &str,
    meta: RecordingMeta,
    done: Sender<RecordingDone>,
) -> io::Result<(RecorderSender, JoinHandle<()>)> {
    start_with_reserve(dir, id, meta, done, DISK_RESERVE_BYTES)
}

/// [`start`], stopping when less than `reserve` bytes are free on the disk.
pub fn start_with_reserve(
    dir: &Path,
    id: &str,
    meta: RecordingMeta,
    done: Sender<RecordingDone>,
    reserve: u64,
) -> io::Result<(RecorderSender, JoinHandle<()>)> {
    check_id(id)?;
    let (tx, rx) = mpsc::sync_channel(CHANNEL_FRAMES);
    let end = Arc::new(EndSignal::default());
    let (dir, id, thread_end) = (dir.to_path_buf(), id.to_string(), Arc::clone(&end));
    // Creating the files (and syncing the sidecar) happens here, on the
    // writer's thread: the caller (the signalling thread) never waits for
    // the disk. A failure ends the recording at once, as a write error would.
    let handle = thread::Builder::new().name(format!("record-{id}")).spawn(move || {
        let result = match WriterJob::prepare(&dir, &id, meta.clone(), thread_end) {
            Ok((mut job, writer)) => {
                job.reserve = reserve;
                job.run(writer, rx)
            }
            Err(e) => RecordingDone {
                id,
                path: None,
                samples: 0,
                duration: Duration::ZERO,
                error: Some(format!("cannot start the recording: {e}")),
                meta,
            },
        };
        let _ = done.send(result);
    })?;
    Ok((
        RecorderSender {
            tx,
            dropped_samples: 0,
            end,
        },
        handle,
    ))
}

pub(crate) fn wav_spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Ids become file names: allow only `[A-Za-z0-9._-]`, no leading dot.
fn check_id(id: &str) -> io::Result<()> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("recording id {id:?} must be a plain file name ([A-Za-z0-9._-])"),
        ))
    }
}

fn to_io(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = File::create(path)?;
    io::Write::write_all(&mut &file, bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE))
}

struct WriterJob {
    end: Arc<EndSignal>,
    /// Stop when fewer bytes than this are free.
    reserve: u64,
    dir: PathBuf,
    id: String,
    tmp_wav: PathBuf,
    sidecar: PathBuf,
    meta: RecordingMeta,
    sync_handle: File,
}

type Wav = hound::WavWriter<BufWriter<File>>;

impl WriterJob {
    /// Creates tmp/, the sidecar and the WAV with its header on disk.
    fn prepare(dir: &Path, id: &str, meta: RecordingMeta, end: Arc<EndSignal>) -> io::Result<(Self, Wav)> {
        let tmp_dir = dir.join("tmp");
        fs::create_dir_all(&tmp_dir)?;
        let sidecar = tmp_dir.join(format!("{id}.json"));
        let tmp_wav = tmp_dir.join(format!("{id}.wav"));
        if tmp_wav.exists() || dir.join(format!("{id}.wav")).exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("a recording with id {id} already exists"),
            ));
        }
        write_synced(&sidecar, &serde_json::to_vec_pretty(&meta)?)?;
        let file = File::create(&tmp_wav)?;
        let sync_handle = file.try_clone()?;
        let mut writer = hound::WavWriter::new(BufWriter::new(file), wav_spec()).map_err(to_io)?;
        // Put the header on disk now, so even an immediate crash leaves a WAV.
        writer.flush().map_err(to_io)?;
        let job = WriterJob {
            end,
            reserve: DISK_RESERVE_BYTES,
            dir: dir.to_path_buf(),
            id: id.to_string(),
            tmp_wav,
            sidecar,
            meta,
            sync_handle,
        };
        Ok((job, writer))
    }

    fn run(self, mut writer: Wav, rx: Receiver<RecorderInput>) -> RecordingDone {
        let mut since_flush = 0u64;
        let ended_by = loop {
            let input = match next_input(&rx) {
                Some(input) => input,
                // Everything queued is written; did the sender say how to end?
                None => match self.end.how.load(Ordering::Acquire) {
                    END_FINISH => {
                        let silence = self.end.trailing_silence.swap(0, Ordering::Relaxed);
                        if silence == 0 {
                            break End::Finish;
                        }
                        RecorderInput::Silence(silence)
                    }
                    END_ABORT => break End::Abort,
                    _ => break End::SenderGone,
                },
            };
            let written = match input {
                RecorderInput::Frame(frame) => write_samples(&mut writer, frame.samples.iter()),
                RecorderInput::Silence(n) => write_samples(&mut writer, std::iter::repeat_n(&0i16, n as usize)),
                RecorderInput::Finish => break End::Finish,
                RecorderInput::Abort => break End::Abort,
            };
            match written {
                Ok(n) => since_flush += n,
                Err(e) => break End::WriteError(e),
            }
            if since_flush >= FLUSH_EVERY_SAMPLES {
                if let Err(e) = writer.flush() {
                    break End::WriteError(to_io(e));
                }
                since_flush = 0;
                if let Err(e) = self.check_room() {
                    break End::WriteError(e);
                }
            }
        };
        match ended_by {
            End::Abort => {
                drop(writer);
                let _ = fs::remove_file(&self.tmp_wav);
                let _ = fs::remove_file(&self.sidecar);
                self.done(None, 0, Some("aborted".into()))
            }
            End::Finish => match self.finalize(writer) {
                Ok((path, samples)) => self.done(Some(path), samples, None),
                Err(e) => self.keep_after_error(e),
            },
            End::SenderGone => {
                let error = "the recording's sender went away without Finish".to_string();
                match self.finalize(writer) {
                    Ok((path, samples)) => self.done(Some(path), samples, Some(error)),
                    Err(e) => self.keep_after_error(e),
                }
            }
            End::WriteError(e) => {
                // hound's drop tries to finalize and ignores errors; the
                // repair below sets the header from what really is on disk.
                drop(writer);
                self.keep_after_error(e)
            }
        }
    }

    /// An error when the disk has less than the reserve left.
    fn check_room(&self) -> io::Result<()> {
        let free = free_bytes(&self.dir)?;
        if free < self.reserve {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "No space left for recordings: {free} bytes free in {}, {} kept for the voicemail index",
                    self.dir.display(),
                    self.reserve
                ),
            ));
        }
        Ok(())
    }

    /// The normal end: header, fsync, rename into place, fsync the directory.
    fn finalize(&self, writer: Wav) -> io::Result<(PathBuf, u64)> {
        let samples = u64::from(writer.len());
        writer.finalize().map_err(to_io)?;
        self.sync_handle.sync_all()?;
        let path = self.move_into_place()?;
        Ok((path, samples))
    }

    fn move_into_place(&self) -> io::Result<PathBuf> {
        let path = self.dir.join(format!("{}.wav", self.id));
        fs::rename(&self.tmp_wav, &path)?;
        sync_dir(&self.dir)?;
        // Only now is the sidecar redundant: the file left tmp/.
        let _ = fs::remove_file(&self.sidecar);
        Ok(path)
    }

    /// After a write error: repair the header over what reached the disk and
    /// keep that.
    fn keep_after_error(&self, error: io::Error) -> RecordingDone {
        let error = format!("recording stopped: {error}");
        match repair_wav(&self.tmp_wav).and_then(|r| Ok((self.move_into_place()?, r.samples))) {
            Ok((path, samples)) => self.done(Some(path), samples, Some(error)),
            Err(e) => {
                let error = format!("{error}; keeping it failed too: {e} (left in tmp/)");
                self.done(None, 0, Some(error))
            }
        }
    }

    fn done(&self, path: Option<PathBuf>, samples: u64, error: Option<String>) -> RecordingDone {
        RecordingDone {
            id: self.id.clone(),
            path,
            samples,
            duration: samples_to_duration(samples),
            error,
            meta: self.meta.clone(),
        }
    }
}

enum End {
    Finish,
    Abort,
    SenderGone,
    WriteError(io::Error),
}

/// Bytes an unprivileged writer may still use on the disk holding `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: `path` is NUL-terminated and outlives the call; `stats` is a
    // plain C struct the call fills in.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// The next input, or `None` once the sender is gone and all is read.
/// An empty queue is waited out by sleeping, not by blocking on it: the
/// sender's `try_send` then finds nobody to wake, where a blocked receiver
/// costs a futex wake-up (and a context switch) per frame, per recording.
fn next_input(rx: &Receiver<RecorderInput>) -> Option<RecorderInput> {
    loop {
        match rx.try_recv() {
            Ok(input) => return Some(input),
            Err(TryRecvError::Empty) => thread::sleep(IDLE_POLL),
            Err(TryRecvError::Disconnected) => return None,
        }
    }
}

fn write_samples<'a>(writer: &mut Wav, samples: impl ExactSizeIterator<Item = &'a i16>) -> io::Result<u64> {
    let n = samples.len();
    // hound's 16-bit writer: a plain copy per sample, no per-sample dispatch.
    let mut block = writer.get_i16_writer(n as u32);
    for sample in samples {
        block.write_sample(*sample);
    }
    block.flush().map_err(to_io)?;
    Ok(n as u64)
}

/// A recording found in tmp/ at start-up and moved into place.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub id: String,
    /// Where the repaired file now is; `None` if it could not be kept.
    pub path: Option<PathBuf>,
    pub samples: u64,
    pub duration: Duration,
    /// The caller details, if the sidecar survived.
    pub meta: Option<RecordingMeta>,
    /// Why the file could not be kept (unreadable, empty); it stays in tmp/
    /// unless it held no audio at all.
    pub error: Option<String>,
}

/// Repairs and moves into place every recording that a crash left in
/// `<dir>/tmp/`. Call once at start-up, before any recording starts, and
/// index what it returns with `recovered = true`.
pub fn recover(dir: &Path) -> Vec<Recovered> {
    let tmp_dir = dir.join("tmp");
    let Ok(entries) = fs::read_dir(&tmp_dir) else {
        return Vec::new();
    };
    let mut wavs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    wavs.sort();
    let mut recovered = Vec::new();
    for tmp_wav in wavs {
        let Some(id) = tmp_wav.file_stem().and_then(|s| s.to_str()).map(String::from) else {
            continue;
        };
        let sidecar = tmp_dir.join(format!("{id}.json"));
        let meta = fs::read(&sidecar)
            .ok()
            .and_then(|b| serde_json::from_slice::<RecordingMeta>(&b).ok());
        let mut item = Recovered {
            id: id.clone(),
            path: None,
            samples: 0,
            duration: Duration::ZERO,
            meta,
            error: None,
        };
        match repair_wav(&tmp_wav) {
            Ok(r) if r.samples == 0 => {
                let _ = fs::remove_file(&tmp_wav);
                let _ = fs::remove_file(&sidecar);
                item.error = Some("no audio was recorded; removed".into());
            }
            Ok(r) => {
                item.samples = r.samples;
                item.duration = samples_to_duration(r.samples);
                let target = dir.join(format!("{id}.wav"));
                match fs::rename(&tmp_wav, &target).and_then(|()| sync_dir(dir)) {
                    Ok(()) => {
                        let _ = fs::remove_file(&sidecar);
                        item.path = Some(target);
                    }
                    Err(e) => item.error = Some(format!("moving it into place failed: {e}")),
                }
            }
            Err(e) => item.error = Some(format!("cannot repair {}: {e}", tmp_wav.display())),
        }
        recovered.push(item);
    }
    recovered
}

#[cfg(test)]
#[path = "recording_tests.rs"]
mod tests;
