//! Writing RTP as pcap for SIPp to play, and capturing what a peer received.

use super::*;

/// One RTP packet of a pcap file: when (from the first record) and the
/// whole RTP packet (header and payload).
pub type TimedRtp = (Duration, Vec<u8>);

/// The RTP packets of a pcap file (Ethernet, IPv4, UDP), with their times.
pub fn pcap_rtp(path: &Path) -> Vec<TimedRtp> {
    pcap_udp(path).into_iter().map(|(at, _, _, rtp)| (at, rtp)).collect()
}

/// Each UDP datagram of a pcap file: time from the first record, source
/// port, destination port, payload.
pub fn pcap_udp(path: &Path) -> Vec<(Duration, u16, u16, Vec<u8>)> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut at = 24;
    let mut first = None;
    while at + 16 <= data.len() {
        let word = |i: usize| u32::from_le_bytes(data[at + i..at + i + 4].try_into().unwrap());
        let when = Duration::from_secs(u64::from(word(0))) + Duration::from_micros(u64::from(word(4)));
        let len = word(8) as usize;
        if at + 16 + len > data.len() {
            break;
        }
        let frame = &data[at + 16..at + 16 + len];
        at += 16 + len;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
            continue;
        }
        let udp = 14 + ((frame[14] & 0x0f) as usize) * 4;
        let first = *first.get_or_insert(when);
        out.push((
            when - first,
            u16::from_be_bytes([frame[udp], frame[udp + 1]]),
            u16::from_be_bytes([frame[udp + 2], frame[udp + 3]]),
            frame[udp + 8..].to_vec(),
        ));
    }
    out
}

/// Writes RTP packets as a pcap file SIPp can play (`play_pcap_audio`):
/// Ethernet, IPv4 and UDP around each, timed as given.
pub fn write_rtp_pcap(path: &Path, packets: &[TimedRtp]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    for (at, rtp) in packets {
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1];
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(rtp);
        out.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&at.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

/// An RTP packet: version 2, no CSRC, no extension.
pub fn rtp_packet(payload_type: u8, marker: bool, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Packet capture on the namespace's loopback (tshark), for what a peer
/// received. Stopped and read with [`Capture::stop`].
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Captures UDP datagrams matching the BPF `filter` into `file` (pcap).
    pub fn start(filter: &str, file: &Path) -> Capture {
        assert_private_network();
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-q", "-F", "pcap", "-f", filter, "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark is installed (Debian package tshark)");
        // Wait until it captures ("Capturing on 'Loopback: lo'").
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0);
            assert!(n > 0, "tshark ended before capturing");
            if line.contains("Capturing on") {
                break;
            }
        }
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Capture {
            child,
            file: file.to_path_buf(),
        }
    }

    /// Stops (SIGINT: tshark flushes the file) and returns the datagrams.
    pub fn stop(mut self) -> Vec<(Duration, u16, u16, Vec<u8>)> {
        // Let it take what the kernel still holds for it.
        std::thread::sleep(Duration::from_millis(700));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        pcap_udp(&self.file)
    }
}
