//! Voicemail benchmark: many callers leave messages at once while SIPp
//! places announcement calls beside them, on one release denwa per level.
//!
//! Each caller (this program's own SIP UA, one RTP socket each) dials the
//! voicemail line, waits for the beep, speaks its own deterministic,
//! speech-like PCMU stream for `--seconds` at 20 ms and hangs up. Meanwhile
//! SIPp places `--cps` 5 s announcement calls a second on the other line
//! and a sink measures their pacing while the messages are being left.
//! Afterwards every message is looked up in the index (`denwa voicemail
//! list --json`) and its WAV compared sample by sample with the G.711
//! decoding of what its caller sent.
//!
//! denwa runs under `strace -f --seccomp-bpf -T -e trace=fsync,fdatasync`
//! when strace is there: with the seccomp filter only those two calls stop
//! the process (attaching with `-p` would stop every system call of every
//! thread, the media thread's sends included, and disturb the very pacing
//! this measures).
//!
//!     cargo build --release --examples
//!     target/release/examples/voicemail_bench [--levels 50,200,500] [--seconds 30]
//!         [--cps 100] [--place-rate 200] [--timeout 1800] [--denwa target/release/denwa]

#[path = "bench_common/announce.rs"]
mod announce;
#[path = "voicemail_bench/callers.rs"]
mod callers;
#[path = "voicemail_bench/check.rs"]
mod check;
#[path = "bench_common/host.rs"]
mod host;
#[path = "bench_common/stamped.rs"]
mod stamped;
// The bridge benchmark's pacer; its receiver and codebook are not used here.
#[allow(dead_code)]
#[path = "bridge_bench/media.rs"]
mod media;
#[path = "bench_common/sip_msg.rs"]
mod sip_msg;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use callers::{Callers, State};
use check::Comparison;
use host::{cpu_ms, guard_denwa, raise_nofile, set_buffers, watch_denwa, write_prompt};

/// A message may be this far off in length (or start this late) and still pass.
const TOLERANCE_MS: i64 = 20;
/// Announcements before the messages, for the announcement-only CPU rate.
const WARMUP: Duration = Duration::from_secs(8);

struct Args {
    levels: Vec<usize>,
    seconds: u64,
    cps: u32,
    place_rate: u32,
    timeout: u64,
    denwa: PathBuf,
    /// Time fsyncs with strace (it stops denwa's threads at each fsync and thread start).
    fsync_trace: bool,
}

fn args() -> Args {
    let mut a = Args {
        levels: vec![50, 200, 500],
        seconds: 30,
        cps: 100,
        place_rate: 200,
        timeout: 1800,
        denwa: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/denwa"),
        fsync_trace: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--levels" => a.levels = value.split(',').map(|r| r.trim().parse().expect("level")).collect(),
            "--seconds" => a.seconds = value.parse().expect("seconds"),
            "--cps" => a.cps = value.parse().expect("announcement calls per second"),
            "--place-rate" => a.place_rate = value.parse().expect("voicemail calls placed per second"),
            "--timeout" => a.timeout = value.parse().expect("timeout seconds"),
            "--denwa" => a.denwa = value.into(),
            "--fsync-trace" => a.fsync_trace = value != "off",
            other => panic!(
                "unknown flag {other}; use --levels, --seconds, --cps, --place-rate, --timeout, --denwa, --fsync-trace on|off"
            ),
        }
    }
    assert!(
        a.seconds > 0 && a.place_rate > 0,
        "--seconds and --place-rate must be positive"
    );
    a
}

/// bytes written to storage by a process (/proc/PID/io).
fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:")?.trim().parse().ok())
        .unwrap_or(0)
}

fn strace_available() -> bool {
    Command::new("strace")
        .args(["-f", "--seccomp-bpf", "-qq", "-e", "trace=fsync", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running denwa, maybe under strace.
struct Denwa {
    child: Child,
    /// denwa's own pid (the child's child under strace).
    pid: u32,
    trace: Option<PathBuf>,
}

fn start_denwa(bin: &Path, dir: &Path, port: u16, seconds: u64, trace: bool) -> Denwa {
    let config = format!(
        "[sip]\nlisten = \"127.0.0.1:{port}\"\nrtp_ports = \"10000-29999\"\ntrusted_sources = [\"127.0.0.1\"]\n\
[prompts]\ndir = \".\"\n[records]\ncall_log = \"calls.jsonl\"\n[voicemail]\ndir = \"voicemail\"\n\
[numbers.bench]\nregister = false\nnumber = \"0501119999\"\n[[numbers.bench.rules]]\nannounce = \"five.wav\"\n\
[numbers.vm]\nregister = false\nnumber = \"0501118888\"\n[[numbers.vm.rules]]\n\
voicemail = {{ max_length = \"{}s\", min_length = \"1s\", silence = \"5s\" }}\n",
        seconds + 30
    );
    std::fs::write(dir.join("bench.toml"), config).unwrap();
    write_prompt(&dir.join("five.wav"), 5.0);
    let trace_file = trace.then(|| dir.join("fsync.strace"));
    let mut command = match &trace_file {
        Some(file) => {
            let mut c = Command::new("strace");
            c.args(["-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-T"])
                .args(["-e", "trace=fsync,fdatasync", "-o"])
                .arg(file)
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = command
        .args(["run", "--config"])
        .arg(dir.join("bench.toml"))
        .env("DENWA_LOG", "info")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("denwa.log")).unwrap())
        .spawn()
        .expect("denwa binary: run `cargo build --release` first");
    if trace_file.is_some() {
        // Every thread denwa starts waits for strace to take it on; at
        // normal priority strace falls behind denwa's real-time media and
        // nice -10 signalling, recordings' threads start seconds late and
        // their first seconds are lost. Rank the tracer above denwa.
        // SAFETY: plain syscall on our own child.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, child.id(), -19) };
    }
    watch_denwa(child.id());
    std::thread::sleep(Duration::from_millis(1000));
    let pid = if trace_file.is_some() {
        let children = format!("/proc/{0}/task/{0}/children", child.id());
        std::fs::read_to_string(children)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .expect("denwa started under strace")
    } else {
        child.id()
    };
    Denwa {
        child,
        pid,
        trace: trace_file,
    }
}

fn stop_denwa(mut denwa: Denwa) {
    // SAFETY: signalling the process we started, by its pid.
    unsafe { libc::kill(denwa.pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while denwa.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = denwa.child.kill();
    let _ = denwa.child.wait();
    watch_denwa(0);
}

/// The index's messages (`denwa voicemail list --all --json`).
fn listed(bin: &Path, dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(bin)
        .args(["voicemail", "list", "--all", "--json", "--config"])
        .arg(dir.join("bench.toml"))
        .output()
        .expect("denwa voicemail list");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[derive(Default)]
struct Row {
    level: usize,
    answered: usize,
    found: usize,
    lost: usize,
    exact: usize,
    within: usize,
    max_dev_ms: f64,
    max_offset_ms: f64,
    recorded_min: f64,
    an_ok: u64,
    an_failed: u64,
    gap_mean: f64,
    gap_sd: f64,
    gap_max: f64,
    denwa_core: f64,
    ms_per_rec_min: f64,
    disk_mb_s: f64,
    fsync: (usize, f64, f64, f64),
}

fn print_header() {
    println!(
        "{:>5} {:>5} {:>5} {:>4} {:>5} {:>5} {:>7} {:>7} {:>7} {:>6} {:>4} {:>8} {:>7} {:>7} {:>6} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}",
        "msgs",
        "ansd",
        "kept",
        "lost",
        "exact",
        "≤20ms",
        "maxdev",
        "maxhead",
        "rec-min",
        "an_ok",
        "fail",
        "gap_mean",
        "gap_sd",
        "gap_max",
        "dw%cpu",
        "ms/r-min",
        "MB/s",
        "fsyncs",
        "fs_mean",
        "fs_p99",
        "fs_max"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:>5} {:>5} {:>5} {:>4} {:>5} {:>5} {:>5.0}ms {:>5.0}ms {:>7.1} {:>6} {:>4} {:>6.2}ms {:>5.3}ms {:>5.1}ms {:>5.1}% {:>8.1} {:>6.2} {:>6} {:>6.2}ms {:>6.2}ms {:>6.1}ms",
        r.level,
        r.answered,
        r.found,
        r.lost,
        r.exact,
        r.within,
        r.max_dev_ms,
        r.max_offset_ms,
        r.recorded_min,
        r.an_ok,
        r.an_failed,
        r.gap_mean,
        r.gap_sd,
        r.gap_max,
        r.denwa_core,
        r.ms_per_rec_min,
        r.disk_mb_s,
        r.fsync.0,
        r.fsync.1,
        r.fsync.2,
        r.fsync.3,
    );
}

/// Each caller's recording against what it sent; details of the bad ones on stderr.
fn check_messages(bin: &Path, dir: &Path, callers: &Callers, sent: &[Arc<Vec<u8>>], row: &mut Row) -> bool {
    let messages = listed(bin, dir);
    let mut ok = true;
    let mut recorded_samples = 0usize;
    // Every inexact message is named, and the first few within tolerance.
    let mut shown = 0;
    for (c, codes) in callers.calls.iter().zip(sent) {
        let Some(m) = messages
            .iter()
            .find(|m| m["call_id"].as_str() == Some(c.call_id.as_str()))
        else {
            row.lost += 1;
            ok = false;
            eprintln!(
                "   lost: {} ({:?}, {} packets sent)",
                c.call_id, c.state, c.sent_packets
            );
            continue;
        };
        row.found += 1;
        let file = dir.join("voicemail").join(m["file"].as_str().unwrap_or(""));
        let samples = match check::wav_samples(&file) {
            Ok(s) => s,
            Err(e) => {
                ok = false;
                eprintln!("   unreadable: {} {e}", c.call_id);
                continue;
            }
        };
        recorded_samples += samples.len();
        let sent_len = (c.sent_packets as usize * 160).min(codes.len());
        let cmp: Comparison = check::compare(&codes[..sent_len], &samples);
        let indexed_ms = m["duration_ms"].as_u64().unwrap_or(0);
        if indexed_ms.abs_diff(samples.len() as u64 / 8) > 1 {
            ok = false;
            eprintln!(
                "   {}: index says {indexed_ms} ms, the WAV holds {} ms",
                c.call_id,
                samples.len() / 8
            );
        }
        row.exact += usize::from(cmp.exact());
        row.within += usize::from(cmp.close(TOLERANCE_MS));
        row.max_dev_ms = row.max_dev_ms.max(cmp.length_diff.unsigned_abs() as f64 / 8.0);
        row.max_offset_ms = row
            .max_offset_ms
            .max(cmp.offset.map_or(f64::INFINITY, |o| o as f64 / 8.0));
        let close = cmp.close(TOLERANCE_MS);
        ok &= close;
        if !cmp.exact() && (!close || shown < 5) {
            shown += 1;
            eprintln!(
                "   {}: {} sent {} ms, recorded {} ms, starts at {:?} samples into the stream, {} samples differ",
                if close { "within tolerance" } else { "inexact" },
                c.call_id,
                sent_len / 8,
                samples.len() / 8,
                cmp.offset,
                cmp.mismatched
            );
        }
    }
    row.recorded_min = recorded_samples as f64 / 8000.0 / 60.0;
    ok
}

fn run_level(args: &Args, level: usize, trace: bool, pace: &mpsc::Sender<media::PaceCmd>) -> (Row, bool) {
    let dir = std::env::temp_dir().join(format!("denwa-vm-bench-{}-{level}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let denwa = start_denwa(&args.denwa, &dir, port, args.seconds, trace);
    let pid = denwa.pid.to_string();
    let denwa_addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // The announcements: SIPp runs past the messages' end; the sink
    // measures while the messages are being left.
    let stop = Arc::new(AtomicBool::new(false));
    let measure = Arc::new(AtomicBool::new(false));
    let (sink_port, sink) = announce::rtp_sink(stop.clone(), measure.clone());
    let expected = WARMUP.as_secs() + (level as u64).div_ceil(u64::from(args.place_rate)) + args.seconds + 20;
    let sipp = (args.cps > 0).then(|| {
        let (dir, cps, seconds) = (dir.clone(), args.cps, args.seconds as u32);
        let calls = cps * expected as u32;
        std::thread::spawn(move || announce::run_sipp(&dir, port, cps, calls, seconds, sink_port))
    });
    std::thread::sleep(WARMUP - Duration::from_secs(3));
    let (base_cpu0, base_t0) = (cpu_ms(&pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let baseline_ms_per_s = (cpu_ms(&pid) - base_cpu0) / base_t0.elapsed().as_secs_f64();

    let sip_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    set_buffers(&sip_sock, 8 << 20);
    let mut callers = Callers::new(sip_sock, denwa_addr, pace.clone());
    let packets = args.seconds as usize * 50;
    let messages: Vec<Arc<Vec<u8>>> = (0..level).map(|n| Arc::new(check::message(n, packets))).collect();
    let (cpu0, io0, gen0, t0) = (cpu_ms(&pid), write_bytes(denwa.pid), cpu_ms("self"), Instant::now());
    measure.store(true, Ordering::Relaxed);
    callers.place(messages.clone(), args.place_rate);
    let deadline = t0 + Duration::from_secs(args.seconds + 60 + level as u64 / u64::from(args.place_rate));
    callers.pump(deadline);
    measure.store(false, Ordering::Relaxed);
    // The last messages are written and indexed after their BYE.
    let answered = callers
        .calls
        .iter()
        .filter(|c| !matches!(&c.state, State::Failed(why) if why.starts_with("INVITE") || why.starts_with("no answer to INVITE")))
        .count();
    let index_deadline = Instant::now() + Duration::from_secs(30);
    while listed(&args.denwa, &dir).len() < answered && Instant::now() < index_deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let window = t0.elapsed().as_secs_f64();
    let (cpu, written) = (cpu_ms(&pid) - cpu0, write_bytes(denwa.pid).saturating_sub(io0));
    let gen_cpu = cpu_ms("self") - gen0;

    let mut row = Row {
        level,
        answered,
        ..Row::default()
    };
    let mut ok = check_messages(&args.denwa, &dir, &callers, &messages, &mut row);
    let reasons = callers.failure_reasons();
    if !reasons.is_empty() {
        ok = false;
        eprintln!("   callers not done: {reasons}");
    }
    let heard_after_beep: u32 = callers.calls.iter().map(|c| c.after_beep).sum();
    if heard_after_beep > 0 {
        eprintln!("   (denwa sent {heard_after_beep} RTP packets to callers while they spoke)");
    }
    callers.reset();

    if let Some(sipp) = sipp {
        let result = sipp.join().unwrap();
        (row.an_ok, row.an_failed) = (result.ok, result.failed);
    }
    stop.store(true, Ordering::Relaxed);
    let gaps = sink.join().unwrap();
    (row.gap_mean, row.gap_sd, row.gap_max) = (gaps.mean, gaps.stdev(), gaps.max);
    row.denwa_core = cpu / (window * 10.0);
    let net_cpu = cpu - baseline_ms_per_s * window;
    row.ms_per_rec_min = net_cpu / row.recorded_min.max(1e-9);
    row.disk_mb_s = written as f64 / window / 1e6;
    let trace_file = denwa.trace.clone();
    stop_denwa(denwa);
    if let Some(file) = trace_file {
        row.fsync = check::summary(check::fsync_times_ms(
            &std::fs::read_to_string(file).unwrap_or_default(),
        ));
    }
    eprintln!(
        "   ({level} messages: window {window:.1} s, denwa {cpu:.0} ms CPU in it (announcements alone {baseline_ms_per_s:.0} ms/s), this generator {gen_cpu:.0} ms; {:.1} MB written; dir {})",
        written as f64 / 1e6,
        dir.display()
    );
    if ok {
        let _ = std::fs::remove_dir_all(&dir);
    }
    (row, ok)
}

fn main() {
    let args = args();
    assert!(
        args.denwa.exists(),
        "{} not found: run `cargo build --release` first",
        args.denwa.display()
    );
    let nofile = raise_nofile();
    let biggest = args.levels.iter().max().copied().unwrap_or(0);
    let announced = args.cps as usize * 6;
    assert!(
        (4 * (biggest + announced) + 256) as u64 <= nofile,
        "RLIMIT_NOFILE is {nofile}: too low for {biggest} messages beside {announced} announcement calls"
    );
    guard_denwa(Duration::from_secs(args.timeout));
    let trace = args.fsync_trace && strace_available();
    let (pace_tx, pace_rx) = mpsc::channel();
    let epoch = Instant::now();
    std::thread::spawn(move || media::pace(pace_rx, epoch));

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "denwa voicemail benchmark: {} s PCMU messages left at once (placed at {}/s) beside {} announcement calls/s; a fresh denwa per level",
        args.seconds, args.place_rate, args.cps
    );
    println!(
        "machine: {} cores shared with other work, load average {}; SIPp, callers and denwa on the same cores; fsync times {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        if trace {
            "from strace --seccomp-bpf"
        } else {
            "not measured (no strace)"
        }
    );
    println!(
        "ansd = answered, kept = in the index, exact = every sample as sent; maxdev = worst length difference, maxhead = worst late start;\n\
gap_* = announcement RTP pacing while the messages were left; dw%cpu = denwa in that window; ms/r-min = denwa CPU above the\n\
announcement-only rate per recorded minute; MB/s = denwa's write_bytes over the window; fsyncs over the level (denwa's whole run)"
    );
    print_header();
    let mut all_ok = true;
    for &level in &args.levels {
        let (row, ok) = run_level(&args, level, trace, &pace_tx);
        print_row(&row);
        if !ok {
            println!("      {level} messages: not all kept within {TOLERANCE_MS} ms (details above)");
        }
        all_ok &= ok;
    }
    if !all_ok {
        std::process::exit(1);
    }
}
