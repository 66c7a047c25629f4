use std::time::Duration;

use super::*;
use crate::notify::queue::{DeliveryState, Queue};
use crate::notify::tests::{email_config, http_server, smtp_server};
use crate::notify::{ChannelConfig, ChannelKind, RetryPolicy, worker};
use crate::records::test_dir;
use crate::records::voicemail::VoicemailStore;

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn box_full(at: jiff::Timestamp) -> BoxFull {
    BoxFull {
        line: "public".into(),
        messages: 20,
        bytes: 1_234_567,
        max_messages: Some(20),
        max_bytes: None,
        caller: "0901234567".into(),
        caller_name: Some("Suzuki".into()),
        at,
    }
}

#[test]
fn a_full_box_alerts_once_until_it_has_room_or_an_hour_passed() {
    let t0 = t("2026-03-01T05:00:00Z");
    let mut gate = BoxFullGate::default();
    assert!(!gate.observe("public", false, t0), "room: nothing to say");
    assert!(gate.observe("public", true, t0), "first caller turned away");
    assert!(!gate.observe("public", true, t0 + mins(5)), "already told");
    assert!(gate.observe("delivery", true, t0 + mins(6)), "another line is its own");
    assert!(!gate.observe("public", true, t0 + mins(59)));
    assert!(gate.observe("public", true, t0 + mins(60)), "still full an hour later");
    assert!(!gate.observe("public", true, t0 + mins(61)));
    let full = gate.full_boxes();
    assert_eq!(full.len(), 2);
    assert_eq!(full[1].line, "public");
    assert_eq!(full[1].callers_turned_away, 5);
    assert_eq!(full[1].alerted_at, t0 + mins(60));
    // The owner made room: the next full box is news again.
    assert!(!gate.observe("public", false, t0 + mins(62)));
    assert_eq!(gate.full_boxes().len(), 1);
    assert!(gate.observe("public", true, t0 + mins(63)));
}

#[test]
fn a_restart_remembers_the_last_alert() {
    let t0 = t("2026-03-01T05:00:00Z");
    let mut gate = BoxFullGate::with_sent([("public".to_string(), t0)]);
    assert!(gate.full_boxes().is_empty(), "not known full until checked");
    assert!(!gate.observe("public", true, t0 + mins(10)));
    assert_eq!(gate.full_boxes()[0].callers_turned_away, 1);
    assert!(gate.observe("public", true, t0 + mins(70)));
}

#[test]
fn the_alert_names_the_line_the_usage_and_the_caller() {
    let config = NotifyConfig {
        time_zone: Some("Asia/Tokyo".into()),
        ..NotifyConfig::default()
    };
    let notice = AlertNotice::new(box_full(t("2026-03-01T05:03:00Z")), &config);
    assert_eq!(
        notice.summary(),
        "voicemail box for line public is full: 20 messages / 1234567 bytes; \
         a caller at 2026-03-01 14:03 JST could not leave a message"
    );
    assert!(notice.subject().contains("public") && notice.subject().contains("Suzuki <0901234567>"));
    assert!(notice.body().contains("Messages: 20 (limit 20)"), "{}", notice.body());
    assert!(
        notice.body().contains("Bytes:    1234567 (limit no limit)"),
        "{}",
        notice.body()
    );
    let json = notice.payload();
    assert_eq!(json["event"], "box_full");
    assert_eq!(json["max_bytes"], serde_json::Value::Null);
    let env = notice.environment();
    let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("DENWA_VM_EVENT"), Some("box_full"));
    assert_eq!(get("DENWA_VM_BOX_MAX_BYTES"), Some(""));
    assert_eq!(get("DENWA_VM_BOX_MESSAGES"), Some("20"));
}

fn channel(name: &str, lines: &[&str], kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        lines: lines.iter().map(|l| l.to_string()).collect(),
        kind,
    }
}

#[test]
fn an_alert_goes_through_the_queue_to_every_channel_of_its_line() {
    let dir = test_dir("alert-channels");
    let store = VoicemailStore::open(&dir).unwrap();
    let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = email_config(smtp.local_addr().unwrap().port());
    let mails = smtp_server(smtp);
    let (hook_port, hooks) = http_server("200 OK");
    let out = dir.join("cmd.out");
    config.channels.push(channel(
        "hook",
        &["public"],
        ChannelKind::Webhook {
            url: format!("http://127.0.0.1:{hook_port}/hook"),
            timeout_secs: 5,
        },
    ));
    config.channels.push(channel(
        "cmd",
        &[],
        ChannelKind::Command {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                format!(
                    "printf '%s|%s|%s' \"$DENWA_VM_EVENT\" \"$DENWA_VM_LINE\" \"$DENWA_VM_SUMMARY\" > {}",
                    out.display()
                ),
            ],
            timeout_secs: 5,
        },
    ));
    config.channels.push(channel(
        "other-line",
        &["delivery"],
        ChannelKind::Webhook {
            url: "http://127.0.0.1:9/never".into(),
            timeout_secs: 1,
        },
    ));
    let t0 = t("2026-03-01T05:03:00Z");
    let id = worker::record_alert(&store, &config, &box_full(t0), t0).unwrap();
    let queue = Queue::open(&dir, RetryPolicy::default()).unwrap();
    let queued = queue.list(None).unwrap();
    assert_eq!(
        queued.len(),
        3,
        "owner mail, hook and command; not the other line's: {queued:?}"
    );
    assert!(queued.iter().all(|d| d.alert_id == Some(id) && d.message_id.is_none()));

    assert_eq!(worker::run_due(&queue, &store, &config, &|| t0, &|| false).unwrap(), 3);
    let states: Vec<_> = queue.list(None).unwrap().iter().map(|d| d.state).collect();
    assert_eq!(states, [DeliveryState::Delivered; 3]);

    let mail = mails.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(mail.contains("Subject: Voicemail box full on public"), "{mail}");
    assert!(mail.contains("20 messages / 1234567 bytes"), "{mail}");
    let (_, body) = hooks.recv_timeout(Duration::from_secs(5)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["event"], "box_full");
    assert_eq!(json["line"], "public");
    assert_eq!(json["caller"], "0901234567");
    assert_eq!(json["messages"], 20);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("box_full|public|voicemail box for line public is full"),
        "{text}"
    );
}

#[test]
fn a_failed_alert_is_retried_on_the_virtual_clock() {
    let dir = test_dir("alert-retry");
    let store = VoicemailStore::open(&dir).unwrap();
    let config = NotifyConfig {
        channels: vec![channel(
            "cmd",
            &[],
            ChannelKind::Command {
                program: "/bin/false".into(),
                args: vec![],
                timeout_secs: 5,
            },
        )],
        ..NotifyConfig::default()
    };
    let t0 = t("2026-03-01T05:03:00Z");
    worker::record_alert(&store, &config, &box_full(t0), t0).unwrap();
    let queue = Queue::open(&dir, RetryPolicy::default()).unwrap();
    assert_eq!(worker::run_due(&queue, &store, &config, &|| t0, &|| false).unwrap(), 1);
    let row = &queue.list(None).unwrap()[0];
    assert_eq!(row.state, DeliveryState::Pending);
    assert_eq!(row.next_attempt_at, t0 + Duration::from_secs(10));
    assert_eq!(
        worker::run_due(&queue, &store, &config, &|| t0 + Duration::from_secs(9), &|| false).unwrap(),
        0,
        "not due yet"
    );
    assert_eq!(
        worker::run_due(&queue, &store, &config, &|| t0 + Duration::from_secs(10), &|| false).unwrap(),
        1
    );
    assert_eq!(get(store.connection(), 1).unwrap().unwrap().box_full, box_full(t0));
}
