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
//!
//! Each rate runs twice on the same denwa: first the measured run (CPU,
//! memory, pacing, failures) with nothing capturing, then a short run at the
//! same rate while dumpcap captures, for the latency alone. A capture taps
//! every packet on `lo`: the kernel clones each RTP packet to run the
//! capture's filter on it, in the sender's time, which was 6–7 % of denwa's
//! media thread when both ran together.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use announce::{rtp_sink, run_sipp};
use host::{cpu_ms, raise_nofile, udp_receive_buffer_drops, write_prompt};

#[path = "bench_common/announce.rs"]
mod announce;
#[path = "bench_common/host.rs"]
mod host;
#[path = "bench_common/stamped.rs"]
mod stamped;

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

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
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

/// Seconds of calls in the latency run after each measured run.
const LATENCY_SECONDS: u32 = 3;

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

/// CPU time of the calling thread, in ms.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// What the kernel alone charges the sender for one 5 s announcement's RTP
/// on this machine, now: 250 RTP-sized datagrams sent from each of `sockets`
/// sockets (registered in an epoll set, as denwa's are) to the sink, in a
/// loop that does nothing else. denwa's CPU per call can come near this,
/// never below it.
fn kernel_floor_ms_per_call(sockets: usize) -> f64 {
    const ROUNDS: usize = 50;
    let stop = Arc::new(AtomicBool::new(false));
    let (sink_port, sink) = rtp_sink(stop.clone(), Arc::new(AtomicBool::new(false)));
    let to: std::net::SocketAddr = ([127, 0, 0, 1], sink_port).into();
    let poll = mio::Poll::new().unwrap();
    let senders: Vec<mio::net::UdpSocket> = (0..sockets)
        .map(|i| {
            let mut s = mio::net::UdpSocket::bind(([127, 0, 0, 1], 0).into()).unwrap();
            poll.registry()
                .register(&mut s, mio::Token(i), mio::Interest::READABLE)
                .unwrap();
            s
        })
        .collect();
    let mut packet = [0u8; 172];
    packet[0] = 0x80;
    let started = thread_cpu_ms();
    for round in 0..ROUNDS {
        packet[2..4].copy_from_slice(&(round as u16).to_be_bytes());
        for (i, s) in senders.iter().enumerate() {
            packet[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            let _ = s.send_to(&packet, to);
        }
    }
    let per_packet = (thread_cpu_ms() - started) / (ROUNDS * sockets) as f64;
    stop.store(true, Ordering::Relaxed);
    let _ = sink.join();
    per_packet * 250.0
}

fn main() {
    let args = args();
    raise_nofile();
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
        write_prompt(&dir.join("five.wav"), 5.0);
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut denwa = start_denwa(&args.denwa, &dir, port);
        let pid = denwa.id();
        let rss_idle = status_kib(pid, "VmRSS:");
        let cpu_before = cpu_ms(&pid.to_string());

        let stop = Arc::new(AtomicBool::new(false));
        let (rtp_port, sink) = rtp_sink(stop.clone(), Arc::new(AtomicBool::new(true)));
        let calls = rate * args.seconds;
        let started = Instant::now();
        let drops_before = udp_receive_buffer_drops();
        let sipp = run_sipp(&dir, port, rate, calls, args.seconds, rtp_port);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let gaps = sink.join().unwrap();
        let drops = udp_receive_buffer_drops() - drops_before;
        let cpu = cpu_ms(&pid.to_string()) - cpu_before;
        let peak = status_kib(pid, "VmHWM:");

        // The latency run: the same rate, captured, not measured otherwise.
        let mut lat = Vec::new();
        if sipp.failed == 0 {
            let stop = Arc::new(AtomicBool::new(false));
            let (rtp_port, sink) = rtp_sink(stop.clone(), Arc::new(AtomicBool::new(false)));
            let capture = start_capture(&dir, port);
            run_sipp(&dir, port, rate, rate * LATENCY_SECONDS, LATENCY_SECONDS, rtp_port);
            lat = capture.map(|c| latencies_from_capture(&dir, c)).unwrap_or_default();
            stop.store(true, Ordering::Relaxed);
            let _ = sink.join();
        }
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
        if drops > 0 {
            // rtp_lost counts what the sink never saw; a receiver that fell
            // behind its socket loses packets denwa did send.
            eprintln!("   ({drops} datagrams dropped on this machine by full receive buffers during the run)");
        }
        eprintln!(
            "   (kernel floor: {:.2} ms of CPU per call for its RTP alone, sent from {} sockets by a loop doing nothing else)",
            kernel_floor_ms_per_call(sipp.max_concurrent.max(1) as usize),
            sipp.max_concurrent.max(1)
        );
        if sipp.failed > 0 || sipp.ok < calls as u64 {
            println!("stopping: {rate} cps had failed or missing calls");
            break;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
