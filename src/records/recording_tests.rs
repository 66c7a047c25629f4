use super::*;
use crate::records::test_dir;

fn meta() -> RecordingMeta {
    RecordingMeta {
        line: "+81312345678".into(),
        caller: "+819011112222".into(),
        caller_name: Some("Tanaka".into()),
        call_id: Some("abc@host".into()),
        started_at: "2025-03-01T05:00:00Z".parse().unwrap(),
    }
}

fn ramp_frame(start: i16) -> Frame {
    let mut samples = [0i16; FRAME_SAMPLES];
    for (i, s) in samples.iter_mut().enumerate() {
        *s = start.wrapping_add(i as i16);
    }
    Frame { samples }
}

fn read_all(path: &Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .unwrap()
        .into_samples()
        .map(|s| s.unwrap())
        .collect()
}

#[test]
fn round_trip_frames_and_silence() {
    let dir = test_dir("rec-roundtrip");
    let (done_tx, done_rx) = mpsc::channel();
    let (mut sender, handle) = start(&dir, "vm-1", meta(), done_tx).unwrap();
    for i in 0..100 {
        sender.push_frame(&ramp_frame(i * 7));
    }
    sender.push_silence(800);
    sender.finish();
    handle.join().unwrap();
    let done = done_rx.recv().unwrap();
    assert_eq!(done.error, None);
    assert_eq!(done.samples, 100 * 160 + 800);
    assert_eq!(done.duration, Duration::from_millis(2100));
    assert_eq!(done.meta, meta());
    let path = done.path.unwrap();
    assert_eq!(path, dir.join("vm-1.wav"));
    assert!(!dir.join("tmp/vm-1.wav").exists());
    assert!(!dir.join("tmp/vm-1.json").exists());
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec(), wav_spec());
    let samples = read_all(&path);
    assert_eq!(samples.len(), 16_800);
    assert_eq!(&samples[160..163], &[7, 8, 9]);
    assert!(samples[16_000..].iter().all(|&s| s == 0));
}

#[test]
fn abort_removes_everything() {
    let dir = test_dir("rec-abort");
    let (done_tx, done_rx) = mpsc::channel();
    let (mut sender, handle) = start(&dir, "vm-2", meta(), done_tx).unwrap();
    sender.push_frame(&ramp_frame(0));
    sender.abort();
    handle.join().unwrap();
    let done = done_rx.recv().unwrap();
    assert_eq!(done.path, None);
    assert_eq!(done.error.as_deref(), Some("aborted"));
    assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
    assert!(!dir.join("vm-2.wav").exists());
}

#[test]
fn dropped_sender_keeps_the_recording_and_says_so() {
    let dir = test_dir("rec-drop");
    let (done_tx, done_rx) = mpsc::channel();
    let (mut sender, handle) = start(&dir, "vm-3", meta(), done_tx).unwrap();
    sender.push_frame(&ramp_frame(0));
    drop(sender);
    handle.join().unwrap();
    let done = done_rx.recv().unwrap();
    assert_eq!(done.samples, 160);
    assert!(done.error.unwrap().contains("without Finish"));
    assert_eq!(read_all(&done.path.unwrap()).len(), 160);
}

#[test]
fn rejects_unsafe_ids_and_duplicates() {
    let dir = test_dir("rec-ids");
    for bad in ["", "../x", "a/b", ".hidden", "a b"] {
        let (tx, _rx) = mpsc::channel();
        assert!(start(&dir, bad, meta(), tx).is_err(), "{bad:?}");
    }
    // An id already taken is found by the writer's thread (the files are
    // made there, off the caller's thread): the recording ends at once.
    fs::write(dir.join("taken.wav"), b"x").unwrap();
    let (tx, rx) = mpsc::channel();
    let (_sender, handle) = start(&dir, "taken", meta(), tx).unwrap();
    handle.join().unwrap();
    let done = rx.recv().unwrap();
    assert!(done.path.is_none());
    assert!(done.error.unwrap().contains("already exists"));
    assert_eq!(
        fs::read(dir.join("taken.wav")).unwrap(),
        b"x",
        "the other file is untouched"
    );
}

#[test]
fn a_full_channel_turns_into_silence_not_a_shorter_file() {
    // Without a writer thread: a channel with room for 2 messages.
    let (tx, rx) = mpsc::sync_channel(2);
    let mut sender = RecorderSender {
        tx,
        dropped_samples: 0,
        end: Arc::default(),
    };
    for i in 0..5 {
        sender.push_frame(&ramp_frame(i));
    }
    assert_eq!(sender.dropped_samples, 3 * 160);
    // Drain and keep going: the gap is sent as silence before the next frame.
    let mut total = 0u64;
    while let Ok(msg) = rx.try_recv() {
        total += count(&msg);
    }
    sender.push_frame(&ramp_frame(9));
    while let Ok(msg) = rx.try_recv() {
        total += count(&msg);
    }
    assert_eq!(total, 6 * 160);

    fn count(msg: &RecorderInput) -> u64 {
        match msg {
            RecorderInput::Frame(_) => FRAME_SAMPLES as u64,
            RecorderInput::Silence(n) => u64::from(*n),
            _ => 0,
        }
    }
}

/// What a SIGKILL leaves: a header flushed at some point, more audio after
/// it, the sidecar. Built with hound directly, as the writer does.
#[test]
fn recover_repairs_a_stale_header_and_moves_it_into_place() {
    let dir = test_dir("rec-recover");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("vm-9.json"), serde_json::to_vec(&meta()).unwrap()).unwrap();
    let file = File::create(tmp.join("vm-9.wav")).unwrap();
    let mut writer = hound::WavWriter::new(BufWriter::new(file), wav_spec()).unwrap();
    for i in 0..8000 {
        writer.write_sample(i as i16).unwrap();
    }
    writer.flush().unwrap(); // header says 1 s
    for i in 0..4000 {
        writer.write_sample(-(i as i16)).unwrap();
    }
    // Push the bytes to the file, then "die" without finalizing: forget the
    // writer so its Drop cannot fix the header.
    writer.flush().unwrap();
    let header_then = fs::read(tmp.join("vm-9.wav")).unwrap();
    // Rewind the header's sizes to the first flush, as a kill between flushes leaves.
    let mut stale = header_then.clone();
    stale[4..8].copy_from_slice(&(36u32 + 16_000).to_le_bytes());
    stale[40..44].copy_from_slice(&16_000u32.to_le_bytes());
    std::mem::forget(writer);
    fs::write(tmp.join("vm-9.wav"), &stale).unwrap();
    assert_eq!(hound::WavReader::open(tmp.join("vm-9.wav")).unwrap().len(), 8000);
    // And an empty one: killed before the first sample.
    fs::write(tmp.join("vm-10.wav"), &header_then[..44]).unwrap();

    let found = recover(&dir);
    assert_eq!(found.len(), 2);
    let empty = &found[0];
    assert_eq!(empty.id, "vm-10");
    assert_eq!(empty.path, None);
    assert!(empty.error.as_ref().unwrap().contains("no audio"));
    let item = &found[1];
    assert_eq!(item.id, "vm-9");
    assert_eq!(item.error, None);
    assert_eq!(item.samples, 12_000);
    assert_eq!(item.duration, Duration::from_millis(1500));
    assert_eq!(item.meta, Some(meta()));
    let path = item.path.clone().unwrap();
    assert_eq!(path, dir.join("vm-9.wav"));
    let samples = read_all(&path);
    assert_eq!(samples.len(), 12_000);
    assert_eq!(samples[8001], -1);
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    // Nothing left: a second run finds nothing.
    assert!(recover(&dir).is_empty());
}

/// Env var that turns [`disk_full_child`] into the real test body.
const DISK_FULL_DIR_ENV: &str = "DENWA_TEST_DISK_FULL_DIR";
const FILE_SIZE_LIMIT: u64 = 64 * 1024;

/// Disk full, simulated with RLIMIT_FSIZE in a child process (this test
/// binary run again for [`disk_full_child`]), so no other test is limited.
#[test]
fn disk_full_keeps_what_was_written() {
    let dir = test_dir("rec-diskfull");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "records::recording::tests::disk_full_child",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(DISK_FULL_DIR_ENV, &dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("vm-full.wav");
    let reader = hound::WavReader::open(&path).unwrap();
    let expected = (FILE_SIZE_LIMIT - 44) / 2;
    assert_eq!(u64::from(reader.len()), expected);
    assert_eq!(fs::metadata(&path).unwrap().len(), FILE_SIZE_LIMIT);
    assert_eq!(read_all(&path).len() as u64, expected);
    assert!(!dir.join("tmp/vm-full.wav").exists());
}

#[test]
#[ignore = "run by disk_full_keeps_what_was_written in a child process"]
fn disk_full_child() {
    let dir = PathBuf::from(std::env::var_os(DISK_FULL_DIR_ENV).expect("run by disk_full_keeps_what_was_written"));
    // SAFETY: plain libc calls on this process; no memory is shared.
    unsafe {
        // Writes past the limit fail with EFBIG instead of killing us.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: FILE_SIZE_LIMIT,
            rlim_max: FILE_SIZE_LIMIT,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let (done_tx, done_rx) = mpsc::channel();
    let (mut sender, handle) = start(&dir, "vm-full", meta(), done_tx).unwrap();
    // 10 s of audio, far more than 64 KiB; send slowly enough to lose nothing.
    for i in 0..500 {
        if i % 100 == 0 {
            thread::sleep(Duration::from_millis(20));
        }
        sender.push_frame(&ramp_frame(1));
    }
    sender.finish();
    handle.join().unwrap();
    let done = done_rx.recv().unwrap();
    let error = done.error.expect("a write error");
    assert!(error.contains("recording stopped"), "{error}");
    assert_eq!(done.samples, (FILE_SIZE_LIMIT - 44) / 2);
    assert_eq!(done.path, Some(dir.join("vm-full.wav")));
}

#[test]
fn a_disk_short_of_the_reserve_stops_the_recording_and_keeps_it() {
    let dir = test_dir("rec-reserve");
    let (done_tx, done_rx) = mpsc::channel();
    // No disk has this much free: the first check (after 1 s) stops it.
    let (mut sender, handle) = start_with_reserve(&dir, "vm-reserve", meta(), done_tx, u64::MAX).unwrap();
    for i in 0..150 {
        if i % 25 == 0 {
            thread::sleep(Duration::from_millis(20));
        }
        sender.push_frame(&ramp_frame(1));
    }
    sender.finish();
    handle.join().unwrap();
    let done = done_rx.recv().unwrap();
    let error = done.error.expect("stopped for lack of room");
    assert!(error.contains("No space left for recordings"), "{error}");
    assert_eq!(
        done.samples,
        u64::from(SAMPLE_RATE),
        "the second written before the check"
    );
    assert_eq!(done.path, Some(dir.join("vm-reserve.wav")));
    assert_eq!(read_all(&dir.join("vm-reserve.wav")).len(), SAMPLE_RATE as usize);

    // With the default reserve an ordinary disk has room.
    let (done_tx, done_rx) = mpsc::channel();
    let (mut sender, handle) = start(&dir, "vm-room", meta(), done_tx).unwrap();
    for _ in 0..100 {
        sender.push_frame(&ramp_frame(1));
        thread::sleep(Duration::from_millis(1));
    }
    sender.finish();
    handle.join().unwrap();
    assert_eq!(done_rx.recv().unwrap().error, None);
}

/// A real writer thread killed mid-recording: copy its tmp file while it
/// runs (what a SIGKILL leaves on disk) and recover the copy.
#[test]
fn a_copy_taken_mid_recording_recovers_to_the_last_flush() {
    let dir = test_dir("rec-midway");
    let (done_tx, done_rx) = mpsc::channel();
    let (mut sender, handle) = start(&dir, "vm-live", meta(), done_tx).unwrap();
    // 5.2 s of audio, in chunks the channel can hold.
    for chunk in 0..4 {
        for _ in 0..65 {
            sender.push_frame(&ramp_frame(chunk));
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sender.dropped_samples, 0);
    // Wait until the writer flushed the 5 s mark: the header says 5 s.
    let tmp_wav = dir.join("tmp/vm-live.wav");
    let header_samples = || -> u32 {
        let bytes = fs::read(&tmp_wav).unwrap();
        u32::from_le_bytes(bytes[40..44].try_into().unwrap()) / 2
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while header_samples() < 40_000 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(header_samples(), 40_000);

    let crashed = test_dir("rec-midway-copy");
    fs::create_dir_all(crashed.join("tmp")).unwrap();
    fs::copy(&tmp_wav, crashed.join("tmp/vm-live.wav")).unwrap();
    fs::copy(dir.join("tmp/vm-live.json"), crashed.join("tmp/vm-live.json")).unwrap();
    let found = recover(&crashed);
    assert_eq!(found.len(), 1);
    // What the writer had flushed to the file, at least the 5 s in the header.
    assert!(found[0].samples >= 40_000, "{:?}", found[0]);
    assert!(found[0].samples <= 41_600);
    assert_eq!(found[0].meta, Some(meta()));
    let path = found[0].path.clone().unwrap();
    assert_eq!(read_all(&path).len() as u64, found[0].samples);

    sender.finish();
    handle.join().unwrap();
    assert_eq!(done_rx.recv().unwrap().samples, 41_600);
}

/// `finish` on a full channel must not block, and must still keep the
/// frames that did not fit (as silence). The writer runs on this thread.
#[test]
fn finish_on_a_full_channel_signals_beside_it() {
    let dir = test_dir("rec-full-finish");
    let (job, writer) = WriterJob::prepare(&dir, "vm-ff", meta(), Arc::default()).unwrap();
    let (tx, rx) = mpsc::sync_channel(1);
    let mut sender = RecorderSender {
        tx,
        dropped_samples: 0,
        end: Arc::clone(&job.end),
    };
    for i in 0..3 {
        sender.push_frame(&ramp_frame(i));
    }
    sender.finish(); // returns at once although the channel is full
    let done = job.run(writer, rx);
    assert_eq!(done.error, None);
    assert_eq!(done.samples, 3 * 160);
    let samples = read_all(&done.path.unwrap());
    assert_eq!(samples[0], 0);
    assert!(samples[160..].iter().all(|&s| s == 0));
    assert_eq!(samples[1], 1);
}

#[test]
fn abort_on_a_full_channel_still_aborts() {
    let dir = test_dir("rec-full-abort");
    let (job, writer) = WriterJob::prepare(&dir, "vm-fa", meta(), Arc::default()).unwrap();
    let (tx, rx) = mpsc::sync_channel(1);
    let mut sender = RecorderSender {
        tx,
        dropped_samples: 0,
        end: Arc::clone(&job.end),
    };
    sender.push_frame(&ramp_frame(0));
    sender.push_frame(&ramp_frame(0));
    sender.abort();
    let done = job.run(writer, rx);
    assert_eq!(done.path, None);
    assert!(!dir.join("vm-fa.wav").exists());
    assert!(!dir.join("tmp/vm-fa.wav").exists());
}
