//! baresip (Debian package) as a real softphone on a staff line: it
//! registers with denwa with digest, and when a caller rings the delivery
//! line it answers by itself and the two talk, each with its own tone.
//!
//! baresip picks a non-loopback interface for its Contact and SDP, and its
//! RTP socket is unbound, so it runs on a test host of its own: a network
//! namespace holding one end of a veth pair (10.77.0.2), the other end
//! (10.77.0.1, denwa) in the private namespace of scripts/test, where the
//! SIPp caller and its RTP use 127.0.0.1.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Denwa, FAR_HOST, NEAR_HOST, spawn_on_test_host, test_link};
use denwa::media::g711;
use denwa::media::rtp::read_header;

const DESK_PASSWORD: &str = "desk-secret-7";
/// What baresip says (its audio source), and what the caller says.
const PHONE_HZ: f64 = 440.0;
const CALLER_HZ: f64 = 1000.0;
/// How long the caller talks: 2.5 s of 20 ms PCMA packets.
const CALLER_PACKETS: usize = 125;

/// A caller that offers only PCMA at `[rtp_port]` (the test's own socket),
/// stays on the line for 4 s, then hangs up.
const CALLER_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="caller talks from the test's socket, then hangs up">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Courier" <sip:0901234567@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [rtp_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=ptime:20
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Courier" <sip:0901234567@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="4000"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Courier" <sip:0901234567@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// baresip as the desk phone, killed when dropped.
struct Baresip {
    child: Child,
    dir: PathBuf,
}

impl Baresip {
    /// Start baresip headless on `ip`, registering as desk with denwa; it
    /// says a `PHONE_HZ` tone and dumps what it sent and heard.
    fn start(denwa: &Denwa) -> Baresip {
        require_baresip();
        let dir = denwa.dir.join("baresip");
        std::fs::create_dir_all(dir.join("dumps")).unwrap();
        write_tone(&dir.join("says.wav"), PHONE_HZ, 30.0);
        let ip = FAR_HOST;
        // Its own namespace: any port is free there.
        let port = 5060;
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\n\
                 sip_listen {ip}:{port}\n\
                 net_interface dw1\n\
                 audio_source aufile,{says}\n\
                 audio_player aubridge,nowhere\n\
                 audio_alert aubridge,nowhere\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module aufile.so\n\
                 module aubridge.so\n\
                 module sndfile.so\n\
                 snd_path {dumps}\n\
                 module_app account.so\n\
                 module_app menu.so\n",
                says = dir.join("says.wav").display(),
                dumps = dir.join("dumps").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:desk@{}:{}>;auth_pass={DESK_PASSWORD};regint=60;answermode=auto\n",
                denwa.ip, denwa.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        // -s: the SIP trace, to see which digest it answered with.
        let child = spawn_on_test_host("baresip", &["-s".as_ref(), "-f".as_ref(), dir.as_os_str()], |cmd| {
            cmd.current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
        });
        Baresip { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        // SIGTERM lets it close its dumps; SIGKILL if it hangs.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dump in `dir` whose name ends with `suffix` (`-enc.wav`: what
/// baresip sent, `-dec.wav`: what it heard), as samples.
fn dump(dir: &Path, suffix: &str, baresip_log: &str) -> Vec<f64> {
    let dumps: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        dumps.len(),
        1,
        "one {suffix} dump: {dumps:?}\nbaresip log:\n{baresip_log}"
    );
    let mut reader = hound::WavReader::open(&dumps[0]).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels), (8000, 1), "{:?}", dumps[0]);
    reader.samples::<i16>().map(|s| f64::from(s.unwrap())).collect()
}

/// A test that needs a real peer fails, never skips, when it is missing.
fn require_baresip() {
    let found = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    let modules = ["g711", "aufile", "aubridge", "sndfile", "account", "menu"];
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| !Path::new(&format!("/usr/lib/baresip/modules/{m}.so")).exists())
        .collect();
    assert!(
        found && missing.is_empty(),
        "this test needs baresip and its modules {missing:?}: run  sudo apt-get install -y baresip  (scripts/test installs it when run as root)"
    );
}

/// An 8 kHz mono tone, as baresip's aufile source reads it.
fn write_tone(path: &Path, hz: f64, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * 8000.0) as usize {
        w.write_sample(tone_sample(hz, i)).unwrap();
    }
    w.finalize().unwrap();
}

fn tone_sample(hz: f64, i: usize) -> i16 {
    (0.3 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin() * 32767.0) as i16
}

/// The caller's media: the test's socket, the RTP address in the caller's
/// SDP. Once denwa's first packet arrives it talks back to where that came
/// from (denwa's port for the caller), a `CALLER_HZ` tone in PCMA, and it
/// keeps every payload it heard.
struct CallerMedia {
    port: u16,
    heard: JoinHandle<Vec<Vec<u8>>>,
}

impl CallerMedia {
    fn start() -> CallerMedia {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let heard = std::thread::spawn(move || {
            let mut heard = Vec::new();
            let mut buf = [0u8; 2048];
            socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let Ok((n, denwa)) = socket.recv_from(&mut buf) else {
                return heard;
            };
            heard.push(buf[..n].to_vec());
            socket.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
            let started = Instant::now();
            let mut sent = 0;
            let mut last_heard = Instant::now();
            while last_heard.elapsed() < Duration::from_millis(1500) || sent < CALLER_PACKETS {
                if sent < CALLER_PACKETS && started.elapsed() >= Duration::from_millis(20 * sent as u64) {
                    socket.send_to(&caller_packet(sent), denwa).unwrap();
                    sent += 1;
                }
                if let Ok((n, from)) = socket.recv_from(&mut buf)
                    && from == denwa
                {
                    heard.push(buf[..n].to_vec());
                    last_heard = Instant::now();
                }
            }
            heard
        });
        CallerMedia { port, heard }
    }
}

/// Packet `n` of the caller's PCMA tone.
fn caller_packet(n: usize) -> Vec<u8> {
    let mut p = vec![0x80, 8 | if n == 0 { 0x80 } else { 0 }];
    p.extend_from_slice(&(1000 + n as u16).to_be_bytes());
    p.extend_from_slice(&(160 * n as u32).to_be_bytes());
    p.extend_from_slice(&0x0c0f_fee0_u32.to_be_bytes());
    p.extend((0..160).map(|i| g711::linear_to_alaw(tone_sample(CALLER_HZ, 160 * n + i))));
    p
}

/// The power of one frequency in `samples` (Goertzel), per sample.
fn tone_power(samples: &[f64], hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (samples.len() as f64).powi(2)
}

/// `samples` carry clearly audible `hz` for at least `min_seconds`, far
/// above the other side's tone.
fn assert_tone(what: &str, samples: &[f64], hz: f64, other_hz: f64, min_seconds: f64) {
    let loud: Vec<f64> = samples.iter().copied().filter(|s| s.abs() > 1000.0).collect();
    assert!(
        loud.len() as f64 > min_seconds * 8000.0 * 0.5,
        "{what}: {} of {} samples audible, wanted about {min_seconds} s of tone",
        loud.len(),
        samples.len()
    );
    let (wanted, other) = (tone_power(samples, hz), tone_power(samples, other_hz));
    assert!(
        wanted > 100.0 * other,
        "{what}: {hz} Hz power {wanted:.1}, {other_hz} Hz {other:.1}"
    );
}

fn wait_for_log(denwa: &Denwa, baresip: &Baresip, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !denwa.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in denwa's log:\n{}\nbaresip log:\n{}",
            denwa.log(),
            baresip.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn baresip_registers_with_digest_answers_the_delivery_line_and_both_sides_hear_each_other() {
    test_link();
    let (denwa_ip, phone_ip) = (NEAR_HOST, FAR_HOST);
    let denwa = Denwa::start_listening_on(
        "baresip",
        denwa_ip,
        "[sip]\ntrusted_sources = [\"127.0.0.0/8\", \"10.77.0.0/24\"]\ndigest_algorithms = [\"MD5\"]\n",
        "[phones.desk]\npassword_env = \"DESK_PASSWORD\"\n\
[numbers.delivery]\nregister = false\nnumber = \"0501110002\"\n\
[[numbers.delivery.rules]]\nring = { phones = [\"desk\"], timeout = \"10s\" }\nannounce = \"short.wav\"\n",
        &[("DESK_PASSWORD", DESK_PASSWORD)],
    );
    let baresip = Baresip::start(&denwa);
    wait_for_log(&denwa, &baresip, "staff phone registered");
    let registered = denwa
        .log()
        .lines()
        .find(|l| l.contains("staff phone registered"))
        .unwrap()
        .to_string();
    assert!(registered.contains("phone=desk"), "{registered}");
    assert!(
        registered.contains(phone_ip),
        "the Contact names baresip's test host: {registered}"
    );
    // Challenged first, with MD5 only: baresip 1.0.0 (Debian 12's libre)
    // gives up on a 401 that carries any SHA-256 challenge, even after an
    // MD5 one ("Register: Function not implemented").
    let trace = baresip.log();
    assert!(trace.contains("SIP/2.0 401"), "denwa challenged:\n{trace}");
    let authorization = trace
        .lines()
        .find(|l| l.starts_with("Authorization: Digest"))
        .unwrap_or_else(|| panic!("baresip answered the challenge:\n{trace}"));
    assert!(
        authorization.contains("username=\"desk\"") && !authorization.contains("SHA-256"),
        "{authorization}"
    );

    let media = CallerMedia::start();
    let scenario = denwa.dir.join("caller_talks_from_the_test.xml");
    std::fs::write(&scenario, CALLER_SCENARIO).unwrap();
    denwa.sipp_to(
        &SocketAddr::new(denwa_ip.parse().unwrap(), denwa.port).to_string(),
        "127.0.0.1",
        scenario.to_str().unwrap(),
        "delivery",
        &[("rtp_port", media.port.to_string())],
    );
    let heard = media.heard.join().unwrap();

    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    eprintln!("call log: {c}");
    assert_eq!(c["answered_by"], "desk", "{c}");
    assert_eq!(c["hung_up_by"], "caller", "{c}");
    let leg = &c["legs"][0];
    assert_eq!(leg["result"], "answered", "{c}");
    assert!(leg["contact"].as_str().unwrap().contains(phone_ip), "{c}");

    // The caller heard baresip: its tone, relayed as the PCMA it offered.
    assert!(
        heard.len() >= 150,
        "{} packets reached the caller: {c}\nbaresip log:\n{}\ndenwa log:\n{}",
        heard.len(),
        baresip.log(),
        denwa.log()
    );
    assert!(
        heard.iter().all(|p| read_header(p).is_some_and(|h| h.0 == 8)),
        "all PCMA"
    );
    let caller_heard: Vec<f64> = heard
        .iter()
        .flat_map(|p| p[12..].iter().map(|&a| f64::from(g711::alaw_to_linear(a))))
        .collect();
    assert_tone("what the caller heard", &caller_heard, PHONE_HZ, CALLER_HZ, 2.5);

    // baresip heard the caller, and said its own tone (its dumps are
    // complete once the call is over and baresip has stopped).
    let dumps = baresip.dir.join("dumps");
    let trace = baresip.log();
    drop(baresip);
    assert_tone(
        "what baresip heard",
        &dump(&dumps, "-dec.wav", &trace),
        CALLER_HZ,
        PHONE_HZ,
        2.0,
    );
    assert_tone(
        "what baresip said",
        &dump(&dumps, "-enc.wav", &trace),
        PHONE_HZ,
        CALLER_HZ,
        2.5,
    );

    // denwa's own figures agree: both legs carried audio both ways.
    let figures = |audio: &serde_json::Value| {
        (
            audio["packets_received"].as_u64().unwrap_or(0),
            audio["packets_sent"].as_u64().unwrap_or(0),
        )
    };
    let (from_caller, to_caller) = figures(&c["audio"]);
    let (from_phone, to_phone) = figures(&leg["audio"]);
    assert!(from_caller >= CALLER_PACKETS as u64 - 2, "{c}");
    assert!(to_phone >= CALLER_PACKETS as u64 - 2, "{c}");
    assert!(from_phone >= 150 && to_caller >= 150, "{c}");
}
