use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use super::queue::{DeliveryState, Outcome, Queue, store_and_enqueue};
use super::*;
use crate::records::test_dir;
use crate::records::voicemail::VoicemailStore;
use crate::records::voicemail::tests::message;

const SHOP: &str = "+81312345678";

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn config_parses_from_toml_and_hides_the_password() {
    let config: NotifyConfig = toml::from_str(
        r#"
        time_zone = "Asia/Tokyo"
        download_base_url = "https://shop.example/vm/"
        [smtp]
        host = "mail.example"
        port = 587
        security = "starttls"
        username = "denwa"
        password = "hunter2"
        from = "denwa <denwa@shop.example>"
        [retry]
        first_secs = 5
        give_up_after_days = 0
        [[channel]]
        name = "owner"
        type = "email"
        to = ["owner@shop.example"]
        lines = ["+81312345678"]
        [[channel]]
        name = "chat"
        type = "webhook"
        url = "http://127.0.0.1:9/hook"
        [[channel]]
        name = "script"
        type = "command"
        program = "/usr/local/bin/vm-hook"
        timeout_secs = 5
        "#,
    )
    .unwrap();
    assert_eq!(config.channels_for(SHOP), ["owner", "chat", "script"]);
    assert_eq!(config.channels_for("+81398765432"), ["chat", "script"]);
    assert!(matches!(
        config.channel("script").unwrap().kind,
        ChannelKind::Command { timeout_secs: 5, .. }
    ));
    assert_eq!(
        config.retry,
        RetryPolicy {
            first: secs(5),
            max: secs(1800),
            give_up_after: None
        }
    );
    let smtp = config.smtp.as_ref().unwrap();
    assert_eq!(smtp.password.as_ref().unwrap().expose(), "hunter2");
    let shown = format!("{config:?} {:?}", config.smtp);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("Secret(***)"));
}

#[test]
fn back_off_doubles_to_the_cap() {
    let retry = RetryPolicy::default();
    let delays: Vec<u64> = (1..=10).map(|n| retry.delay_after(n).as_secs()).collect();
    assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1280, 1800, 1800]);
    assert_eq!(retry.delay_after(1000), secs(1800));
}

fn store_with_message(name: &str, channels: &[&str], at: jiff::Timestamp) -> (std::path::PathBuf, VoicemailStore) {
    let dir = test_dir(name);
    let store = VoicemailStore::open(&dir).unwrap();
    let m = message("vm-1", SHOP, "2025-03-01T05:00:00Z");
    write_test_wav(&store.file_path(&m));
    let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
    store_and_enqueue(&store, &m, &channels, at).unwrap();
    (dir, store)
}

fn write_test_wav(path: &std::path::Path) {
    let mut w = hound::WavWriter::create(path, crate::records::recording::wav_spec()).unwrap();
    for i in 0..800 {
        w.write_sample((i % 100) as i16).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn queue_backs_off_on_a_virtual_clock_and_survives_reopening() {
    let t0 = t("2025-03-01T05:00:00Z");
    let (dir, _store) = store_with_message("queue-backoff", &["a"], t0);
    let retry = RetryPolicy {
        give_up_after: Some(secs(3600)),
        ..RetryPolicy::default()
    };
    let queue = Queue::open(&dir, retry).unwrap();
    let first = queue.next_due(t0).unwrap().unwrap();
    assert_eq!((first.channel.as_str(), first.attempts), ("a", 0));
    let fail = Attempt::Failed("connection refused".into());
    assert_eq!(
        queue.on_result(&first, &fail, t0).unwrap(),
        Outcome::RetryAt(t0 + secs(10))
    );
    assert_eq!(queue.next_due(t0 + secs(9)).unwrap(), None);
    assert_eq!(queue.next_wakeup().unwrap(), Some(t0 + secs(10)));
    drop(queue);

    // A restart: a new queue on the same database finds the pending row.
    let queue = Queue::open(&dir, retry).unwrap();
    let mut now = t0 + secs(10);
    let mut waits = Vec::new();
    loop {
        let due = queue.next_due(now).unwrap().expect("due");
        assert_eq!(due.last_error.as_deref(), Some("connection refused"));
        match queue.on_result(&due, &fail, now).unwrap() {
            Outcome::RetryAt(at) => {
                waits.push(at.duration_since(now).as_secs());
                now = at;
            }
            Outcome::GaveUp => break,
            Outcome::Delivered => unreachable!(),
        }
    }
    // 10 s, then doubling; the next wait would end past an hour from t0.
    assert_eq!(waits, [20, 40, 80, 160, 320, 640, 1280]);
    let rows = queue.list(Some("vm-1")).unwrap();
    assert_eq!(rows[0].state, DeliveryState::Failed);
    assert_eq!(rows[0].attempts, 9);
    assert_eq!(queue.next_wakeup().unwrap(), None);
    // The owner fixed it: failed rows go back in the queue.
    assert_eq!(queue.retry_failed(now).unwrap(), 1);
    let due = queue.next_due(now).unwrap().unwrap();
    assert_eq!(
        queue.on_result(&due, &Attempt::Delivered, now).unwrap(),
        Outcome::Delivered
    );
    assert_eq!(queue.list(None).unwrap()[0].state, DeliveryState::Delivered);
    assert_eq!(queue.next_due(now + secs(86_400)).unwrap(), None);
}

#[test]
fn enqueue_is_idempotent_and_deleting_the_message_drops_its_deliveries() {
    let t0 = t("2025-03-01T05:00:00Z");
    let (dir, store) = store_with_message("queue-cascade", &["a", "b"], t0);
    let queue = Queue::open(&dir, RetryPolicy::default()).unwrap();
    assert!(!queue.enqueue("vm-1", "a", t0).unwrap());
    assert_eq!(queue.list(None).unwrap().len(), 2);
    // A delivery for a message that is not indexed is refused.
    assert!(queue.enqueue("ghost", "a", t0).is_err());
    store.delete("vm-1").unwrap();
    assert!(queue.list(None).unwrap().is_empty());
}

#[test]
fn store_and_enqueue_is_all_or_nothing() {
    let t0 = t("2025-03-01T05:00:00Z");
    let (_dir, store) = store_with_message("queue-atomic", &["a"], t0);
    // Same id again: the insert fails, and no delivery is left behind.
    let again = message("vm-1", SHOP, "2025-03-02T05:00:00Z");
    assert!(store_and_enqueue(&store, &again, &["b".into()], t0).is_err());
    let n: i64 = store
        .connection()
        .query_row("SELECT COUNT(*) FROM deliveries WHERE channel = 'b'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

/// A minimal SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
/// Each received message (the DATA text) goes to the returned channel.
pub(super) fn smtp_server(listener: TcpListener) -> mpsc::Receiver<String> {
    smtp_server_with_auth(listener, None)
}

/// With `auth`, the server offers AUTH PLAIN, accepts only these
/// credentials and refuses mail before a successful AUTH.
fn smtp_server_with_auth(listener: TcpListener, auth: Option<(&'static str, &'static str)>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            stream.set_read_timeout(Some(secs(10))).unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = smtp_session(stream, &tx, auth);
            });
        }
    });
    rx
}

fn smtp_session(stream: TcpStream, tx: &mpsc::Sender<String>, auth: Option<(&str, &str)>) -> std::io::Result<()> {
    let expected = auth.map(|(user, pass)| base64_encode(format!("\0{user}\0{pass}").as_bytes()));
    let mut authenticated = auth.is_none();
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 test.local ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" if auth.is_some() => out.write_all(b"250-test.local\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")?,
            "EHLO" => out.write_all(b"250-test.local\r\n250 8BITMIME\r\n")?,
            "AUTH" => {
                let given = line.trim_end().strip_prefix("AUTH PLAIN ").unwrap_or("");
                if Some(given) == expected.as_deref() {
                    authenticated = true;
                    out.write_all(b"235 ok\r\n")?;
                } else {
                    out.write_all(b"535 bad credentials\r\n")?;
                }
            }
            "MAIL" if !authenticated => out.write_all(b"530 authentication required\r\n")?,
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => out.write_all(b"250 OK\r\n")?,
            "DATA" => {
                out.write_all(b"354 go on\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line)?;
                    if line == ".\r\n" || line.is_empty() {
                        break;
                    }
                    data.push_str(&line);
                }
                out.write_all(b"250 queued\r\n")?;
                let _ = tx.send(data);
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"502 not implemented\r\n")?,
        }
    }
}

fn smtp_config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::Plain,
        username: None,
        password: None,
        from: "denwa <denwa@shop.example>".into(),
        hello_name: Some("denwa.test".into()),
        timeout_secs: 5,
        max_attachment_bytes: 1 << 20,
    }
}

pub(super) fn email_config(port: u16) -> NotifyConfig {
    NotifyConfig {
        smtp: Some(smtp_config(port)),
        channels: vec![ChannelConfig {
            name: "owner".into(),
            lines: vec![],
            kind: ChannelKind::Email {
                to: vec!["owner@shop.example".into()],
            },
        }],
        time_zone: Some("Asia/Tokyo".into()),
        ..NotifyConfig::default()
    }
}

#[test]
fn email_down_then_up_is_delivered_after_a_restart() {
    // A free port with nothing listening: the SMTP server is down.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = email_config(port);
    let t0 = t("2025-03-01T05:00:00Z");
    let (dir, store) = store_with_message("email-down-up", &["owner"], t0);
    let queue = Queue::open(&dir, config.retry).unwrap();
    let at = |offset: u64| move || t0 + secs(offset);
    let never_stop = || false;
    assert_eq!(
        super::worker::run_due(&queue, &store, &config, &at(0), &never_stop).unwrap(),
        1
    );
    let row = &queue.list(None).unwrap()[0];
    assert_eq!(row.state, DeliveryState::Pending);
    assert!(row.last_error.as_ref().unwrap().contains("SMTP 127.0.0.1"), "{row:?}");
    assert_eq!(row.next_attempt_at, t0 + secs(10));
    drop(queue);

    // The server comes up; denwa restarted meanwhile (a new queue).
    let received = smtp_server(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let queue = Queue::open(&dir, config.retry).unwrap();
    assert_eq!(
        super::worker::run_due(&queue, &store, &config, &at(5), &never_stop).unwrap(),
        0
    );
    assert_eq!(
        super::worker::run_due(&queue, &store, &config, &at(10), &never_stop).unwrap(),
        1
    );
    assert_eq!(queue.list(None).unwrap()[0].state, DeliveryState::Delivered);
    let mail = received.recv_timeout(secs(10)).unwrap();
    // Unfold long header lines (RFC 5322 §2.2.3).
    let unfolded = mail.replace("\r\n ", " ");
    assert!(
        unfolded.contains("Subject: Voicemail on +81312345678 from Tanaka <+819011112222> at 2025-03-01 14:00 JST"),
        "{mail}"
    );
    assert!(mail.contains("Length:   0:13"), "{mail}");
    assert!(mail.contains("filename=\"vm-1.wav\""), "{mail}");
    assert!(mail.contains("audio/wav"), "{mail}");
    // The attachment is the recording, base64-encoded.
    let wav = std::fs::read(dir.join("vm-1.wav")).unwrap();
    let marker = "Content-Transfer-Encoding: base64\r\n\r\n";
    let start = mail.find(marker).expect("a base64 attachment") + marker.len();
    let encoded: String = mail[start..]
        .split_whitespace()
        .take_while(|l| !l.starts_with("--"))
        .collect();
    assert!(base64_decode(&encoded) == wav, "the attachment is not the recording");
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) fn base64_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64 char") as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out
}

#[test]
fn worker_thread_delivers_pending_rows_at_start() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = smtp_server(listener);
    let (dir, store) = store_with_message("email-worker", &["owner"], jiff::Timestamp::now());
    drop(store);
    let worker = super::worker::NotifyWorker::spawn(&dir, email_config(port)).unwrap();
    let mail = received.recv_timeout(secs(20)).unwrap();
    assert!(mail.contains("Voicemail on +81312345678"), "{mail}");
    worker.stop();
    let queue = Queue::open(&dir, RetryPolicy::default()).unwrap();
    assert_eq!(queue.list(None).unwrap()[0].state, DeliveryState::Delivered);
}

/// A one-request HTTP server answering with `status`; sends the request
/// (head and body) to the returned channel.
pub(super) fn http_server(status: &'static str) -> (u16, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(secs(10))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        tx.send((head, String::from_utf8(body).unwrap())).unwrap();
    });
    (port, rx)
}

fn notice() -> Notice {
    let config = NotifyConfig {
        time_zone: Some("Asia/Tokyo".into()),
        download_base_url: Some("http://192.0.2.1/vm/".into()),
        ..NotifyConfig::default()
    };
    let m = message("vm-1", SHOP, "2025-03-01T05:00:00Z");
    Notice::new(m, "/var/vm/vm-1.wav".into(), &config)
}

#[test]
fn webhook_posts_json_and_treats_errors_as_retryable() {
    let (port, requests) = http_server("204 No Content");
    let url = format!("http://user:token@127.0.0.1:{port}/hook?key=secret");
    assert_eq!(webhook::deliver(&notice(), &url, secs(5)), Attempt::Delivered);
    let (head, body) = requests.recv_timeout(secs(5)).unwrap();
    assert!(head.starts_with("POST /hook?key=secret HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/json"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["id"], "vm-1");
    assert_eq!(json["line"], SHOP);
    assert_eq!(json["caller_name"], "Tanaka");
    assert_eq!(json["duration_ms"], 12_340);
    assert_eq!(json["time"], "2025-03-01T05:00:00Z");
    assert_eq!(json["url"], "http://192.0.2.1/vm/vm-1.wav");
    assert_eq!(json["path"], "/var/vm/vm-1.wav");

    let (port, _requests) = http_server("503 Service Unavailable");
    let url = format!("http://user:token@127.0.0.1:{port}/hook?key=secret");
    let Attempt::Failed(error) = webhook::deliver(&notice(), &url, secs(5)) else {
        panic!("a 503 must be retried");
    };
    assert!(error.contains("503"), "{error}");
    assert!(!error.contains("token") && !error.contains("secret"), "{error}");
}

#[test]
fn command_gets_the_details_and_its_exit_status_counts() {
    let dir = test_dir("command");
    let out = dir.join("out.txt");
    let script = format!(
        "printf '%s|%s|%s|%s|%s' \"$DENWA_VM_ID\" \"$DENWA_VM_LINE\" \"$DENWA_VM_CALLER\" \
         \"$DENWA_VM_FILE\" \"$DENWA_VM_DURATION_MS\" > {}",
        out.display()
    );
    let sh = std::path::Path::new("/bin/sh");
    let run = |script: &str, timeout| command::deliver(&notice(), sh, &["-c".into(), script.into()], timeout);
    assert_eq!(run(&script, secs(10)), Attempt::Delivered);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "vm-1|+81312345678|+819011112222|/var/vm/vm-1.wav|12340"
    );
    let Attempt::Failed(error) = run("echo 'no route to pager' >&2; exit 3", secs(10)) else {
        panic!("exit 3 is a failure");
    };
    assert!(
        error.contains("exit status: 3") && error.contains("no route to pager"),
        "{error}"
    );
    let started = std::time::Instant::now();
    let Attempt::Failed(error) = run("sleep 30", Duration::from_millis(300)) else {
        panic!("a hung command is a failure");
    };
    assert!(error.contains("did not finish"), "{error}");
    assert!(started.elapsed() < secs(5));
    let missing = command::deliver(&notice(), std::path::Path::new("/nonexistent/x"), &[], secs(1));
    assert!(matches!(missing, Attempt::Failed(e) if e.contains("cannot run")));
}

#[test]
fn a_channel_removed_from_the_config_is_retried_not_dropped() {
    let t0 = t("2025-03-01T05:00:00Z");
    let (dir, store) = store_with_message("removed-channel", &["gone"], t0);
    let queue = Queue::open(&dir, RetryPolicy::default()).unwrap();
    let config = NotifyConfig::default();
    super::worker::run_due(&queue, &store, &config, &|| t0, &|| false).unwrap();
    let row = &queue.list(None).unwrap()[0];
    // A reload may bring the channel back; the retry policy gives up loudly in time.
    assert_eq!(row.state, DeliveryState::Pending);
    assert!(row.last_error.as_ref().unwrap().contains("no longer"));
}

#[test]
fn worker_wakes_for_a_new_message_and_takes_a_reload() {
    let (dir, store) = store_with_message("worker-wake", &[], jiff::Timestamp::now());
    // First config: a channel that does not exist yet; nothing to deliver.
    let worker = super::worker::NotifyWorker::spawn(&dir, NotifyConfig::default()).unwrap();
    let out = dir.join("ran.txt");
    let config = NotifyConfig {
        channels: vec![ChannelConfig {
            name: "script".into(),
            lines: vec![],
            kind: ChannelKind::Command {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), format!("echo \"$DENWA_VM_ID\" > {}", out.display())],
                timeout_secs: 10,
            },
        }],
        ..NotifyConfig::default()
    };
    worker.reload(config.clone());
    let m = message("vm-2", SHOP, "2025-03-01T06:00:00Z");
    write_test_wav(&store.file_path(&m));
    store_and_enqueue(&store, &m, &config.channels_for(SHOP), jiff::Timestamp::now()).unwrap();
    worker.wake();
    let deadline = std::time::Instant::now() + secs(20);
    while !out.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.stop();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "vm-2\n");
}

#[test]
fn base64_helpers_round_trip() {
    assert_eq!(base64_encode(b"\0denwa\0hunter2"), "AGRlbndhAGh1bnRlcjI=");
    for text in [&b"a"[..], b"ab", b"abc", b"abcd"] {
        assert_eq!(base64_decode(&base64_encode(text)), text);
    }
}

#[test]
fn smtp_auth_is_used_and_the_password_never_shows() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = smtp_server_with_auth(listener, Some(("denwa", "hunter2")));
    let dir = test_dir("smtp-auth");
    let m = message("vm-1", SHOP, "2025-03-01T05:00:00Z");
    let file = dir.join("vm-1.wav");
    write_test_wav(&file);
    let notice = Notice::new(m, file, &NotifyConfig::default());
    let to = ["owner@shop.example".to_string()];
    let mut smtp = SmtpConfig {
        username: Some("denwa".into()),
        password: Some(Secret::new("wrong-pass")),
        ..smtp_config(port)
    };
    let Attempt::Failed(error) = email::deliver(&notice, Some(&smtp), &to) else {
        panic!("wrong credentials must fail");
    };
    assert!(!error.contains("wrong-pass"), "{error}");
    assert!(received.try_recv().is_err());
    smtp.password = Some(Secret::new("hunter2"));
    assert_eq!(email::deliver(&notice, Some(&smtp), &to), Attempt::Delivered);
    assert!(received.recv_timeout(secs(10)).unwrap().contains("Voicemail on"));
    assert!(!format!("{smtp:?}").contains("hunter2"));
}

#[test]
fn starttls_is_required_when_configured() {
    // The test server offers no STARTTLS: denwa must not fall back to plain.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = smtp_server(listener);
    let dir = test_dir("smtp-starttls");
    let file = dir.join("vm-1.wav");
    write_test_wav(&file);
    let notice = Notice::new(
        message("vm-1", SHOP, "2025-03-01T05:00:00Z"),
        file,
        &NotifyConfig::default(),
    );
    let smtp = SmtpConfig {
        security: SmtpSecurity::Starttls,
        ..smtp_config(port)
    };
    let attempt = email::deliver(&notice, Some(&smtp), &["owner@shop.example".into()]);
    assert!(matches!(attempt, Attempt::Failed(_)), "{attempt:?}");
    assert!(received.recv_timeout(Duration::from_millis(300)).is_err());
}

#[test]
fn a_recording_too_large_to_attach_is_mentioned_instead() {
    let dir = test_dir("smtp-large");
    let file = dir.join("vm-1.wav");
    write_test_wav(&file);
    let notice = Notice::new(
        message("vm-1", SHOP, "2025-03-01T05:00:00Z"),
        file,
        &NotifyConfig::default(),
    );
    let small = SmtpConfig {
        max_attachment_bytes: 100,
        ..smtp_config(25)
    };
    let mail = String::from_utf8(
        email::build(&notice, &small, &["o@shop.example".into()])
            .unwrap()
            .formatted(),
    )
    .unwrap();
    assert!(mail.contains("too large to attach"), "{mail}");
    assert!(!mail.contains("audio/wav"), "{mail}");
    let mail = String::from_utf8(
        email::build(&notice, &smtp_config(25), &["o@shop.example".into()])
            .unwrap()
            .formatted(),
    )
    .unwrap();
    assert!(mail.contains("The recording is attached."), "{mail}");
    assert!(mail.contains("audio/wav"), "{mail}");
}

#[test]
fn the_documented_example_parses() {
    let source = include_str!("mod.rs");
    let start = source.find("/// [notify]\n").unwrap();
    let end = source[start..].find("/// ```").unwrap() + start;
    let toml_text: String = source[start..end]
        .lines()
        .map(|l| l.strip_prefix("/// ").unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    #[derive(serde::Deserialize)]
    struct Wrapper {
        notify: NotifyConfig,
    }
    let config = toml::from_str::<Wrapper>(&toml_text).unwrap().notify;
    assert_eq!(config.channels.len(), 3);
    assert_eq!(config.retry, RetryPolicy::default());
    assert_eq!(config.channels_for("+81399999999"), ["chat", "pager"]);
}
