//! Load benchmark: SIPp places 5 s announcement calls at rising rates against
//! a release build of denwa on loopback; an RTP sink here receives every
//! stream and measures its pacing. Each rate is bounded in calls and time;
//! the run stops at the first rate with a failed call.
//!
//!     cargo build --release && cargo run --release --example loadtest -- [--rates 50,100,200] [--seconds 10]
//!
//! Needs `sipp` (Debian: sip-tester) and, for INVITE→200 latency at
//! microsecond resolution (SIPp's own is whole milliseconds), `dumpcap` and
//! `tshark` (Debian: tshark), which capture the SIP port only.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use denwa::media::rtp::read_header;

struct Args {
    rates: Vec<u32>,
    seconds: u32,
    denwa: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        rates: vec![50, 100, 200, 300, 400, 500, 600],
        seconds: 10,
        denwa: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/denwa"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--rates" => a.rates = value.split(',').map(|r| r.trim().parse().expect("rate")).collect(),
            "--seconds" => a.seconds = value.parse().expect("seconds"),
            "--denwa" => a.denwa = value.into(),
            other => panic!("unknown flag {other}; use --rates, --seconds, --denwa"),
        }
    }
    a
}

/// Inter-packet gap statistics over all streams (Welford).
#[derive(Default)]
struct Gaps {
    count: u64,
    mean: f64,
    m2: f64,
    max: f64,
    over_40ms: u64,
    packets: u64,
    lost: u64,
    streams: u64,
}

impl Gaps {
    fn add(&mut self, ms: f64) {
        self.count += 1;
        let d = ms - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (ms - self.mean);
        self.max = self.max.max(ms);
        if ms > 40.0 {
            self.over_40ms += 1;
        }
    }
    fn stdev(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }
}

/// Receives every RTP stream on one port and measures arrival gaps per SSRC.
fn rtp_sink(stop: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<Gaps>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let size: libc::c_int = 64 << 20;
    // SAFETY: setting an int socket option on a socket we own. The kernel caps
    // it at net.core.rmem_max; FORCE (as root) lifts that cap.
    unsafe {
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = socket.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut gaps = Gaps::default();
        let mut last: HashMap<u32, (u16, Instant)> = HashMap::new();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            let at = Instant::now();
            let Some((_, _, seq, _, ssrc, _)) = read_header(&buf[..n]) else {
                continue;
            };
            gaps.packets += 1;
            match last.insert(ssrc, (seq, at)) {
                None => gaps.streams += 1,
                Some((prev_seq, prev_at)) => {
                    let step = seq.wrapping_sub(prev_seq);
                    if step == 1 {
                        gaps.add((at - prev_at).as_secs_f64() * 1000.0);
                    } else if step > 1 && step < 1000 {
                        gaps.lost += step as u64 - 1;
                    }
                }
            }
        }
        gaps
    });
    (port, handle)
}

/// (utime + stime) in ms for a process, all threads; and VmRSS/VmHWM in KiB.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1000.0 / hz
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn write_prompt(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..40_000 {
        let v = 0.3 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin();
        w.write_sample((v * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn start_denwa(bin: &Path, dir: &Path, port: u16) -> Child {
    let config = format!(
        "[sip]\nlisten = \"127.0.0.1:{port}\"\nrtp_ports = \"20000-39999\"\ntrusted_sources = [\"127.0.0.1\"]\n[prompts]\ndir = \".\"\n\
[records]\ncall_log = \"calls.jsonl\"\n[voicemail]\ndir = \"voicemail\"\n[numbers.bench]\nnumber = \"0501119999\"\n[[numbers.bench.rules]]\nannounce = \"five.wav\"\n"
    );
    std::fs::write(dir.join("bench.toml"), config).unwrap();
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(dir.join("bench.toml"))
        .env("DENWA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("denwa.log")).unwrap())
        .spawn()
        .expect("denwa binary: run `cargo build --release` first");
    std::thread::sleep(Duration::from_millis(500));
    child
}

struct SippResult {
    ok: u64,
    failed: u64,
    retransmissions: u64,
    max_concurrent: u64,
    cpu_ms: f64,
}

/// Capture the SIP port (never RTP) while the calls run.
fn start_capture(dir: &Path, port: u16) -> Option<Child> {
    let child = Command::new("dumpcap")
        .args(["-q", "-i", "lo", "-f", &format!("udp port {port}"), "-B", "64", "-w"])
        .arg(dir.join("sip.pcapng"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // dumpcap needs a moment before it captures.
    std::thread::sleep(Duration::from_millis(1500));
    Some(child)
}

/// INVITE → 200 OK latency per call, in ms, from the capture.
fn latencies_from_capture(dir: &Path, mut capture: Child) -> Vec<f64> {
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").args(["-INT", &capture.id().to_string()]).status();
    let _ = capture.wait();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(dir.join("sip.pcapng"))
        .args([
            "-Y",
            "sip.CSeq.method == \"INVITE\"",
            "-T",
            "fields",
            "-E",
            "separator=;",
        ])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "sip.Call-ID",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .output();
    let Ok(out) = out else { return Vec::new() };
    let mut invites: HashMap<String, f64> = HashMap::new();
    let mut latencies = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split(';').collect();
        let (Some(t), Some(id)) = (f.first().and_then(|t| t.parse::<f64>().ok()), f.get(1)) else {
            continue;
        };
        match (f.get(2).copied().unwrap_or(""), f.get(3).copied().unwrap_or("")) {
            ("INVITE", _) => {
                invites.entry(id.to_string()).or_insert(t);
            }
            (_, "200") => {
                if let Some(sent) = invites.remove(*id) {
                    latencies.push((t - sent) * 1000.0);
                }
            }
            _ => {}
        }
    }
    latencies
}

fn column(header: &[&str], row: &[&str], name: &str) -> u64 {
    header
        .iter()
        .position(|h| *h == name)
        .and_then(|i| row.get(i)?.parse().ok())
        .unwrap_or(0)
}

fn run_sipp(dir: &Path, port: u16, rate: u32, calls: u32, seconds: u32, rtp_port: u16) -> SippResult {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/announce.xml");
    let mut child = Command::new("sipp")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", "bench", "-i", "127.0.0.1", "-nostdin"])
        .args([
            "-r",
            &rate.to_string(),
            "-m",
            &calls.to_string(),
            "-l",
            &(rate * 20).to_string(),
        ])
        .args([
            "-key",
            "rtp_port",
            &rtp_port.to_string(),
            "-key",
            "codec_pt",
            "0",
            "-key",
            "codec_name",
            "PCMU",
        ])
        .args(["-timeout", &format!("{}s", seconds + 40), "-max_socket", "1000"])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian: sip-tester)");
    let pid = child.id();
    let mut cpu = 0.0;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        cpu = cpu_ms(pid);
        std::thread::sleep(Duration::from_millis(100));
    }
    let stat = std::fs::read_to_string(dir.join("stat.csv")).unwrap_or_default();
    let mut lines = stat.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(';').collect()).collect();
    let last = rows.last().cloned().unwrap_or_default();
    let max_concurrent = rows
        .iter()
        .map(|r| column(&header, r, "CurrentCall"))
        .max()
        .unwrap_or(0);
    SippResult {
        ok: column(&header, &last, "SuccessfulCall(C)"),
        failed: column(&header, &last, "FailedCall(C)"),
        retransmissions: column(&header, &last, "Retransmissions(C)"),
        max_concurrent,
        cpu_ms: cpu,
    }
}

fn main() {
    let args = args();
    assert!(
        args.denwa.exists(),
        "{} not found: run `cargo build --release` first",
        args.denwa.display()
    );
    println!(
        "denwa load benchmark: 5.00 s announcement calls, PCMU, {} s of calls per rate",
        args.seconds
    );
    println!(
        "{:>5} {:>6} {:>6} {:>7} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8}",
        "cps",
        "ok",
        "fail",
        "retrans",
        "conc",
        "lat_mean",
        "lat_p99",
        "cpu/call",
        "sipp/cl",
        "peakRSS",
        "KiB/call",
        "gap_mean",
        "gap_sd",
        "gap_max",
        ">40ms",
        "rtp_lost"
    );
    for rate in args.rates {
        let dir = std::env::temp_dir().join(format!("denwa-bench-{}-{rate}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_prompt(&dir.join("five.wav"));
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut denwa = start_denwa(&args.denwa, &dir, port);
        let pid = denwa.id();
        let rss_idle = status_kib(pid, "VmRSS:");
        let cpu_before = cpu_ms(pid);

        let stop = Arc::new(AtomicBool::new(false));
        let (rtp_port, sink) = rtp_sink(stop.clone());
        let calls = rate * args.seconds;
        let capture = start_capture(&dir, port);
        let started = Instant::now();
        let sipp = run_sipp(&dir, port, rate, calls, args.seconds, rtp_port);
        let mut lat = capture.map(|c| latencies_from_capture(&dir, c)).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let gaps = sink.join().unwrap();
        let cpu = cpu_ms(pid) - cpu_before;
        let peak = status_kib(pid, "VmHWM:");
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let _ = denwa.wait();
        let denwa_retransmissions = std::fs::read_to_string(dir.join("denwa.log"))
            .unwrap_or_default()
            .split("retransmissions_sent: ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
            .unwrap_or(0);

        lat.sort_by(|a, b| a.total_cmp(b));
        let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
        let p99 = lat.get((lat.len() as f64 * 0.99) as usize).copied().unwrap_or(f64::NAN);
        let done = (sipp.ok + sipp.failed).max(1) as f64;
        println!(
            "{:>5} {:>6} {:>6} {:>7} {:>6} {:>7.2}ms {:>7.2}ms {:>6.2}ms {:>6.2}ms {:>6}MiB {:>8.1} {:>6.2}ms {:>6.3}ms {:>6.1}ms {:>7} {:>8}",
            rate,
            sipp.ok,
            sipp.failed,
            sipp.retransmissions,
            sipp.max_concurrent,
            mean,
            p99,
            cpu / done,
            sipp.cpu_ms / done,
            peak / 1024,
            (peak.saturating_sub(rss_idle)) as f64 / sipp.max_concurrent.max(1) as f64,
            gaps.mean,
            gaps.stdev(),
            gaps.max,
            gaps.over_40ms,
            gaps.lost,
        );
        eprintln!(
            "   ({rate} cps: {} latency samples, denwa retransmitted {denwa_retransmissions}, {} streams, {} RTP packets received, run took {:.1} s; denwa log {})",
            lat.len(),
            gaps.streams,
            gaps.packets,
            started.elapsed().as_secs_f64(),
            dir.join("denwa.log").display()
        );
        if sipp.failed > 0 || sipp.ok < calls as u64 {
            println!("stopping: {rate} cps had failed or missing calls");
            break;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
