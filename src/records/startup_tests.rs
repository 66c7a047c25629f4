use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::*;
use crate::notify::queue::Queue;
use crate::notify::{ChannelConfig, ChannelKind, RetryPolicy};
use crate::records::test_dir;
use crate::records::voicemail::MessageState;
use crate::records::voicemail::tests::message;

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn settings(dir: &Path) -> VoicemailSettings {
    VoicemailSettings {
        dir: dir.to_path_buf(),
        limits: BoxLimits::default(),
        per_line: BTreeMap::new(),
        retention: None,
    }
}

/// A command channel running a script that appends "<id> <recovered>" to `out`.
fn recording_channel(dir: &Path, out: &Path) -> NotifyConfig {
    let script = dir.join("hook.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$DENWA_VM_ID $DENWA_VM_RECOVERED\" >> '{}'\n",
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    NotifyConfig {
        channels: vec![ChannelConfig {
            name: "hook".into(),
            lines: vec![],
            kind: ChannelKind::Command {
                program: script,
                args: vec![],
                timeout_secs: 10,
            },
        }],
        ..NotifyConfig::default()
    }
}

/// What a SIGKILL mid-recording leaves in tmp/: the sidecar, and a WAV whose
/// header still counts 0.5 s while 1 s of audio follows it.
fn leave_interrupted_recording(dir: &Path, id: &str, meta: &RecordingMeta) {
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join(format!("{id}.json")), serde_json::to_vec(meta).unwrap()).unwrap();
    let path = tmp.join(format!("{id}.wav"));
    let mut writer =
        hound::WavWriter::new(BufWriter::new(fs::File::create(&path).unwrap()), recording::wav_spec()).unwrap();
    for i in 0..4000 {
        writer.write_sample(i as i16).unwrap();
    }
    writer.flush().unwrap();
    let stale_header = fs::read(&path).unwrap()[..44].to_vec();
    for i in 0..4000 {
        writer.write_sample(-(i as i16)).unwrap();
    }
    writer.flush().unwrap();
    std::mem::forget(writer);
    let mut bytes = fs::read(&path).unwrap();
    bytes[..44].copy_from_slice(&stale_header);
    fs::write(&path, bytes).unwrap();
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_indexes_an_interrupted_recording_as_recovered_and_notifies() {
    let dir = test_dir("startup-recover");
    let meta = RecordingMeta {
        line: "public".into(),
        caller: "09011112222".into(),
        caller_name: Some("Tanaka".into()),
        call_id: Some("abc@host".into()),
        started_at: t("2026-03-01T05:00:00Z"),
    };
    leave_interrupted_recording(&dir, "vm-1", &meta);
    let hook_out = dir.join("hook.out");
    let notify = recording_channel(&dir, &hook_out);
    let now = t("2026-03-01T06:00:00Z");

    let (service, report) = start_with_report(&settings(&dir), &notify, now).unwrap();
    assert_eq!(report.recovered, ["vm-1"]);
    assert!(report.lost.is_empty());

    let store = VoicemailStore::open(&dir).unwrap();
    let m = store.get("vm-1").unwrap();
    assert!(m.recovered);
    assert_eq!(m.line, "public");
    assert_eq!(m.caller, "09011112222");
    assert_eq!(m.duration_ms, 1000, "the audio after the stale header is kept");
    assert_eq!(m.state, MessageState::New);
    assert!(dir.join("vm-1.wav").exists());
    assert!(!dir.join("tmp/vm-1.wav").exists());

    let deliveries = Queue::open(&dir, RetryPolicy::default())
        .unwrap()
        .list(Some("vm-1"))
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].channel, "hook");
    assert_eq!(deliveries[0].created_at, now);
    // The worker it started delivers it.
    assert_eq!(wait_for_file(&hook_out), "vm-1 1\n");
    service.stop();

    // A second start finds nothing more to recover.
    let (service, report) = start_with_report(&settings(&dir), &NotifyConfig::default(), now).unwrap();
    assert!(report.recovered.is_empty());
    service.stop();
}

#[test]
fn a_lost_sidecar_still_keeps_the_audio_under_an_unknown_caller() {
    let dir = test_dir("startup-no-sidecar");
    let meta = RecordingMeta {
        line: "public".into(),
        caller: "x".into(),
        caller_name: None,
        call_id: None,
        started_at: t("2026-03-01T05:00:00Z"),
    };
    leave_interrupted_recording(&dir, "vm-2", &meta);
    fs::remove_file(dir.join("tmp/vm-2.json")).unwrap();
    let (service, report) =
        start_with_report(&settings(&dir), &NotifyConfig::default(), t("2026-03-01T06:00:00Z")).unwrap();
    assert_eq!(report.recovered, ["vm-2"]);
    let m = VoicemailStore::open(&dir).unwrap().get("vm-2").unwrap();
    assert_eq!(m.caller, "unknown");
    assert!(m.recovered);
    service.stop();
}

#[test]
fn retention_runs_at_start_and_box_full_follows_the_limits() {
    let dir = test_dir("startup-limits");
    let store = VoicemailStore::open(&dir).unwrap();
    for (id, line, at) in [
        ("old", "public", "2026-01-01T00:00:00Z"),
        ("a", "public", "2026-03-01T00:00:00Z"),
        ("b", "delivery", "2026-03-01T00:00:00Z"),
    ] {
        let m = message(id, line, at);
        fs::write(store.file_path(&m), b"RIFF").unwrap();
        store.insert(&m).unwrap();
    }
    let mut settings = settings(&dir);
    settings.retention = Some(Retention {
        days: 30,
        action: RetentionAction::Delete,
    });
    settings.limits = BoxLimits {
        max_messages: Some(1),
        max_bytes: None,
    };
    settings.per_line.insert(
        "delivery".into(),
        BoxLimits {
            max_messages: Some(5),
            max_bytes: Some(1000),
        },
    );
    let (service, report) = start_with_report(&settings, &NotifyConfig::default(), t("2026-03-02T00:00:00Z")).unwrap();
    assert_eq!(report.retired, ["old"]);
    assert!(!dir.join("old.wav").exists());
    assert!(service.box_full("public"), "1 message, limit 1");
    assert_eq!(service.apply_retention(t("2026-04-01T00:00:01Z")).unwrap(), ["a", "b"]);
    assert!(!service.box_full("public"), "emptied by retention");
    let m = message("c", "public", "2026-04-01T00:00:00Z");
    fs::write(store.file_path(&m), b"RIFF").unwrap();
    store.insert(&m).unwrap();
    assert!(service.box_full("public"));
    assert!(!service.box_full("delivery"), "no messages left");
    let m = message("d", "delivery", "2026-04-01T00:00:00Z");
    fs::write(store.file_path(&m), b"RIFF").unwrap();
    store.insert(&m).unwrap();
    // 1 message of 1000 bytes (the test message's recorded size) against 1000 bytes.
    assert!(service.box_full("delivery"));
    assert!(!service.box_full("partner"));
    assert_eq!(service.store_path(), dir.join("voicemail.sqlite"));
    let id = service.new_message_id(t("2026-03-01T05:07:03Z"));
    assert!(id.starts_with("vm-20260301-050703-"), "UTC without a zone: {id}");
    assert_eq!(id.len(), "vm-20260301-050703-0000a3f2".len());
    // Many messages in one second never share an id.
    let ids: std::collections::HashSet<String> = (0..2000)
        .map(|_| service.new_message_id(t("2026-03-01T05:07:03Z")))
        .collect();
    assert_eq!(ids.len(), 2000);
    service.stop();
}

#[test]
fn keep_indexes_a_finished_recording_and_queues_it() {
    let dir = test_dir("startup-keep");
    let hook_out = dir.join("hook.out");
    let notify = recording_channel(&dir, &hook_out);
    let service = start(&settings(&dir), &notify, t("2026-03-01T06:00:00Z")).unwrap();
    let path = dir.join("vm-3.wav");
    fs::write(&path, b"RIFF....").unwrap();
    let meta = RecordingMeta {
        line: "public".into(),
        caller: "0312345678".into(),
        caller_name: None,
        call_id: None,
        started_at: t("2026-03-01T06:00:00Z"),
    };
    let done = RecordingDone {
        id: "vm-3".into(),
        path: Some(path),
        samples: 8000,
        duration: Duration::from_secs(1),
        error: None,
        meta: meta.clone(),
    };
    let kept = service.keep(&done, t("2026-03-01T06:00:05Z")).unwrap().unwrap();
    assert!(!kept.recovered);
    assert_eq!(wait_for_file(&hook_out), "vm-3 0\n");
    let aborted = RecordingDone {
        id: "vm-4".into(),
        path: None,
        ..done
    };
    assert_eq!(service.keep(&aborted, t("2026-03-01T06:00:05Z")).unwrap(), None);
    service.stop();
}

#[test]
fn a_full_box_alerts_the_owner_once_until_it_has_room() {
    let dir = test_dir("startup-box-full");
    let out = dir.join("alerts.out");
    let script = dir.join("alert.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$DENWA_VM_EVENT $DENWA_VM_LINE $DENWA_VM_CALLER $DENWA_VM_BOX_MESSAGES\" >> '{}'\n",
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let notify = NotifyConfig {
        channels: vec![ChannelConfig {
            name: "pager".into(),
            lines: vec!["public".into()],
            kind: ChannelKind::Command {
                program: script,
                args: vec![],
                timeout_secs: 10,
            },
        }],
        ..NotifyConfig::default()
    };
    let mut settings = settings(&dir);
    settings.limits.max_messages = Some(1);
    let store = VoicemailStore::open(&dir).unwrap();
    let m = message("a", "public", "2026-03-01T00:00:00Z");
    fs::write(store.file_path(&m), b"RIFF").unwrap();
    store.insert(&m).unwrap();
    let t0 = t("2026-03-01T06:00:00Z");
    let service = start(&settings, &notify, t0).unwrap();
    assert!(service.check_box("public", "0901", None, t0));
    assert!(service.check_box("public", "0902", None, t0 + Duration::from_secs(60)));
    assert_eq!(service.full_boxes().len(), 1);
    assert_eq!(service.full_boxes()[0].callers_turned_away, 2);
    assert_eq!(wait_for_file(&out), "box_full public 0901 1\n");
    // Room again, then full again: news.
    store.delete("a").unwrap();
    assert!(!service.check_box("public", "0903", None, t0 + Duration::from_secs(120)));
    assert!(service.full_boxes().is_empty());
    let m = message("b", "public", "2026-03-01T06:03:00Z");
    fs::write(store.file_path(&m), b"RIFF").unwrap();
    store.insert(&m).unwrap();
    assert!(service.check_box("public", "0904", None, t0 + Duration::from_secs(240)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&out).unwrap().lines().count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    service.stop();
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "box_full public 0901 1\nbox_full public 0904 1\n"
    );
    // A restart within the hour does not repeat the last alert.
    let service = start(&settings, &notify, t0).unwrap();
    assert!(service.check_box("public", "0905", None, t0 + Duration::from_secs(300)));
    std::thread::sleep(Duration::from_millis(300));
    service.stop();
    assert_eq!(fs::read_to_string(&out).unwrap().lines().count(), 2);
}
