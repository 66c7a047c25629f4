//! The harness the interop tests share: the real denwa binary on a temporary
//! config, SIPp runs against it, and a UDP sink for denwa's RTP.
#![allow(dead_code)] // each test file uses its own part of the harness

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use denwa::media::rtp::read_header;

mod capture;
mod mail;
// Each test file uses its own part of the harness.
#[allow(unused_imports)]
pub use capture::*;
#[allow(unused_imports)]
pub use mail::*;

/// Each denwa under test gets its own RTP port block, so tests run in parallel.
static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_tone(path: &Path, rate: u32, channels: u16, seconds: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * rate as f64).round() as usize {
        let v = (0.3 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate as f64).sin() * 32767.0) as i16;
        for _ in 0..channels {
            w.write_sample(v).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// The interop tests run only inside a private network namespace (see
/// scripts/test): there, the only interfaces are its loopback and the test
/// hosts the tests create (named `dw…`), so nothing can reach a real network.
pub fn assert_private_network() {
    let devices = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let foreign: Vec<&str> = devices
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|name| *name != "lo" && !name.starts_with("dw"))
        .collect();
    assert!(
        foreign.is_empty(),
        "the interop tests must run in a private network namespace, and this one has {foreign:?}: run scripts/test"
    );
}

pub struct Denwa {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// The address it listens on.
    pub ip: String,
    /// A shell snippet run (in `dir`) in a mount namespace of denwa's own
    /// before it starts; `None`: denwa runs as is. See [`Denwa::start_with_mounts`].
    mounts: Option<String>,
}

/// Appended to a test's config unless it has a `[voicemail]` table of its
/// own: the default (../var/voicemail) would be shared by every test.
const OWN_MESSAGE_BOX: &str = "\n[voicemail]\ndir = \"voicemail\"\n";

impl Denwa {
    /// Start the release-built binary on a fresh config with these numbers:
    /// `five` (a 5.00 s prompt recorded at 44.1 kHz stereo), `short` (1 s),
    /// `slow` (rings 5 s before answering).
    pub fn start(name: &str) -> Denwa {
        Denwa::start_with(name, "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n", "", &[])
    }

    /// `sip_extra` goes into `[sip]` (it must start with the `[sip]` header
    /// line or be empty), `extra` is appended (provider, numbers), `env` is
    /// given to the process (passwords).
    pub fn start_with(name: &str, sip_extra: &str, extra: &str, env: &[(&str, &str)]) -> Denwa {
        Denwa::start_listening_on(name, "127.0.0.1", sip_extra, extra, env)
    }

    /// As [`start_with`](Self::start_with), listening on `listen_ip` (a test
    /// host of [`test_hosts`], for peers that refuse loopback).
    pub fn start_listening_on(
        name: &str,
        listen_ip: &str,
        sip_extra: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Denwa {
        assert_private_network();
        let dir = std::env::temp_dir().join(format!("denwa-interop-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_tone(&dir.join("five.wav"), 44_100, 2, 5.0);
        write_tone(&dir.join("short.wav"), 16_000, 1, 1.0);
        let port = UdpSocket::bind((listen_ip, 0)).unwrap().local_addr().unwrap().port();
        let block = 30_000 + NEXT_BLOCK.fetch_add(1, Ordering::SeqCst) * 200;
        let config = format!(
            r#"
{sip_extra}
listen = "{listen_ip}:{port}"
rtp_ports = "{block}-{last}"
[prompts]
dir = "."
[records]
call_log = "calls.jsonl"
status = "status.json"
[numbers.five]
register = false
number = "0501110005"
[[numbers.five.rules]]
announce = "five.wav"
[numbers.short]
register = false
number = "0501110006"
[[numbers.short.rules]]
announce = "short.wav"
[numbers.slow]
register = false
number = "0501110007"
[[numbers.slow.rules]]
announce = "short.wav"
answer_after = "5s"
{extra}
"#,
            sip_extra = if sip_extra.is_empty() { "[sip]" } else { sip_extra },
            extra = if extra.contains("[voicemail]") {
                extra.to_string()
            } else {
                format!("{extra}{OWN_MESSAGE_BOX}")
            },
            last = block + 199
        );
        std::fs::write(dir.join("shop.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("denwa.log")).unwrap();
        let child = spawn_denwa(&dir, env, None, log);
        let denwa = Denwa {
            child,
            port,
            dir,
            ip: listen_ip.to_string(),
            mounts: None,
        };
        denwa.wait_ready();
        denwa
    }

    /// As [`start_with`](Self::start_with), but denwa runs in a mount
    /// namespace of its own where the shell snippet `mounts` ran first (in
    /// the test's folder), e.g. `mount -t tmpfs -o size=300k tmpfs vm`.
    /// What it mounts is seen through [`Denwa::own_view`].
    pub fn start_with_mounts(name: &str, sip_extra: &str, extra: &str, mounts: &str) -> Denwa {
        let mut denwa = Denwa::start_with(name, sip_extra, "", &[]);
        // Restart on the real config, inside the namespace.
        let _ = denwa.child.kill();
        let _ = denwa.child.wait();
        let mut config = std::fs::read_to_string(denwa.dir.join("shop.toml")).unwrap();
        if extra.contains("[voicemail]") {
            config = config.replace(OWN_MESSAGE_BOX, "");
        }
        std::fs::write(denwa.dir.join("shop.toml"), format!("{config}\n{extra}")).unwrap();
        denwa.mounts = Some(mounts.to_string());
        let log = std::fs::File::create(denwa.dir.join("denwa.log")).unwrap();
        denwa.child = spawn_denwa(&denwa.dir, &[], denwa.mounts.as_deref(), log);
        denwa.wait_ready();
        denwa
    }

    /// `path` as the running denwa sees it (through its own mounts).
    pub fn own_view(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id())).join(path.strip_prefix("/").unwrap_or(path))
    }

    /// A `denwa` CLI command that sees what the running denwa sees.
    pub fn cli(&self) -> Command {
        match &self.mounts {
            None => Command::new(env!("CARGO_BIN_EXE_denwa")),
            Some(_) => {
                let mut cmd = Command::new("nsenter");
                cmd.args([
                    "-t",
                    &self.child.id().to_string(),
                    "-m",
                    "--",
                    env!("CARGO_BIN_EXE_denwa"),
                ]);
                cmd
            }
        }
    }

    /// Kill denwa without warning (SIGKILL: no shutdown, as a crash or a
    /// power cut), then start it again on the same folder and config.
    pub fn crash_and_restart(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("denwa.log"))
            .unwrap();
        self.child = spawn_denwa(&self.dir, env, self.mounts.as_deref(), log);
        self.wait_ready();
    }

    /// Poll with OPTIONS until denwa answers.
    fn wait_ready(&self) {
        let probe = UdpSocket::bind((self.ip.as_str(), 0)).unwrap();
        probe.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let local = probe.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 0;
        while Instant::now() < deadline {
            n += 1;
            let options = format!(
                "OPTIONS sip:ping@{ip}:{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{n}\r\n\
From: <sip:probe@{local}>;tag=p\r\nTo: <sip:ping@{ip}>\r\nCall-ID: ready-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                self.port,
                ip = self.ip
            );
            probe
                .send_to(options.as_bytes(), (self.ip.as_str(), self.port))
                .unwrap();
            let mut buf = [0u8; 2048];
            if let Ok(len) = probe.recv(&mut buf)
                && buf[..len].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!("denwa did not come up; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("denwa.log")).unwrap_or_default()
    }

    pub fn call_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Wait until the call log has `n` lines (it is written as calls end).
    pub fn wait_for_calls(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = self.call_log();
            if calls.len() >= n || Instant::now() > deadline {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run one SIPp scenario against this denwa and require it to pass.
    pub fn sipp(&self, scenario: &str, service: &str, keys: &[(&str, String)]) {
        self.sipp_to(
            &format!("127.0.0.1:{}", self.port),
            "127.0.0.1",
            scenario,
            service,
            keys,
        );
    }

    /// Run SIPp against this denwa from a fixed local port (a phone registers
    /// from the port it later answers on); `server`: as a UAS, no target.
    fn sipp_command(&self, scenario: &str, port: u16, server: bool, keys: &[(&str, String)]) -> Command {
        let mut cmd = Command::new("sipp");
        if !server {
            cmd.arg(format!("{}:{}", self.ip, self.port));
        }
        cmd.arg("-sf")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(scenario))
            .args(["-m", "1", "-i", &self.ip, "-mi", &self.ip, "-nostdin"])
            .args(["-p", &port.to_string(), "-mp", &free_udp_port().to_string()])
            .args(["-timeout", "40s", "-timeout_error", "-trace_err"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        cmd
    }

    /// A UAC scenario from `port`, to completion.
    pub fn sipp_from_port(&self, scenario: &str, port: u16, keys: &[(&str, String)]) -> std::process::Output {
        self.sipp_command(scenario, port, false, keys)
            .output()
            .expect("sipp is installed")
    }

    /// A UAS scenario on `port`, in the background (wait for it with `wait_with_output`).
    pub fn spawn_sipp_uas(&self, scenario: &str, port: u16, keys: &[(&str, String)]) -> Child {
        self.sipp_command(scenario, port, true, keys)
            .spawn()
            .expect("sipp is installed")
    }

    /// Run SIPp from `local_ip` against `target` (denwa, or a proxy in front of it).
    pub fn sipp_to(&self, target: &str, local_ip: &str, scenario: &str, service: &str, keys: &[(&str, String)]) {
        self.sipp_to_with_media_port(target, local_ip, scenario, service, keys, free_udp_port());
    }

    /// As [`sipp`](Self::sipp), with SIPp's RTP on `media_port` (to capture what it receives).
    pub fn sipp_with_media_port(&self, scenario: &str, service: &str, keys: &[(&str, String)], media_port: u16) {
        let target = format!("127.0.0.1:{}", self.port);
        self.sipp_to_with_media_port(&target, "127.0.0.1", scenario, service, keys, media_port);
    }

    fn sipp_to_with_media_port(
        &self,
        target: &str,
        local_ip: &str,
        scenario: &str,
        service: &str,
        keys: &[(&str, String)],
        media_port: u16,
    ) {
        let mut cmd = Command::new("sipp");
        cmd.arg(target)
            .arg("-sf")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(scenario))
            .args(["-s", service, "-m", "1", "-i", local_ip, "-mi", local_ip, "-nostdin"])
            .args(["-p", &free_udp_port().to_string(), "-mp", &media_port.to_string()])
            .args(["-timeout", "40s", "-timeout_error", "-trace_err"])
            .arg("-error_file")
            .arg(self.dir.join(format!("{scenario}.errors.log")))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        let out = cmd.output().expect("sipp is installed (Debian package sip-tester)");
        assert!(
            out.status.success(),
            "sipp {scenario} failed ({}):\n{}\nsipp errors:\n{}\ndenwa log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join(format!("{scenario}.errors.log"))).unwrap_or_default(),
            self.log()
        );
    }
}

/// Starts denwa on `dir`'s shop.toml, logging to `log`; with `mounts`, in
/// a mount namespace of its own after that snippet ran (unshare execs the
/// shell, which execs denwa: one pid throughout).
fn spawn_denwa(dir: &Path, env: &[(&str, &str)], mounts: Option<&str>, log: std::fs::File) -> Child {
    let denwa = env!("CARGO_BIN_EXE_denwa");
    let mut cmd = match mounts {
        None => Command::new(denwa),
        Some(snippet) => {
            let mut cmd = Command::new("unshare");
            cmd.current_dir(dir);
            cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(format!("{snippet} && exec \"$0\" \"$@\""))
                .arg(denwa);
            cmd
        }
    };
    cmd.args(["run", "--config"])
        .arg(dir.join("shop.toml"))
        .envs(env.iter().copied())
        .env("DENWA_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Denwa {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

/// Receives denwa's RTP in a thread while SIPp drives the call.
pub struct RtpSink {
    pub port: u16,
    pub packets: std::thread::JoinHandle<Vec<(Instant, Vec<u8>)>>,
}

impl RtpSink {
    /// The SIPp keys for announce.xml: offer one G.711 codec, RTP to this sink.
    pub fn keys(&self, payload_type: u8, codec: &str) -> [(&'static str, String); 3] {
        [
            ("rtp_port", self.port.to_string()),
            ("codec_pt", payload_type.to_string()),
            ("codec_name", codec.to_string()),
        ]
    }

    pub fn start() -> RtpSink {
        RtpSink::start_until_quiet_for(Duration::from_millis(1500))
    }

    /// Collect until the stream has been quiet for `idle` (a hold is longer
    /// than the usual end-of-stream pause).
    pub fn start_until_quiet_for(idle: Duration) -> RtpSink {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let packets = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            // Wait up to 15 s for the first packet, then until `idle` of silence.
            socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            while let Ok(n) = socket.recv(&mut buf) {
                got.push((Instant::now(), buf[..n].to_vec()));
                socket.set_read_timeout(Some(idle)).unwrap();
            }
            got
        });
        RtpSink { port, packets }
    }
}

pub fn check_stream(packets: &[(Instant, Vec<u8>)], payload_type: u8, expected: usize) {
    assert!(
        packets.len().abs_diff(expected) <= 2,
        "{} RTP packets, expected {expected} ± 2",
        packets.len()
    );
    let first = read_header(&packets[0].1).expect("valid RTP");
    assert!(first.1, "marker bit on the first packet");
    for (n, (_, p)) in packets.iter().enumerate() {
        let (pt, mark, seq, ts, ssrc, len) = read_header(p).expect("valid RTP");
        assert_eq!((pt, ssrc, len), (payload_type, first.4, 160), "packet {n}");
        assert_eq!(mark, n == 0, "packet {n} marker");
        assert_eq!(seq, first.2.wrapping_add(n as u16), "sequence continuous at packet {n}");
        assert_eq!(
            ts,
            first.3.wrapping_add(160 * n as u32),
            "timestamp continuous at packet {n}"
        );
    }
    let span = packets.last().unwrap().0 - packets[0].0;
    let ideal = Duration::from_millis(20 * (packets.len() as u64 - 1));
    let drift = span.abs_diff(ideal);
    assert!(
        drift < Duration::from_millis(100),
        "stream took {span:?}, ideal {ideal:?}"
    );
}

/// The test hosts of [`test_link`]: this namespace's end, and the far end
/// (a namespace of its own, see [`spawn_on_test_host`]).
pub const NEAR_HOST: &str = "10.77.0.1";
pub const FAR_HOST: &str = "10.77.0.2";

/// A veth pair inside the private namespace: `dw0` (10.77.0.1/24) here, and
/// `dw1` waiting for [`spawn_on_test_host`] to take it. For peers that pick
/// a non-loopback interface for their Contact and SDP. Nothing leaves: the
/// pair's ends are only ever in namespaces we create.
pub fn test_link() {
    // Never add links to a real network namespace.
    assert_private_network();
    if Path::new("/sys/class/net/dw0").exists() {
        // Left over by an earlier test whose far host still runs: start afresh.
        let _ = Command::new("ip").args(["link", "del", "dw0"]).status();
    }
    for args in [
        "link add dw0 type veth peer name dw1".to_string(),
        format!("addr add {NEAR_HOST}/24 dev dw0"),
        "link set dw0 up".to_string(),
    ] {
        let out = Command::new("ip")
            .args(args.split(' '))
            .output()
            .expect("ip is installed (Debian package iproute2)");
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Run `program` on a host of its own: a new network namespace whose only
/// interfaces are its loopback and `dw1` of [`test_link`] as 10.77.0.2/24.
/// `setup` sets its stdio, directory and so on. The namespace (and the veth
/// pair with it) goes away when the program exits.
pub fn spawn_on_test_host(program: &str, args: &[&std::ffi::OsStr], setup: impl FnOnce(&mut Command)) -> Child {
    let script = format!(
        "until ip link show dw1 >/dev/null 2>&1; do sleep 0.05; done; \
         ip link set lo up && ip addr add {FAR_HOST}/24 dev dw1 && ip link set dw1 up && exec \"$0\" \"$@\""
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", "sh", "-c", &script, program]).args(args);
    setup(&mut cmd);
    // unshare execs the shell, which execs the program: one pid throughout.
    let mut child = cmd.spawn().expect("unshare is installed (Debian package util-linux)");
    // Move the link only once the child is in its new namespace.
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let theirs = format!("/proc/{}/ns/net", child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(&theirs).is_ok_and(|ns| ns == ours) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = Command::new("ip")
        .args(["link", "set", "dw1", "netns", &child.id().to_string()])
        .output()
        .expect("ip");
    if !out.status.success() {
        let _ = child.kill();
        panic!("moving dw1 to the test host: {}", String::from_utf8_lossy(&out.stderr));
    }
    child
}

/// The RTP payloads of a pcap file (Ethernet, IPv4, UDP, RTP without CSRCs).
pub fn pcap_payloads(path: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).expect("sip-tester's pcaps are installed");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &data[at + 16..at + 16 + len];
        let ip_header = ((frame[14] & 0x0f) as usize) * 4;
        out.push(frame[14 + ip_header + 8 + 12..].to_vec());
        at += 16 + len;
    }
    out
}
