//! What the benchmarks read of a process and set on themselves: CPU and
//! memory from /proc, the open-file limit, socket buffers, a test prompt.

// Each benchmark includes this file and uses part of it.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// (utime + stime) in ms of a process, all threads.
pub fn cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1000.0 / hz
}

/// Datagrams the kernel dropped, machine-wide, because a UDP socket's
/// receive buffer was full (`RcvbufErrors` in /proc/net/snmp).
pub fn udp_receive_buffer_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Up to the hard limit: 1,000 calls are 2,000 sockets here and 4,000 in
/// denwa, which inherits the limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/set of our own limit through a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

pub fn set_buffers(socket: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: setting int socket options on a socket we own; the kernel caps
    // them at net.core.{r,w}mem_max unless FORCE is allowed (root).
    unsafe {
        for opt in [
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
        ] {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &bytes as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

pub fn write_prompt(path: &Path, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * 8000.0) as u32 {
        let v = 0.3 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin();
        w.write_sample((v * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// The denwa under test (or strace around it), for the watchdog and the panic hook.
static DENWA_PID: AtomicU32 = AtomicU32::new(0);

/// Remember the process to kill when the benchmark dies or overruns (0: none).
pub fn watch_denwa(pid: u32) {
    DENWA_PID.store(pid, Ordering::SeqCst);
}

pub fn kill_denwa(signal: libc::c_int) {
    let pid = DENWA_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: signalling the child we started, by its pid.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }
}

/// Kill denwa and exit after `timeout`, and kill it on a panic.
pub fn guard_denwa(timeout: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("global timeout of {timeout:?} reached: killing denwa and stopping");
        kill_denwa(libc::SIGKILL);
        std::process::exit(2);
    });
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_denwa(libc::SIGKILL);
        default_hook(info);
    }));
}
