//! Bridge benchmark: denwa rings a staff phone and relays the call's RTP.
//! This program is both sides on loopback: the staff phone `desk` (one SIP
//! socket; it registers with digest and answers every INVITE with 180 then
//! 200) and the callers (one SIP socket; each call dials the ringing line,
//! talks, hangs up). Every bridged call carries 20 ms RTP both ways; each
//! packet carries its stream, sequence and send time in its payload, coded
//! so that it survives PCMA⇄PCMU transcoding, so the far side counts loss,
//! duplicates, misrouting and the latency added through denwa. A few
//! control streams go straight from socket to socket (not through denwa):
//! their latency is this generator's own share.
//!
//! Concurrency rises level by level on one denwa; each level places its
//! calls, holds them `--seconds`, then hangs them all up.
//!
//!     cargo build --release --examples
//!     target/release/examples/bridge_bench [--levels 100,250,500,1000] [--seconds 20]
//!         [--cps 200] [--transcode] [--media-threads 1] [--timeout 900] [--denwa target/release/denwa]

#[path = "bench_common/host.rs"]
mod host;
#[path = "bridge_bench/media.rs"]
mod media;
#[path = "bridge_bench/sip.rs"]
mod sip;
#[path = "bench_common/sip_msg.rs"]
mod sip_msg;
#[path = "bench_common/stamped.rs"]
mod stamped;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use denwa::codec::Codec;
use host::{cpu_ms, guard_denwa, kill_denwa, raise_nofile, rss_kib, set_buffers, watch_denwa, write_prompt};
use media::{Body, Codebook, Incoming, Outgoing, PaceCmd, RecvCmd, RecvReport};
use mio::Registry;
use mio::net::UdpSocket as RtpSocket;
use sip::{Phone, Run};

const PASSWORD: &str = "bench-desk-secret";
/// Control socket pairs (generator to generator, no denwa in between).
const CONTROL_PAIRS: usize = 16;
const CONTROL_BASE: usize = 1 << 30;

pub struct Args {
    levels: Vec<usize>,
    seconds: u64,
    cps: u32,
    transcode: bool,
    timeout: u64,
    /// Seconds to wait after a level's hang-up before reading RSSafter
    /// (denwa keeps finished transactions up to 32 s, RFC 3261 timers).
    settle: u64,
    /// denwa's `[media] threads`.
    media_threads: usize,
    denwa: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        levels: vec![100, 250, 500, 1000],
        seconds: 20,
        cps: 200,
        transcode: false,
        timeout: 900,
        settle: 1,
        media_threads: 1,
        denwa: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/denwa"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--transcode" {
            a.transcode = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--levels" => a.levels = value.split(',').map(|r| r.trim().parse().expect("level")).collect(),
            "--seconds" => a.seconds = value.parse().expect("seconds"),
            "--cps" => a.cps = value.parse().expect("calls per second"),
            "--settle" => a.settle = value.parse().expect("settle seconds"),
            "--timeout" => a.timeout = value.parse().expect("timeout seconds"),
            "--denwa" => a.denwa = value.into(),
            "--media-threads" => a.media_threads = value.parse().expect("media threads"),
            other => panic!(
                "unknown flag {other}; use --levels, --seconds, --cps, --transcode, --media-threads, --settle, --timeout, --denwa"
            ),
        }
    }
    assert!(a.cps > 0 && a.seconds > 0, "--cps and --seconds must be positive");
    // The phone registers once for an hour (denwa's maximum); no refresh.
    assert!(
        a.timeout < 3500,
        "--timeout must stay under the hour the phone is registered for"
    );
    a
}

fn start_denwa(bin: &Path, dir: &Path, port: u16, media_threads: usize) -> Child {
    // RTP ports below the kernel's ephemeral range, so the generator's own
    // sockets never take one denwa wants.
    let config = format!(
        "[sip]\nlisten = \"127.0.0.1:{port}\"\nrtp_ports = \"10000-29999\"\ntrusted_sources = [\"127.0.0.1\"]\n\
digest_algorithms = [\"MD5\", \"SHA-256\"]\n[prompts]\ndir = \".\"\n\
[records]\ncall_log = \"calls.jsonl\"\nstatus = \"status.json\"\n[voicemail]\ndir = \"voicemail\"\n\
[media]\nthreads = {media_threads}\n\
[phones.desk]\npassword_env = \"DESK_PASSWORD\"\nbusy = \"ring\"\n\
[numbers.bench]\nregister = false\nnumber = \"0501119999\"\n[[numbers.bench.rules]]\n\
ring = {{ phones = [\"desk\"], timeout = \"120s\" }}\nannounce = \"short.wav\"\n"
    );
    std::fs::write(dir.join("bench.toml"), config).unwrap();
    write_prompt(&dir.join("short.wav"), 1.0);
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(dir.join("bench.toml"))
        .env("DESK_PASSWORD", PASSWORD)
        .env("DENWA_LOG", "info")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("denwa.log")).unwrap())
        .spawn()
        .expect("denwa binary: run `cargo build --release` first");
    watch_denwa(child.id());
    std::thread::sleep(Duration::from_millis(700));
    child
}

/// One call's RTP sockets: the caller's and the phone's.
pub struct CallMedia {
    pub caller: Arc<RtpSocket>,
    pub phone: Arc<RtpSocket>,
}

/// The sockets the receiver thread reads, registered before any packet is due.
pub struct Media {
    recv: mpsc::Sender<RecvCmd>,
    pace: mpsc::Sender<PaceCmd>,
    registry: Registry,
    pub phone_codec: Codec,
}

impl Media {
    /// A new socket, read by the receiver as `id` (expecting stream `id ^ 1`).
    /// It is announced before any packet for it is due.
    fn listen(&self, id: usize, sender_codec: Codec, receiver_codec: Codec, control: bool) -> Arc<RtpSocket> {
        let mut sock = RtpSocket::bind(([127, 0, 0, 1], 0).into()).expect("a loopback UDP socket (RLIMIT_NOFILE?)");
        self.registry
            .register(&mut sock, mio::Token(id), mio::Interest::READABLE)
            .unwrap();
        let sock = Arc::new(sock);
        let cb = Codebook::new(sender_codec, receiver_codec);
        let incoming = Incoming::new(sock.clone(), id ^ 1, receiver_codec.static_payload_type(), cb, control);
        self.recv.send(RecvCmd::Add(id, Box::new(incoming))).unwrap();
        sock
    }

    /// Two sockets for call `n`: ids 2n (caller) and 2n+1 (phone).
    pub fn new_call(&self, n: usize) -> CallMedia {
        CallMedia {
            caller: self.listen(2 * n, self.phone_codec, Codec::Pcma, false),
            phone: self.listen(2 * n + 1, Codec::Pcma, self.phone_codec, false),
        }
    }

    /// Start sending on call `n`: the caller to denwa's caller leg, the phone
    /// to denwa's phone leg.
    pub fn start_call(&self, n: usize, m: &CallMedia, to_caller_leg: SocketAddr, to_phone_leg: SocketAddr) {
        self.send(2 * n, &m.caller, to_caller_leg, Codec::Pcma, self.phone_codec);
        self.send(2 * n + 1, &m.phone, to_phone_leg, self.phone_codec, Codec::Pcma);
    }

    fn send(&self, id: usize, sock: &Arc<RtpSocket>, dest: SocketAddr, from: Codec, to: Codec) {
        let out = Outgoing::new(
            id,
            sock.clone(),
            dest,
            from.static_payload_type(),
            Body::Stamped(Box::new(Codebook::new(from, to))),
        );
        self.pace.send(PaceCmd::Start(Box::new(out))).unwrap();
    }

    fn start_control(&self) {
        for i in 0..CONTROL_PAIRS {
            let id = CONTROL_BASE + 2 * i;
            let a = self.listen(id, Codec::Pcma, Codec::Pcma, true);
            let b = self.listen(id + 1, Codec::Pcma, Codec::Pcma, true);
            self.send(id, &a, b.local_addr().unwrap(), Codec::Pcma, Codec::Pcma);
            self.send(id + 1, &b, a.local_addr().unwrap(), Codec::Pcma, Codec::Pcma);
        }
    }

    /// Stop every stream; (packets sent, send errors, worst pacing lag).
    fn stop_all(&self) -> (HashMap<usize, u64>, u64, Duration) {
        let (tx, rx) = mpsc::channel();
        self.pace.send(PaceCmd::StopAll(tx)).unwrap();
        rx.recv().unwrap()
    }

    fn finish(&self) -> RecvReport {
        let (tx, rx) = mpsc::channel();
        self.recv.send(RecvCmd::Finish(tx)).unwrap();
        rx.recv().unwrap()
    }
}

struct Row {
    level: usize,
    ok: usize,
    failed: usize,
    setup_p99_ms: f64,
    sent: u64,
    received: u64,
    lost: i64,
    lossy_streams: usize,
    dup: u64,
    misrouted: u64,
    lat_mean_ms: f64,
    lat_p99_ms: f64,
    lat_max_ms: f64,
    ctl_p99_ms: f64,
    /// Relayed packets per second received during the hold (offered: 100 per call).
    pps: f64,
    denwa_core: f64,
    cpu_us_per_packet: f64,
    cpu_ms_per_call_minute: f64,
    gen_core: f64,
    kib_per_call: f64,
    rss_after_kib: u64,
}

fn print_header() {
    println!(
        "{:>5} {:>5} {:>4} {:>7} {:>8} {:>8} {:>5} {:>5} {:>4} {:>4} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>6} {:>8} {:>8}",
        "calls",
        "ok",
        "fail",
        "set99",
        "sent",
        "recv",
        "lost",
        "lossy",
        "dup",
        "misr",
        "latmean",
        "lat_p99",
        "lat_max",
        "ctl_p99",
        "pps",
        "dw%cpu",
        "us/pkt",
        "ms/c-min",
        "gen%",
        "KiB/call",
        "RSSafter"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:>5} {:>5} {:>4} {:>5.1}ms {:>8} {:>8} {:>5} {:>5} {:>4} {:>4} {:>5.3}ms {:>5.3}ms {:>5.1}ms {:>5.3}ms {:>6.0} {:>5.1}% {:>7.2} {:>8.1} {:>5.0}% {:>8.1} {:>5}MiB",
        r.level,
        r.ok,
        r.failed,
        r.setup_p99_ms,
        r.sent,
        r.received,
        r.lost,
        r.lossy_streams,
        r.dup,
        r.misrouted,
        r.lat_mean_ms,
        r.lat_p99_ms,
        r.lat_max_ms,
        r.ctl_p99_ms,
        r.pps,
        r.denwa_core,
        r.cpu_us_per_packet,
        r.cpu_ms_per_call_minute,
        r.gen_core,
        r.kib_per_call,
        r.rss_after_kib / 1024,
    );
}

fn run_level(run: &mut Run, media: &Media, args: &Args, calls: usize, denwa: u32, idle_rss: u64) -> Row {
    let pid = denwa.to_string();
    media.start_control();
    let started = Instant::now();
    run.place_calls(media, calls, args.cps);
    let ramp = Duration::from_secs_f64(calls as f64 / args.cps as f64);
    run.pump(media, started + ramp + Duration::from_secs(30), |r| r.all_settled());
    // Let the last calls' media start before measuring the steady state.
    run.pump(media, Instant::now() + Duration::from_millis(300), |_| false);

    let (cpu0, gen0, recv0, t0) = (cpu_ms(&pid), cpu_ms("self"), media::relayed(), Instant::now());
    run.pump(media, t0 + Duration::from_secs(args.seconds), |_| false);
    let window = t0.elapsed().as_secs_f64();
    let (cpu, gen_cpu) = (cpu_ms(&pid) - cpu0, cpu_ms("self") - gen0);
    let relayed = media::relayed() - recv0;
    let rss = rss_kib(denwa);

    let (sent, send_errors, lag) = media.stop_all();
    run.pump(media, Instant::now() + Duration::from_millis(400), |_| false);
    let report = media.finish();
    run.hang_up_all();
    run.pump(media, Instant::now() + Duration::from_secs(40), |r| r.all_ended());
    run.pump(media, Instant::now() + Duration::from_secs(args.settle), |_| false);
    let rss_after = rss_kib(denwa);

    let relay_sent: u64 = sent.iter().filter(|(id, _)| **id < CONTROL_BASE).map(|(_, n)| n).sum();
    let mut lossy_streams = 0;
    let mut lost = 0i64;
    for s in report.streams.iter().filter(|s| !s.control) {
        let n = sent.get(&s.stream).copied().unwrap_or(0);
        let missing = n as i64 - s.unique as i64;
        if missing != 0 {
            lossy_streams += 1;
        }
        lost += missing;
    }
    let (ok, failed) = run.outcome(&report);
    if send_errors > 0 || lag > Duration::from_millis(10) {
        eprintln!("   (generator: {send_errors} send errors, pacer up to {lag:?} late)");
    }
    let bad: u64 = report.streams.iter().map(|s| s.bad).sum();
    if bad > 0 {
        eprintln!("   ({bad} packets with a wrong payload type or undecodable payload)");
    }
    let relay_received: u64 = report.streams.iter().filter(|s| !s.control).map(|s| s.unique).sum();
    Row {
        level: calls,
        ok,
        failed,
        setup_p99_ms: run.setup_p99_ms(),
        sent: relay_sent,
        received: relay_received,
        lost,
        lossy_streams,
        dup: report.streams.iter().map(|s| s.dup).sum(),
        misrouted: report.streams.iter().map(|s| s.misrouted).sum(),
        lat_mean_ms: report.relay.mean_ms(),
        lat_p99_ms: report.relay.quantile_ms(0.99),
        lat_max_ms: report.relay.max_ms(),
        ctl_p99_ms: report.control.quantile_ms(0.99),
        pps: relayed as f64 / window,
        denwa_core: cpu / (window * 10.0),
        cpu_us_per_packet: cpu * 1000.0 / relayed.max(1) as f64,
        cpu_ms_per_call_minute: cpu / (calls as f64 * window / 60.0),
        gen_core: gen_cpu / (window * 10.0),
        kib_per_call: rss.saturating_sub(idle_rss) as f64 / calls as f64,
        rss_after_kib: rss_after,
    }
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
    assert!(
        (2 * biggest + 2 * CONTROL_PAIRS + 64) as u64 <= nofile && (4 * biggest + 64) as u64 <= nofile,
        "RLIMIT_NOFILE is {nofile}: too low for {biggest} calls"
    );
    guard_denwa(Duration::from_secs(args.timeout));

    let dir = std::env::temp_dir().join(format!("denwa-bridge-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut denwa = start_denwa(&args.denwa, &dir, port, args.media_threads);
    let pid = denwa.id();
    let denwa_addr: SocketAddr = ([127, 0, 0, 1], port).into();

    let phone_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let caller_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&phone_sock, &caller_sock] {
        set_buffers(s, 8 << 20);
    }
    let phone = Phone::register(phone_sock, denwa_addr, PASSWORD).expect("the desk phone registers");

    let (recv_tx, recv_rx) = mpsc::channel();
    let (pace_tx, pace_rx) = mpsc::channel();
    let poll = mio::Poll::new().unwrap();
    let registry = poll.registry().try_clone().unwrap();
    let epoch = Instant::now();
    std::thread::spawn(move || media::receive(poll, recv_rx));
    std::thread::spawn(move || media::pace(pace_rx, epoch));
    let media = Media {
        recv: recv_tx,
        pace: pace_tx,
        registry,
        phone_codec: if args.transcode { Codec::Pcmu } else { Codec::Pcma },
    };
    let mut run = Run::new(phone, caller_sock, denwa_addr, media.phone_codec);
    run.pump(&media, Instant::now() + Duration::from_secs(1), |_| false);
    let idle_rss = rss_kib(pid);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "denwa bridge benchmark: callers offer PCMA, the phone answers {}{}; {} s held per level, calls placed at {}/s",
        media.phone_codec.name(),
        if args.transcode {
            " (denwa transcodes)"
        } else {
            " (no transcoding)"
        },
        args.seconds,
        args.cps
    );
    println!(
        "machine: {} cores shared with other work, load average {}; generator and denwa on the same cores; denwa idle RSS {} KiB",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        idle_rss
    );
    println!(
        "lat = arrival (kernel stamp at our socket) - send time, through denwa; ctl_p99 = the same for streams that bypass denwa;\n\
pps = relayed packets/s received in the hold (offered 100 per call: lower when the pacer falls behind); \
us/pkt and ms/c-min = denwa CPU per relayed packet and per call-minute; KiB/call = (RSS in the hold - idle RSS) / calls; RSSafter = after hang-up"
    );
    print_header();
    for &calls in &args.levels {
        let row = run_level(&mut run, &media, &args, calls, pid, idle_rss);
        print_row(&row);
        let reasons = run.failure_reasons();
        if !reasons.is_empty() {
            println!("      failures: {reasons}");
        }
        if row.failed * 20 > calls {
            println!("stopping: more than 5% of the {calls} calls failed");
            break;
        }
        run.reset();
    }
    let logged = std::fs::read_to_string(dir.join("calls.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    println!(
        "denwa logged {logged} calls; denwa statistics and log: {}",
        dir.join("denwa.log").display()
    );
    kill_denwa(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while denwa.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = denwa.kill();
    let _ = denwa.wait();
}
