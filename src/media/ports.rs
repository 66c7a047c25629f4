//! The RTP port pool: an even RTP port and its RTCP port (RTP + 1, RFC 3550
//! §11) are bound together, handed out round-robin so a port is not reused
//! at once. The pool binds; the bound sockets go straight to the media
//! thread inside [`MediaCommand::Open`](super::MediaCommand::Open). A port
//! returns to the pool only when the media thread has closed its endpoint
//! and the shell has read the `Closed` event ([`PortReleaser::release`]), so
//! late events about a port can never be mistaken for its next call's.
//!
//! The RTP port gets two sockets: one that receives from anyone (symmetric
//! RTP learns a NAT'd peer from what arrives there) and one the media
//! thread `connect`s to wherever the endpoint sends, because a connected
//! UDP socket spares the kernel a route lookup and an address copy on every
//! packet (measured on loopback: 16 % of the cost of a send). Packets from
//! the connected peer arrive on the second socket; both are read.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// An RTP/RTCP socket pair, bound and non-blocking, and the RTP port's
/// second socket for sending.
#[derive(Debug)]
pub struct BoundPair {
    pub port: u16,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    /// Bound to the RTP port as well; the media thread connects it.
    pub rtp_send: UdpSocket,
}

/// The usable pairs of a configured range: the first even port at or after
/// `first`, and how many pairs fit with their RTCP port still `<= last`.
/// u32 arithmetic, so a range that ends at 65535 cannot overflow.
fn pair_slots(first: u16, last: u16) -> (u32, usize) {
    let first = u32::from(first) + u32::from(first) % 2;
    let last = u32::from(last);
    let count = if last > first {
        ((last - first - 1) / 2 + 1) as usize
    } else {
        0
    };
    (first, count)
}

/// Hands out port pairs. Lives with whoever asks for ports (the engine's
/// allocator); the in-use marks are shared with the [`PortReleaser`] only.
pub struct PortPool {
    ip: IpAddr,
    first: u32,
    in_use: Arc<[AtomicBool]>,
    next: usize,
}

/// Returns ports to their pool; held by the shell, which reads `Closed` events.
#[derive(Clone)]
pub struct PortReleaser {
    first: u32,
    in_use: Arc<[AtomicBool]>,
}

impl PortPool {
    pub fn new(ip: IpAddr, (first, last): (u16, u16)) -> PortPool {
        let (first, count) = pair_slots(first, last);
        PortPool {
            ip,
            first,
            in_use: (0..count).map(|_| AtomicBool::new(false)).collect(),
            next: 0,
        }
    }

    /// How many pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    pub fn releaser(&self) -> PortReleaser {
        PortReleaser {
            first: self.first,
            in_use: self.in_use.clone(),
        }
    }

    fn port_of(&self, slot: usize) -> u16 {
        // pair_slots keeps every slot's RTCP port within u16.
        (self.first + 2 * slot as u32) as u16
    }

    /// The next free pair, bound. `None` when every pair is in use or bound
    /// by another program.
    pub fn reserve(&mut self) -> Option<BoundPair> {
        self.reserve_where(|_| true)
    }

    /// The next free pair whose RTP port `wanted` accepts, bound.
    pub fn reserve_where(&mut self, wanted: impl Fn(u16) -> bool) -> Option<BoundPair> {
        let count = self.in_use.len();
        for _ in 0..count {
            let slot = self.next;
            self.next = (slot + 1) % count;
            if !wanted(self.port_of(slot)) {
                continue;
            }
            if self.in_use[slot]
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let port = self.port_of(slot);
            match bind_pair(self.ip, port) {
                Ok(pair) => return Some(pair),
                // Another program holds one of the two: try the next pair.
                Err(_) => self.in_use[slot].store(false, Ordering::Release),
            }
        }
        None
    }
}

impl PortReleaser {
    pub fn release(&self, port: u16) {
        let Some(offset) = u32::from(port).checked_sub(self.first) else {
            return;
        };
        if offset % 2 == 0
            && let Some(mark) = self.in_use.get((offset / 2) as usize)
        {
            mark.store(false, Ordering::Release);
        }
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> io::Result<BoundPair> {
    let rtp_address = SocketAddr::new(ip, port);
    let rtp = bind_shared(rtp_address)?;
    let rtp_send = bind_shared(rtp_address)?;
    // A socket may join a port only while every socket on it allows that:
    // once ours are both bound, no other program (even one of the same
    // user) can bind the port and take a share of its packets.
    rtp.set_reuse_port(false)?;
    rtp_send.set_reuse_port(false)?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port + 1))?;
    rtcp.set_nonblocking(true)?;
    Ok(BoundPair {
        port,
        rtp: rtp.into(),
        rtcp,
        rtp_send: rtp_send.into(),
    })
}

/// A non-blocking UDP socket bound to `address` with `SO_REUSEPORT`, which
/// fails like a plain bind when a socket that does not share holds it.
fn bind_shared(address: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::DGRAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_at_the_edges_of_u16() {
        assert_eq!(pair_slots(65532, 65535), (65532, 2));
        assert_eq!(pair_slots(65534, 65535), (65534, 1));
        // 65535 is odd and has no room for its RTCP port.
        assert_eq!(pair_slots(65535, 65535), (65536, 0));
        assert_eq!(pair_slots(65533, 65535), (65534, 1));
        assert_eq!(pair_slots(0, 1), (0, 1));
        assert_eq!(pair_slots(10000, 10000), (10000, 0), "no RTCP port");
        assert_eq!(pair_slots(10001, 10004), (10002, 1), "10004's RTCP port is outside");
        assert_eq!(pair_slots(10000, 10005), (10000, 3));
        assert_eq!(pair_slots(20000, 10000), (20000, 0), "reversed range");
    }

    #[test]
    fn the_last_pair_maps_to_the_last_ports() {
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), (65532, 65535));
        assert_eq!(pool.capacity(), 2);
        assert_eq!((pool.port_of(0), pool.port_of(1)), (65532, 65534));
    }

    #[test]
    fn round_robin_pairs_released_only_by_the_releaser() {
        // Loopback only; a high range unlikely to be in use by the test host.
        let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47100, 47105));
        let releaser = pool.releaser();
        let a = pool.reserve().expect("first pair");
        assert_eq!(a.port % 2, 0);
        assert_eq!(a.rtcp.local_addr().unwrap().port(), a.port + 1);
        let b = pool.reserve().expect("second pair");
        let c = pool.reserve().expect("third pair");
        assert_eq!((b.port, c.port), (a.port + 2, a.port + 4));
        assert!(pool.reserve().is_none(), "all three pairs in use");
        // Dropping the sockets alone does not free the slot...
        let freed = b.port;
        drop(b);
        assert!(pool.reserve().is_none());
        // ...the releaser does (after the media thread closed the endpoint).
        releaser.release(freed);
        releaser.release(1); // not ours: ignored
        releaser.release(freed + 1); // an RTCP port: ignored
        let again = pool.reserve().expect("the freed pair");
        assert_eq!(again.port, freed);
    }

    #[test]
    fn no_one_else_can_bind_a_reserved_rtp_port() {
        let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47130, 47131));
        let pair = pool.reserve().expect("the pair");
        let address = pair.rtp.local_addr().unwrap();
        assert_eq!(pair.rtp_send.local_addr().unwrap(), address);
        assert!(UdpSocket::bind(address).is_err());
        // Not even a socket asking to share it, as our own two did.
        assert!(bind_shared(address).is_err());
    }

    #[test]
    fn a_port_held_by_someone_else_is_skipped() {
        let squatter = UdpSocket::bind("127.0.0.1:47121").unwrap();
        let mut pool = PortPool::new("127.0.0.1".parse().unwrap(), (47120, 47123));
        let pair = pool.reserve().expect("the free pair");
        assert_eq!(pair.port, 47122);
        assert!(pool.reserve().is_none());
        drop(squatter);
        // The skipped slot was not left marked.
        assert_eq!(pool.reserve().map(|p| p.port), Some(47120));
    }
}
