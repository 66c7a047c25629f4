//! The endpoint's decisions on a virtual clock.

use super::*;
use crate::codec::Codec;

const SDP_PEER: &str = "192.0.2.10:4000";
const NAT_PEER: &str = "192.0.2.10:61000";
const PROXY: &str = "198.51.100.1";

fn peer(direction: Direction) -> Peer {
    Peer {
        remote: SDP_PEER.parse().unwrap(),
        signalling_source: PROXY.parse().unwrap(),
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
        direction,
        ssrc: 0x5555,
        first_sequence: 100,
        first_timestamp: 8000,
        rtp_timeout: Duration::from_secs(10),
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend(0x7777u32.to_be_bytes());
    p.extend(payload);
    p
}

fn connected(t0: Instant) -> Endpoint {
    let mut e = Endpoint::new(30000, t0);
    e.connect(peer(Direction::SendRecv), t0);
    e
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn rtp_watch_arms_after_the_first_packet_and_fires_once() {
    let t0 = Instant::now();
    let mut w = RtpWatch::new(Duration::from_secs(10));
    assert_eq!(
        w.poll_timeout(),
        None,
        "no RTP yet: a peer that never sends is not timed out"
    );
    assert_eq!(w.handle_timeout(t0 + Duration::from_secs(60)), None);
    w.on_rtp(t0);
    w.on_rtp(t0 + ms(20));
    assert_eq!(w.poll_timeout(), Some(t0 + ms(10_020)));
    assert_eq!(w.handle_timeout(t0 + ms(10_000)), None, "not yet");
    assert_eq!(w.handle_timeout(t0 + ms(10_020)), Some(Duration::from_secs(10)));
    assert_eq!(w.poll_timeout(), None, "reported once");
    assert_eq!(w.handle_timeout(t0 + ms(30_000)), None);
    // RTP resumes: armed again.
    w.on_rtp(t0 + ms(40_000));
    assert_eq!(w.poll_timeout(), Some(t0 + ms(50_000)));
}

#[test]
fn rtp_watch_sleeps_on_hold_and_restarts_after_it() {
    let t0 = Instant::now();
    let mut w = RtpWatch::new(Duration::from_secs(10));
    w.on_rtp(t0);
    w.set_held(true, t0 + ms(1000));
    assert_eq!(w.poll_timeout(), None);
    assert_eq!(w.handle_timeout(t0 + Duration::from_secs(120)), None);
    w.set_held(false, t0 + Duration::from_secs(120));
    assert_eq!(
        w.poll_timeout(),
        Some(t0 + Duration::from_secs(130)),
        "a fresh wait after the hold"
    );
    let mut off = RtpWatch::new(Duration::ZERO);
    off.on_rtp(t0);
    assert_eq!(off.poll_timeout(), None, "zero switches it off");
}

#[test]
fn symmetric_rtp_learns_only_from_trusted_hosts() {
    let t0 = Instant::now();
    let mut e = connected(t0);
    assert_eq!(e.send_to(), Some(SDP_PEER.parse().unwrap()));
    let stranger = "203.0.113.9:4000".parse().unwrap();
    assert_eq!(e.handle_rtp(t0, stranger, &rtp(0, 1, 0, &[0; 160])), Inbound::Ignored);
    assert_eq!(
        e.send_to(),
        Some(SDP_PEER.parse().unwrap()),
        "a stranger cannot hijack the stream"
    );
    let nat = NAT_PEER.parse().unwrap();
    assert_eq!(
        e.handle_rtp(t0, nat, &rtp(0, 1, 0, &[0; 160])),
        Inbound::Audio { header: 12 }
    );
    assert_eq!(e.send_to(), Some(nat));
    assert!(e.learned);
    // The SIP source host may also send (a media-handling proxy).
    let proxy = SocketAddr::new(PROXY.parse().unwrap(), 7000);
    assert_eq!(
        e.handle_rtp(t0, proxy, &rtp(0, 2, 160, &[0; 160])),
        Inbound::Audio { header: 12 }
    );
    assert_eq!(e.send_to(), Some(proxy));
    assert_eq!(e.stats().packets_received, 2);
}

#[test]
fn packets_we_did_not_agree_on_are_ignored() {
    let t0 = Instant::now();
    let from = SDP_PEER.parse().unwrap();
    let mut unconnected = Endpoint::new(30000, t0);
    assert_eq!(
        unconnected.handle_rtp(t0, from, &rtp(0, 1, 0, &[0; 160])),
        Inbound::Ignored
    );
    let mut e = connected(t0);
    assert_eq!(
        e.handle_rtp(t0, from, &rtp(8, 1, 0, &[0; 160])),
        Inbound::Ignored,
        "PCMA not agreed"
    );
    assert_eq!(e.handle_rtp(t0, from, &[0x80, 0, 1]), Inbound::Ignored, "short");
    let mut with_extension = rtp(0, 1, 0, &[0, 0, 0, 1, 9, 9, 9, 9, 0xAB]);
    with_extension[0] |= 0x10;
    assert_eq!(e.handle_rtp(t0, from, &with_extension), Inbound::Audio { header: 20 });
    assert_eq!(
        e.poll_timeout(),
        Some(e.rtcp_due.unwrap()),
        "the RTCP report comes before the 10 s timeout"
    );
}

#[test]
fn dtmf_is_reported_once_and_the_timeout_becomes_an_event() {
    let t0 = Instant::now();
    let from = SDP_PEER.parse().unwrap();
    let mut e = connected(t0);
    for (i, (end, duration)) in [(false, 160u16), (false, 320), (true, 400), (true, 400), (true, 400)]
        .into_iter()
        .enumerate()
    {
        let d = duration.to_be_bytes();
        let payload = [7, if end { 0x8A } else { 0x0A }, d[0], d[1]];
        let kind = e.handle_rtp(t0 + ms(20 * i as u64), from, &rtp(101, i as u16, 1600, &payload));
        assert_eq!(kind, Inbound::TelephoneEvent { header: 12 });
    }
    assert_eq!(
        e.poll_event(),
        Some(MediaEvent::Dtmf {
            port: 30000,
            digit: '7',
            duration: ms(50)
        })
    );
    assert_eq!(e.poll_event(), None);
    // Silence: the report timer fires along the way, the timeout once, at 10 s after the last packet.
    let mut at = t0;
    while let Some(next) = e.poll_timeout() {
        if next > t0 + Duration::from_secs(60) {
            break;
        }
        at = next;
        e.handle_timeout(at);
        if let Some(event) = e.poll_event() {
            assert_eq!(
                event,
                MediaEvent::RtpTimeout {
                    port: 30000,
                    silent_for: Duration::from_secs(10)
                }
            );
            assert_eq!(at, t0 + ms(80) + Duration::from_secs(10));
            return;
        }
    }
    panic!("no RtpTimeout by {at:?}");
}

#[test]
fn hold_stops_sending_and_the_timeout_and_resume_restores_both() {
    let t0 = Instant::now();
    let mut e = connected(t0);
    e.handle_rtp(t0, SDP_PEER.parse().unwrap(), &rtp(0, 1, 0, &[0; 160]));
    // Re-INVITE with a=sendonly from the peer: ours is recvonly, at a new address.
    let moved: SocketAddr = "192.0.2.77:5000".parse().unwrap();
    e.update(moved, Direction::RecvOnly, t0 + ms(100));
    assert_eq!(e.send_to(), None);
    assert!(e.connected.as_ref().unwrap().watch.poll_timeout().is_none());
    e.update(moved, Direction::SendRecv, t0 + Duration::from_secs(100));
    assert_eq!(e.send_to(), Some(moved));
    assert_eq!(
        e.connected.as_ref().unwrap().watch.poll_timeout(),
        Some(t0 + Duration::from_secs(110))
    );
    // RTP from the new host is trusted, from the old SDP host no longer.
    let old = SDP_PEER.parse().unwrap();
    assert_eq!(e.handle_rtp(t0, old, &rtp(0, 2, 160, &[0; 160])), Inbound::Ignored);
}

#[test]
fn reports_carry_what_we_sent_and_received_and_peer_reports_give_the_round_trip() {
    let t0 = Instant::now();
    let from = SDP_PEER.parse().unwrap();
    let mut e = connected(t0);
    let mut buf = [0u8; rtcp::MAX_COMPOUND];
    // Nothing sent or received: a bare RR, to the RTP port + 1.
    let (len, to) = e.build_rtcp(t0, 0, false, &mut buf).unwrap();
    assert_eq!(to, "192.0.2.10:4001".parse().unwrap());
    let bare = rtcp::parse_compound(&buf[..len], 0).unwrap();
    assert_eq!((bare.ssrc, bare.sender, bare.about_us), (0x5555, None, None));
    // 10 packets sent, 8 of 10 received.
    for n in 0..10u16 {
        let at = t0 + ms(20 * u64::from(n));
        let (_, seq, ts) = e.next_header();
        e.on_sent(at, seq, ts, 160);
        if n != 3 && n != 6 {
            e.handle_rtp(at, from, &rtp(0, n, u32::from(n) * 160, &[0; 160]));
        }
    }
    assert_eq!(e.next_header(), (0x5555, 110, 8000 + 1600));
    let ntp = rtcp::ntp_from_unix(Duration::from_secs(1_000_000));
    let (len, _) = e.build_rtcp(t0 + ms(200), ntp, false, &mut buf).unwrap();
    // Parse it as the peer would (its block is about our peer's SSRC 0x7777).
    let sr = rtcp::parse_compound(&buf[..len], 0x7777).unwrap();
    let info = sr.sender.unwrap();
    assert_eq!((info.packets, info.octets, info.ntp), (10, 1600, ntp));
    assert_eq!(info.rtp_timestamp, 8000 + 9 * 160 + 160, "the RTP time at the report");
    let block = sr.about_us.unwrap();
    assert_eq!(
        (block.cumulative_lost, block.fraction_lost, block.extended_max),
        (2, 51, 9)
    );
    // The peer's RR about us: sent 300 ms after our SR, held 100 ms.
    let their = rtcp::Report {
        ssrc: 0x7777,
        sender: None,
        block: Some(rtcp::ReportBlock {
            ssrc: 0x5555,
            fraction_lost: 0,
            cumulative_lost: 4,
            extended_max: 109,
            jitter: 80,
            last_sr: rtcp::ntp_middle(ntp),
            delay_since_last_sr: rtcp::to_ntp_short(ms(100)),
        }),
    };
    let len = rtcp::build_compound(&mut buf, &their, b"phone", false);
    let later = rtcp::ntp_from_unix(Duration::from_secs(1_000_000) + ms(300));
    e.handle_rtcp(t0, later, "203.0.113.5:4001".parse().unwrap(), &buf[..len]);
    assert_eq!(e.stats().rtcp_received, 0, "RTCP from a stranger is ignored");
    e.handle_rtcp(t0, later, "192.0.2.10:4001".parse().unwrap(), &buf[..len]);
    let stats = e.stats();
    assert_eq!(
        (stats.packets_sent, stats.packets_received, stats.packets_lost),
        (10, 8, 2)
    );
    assert_eq!(
        (stats.peer_reported_lost, stats.peer_reported_jitter_ms),
        (Some(4), Some(10.0))
    );
    let rtt = stats.round_trip_ms.unwrap();
    assert!((199.0..=201.0).contains(&rtt), "{rtt}");
    assert_eq!(stats.rtcp_sent, 2);
}
