//! The owner changes the rules while calls keep coming: a steady stream of
//! SIPp calls while `denwa mode` flips a line between ringing the desk and
//! announcing only, and the config file is edited (once well, once badly).
//! No call fails; each call follows the rules in force when it arrived. Runs inside a private network namespace (scripts/test).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Denwa, free_udp_port};

/// Normally the line rings the desk (which is busy, so the announcement
/// follows); in the `busy` mode it only announces.
const RULES: &str = "[shop]\nmodes = [\"busy\"]\n\
[phones.desk]\npassword_env = \"DESK_PASSWORD\"\nbusy = \"ring\"\n\
[numbers.flip]\nregister = false\nnumber = \"0501110009\"\n\
[[numbers.flip.rules]]\nwhen = { mode = \"busy\" }\nannounce = \"short.wav\"\nrepeat = 2\n\
[[numbers.flip.rules]]\nring = { phones = [\"desk\"], timeout = \"10s\" }\nannounce = \"short.wav\"\n";

/// SIPp runs a scenario from a fixed local port (a phone's registered address).
fn sipp_on(denwa: &Denwa, scenario: &str, port: u16, server: bool, extra: &[&str]) -> Command {
    let mut cmd = Command::new("sipp");
    if !server {
        cmd.arg(format!("127.0.0.1:{}", denwa.port));
    }
    cmd.arg("-sf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(scenario))
        .args(["-i", "127.0.0.1", "-nostdin", "-p", &port.to_string()])
        .args(["-mp", &free_udp_port().to_string()])
        .args(extra)
        .current_dir(&denwa.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn mode(denwa: &Denwa, setting: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_denwa"))
        .args(["mode", "--config"])
        .arg(denwa.dir.join("shop.toml"))
        .args(["flip", setting])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "denwa mode flip {setting}");
}

/// Save the config the way editors do: a new file renamed over the old.
fn save_config(denwa: &Denwa, text: &str) {
    let tmp = denwa.dir.join(".shop.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, denwa.dir.join("shop.toml")).unwrap();
}

#[test]
fn rules_and_modes_change_under_a_steady_stream_of_calls_and_no_call_fails() {
    let denwa = Denwa::start_with(
        "policy-live",
        // SIPp answers only the first challenge it sees: offer MD5 first.
        "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\ndigest_algorithms = [\"MD5\", \"SHA-256\"]\n",
        RULES,
        &[("DESK_PASSWORD", "phone-secret-1")],
    );
    // The desk phone registers, then stays busy for every call it is rung with.
    let phone_port = free_udp_port();
    let registered = sipp_on(
        &denwa,
        "phone_register.xml",
        phone_port,
        false,
        &["-m", "1", "-timeout", "10s"],
    )
    .output()
    .unwrap();
    assert!(registered.status.success(), "the phone registers: {}", denwa.log());
    let mut phone = sipp_on(&denwa, "phone_busy.xml", phone_port, true, &["-m", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let config = std::fs::read_to_string(denwa.dir.join("shop.toml")).unwrap();
    // 5 calls a second for 12 s, each hearing a 1 s (or 2 s) announcement.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sipp = Command::new("sipp")
        .arg(format!("127.0.0.1:{}", denwa.port))
        .arg("-sf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/announce.xml"))
        .args(["-s", "flip", "-r", "5", "-m", "60", "-i", "127.0.0.1", "-nostdin"])
        .args(["-p", &free_udp_port().to_string(), "-mp", &free_udp_port().to_string()])
        .args(["-key", "rtp_port", &sink.local_addr().unwrap().port().to_string()])
        .args(["-key", "codec_pt", "0", "-key", "codec_name", "PCMU"])
        .args(["-timeout", "60s", "-timeout_error", "-trace_err"])
        .arg("-error_file")
        .arg(denwa.dir.join("stream.errors.log"))
        .current_dir(&denwa.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is installed");
    std::thread::sleep(Duration::from_secs(2));
    mode(&denwa, "busy");
    std::thread::sleep(Duration::from_secs(2));
    mode(&denwa, "normal");
    std::thread::sleep(Duration::from_secs(2));
    // A new first rule for this caller, saved by rename: it takes over.
    let edited = config.replace(
        "[[numbers.flip.rules]]\nwhen = { mode",
        "[[numbers.flip.rules]]\nwhen = { caller = [\"0901234567\"] }\nannounce = \"short.wav\"\n\n[[numbers.flip.rules]]\nwhen = { mode",
    );
    assert_ne!(edited, config);
    save_config(&denwa, &edited);
    std::thread::sleep(Duration::from_secs(2));
    // A broken edit is refused; the rules in force stay.
    save_config(
        &denwa,
        &edited.replace("announce = \"short.wav\"\n\n", "announce = \"missing.wav\"\n\n"),
    );
    let out = sipp.wait_with_output().unwrap();
    let _ = phone.kill();
    let _ = phone.wait();
    assert!(
        out.status.success(),
        "a call failed while the rules changed:\n{}\n{}\ndenwa log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(denwa.dir.join("stream.errors.log")).unwrap_or_default(),
        denwa.log()
    );
    let calls = denwa.wait_for_calls(60);
    assert_eq!(calls.len(), 60);
    // In arrival order: ringing (the catch-all), announcing only (the busy
    // mode), ringing again, then the new caller rule to the end (the broken
    // edit changed nothing).
    // "flip: rule 2 (always) matched; rule 1 (mode busy) not: …" → "always".
    let rule_of = |c: &serde_json::Value| -> String {
        let why = c["why"].as_str().unwrap_or("");
        let matched = why.split(';').next().unwrap_or("");
        let inner = matched.split('(').nth(1).unwrap_or("");
        inner.split(')').next().unwrap_or("").to_string()
    };
    let mut phases: Vec<String> = Vec::new();
    let mut sorted = calls.clone();
    sorted.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    for c in &sorted {
        let r = rule_of(c);
        if phases.last() != Some(&r) {
            phases.push(r);
        }
    }
    let whys: Vec<&str> = sorted.iter().map(|c| c["why"].as_str().unwrap_or("")).collect();
    assert_eq!(
        phases,
        ["always", "mode busy", "always", "caller 0901234567"],
        "rules in force, in order: {whys:#?}"
    );
    // Ringing rang the (busy) desk; the busy mode rang nobody.
    for c in &sorted {
        let rang = c["legs"].as_array().map(Vec::len).unwrap_or(0);
        match rule_of(c).as_str() {
            "always" => assert_eq!(c["legs"][0]["result"], "busy", "{c}"),
            _ => assert_eq!(rang, 0, "{c}"),
        }
    }
    let log = denwa.log();
    assert!(log.contains("missing.wav"), "the broken edit is reported");
    assert!(
        log.contains("NOT reloaded") || log.contains("not reloaded"),
        "and refused"
    );
}
