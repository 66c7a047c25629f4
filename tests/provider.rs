//! denwa registered with a real registrar: Kamailio (Debian `kamailio`) plays
//! the SIP provider on loopback, demanding digest auth and routing each DID's
//! INVITEs to the contact registered for it; SIPp places the calls.
//! Run with `cargo test --features interop` (CI always does).

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Denwa, RtpSink, check_stream, free_udp_port};

/// The three example numbers and the passwords Kamailio holds for them.
const ACCOUNTS: [(&str, &str, &str); 3] = [
    ("public", "0501110001", "pw-public-7"),
    ("delivery", "0501110002", "pw-delivery-7"),
    ("partner", "0501110003", "pw-partner-7"),
];

struct Kamailio {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Outside numbers it routes (after proxy auth) and the UDP port on
    /// 127.0.0.1 playing each.
    mobiles: Vec<(String, u16)>,
}

impl Kamailio {
    fn start(name: &str) -> Kamailio {
        Kamailio::start_with_mobiles(name, &[])
    }

    fn start_with_mobiles(name: &str, mobiles: &[(&str, u16)]) -> Kamailio {
        common::assert_private_network();
        let dir = std::env::temp_dir().join(format!("denwa-kamailio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut k = Kamailio {
            child: None,
            port: free_udp_port(),
            dir,
            mobiles: mobiles.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        let template =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio/kamailio.cfg")).unwrap();
        let passwords: String = ACCOUNTS
            .iter()
            .map(|(_, user, pw)| format!("    $sht(users=>{user}) = \"{pw}\";\n"))
            .collect();
        let mobiles: String = self
            .mobiles
            .iter()
            .map(|(number, port)| format!("    $sht(mobiles=>{number}) = \"sip:127.0.0.1:{port}\";\n"))
            .collect();
        let cfg = template
            .replace("__PORT__", &self.port.to_string())
            .replace("__PASSWORDS__", &passwords)
            .replace("__MOBILES__", &mobiles);
        std::fs::write(self.dir.join("kamailio.cfg"), cfg).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("kamailio.log"))
            .unwrap();
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(self.dir.join("kamailio.cfg"))
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&self.dir)
            .arg("-P")
            .arg(self.dir.join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio is installed (Debian package kamailio)");
        self.child = Some(child);
        // Ready when it answers anything.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let local = probe.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in 0.. {
            assert!(Instant::now() < deadline, "kamailio did not start:\n{}", self.log());
            let ping = format!(
                "OPTIONS sip:ping@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-k{n}\r\nMax-Forwards: 5\r\n\
From: <sip:probe@{local}>;tag=p\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: kready-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                self.port
            );
            probe.send_to(ping.as_bytes(), ("127.0.0.1", self.port)).unwrap();
            let mut buf = [0u8; 2048];
            if probe.recv(&mut buf).is_ok() {
                return;
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    fn saved(&self, user: &str) -> usize {
        self.log().matches(&format!("REGISTER {user}: saved")).count()
    }

    fn challenges(&self, user: &str) -> usize {
        self.log().matches(&format!("REGISTER {user}: challenge")).count()
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// denwa with the three example numbers registered at `kamailio`; `wrong`
/// gives that line a wrong password. No trusted sources: only the provider.
fn denwa_at(kamailio: &Kamailio, name: &str, expires: u32, wrong: Option<&str>) -> Denwa {
    denwa_with(kamailio, name, expires, wrong, None)
}

/// As [`denwa_at`]; with `desk`, the delivery line rings a staff phone
/// `desk` (password `phone-secret-1`) for up to 8 s before its announcement.
fn denwa_with(kamailio: &Kamailio, name: &str, expires: u32, wrong: Option<&str>, desk: Option<()>) -> Denwa {
    let mut extra = format!(
        "[provider]\nregistrar = \"{}\"\nexpires = {expires}\nretry_max = \"4s\"\nkeepalive = \"5s\"\n",
        kamailio.address()
    );
    let mut env = Vec::new();
    for (line, user, pw) in ACCOUNTS {
        let var = format!("DENWA_TEST_PW_{}", line.to_uppercase());
        // partner plays the 5 s prompt, so a caller can hang up before it ends.
        let prompt = if line == "partner" { "five.wav" } else { "short.wav" };
        let ring = if desk.is_some() && line == "delivery" {
            "ring = { phones = [\"desk\"], timeout = \"8s\" }\n"
        } else {
            ""
        };
        extra.push_str(&format!(
            "[numbers.{line}]\nnumber = \"{user}\"\npassword_env = \"{var}\"\n[[numbers.{line}.rules]]\n{ring}announce = \"{prompt}\"\n"
        ));
        let pw = if wrong == Some(line) { "not-the-password" } else { pw };
        env.push((var, pw.to_string()));
    }
    let mut sip = String::new();
    if desk.is_some() {
        extra.push_str("[phones.desk]\npassword_env = \"DESK_PASSWORD\"\n");
        env.push(("DESK_PASSWORD".into(), "phone-secret-1".into()));
        // SIPp answers only the first challenge it sees.
        sip.push_str("[sip]\ndigest_algorithms = [\"MD5\", \"SHA-256\"]\n");
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Denwa::start_with(name, &sip, &extra, &env)
}

fn status(denwa: &Denwa) -> serde_json::Value {
    std::fs::read(denwa.dir.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn state_of(denwa: &Denwa, line: &str) -> String {
    status(denwa)["registrations"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["line"] == line))
        .map(|r| r["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn all_numbers_register_with_digest_auth_and_refresh_before_expiry() {
    let kamailio = Kamailio::start("refresh");
    let denwa = denwa_at(&kamailio, "refresh", 10, None);
    for (line, user, _) in ACCOUNTS {
        wait_until(&format!("{line} registered"), Duration::from_secs(10), || {
            state_of(&denwa, line) == "registered"
        });
        assert!(kamailio.challenges(user) >= 1, "kamailio challenged {user}");
        assert!(kamailio.saved(user) >= 1);
    }
    // Granted 10 s: the refresh comes at 7.5 s, before the binding lapses.
    for (_, user, _) in ACCOUNTS {
        wait_until(&format!("{user} refreshed"), Duration::from_secs(10), || {
            kamailio.saved(user) >= 2
        });
    }
    for (line, _, _) in ACCOUNTS {
        assert_eq!(state_of(&denwa, line), "registered");
    }
    assert!(!denwa.log().contains("pw-public-7"), "no password in the log");
    // `denwa status` shows the same to the owner.
    let out = Command::new(env!("CARGO_BIN_EXE_denwa"))
        .args(["status", "--config"])
        .arg(denwa.dir.join("shop.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for (line, user, _) in ACCOUNTS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(line) && l.contains(user) && l.contains("registered")),
            "{text}"
        );
    }
}

#[test]
fn wrong_password_is_reported_once_and_retried_with_backoff() {
    let kamailio = Kamailio::start("wrong");
    let denwa = denwa_at(&kamailio, "wrong", 60, Some("partner"));
    wait_until("partner failing", Duration::from_secs(10), || {
        state_of(&denwa, "partner") == "failing"
    });
    wait_until("public registered", Duration::from_secs(10), || {
        state_of(&denwa, "public") == "registered"
    });
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let attempts = kamailio.challenges("0501110003");
    // Back-off 2, 4, 4 … s (retry_max 4 s): a handful in 8 s, never a tight loop.
    assert!(
        attempts <= 12,
        "{attempts} challenges for the wrong password in {:?}",
        started.elapsed()
    );
    let s = status(&denwa);
    let partner = s["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["line"] == "partner")
        .unwrap()
        .clone();
    assert!(
        partner["last_error"].as_str().unwrap().contains("refused the username"),
        "{partner}"
    );
    let log = denwa.log();
    let reports = log
        .lines()
        .filter(|l| l.contains("registration failed") && l.contains("line=partner"))
        .count();
    assert_eq!(reports, 1, "the error is reported once:\n{log}");
    assert!(!log.contains("not-the-password"));
}

#[test]
fn registrar_restart_leads_to_reregistration_within_the_backoff_bound() {
    let mut kamailio = Kamailio::start("restart");
    let denwa = denwa_at(&kamailio, "restart", 10, None);
    wait_until("registered", Duration::from_secs(10), || {
        state_of(&denwa, "public") == "registered"
    });
    kamailio.stop();
    // The refresh fails (no answer): once the 10 s binding lapses it is failing.
    wait_until("failing", Duration::from_secs(60), || {
        state_of(&denwa, "public") == "failing"
    });
    let before = kamailio.saved("0501110001");
    kamailio.spawn();
    // retry_max is 4 s (+20 % jitter), plus one REGISTER round trip.
    let took = wait_until("re-registered", Duration::from_secs(8), || {
        state_of(&denwa, "public") == "registered" && kamailio.saved("0501110001") > before
    });
    assert!(took <= Duration::from_secs(6), "re-registered after {took:?}");
}

#[test]
fn calls_through_the_provider_reach_each_number_and_direct_calls_are_refused() {
    let kamailio = Kamailio::start("calls");
    let denwa = denwa_at(&kamailio, "calls", 60, None);
    for (line, _, _) in ACCOUNTS {
        wait_until(&format!("{line} registered"), Duration::from_secs(10), || {
            state_of(&denwa, line) == "registered"
        });
    }
    for (n, (line, user, _)) in ACCOUNTS.iter().enumerate() {
        let sink = RtpSink::start();
        let keys = sink.keys(0, "PCMU");
        // SIPp dials the DID at the provider; Kamailio routes it to denwa's
        // registered contact; denwa's BYE goes back along the Record-Route.
        denwa.sipp_to(
            &kamailio.address(),
            "127.0.0.1",
            "announce_via_provider.xml",
            user,
            &keys,
        );
        let expected = if *line == "partner" { 250 } else { 50 };
        check_stream(&sink.packets.join().unwrap(), 0, expected);
        let calls = denwa.wait_for_calls(n + 1);
        let last = &calls[n];
        assert_eq!(last["line"], *line, "{calls:?}");
        assert_eq!(last["dialled"], *user);
        assert_eq!(last["hung_up_by"], "denwa");
        assert!(
            kamailio
                .log()
                .contains(&format!("INVITE for {user} relayed to sip:dw-")),
            "the call went through the provider to our registered contact:\n{}",
            kamailio.log()
        );
    }
    // The caller refreshes the session (re-INVITE, UPDATE) and hangs up,
    // every request inside the dialog going along the provider's Record-Route.
    denwa.sipp_to(
        &kamailio.address(),
        "127.0.0.1",
        "refresh_then_hangup.xml",
        "0501110003",
        &[],
    );
    let calls = denwa.wait_for_calls(ACCOUNTS.len() + 1);
    let last = calls.last().unwrap();
    assert_eq!(
        (&last["line"], &last["hung_up_by"], &last["final_status"]),
        (&"partner".into(), &"caller".into(), &200.into())
    );

    // A scanner at another address dials denwa directly: 403, no call.
    denwa.sipp_to(
        &format!("127.0.0.1:{}", denwa.port),
        "127.0.0.2",
        "forbidden.xml",
        "0501110001",
        &[],
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(denwa.call_log().len(), ACCOUNTS.len() + 1);
    assert!(denwa.log().contains("refused a call from an untrusted source"));
}

// ----- a provider that restarts and forgets every binding -------------------
//
// Kamailio keeps its bindings in memory only, so a restart forgets them all,
// as a provider's crashed registrar would. denwa pings it every 5 s with
// OPTIONS (`keepalive = "5s"`); what it can notice is a request that needed
// retransmissions or went unanswered. Each phase below stops Kamailio at a
// chosen point of that cycle and requires every number to be registered at
// the restarted Kamailio within 5 s of its return: a retransmission reaches
// it within T2 (4 s), and the REGISTER and its digest round trip on loopback
// take milliseconds.
//
// Not tested, because no user agent can meet it: an outage that falls
// entirely between two pings (say 2 s starting 1 s after one, with 5 s
// pings). Every request denwa sends is answered at once, nothing was lost or
// retransmitted, and OPTIONS answers carry nothing that shows a restart; the
// lost binding is only restored by the next refresh (at three quarters of
// the granted expiry). A shorter `expires` or keep-alive narrows that window.

/// The moment the next keep-alive of `user` reaches Kamailio (polled from
/// its log, so within ~10 ms).
fn next_ping(kamailio: &Kamailio, user: &str) -> Instant {
    let pings = || kamailio.log().matches(&format!("OPTIONS from {user}\n")).count();
    let seen = pings();
    wait_until("a keep-alive", Duration::from_secs(8), || pings() > seen);
    Instant::now()
}

/// The moment the next successful REGISTER of `user` is logged.
fn next_save(kamailio: &Kamailio, user: &str) -> Instant {
    let seen = kamailio.saved(user);
    wait_until("a refresh", Duration::from_secs(12), || kamailio.saved(user) > seen);
    Instant::now()
}

fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

fn wait_all_registered(denwa: &Denwa) {
    for (line, _, _) in ACCOUNTS {
        wait_until(&format!("{line} registered"), Duration::from_secs(10), || {
            state_of(denwa, line) == "registered"
        });
    }
}

/// Stop Kamailio at `stop_at` for `outage`, start it afresh, and require
/// every number to be saved by the new process within 5 s of its return.
fn restart_and_expect_reregistration(kamailio: &mut Kamailio, denwa: &Denwa, stop_at: Instant, outage: Duration) {
    sleep_until(stop_at);
    let before: Vec<usize> = ACCOUNTS.iter().map(|(_, user, _)| kamailio.saved(user)).collect();
    kamailio.stop();
    std::thread::sleep(outage);
    kamailio.spawn();
    let back = Instant::now();
    for ((line, user, _), before) in ACCOUNTS.iter().zip(before) {
        let limit = Duration::from_secs(5).saturating_sub(back.elapsed());
        wait_until(
            &format!("{line} registered again at the restarted provider"),
            limit,
            || kamailio.saved(user) > before,
        );
    }
    let took = back.elapsed();
    assert!(
        took <= Duration::from_secs(5),
        "registered again {took:?} after the provider's return"
    );
    for (line, _, _) in ACCOUNTS {
        assert_eq!(state_of(denwa, line), "registered", "{line}");
    }
}

/// 2 s down from just before a ping: the ping is retransmitted until one
/// copy reaches the restarted Kamailio, and that answer after
/// retransmissions makes denwa register again.
#[test]
fn provider_restart_2s_just_before_a_ping_is_noticed() {
    let mut kamailio = Kamailio::start("restart-ping");
    // A long grant: no refresh falls inside the test, so only noticing the
    // restart can register the numbers again.
    let denwa = denwa_at(&kamailio, "restart-ping", 300, None);
    wait_all_registered(&denwa);
    let ping = next_ping(&kamailio, ACCOUNTS[0].1);
    let stop_at = ping + Duration::from_millis(4700);
    restart_and_expect_reregistration(&mut kamailio, &denwa, stop_at, Duration::from_secs(2));
}

/// 7 s down from 1 s after a ping, so the next ping (and its first three
/// retransmissions) are lost; the one after the return is answered.
#[test]
fn provider_restart_7s_spanning_a_ping_is_noticed() {
    let mut kamailio = Kamailio::start("restart-span");
    let denwa = denwa_at(&kamailio, "restart-span", 300, None);
    wait_all_registered(&denwa);
    let ping = next_ping(&kamailio, ACCOUNTS[0].1);
    let stop_at = ping + Duration::from_secs(1);
    restart_and_expect_reregistration(&mut kamailio, &denwa, stop_at, Duration::from_secs(7));
}

/// 40 s down from 1 s before a refresh (10 s grants, refreshed every 8 s):
/// the refresh goes unanswered until Timer F (32 s), the binding lapses,
/// and the next REGISTER goes out at once and is retransmitted every T2 until
/// the restarted Kamailio answers it.
#[test]
fn provider_restart_40s_spanning_a_register_timeout_is_noticed() {
    let mut kamailio = Kamailio::start("restart-long");
    let denwa = denwa_at(&kamailio, "restart-long", 10, None);
    wait_all_registered(&denwa);
    let refreshed = next_save(&kamailio, ACCOUNTS[0].1);
    let stop_at = refreshed + Duration::from_secs(7);
    restart_and_expect_reregistration(&mut kamailio, &denwa, stop_at, Duration::from_secs(40));
    assert!(
        denwa.log().contains("no response from the registrar"),
        "the refresh timed out during the outage:\n{}",
        denwa.log()
    );
}

/// A SIPp UAS running `scenario` on `port` answers; a courier dials the
/// delivery DID at the provider and talks for 3 s, then hangs up. Returns
/// the UAS's outcome and how many RTP packets reached it.
fn courier_calls_delivery(denwa: &Denwa, kamailio: &Kamailio, scenario: &str, port: u16) -> (Output, usize) {
    let sink = RtpSink::start();
    let answering = denwa.spawn_sipp_uas(scenario, port, &[("rtp_port", sink.port.to_string())]);
    std::thread::sleep(Duration::from_millis(300));
    denwa.sipp_to(
        &kamailio.address(),
        "127.0.0.1",
        "caller_talks_via_provider.xml",
        "0501110002",
        &[],
    );
    let out = answering.wait_with_output().unwrap();
    (out, sink.packets.join().unwrap().len())
}

#[test]
fn a_provider_call_to_the_delivery_number_rings_the_staff_phone_and_is_bridged() {
    let kamailio = Kamailio::start("ring");
    let denwa = denwa_with(&kamailio, "ring", 60, None, Some(()));
    wait_until("delivery registered", Duration::from_secs(10), || {
        state_of(&denwa, "delivery") == "registered"
    });
    // The desk phone registers with denwa, then answers as a UAS where it registered.
    let phone_port = free_udp_port();
    let registered = denwa.sipp_from_port("phone_register.xml", phone_port, &[]);
    assert!(registered.status.success(), "the phone registers:\n{}", denwa.log());
    let (out, packets) = courier_calls_delivery(&denwa, &kamailio, "phone_answers.xml", phone_port);
    assert!(
        out.status.success(),
        "the phone's side: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(packets >= 90, "the courier's audio reached the phone");
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(
        (&c["line"], &c["answered_by"]),
        (&"delivery".into(), &"desk".into()),
        "{c}"
    );
    assert!(
        kamailio.log().contains("INVITE for 0501110002 relayed to sip:dw-"),
        "the call came through the provider:\n{}",
        kamailio.log()
    );
}

// ----- the owner's mobile, rung through the provider ------------------------

const MOBILE: &str = "09011112222";

/// denwa with the three numbers registered at `kamailio`; the delivery line
/// rings the outside phone `mobile` (MOBILE, through the provider, with the
/// line the call came in on) for up to 8 s, then announces.
fn denwa_ringing_mobile(kamailio: &Kamailio, name: &str, mobile: &str) -> Denwa {
    let mut extra = format!(
        "[provider]\nregistrar = \"{}\"\nexpires = 60\nretry_max = \"4s\"\nkeepalive = \"5s\"\n{mobile}",
        kamailio.address()
    );
    let mut env = Vec::new();
    for (line, user, pw) in ACCOUNTS {
        let var = format!("DENWA_TEST_PW_{}", line.to_uppercase());
        let ring = if line == "delivery" {
            "ring = { phones = [\"mobile\"], timeout = \"8s\" }\n"
        } else {
            ""
        };
        extra.push_str(&format!(
            "[numbers.{line}]\nnumber = \"{user}\"\npassword_env = \"{var}\"\n[[numbers.{line}.rules]]\n{ring}announce = \"short.wav\"\n"
        ));
        env.push((var, pw.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Denwa::start_with(name, "", &extra, &env)
}

#[test]
fn a_courier_calling_the_delivery_number_reaches_the_owners_mobile_through_the_provider() {
    let mobile_port = free_udp_port();
    let kamailio = Kamailio::start_with_mobiles("mobile", &[(MOBILE, mobile_port)]);
    let denwa = denwa_ringing_mobile(
        &kamailio,
        "mobile",
        "[phones.mobile]\nnumber = \"090-1111-2222\"\ncaller_id = \"caller\"\n",
    );
    wait_until("delivery registered", Duration::from_secs(10), || {
        state_of(&denwa, "delivery") == "registered"
    });
    // The mobile answers where the provider routes its number.
    let (out, packets) = courier_calls_delivery(&denwa, &kamailio, "mobile_answers.xml", mobile_port);
    assert!(
        out.status.success(),
        "the mobile's side (rang, answered, got the BYE): {}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        denwa.log(),
        kamailio.log()
    );
    assert!(packets >= 90, "the courier's audio reached the mobile");
    let log = kamailio.log();
    assert!(
        log.contains(&format!("INVITE to {MOBILE}: challenge")),
        "the provider challenged denwa's INVITE:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "INVITE to {MOBILE} from 0901234567 authenticated as 0501110002, relayed to sip:127.0.0.1:{mobile_port}"
        )),
        "answered with the delivery line's credentials, the courier's number shown:\n{log}"
    );
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(
        (&c["line"], &c["answered_by"], &c["hung_up_by"]),
        (&"delivery".into(), &"mobile".into(), &"caller".into()),
        "{c}"
    );
    assert!(!denwa.log().contains("pw-delivery-7"), "no secrets in the log");
}

#[test]
fn a_mobile_that_rejects_or_does_not_answer_runs_the_fallback() {
    let mobile_port = free_udp_port();
    let kamailio = Kamailio::start_with_mobiles("mobile-fails", &[(MOBILE, mobile_port)]);
    let denwa = denwa_ringing_mobile(
        &kamailio,
        "mobile-fails",
        "[phones.mobile]\nnumber = \"09011112222\"\nvia = \"delivery\"\n",
    );
    wait_until("delivery registered", Duration::from_secs(10), || {
        state_of(&denwa, "delivery") == "registered"
    });
    for (n, scenario) in ["phone_busy.xml", "mobile_rings_until_cancelled.xml"]
        .iter()
        .enumerate()
    {
        let phone = denwa.spawn_sipp_uas(scenario, mobile_port, &[]);
        std::thread::sleep(Duration::from_millis(300));
        let sink = RtpSink::start();
        let keys = sink.keys(0, "PCMU");
        let started = Instant::now();
        denwa.sipp_to(
            &kamailio.address(),
            "127.0.0.1",
            "announce_via_provider.xml",
            "0501110002",
            &keys,
        );
        check_stream(&sink.packets.join().unwrap(), 0, 50);
        let out = phone.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{scenario}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            denwa.log(),
            kamailio.log()
        );
        if n == 1 {
            assert!(
                started.elapsed() >= Duration::from_secs(8),
                "rang for the step's 8 s before the announcement"
            );
        }
        let calls = denwa.wait_for_calls(n + 1);
        let c = &calls[n];
        assert_eq!(c["line"], "delivery", "{c}");
        assert!(c["answered_by"].is_null(), "{c}");
    }
    assert_eq!(
        kamailio
            .log()
            .matches(&format!(
                "INVITE to {MOBILE} from 0501110002 authenticated as 0501110002"
            ))
            .count(),
        2,
        "{}",
        kamailio.log()
    );
}
