//! The media thread itself, over loopback sockets.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::codec::Codec;
use crate::media::rtp::read_header;
use crate::media::{Direction, PortPool, g711, record};

fn next_event(rx: &mut UnboundedReceiver<MediaEvent>) -> MediaEvent {
    for _ in 0..400 {
        if let Ok(e) = rx.try_recv() {
            return e;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no media event within 2 s");
}

fn phone() -> StdUdpSocket {
    let s = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn peer(remote: SocketAddr, codec: Codec, ssrc: u32) -> Peer {
    Peer {
        remote,
        signalling_source: remote.ip(),
        codec,
        payload_type: codec.static_payload_type(),
        telephone_event: Some(101),
        direction: Direction::SendRecv,
        ssrc,
        first_sequence: 1000,
        first_timestamp: 0,
        rtp_timeout: Duration::ZERO,
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend(payload);
    p
}

/// A media loop the test drives by calling its methods; nothing polls it,
/// and its commands and events go nowhere.
fn hand_driven(counters: Arc<Counters>) -> MediaLoop {
    let poll = Poll::new().unwrap();
    let deadline = Deadline::new(poll.registry(), DEADLINE).unwrap();
    let (_, commands) = std::sync::mpsc::channel();
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    MediaLoop::new(poll, commands, events, counters, deadline)
}

fn endpoint_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn play_receive_dtmf_record_and_close() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let media = MediaHandle::spawn(tx, false, 1).unwrap();
    let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47200, 47203));
    let releaser = pool.releaser();
    let pair = pool.reserve().unwrap();
    let port = pair.port;
    media.send(MediaCommand::Open { pair });
    let x = phone();
    media.send(MediaCommand::Connect {
        port,
        peer: peer(x.local_addr().unwrap(), Codec::Pcmu, 0xA1),
    });
    let (sink, frames) = record::channel(16);
    media.send(MediaCommand::Record { port, sink });
    let audio: Arc<[u8]> = (0..5 * FRAME_SAMPLES).map(|i| (i / FRAME_SAMPLES) as u8).collect();
    media.send(MediaCommand::Play { port, audio, repeat: 1 });

    let mut buf = [0u8; 2048];
    for n in 0..5u16 {
        let (len, from) = x.recv_from(&mut buf).unwrap();
        assert_eq!(from, endpoint_addr(port), "sent from the endpoint's own port");
        let (pt, mark, seq, _, ssrc, payload) = read_header(&buf[..len]).unwrap();
        assert_eq!((pt, mark, seq, ssrc, payload), (0, n == 0, 1000 + n, 0xA1, 160));
        assert_eq!(buf[12], n as u8);
    }
    assert_eq!(next_event(&mut events), MediaEvent::PlayFinished { port });

    // The caller speaks and presses 9 (end packet three times).
    x.send_to(&rtp(0, 1, 160, 0xC0, &[0xFF; 160]), endpoint_addr(port))
        .unwrap();
    for _ in 0..3 {
        x.send_to(&rtp(101, 2, 320, 0xC0, &[9, 0x8A, 0x03, 0x20]), endpoint_addr(port))
            .unwrap();
    }
    assert_eq!(
        next_event(&mut events),
        MediaEvent::Dtmf {
            port,
            digit: '9',
            duration: Duration::from_millis(100)
        }
    );
    let frame = frames.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(
        (frame.timestamp, frame.samples().len(), frame.samples()[0]),
        (160, 160, 0)
    );

    media.send(MediaCommand::Close { port });
    // The RTCP BYE goes to the phone's RTP port + 1: not bound here, so only the event is checked.
    let MediaEvent::Closed { port: closed, stats } = next_event(&mut events) else {
        panic!("expected Closed");
    };
    assert_eq!(closed, port);
    assert_eq!(
        (stats.packets_sent, stats.packets_received, stats.packets_lost),
        (5, 4, 0)
    );
    assert!(
        frames.recv_timeout(Duration::from_secs(2)).is_err(),
        "the recording ended with the endpoint"
    );
    assert_eq!(media.counters().endpoints_open, 0);
    // Free only once released: the shell does that on Closed.
    releaser.release(port);
    assert!(pool.reserve().is_some());
}

#[test]
fn relay_bridges_pcmu_and_pcma_legs_both_ways() {
    let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47210, 47213));
    let (a, b) = (pool.reserve().unwrap(), pool.reserve().unwrap());
    relay_both_ways(1, a, b);
}

#[test]
fn with_two_media_threads_a_relay_s_legs_share_one() {
    let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47240, 47247));
    let a = pool.reserve().unwrap();
    let thread = media_thread_of(a.port, 2);
    let b = pool.reserve_where(|port| media_thread_of(port, 2) == thread).unwrap();
    assert_eq!(b.port, a.port + 4, "the pair between them belongs to the other thread");
    relay_both_ways(2, a, b);
}

fn relay_both_ways(threads: usize, a: BoundPair, b: BoundPair) {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let media = MediaHandle::spawn(tx, false, threads).unwrap();
    assert_eq!(media.threads(), threads);
    let (port_a, port_b) = (a.port, b.port);
    media.send(MediaCommand::Open { pair: a });
    media.send(MediaCommand::Open { pair: b });
    let (x, y) = (phone(), phone());
    media.send(MediaCommand::Connect {
        port: port_a,
        peer: peer(x.local_addr().unwrap(), Codec::Pcmu, 0xAAAA),
    });
    let mut pcma = peer(y.local_addr().unwrap(), Codec::Pcma, 0xBBBB);
    pcma.telephone_event = Some(96);
    media.send(MediaCommand::Connect {
        port: port_b,
        peer: pcma,
    });
    media.send(MediaCommand::Relay { a: port_a, b: port_b });

    let mut buf = [0u8; 2048];
    let loud = g711::linear_to_ulaw(8000);
    x.send_to(&rtp(0, 500, 4000, 0x1234, &[loud; 160]), endpoint_addr(port_a))
        .unwrap();
    let (len, from) = y.recv_from(&mut buf).unwrap();
    assert_eq!(from, endpoint_addr(port_b));
    let (pt, _, seq, ts, ssrc, payload) = read_header(&buf[..len]).unwrap();
    assert_eq!((pt, seq, ts, ssrc, payload), (8, 1000, 0, 0xBBBB, 160));
    assert_eq!(
        buf[12],
        g711::transcode_table(Codec::Pcmu, Codec::Pcma).unwrap()[loud as usize]
    );

    // The other way, a key press: its payload type is mapped 96 → 101.
    y.send_to(&rtp(96, 9, 100, 0x9999, &[1, 0x8A, 0, 160]), endpoint_addr(port_b))
        .unwrap();
    let (len, from) = x.recv_from(&mut buf).unwrap();
    assert_eq!(from, endpoint_addr(port_a));
    let (pt, _, _, _, ssrc, _) = read_header(&buf[..len]).unwrap();
    assert_eq!((pt, ssrc), (101, 0xAAAA));
    assert_eq!(&buf[12..len], &[1, 0x8A, 0, 160]);
    assert_eq!(
        next_event(&mut events),
        MediaEvent::Dtmf {
            port: port_b,
            digit: '1',
            duration: Duration::from_millis(20)
        }
    );

    // Stop on one side breaks the bridge both ways.
    media.send(MediaCommand::Stop { port: port_a });
    x.send_to(&rtp(0, 501, 4160, 0x1234, &[loud; 160]), endpoint_addr(port_a))
        .unwrap();
    y.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(y.recv_from(&mut buf).is_err(), "nothing relayed after Stop");
    let counters = media.counters();
    assert_eq!((counters.rtp_packets_sent, counters.endpoints_open), (2, 2));
}

#[test]
fn ringback_gives_way_to_the_relay_without_a_gap_in_sequence_or_timestamp() {
    let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let media = MediaHandle::spawn(tx, false, 1).unwrap();
    let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47220, 47223));
    let (a, b) = (pool.reserve().unwrap(), pool.reserve().unwrap());
    let (caller_port, phone_port) = (a.port, b.port);
    media.send(MediaCommand::Open { pair: a });
    media.send(MediaCommand::Open { pair: b });
    let (caller, phone_socket) = (phone(), phone());
    media.send(MediaCommand::Connect {
        port: caller_port,
        peer: peer(caller.local_addr().unwrap(), Codec::Pcmu, 0xCA11),
    });
    media.send(MediaCommand::Connect {
        port: phone_port,
        peer: peer(phone_socket.local_addr().unwrap(), Codec::Pcma, 0xF0F0),
    });
    let tone = crate::media::tone::ringback("jp").unwrap();
    media.send(MediaCommand::Play {
        port: caller_port,
        audio: tone.encoded(Codec::Pcmu),
        repeat: u32::MAX,
    });
    let mut buf = [0u8; 2048];
    let mut last = None;
    for n in 0..5u16 {
        let (len, _) = caller.recv_from(&mut buf).unwrap();
        let (pt, mark, seq, ts, ssrc, payload) = read_header(&buf[..len]).unwrap();
        assert_eq!((pt, mark, seq, ssrc, payload), (0, n == 0, 1000 + n, 0xCA11, 160));
        last = Some((seq, ts));
    }

    // The phone answers: the ringback stops, the phone's audio takes its place.
    media.send(MediaCommand::Relay {
        a: caller_port,
        b: phone_port,
    });
    std::thread::sleep(Duration::from_millis(100));
    caller.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while let Ok((len, _)) = caller.recv_from(&mut buf) {
        let (_, _, seq, ts, _, _) = read_header(&buf[..len]).unwrap();
        last = Some((seq, ts)); // ringback packets sent before the relay took over
    }
    let (last_seq, last_ts) = last.unwrap();
    let speech = g711::linear_to_alaw(8000);
    phone_socket
        .send_to(&rtp(8, 7, 123_456, 0x5EED, &[speech; 160]), endpoint_addr(phone_port))
        .unwrap();
    caller.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (len, _) = caller.recv_from(&mut buf).unwrap();
    let (pt, mark, seq, ts, ssrc, payload) = read_header(&buf[..len]).unwrap();
    assert_eq!(
        (pt, mark, seq, ts, ssrc, payload),
        (
            0,
            true,
            last_seq.wrapping_add(1),
            last_ts.wrapping_add(160),
            0xCA11,
            160
        ),
        "the relayed stream continues the ringback's numbering, marked"
    );
    assert_eq!(
        buf[12],
        g711::transcode_table(Codec::Pcma, Codec::Pcmu).unwrap()[speech as usize]
    );
}

#[test]
fn packets_still_queued_when_the_recording_stops_are_recorded_first() {
    // The loop is driven by hand and never polled: what the caller sends
    // stays in the socket, as when the thread is busy and the BYE overtakes it.
    let mut media = hand_driven(Arc::new(Counters::default()));
    let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47220, 47223));
    let pair = pool.reserve().unwrap();
    let port = pair.port;
    let now = Instant::now();
    media.apply(MediaCommand::Open { pair }, now);
    let x = phone();
    let peer = peer(x.local_addr().unwrap(), Codec::Pcmu, 0xA1);
    media.apply(MediaCommand::Connect { port, peer }, now);
    let (sink, frames) = record::channel(64);
    media.apply(MediaCommand::Record { port, sink }, now);

    for n in 0..20u16 {
        let packet = rtp(0, n, u32::from(n) * 160, 0xC0, &[0xFF; 160]);
        x.send_to(&packet, endpoint_addr(port)).unwrap();
    }
    media.apply(MediaCommand::StopRecording { port }, now);
    let recorded: Vec<u32> = frames.try_iter().map(|f| f.timestamp).collect();
    assert_eq!(recorded, (0..20).map(|n| n * 160).collect::<Vec<_>>());
    assert!(frames.recv().is_err(), "then the recording ends");
}

#[test]
fn a_burst_of_commands_is_applied_in_order_and_none_is_lost() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let media = MediaHandle::spawn(tx, false, 1).unwrap();
    // Many commands, sent before the thread wakes.
    let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47300, 47399));
    let pairs: Vec<_> = (0..48).map(|_| pool.reserve().unwrap()).collect();
    let ports: Vec<u16> = pairs.iter().map(|p| p.port).collect();
    for pair in pairs {
        media.send(MediaCommand::Open { pair });
    }
    for &port in &ports {
        media.send(MediaCommand::Close { port });
    }
    let closed: Vec<u16> = (0..ports.len())
        .map(|_| match next_event(&mut events) {
            MediaEvent::Closed { port, .. } => port,
            other => panic!("expected Closed, got {other:?}"),
        })
        .collect();
    assert_eq!(closed, ports, "every endpoint opened and closed, in the order sent");
}

#[test]
fn rtp_goes_out_of_the_connected_socket_and_follows_a_peer_that_moves() {
    connected_socket_follows_the_peer("127.0.0.1", 47230);
}

#[test]
fn the_connected_socket_works_when_media_listens_on_every_address() {
    connected_socket_follows_the_peer("0.0.0.0", 47250);
}

fn connected_socket_follows_the_peer(ip: &str, first_port: u16) {
    let counters = Arc::new(Counters::default());
    let mut media = hand_driven(counters.clone());
    let mut pool = PortPool::new(ip.parse().unwrap(), (first_port, first_port + 3));
    let pair = pool.reserve().unwrap();
    let port = pair.port;
    let now = Instant::now();
    media.apply(MediaCommand::Open { pair }, now);
    let (x, y) = (phone(), phone());
    let peer = peer(x.local_addr().unwrap(), Codec::Pcmu, 0xA1);
    media.apply(MediaCommand::Connect { port, peer }, now);

    let mut buf = [0u8; 2048];
    let send = |media: &mut MediaLoop, n: u16| {
        let slot = media.slots.get_mut(&port).unwrap();
        let to = slot.logic.send_to().unwrap();
        slot.send_rtp(&rtp(0, n, 0, 0xA1, &[0xFF; 160]), to, &counters);
    };
    send(&mut media, 1);
    let (_, from) = x.recv_from(&mut buf).unwrap();
    assert_eq!(from, endpoint_addr(port), "sent from the endpoint's own port");
    // The peer's RTP now arrives on the connected socket (the kernel prefers
    // it), and is read from there.
    x.send_to(&rtp(0, 1, 0, 0xC0, &[0xFF; 160]), endpoint_addr(port))
        .unwrap();
    x.send_to(&rtp(0, 2, 160, 0xC0, &[0xFF; 160]), endpoint_addr(port))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let slot = media.slots.get(&port).unwrap();
    assert!(slot.rtp.recv_from(&mut buf).is_err(), "nothing on the receiving socket");
    media.read_rtp(port, Socket::RtpSend, now);
    let received = 2;
    assert_eq!(counters.packets_received.load(Ordering::Relaxed), received);

    // The peer's NAT moves it to another port: its RTP arrives on the
    // receiving socket, the endpoint learns the address, and what we send
    // follows it there, still from our port.
    y.send_to(&rtp(0, 3, 320, 0xC0, &[0xFF; 160]), endpoint_addr(port))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    media.read_rtp(port, Socket::Rtp, now);
    assert_eq!(counters.packets_received.load(Ordering::Relaxed), received + 1);
    send(&mut media, 2);
    let (_, from) = y.recv_from(&mut buf).unwrap();
    assert_eq!(from, endpoint_addr(port));
    assert_eq!(counters.send_errors.load(Ordering::Relaxed), 0);
}
