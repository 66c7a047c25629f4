//! The announcement load beside other benchmarks: SIPp places 5 s
//! announcement calls at a rate (tests/sipp/announce.xml) and a sink here
//! receives every stream and measures its pacing.

// Each benchmark includes this file and uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use denwa::media::rtp::read_header;

use crate::host::{cpu_ms, set_buffers};
use crate::stamped::{STAMPED_BATCH, StampedBatch, enable_timestamps};

/// Inter-packet gap statistics over all streams (Welford).
#[derive(Default)]
pub struct Gaps {
    pub count: u64,
    pub mean: f64,
    m2: f64,
    pub max: f64,
    pub over_40ms: u64,
    pub packets: u64,
    pub lost: u64,
    pub streams: u64,
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
    pub fn stdev(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }
}

/// Receives every RTP stream on one port and measures arrival gaps per SSRC
/// while `measure` is set.
///
/// The sink sleeps 1 ms between rounds and then drains its socket with
/// `recvmmsg`, taking each packet's arrival time from the kernel
/// (`SO_TIMESTAMPNS`, stamped when loopback delivers it). A sink blocked in
/// `recv` would be woken for every packet, and on loopback that wake-up (an
/// inter-processor interrupt, a VM exit here) runs on the *sender's* thread:
/// it was about 15 % of denwa's media thread in `perf`, a cost of this
/// harness that a real network card never charges the sender.
pub fn rtp_sink(stop: Arc<AtomicBool>, measure: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<Gaps>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    set_buffers(&socket, 64 << 20);
    enable_timestamps(&socket);
    let port = socket.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut gaps = Gaps::default();
        let mut last: HashMap<u32, (u16, f64)> = HashMap::new();
        let mut batch = StampedBatch::new();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
            loop {
                let n = batch.recv(socket.as_raw_fd()).unwrap_or(0);
                for i in 0..n {
                    let (packet, at_ns) = batch.get(i);
                    let at_ms = at_ns as f64 / 1e6;
                    let Some((_, _, seq, _, ssrc, _)) = read_header(packet) else {
                        continue;
                    };
                    gaps.packets += 1;
                    match last.insert(ssrc, (seq, at_ms)) {
                        None => gaps.streams += 1,
                        Some((prev_seq, prev_at)) => {
                            let step = seq.wrapping_sub(prev_seq);
                            if !measure.load(Ordering::Relaxed) {
                                continue;
                            }
                            if step == 1 {
                                gaps.add(at_ms - prev_at);
                            } else if step > 1 && step < 1000 {
                                gaps.lost += step as u64 - 1;
                            }
                        }
                    }
                }
                if n < STAMPED_BATCH {
                    break;
                }
            }
        }
        gaps
    });
    (port, handle)
}

fn column(header: &[&str], row: &[&str], name: &str) -> u64 {
    header
        .iter()
        .position(|h| *h == name)
        .and_then(|i| row.get(i)?.parse().ok())
        .unwrap_or(0)
}

pub fn run_sipp(dir: &Path, port: u16, rate: u32, calls: u32, seconds: u32, rtp_port: u16) -> SippResult {
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
        cpu = cpu_ms(&pid.to_string());
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

pub struct SippResult {
    pub ok: u64,
    pub failed: u64,
    pub retransmissions: u64,
    pub max_concurrent: u64,
    pub cpu_ms: f64,
}
