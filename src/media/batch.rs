//! Receiving RTP several datagrams per system call (`recvmmsg`).
//!
//! The media thread's sockets are edge-triggered, so each wake-up must read
//! a socket until it is empty. With `recv_from` that costs one extra call
//! per wake-up that only learns "nothing more" (EAGAIN); at 50 packets a
//! second per leg that is a third of the relay's system calls. `recvmmsg`
//! returns what is queued, up to [`BATCH`], in one call: fewer than
//! [`BATCH`] means the socket is drained.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams read per call. A leg gets one packet per 20 ms, so a wake-up
/// rarely finds more than two queued; eight covers a burst cheaply.
pub const BATCH: usize = 8;
/// Larger than any RTP packet we accept (the same as the other receive buffers).
const SIZE: usize = 2048;

/// Buffers for one `recvmmsg` call, allocated once.
pub struct RecvBatch {
    bufs: Box<[[u8; SIZE]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    received: usize,
}

impl RecvBatch {
    #[allow(clippy::new_without_default)]
    pub fn new() -> RecvBatch {
        // SAFETY (each): all-zero is a valid value for these plain C structs.
        RecvBatch {
            bufs: Box::new([[0; SIZE]; BATCH]),
            addrs: Box::new(unsafe { std::mem::zeroed() }),
            iovs: Box::new(unsafe { std::mem::zeroed() }),
            hdrs: Box::new(unsafe { std::mem::zeroed() }),
            received: 0,
        }
    }

    /// Read up to [`BATCH`] datagrams from the non-blocking socket `fd`;
    /// returns how many (0 when nothing was queued).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        for i in 0..BATCH {
            // The pointers are set each time: the boxes never move, but
            // keeping the setup here keeps every pointer's origin in view.
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: SIZE,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self` that
        // outlive the call; `fd` is a socket the caller owns.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last [`recv`](Self::recv), with its source;
    /// None past the end or for a source that is not IPv4/IPv6.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(SIZE);
        let from = socket_addr(&self.addrs[i], hdr.msg_hdr.msg_namelen)?;
        Some((&self.bufs[i][..len], from))
    }
}

fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family and length checked).
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family and length checked).
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn reads_what_is_queued_with_sources_in_order_then_reports_empty() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("[::1]:0");
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 0, "nothing queued");

        for i in 0..(BATCH as u8 + 3) {
            a.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
        }
        let n = batch.recv(rx.as_raw_fd()).unwrap();
        assert_eq!(n, BATCH, "a full batch: there may be more");
        for i in 0..n {
            let (data, from) = batch.get(i).unwrap();
            assert_eq!((data.len(), data[0]), (100, i as u8));
            assert_eq!(from, a.local_addr().unwrap());
        }
        assert!(batch.get(n).is_none());
        assert_eq!(
            batch.recv(rx.as_raw_fd()).unwrap(),
            3,
            "the rest: fewer than a batch, drained"
        );
        assert_eq!(batch.get(2).unwrap().0[0], BATCH as u8 + 2);

        // IPv6 sources come back whole, where the machine has ::1.
        if let (Ok(b), Ok(rx6)) = (b, UdpSocket::bind("[::1]:0")) {
            rx6.set_nonblocking(true).unwrap();
            b.send_to(b"v6", rx6.local_addr().unwrap()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
            assert_eq!(batch.recv(rx6.as_raw_fd()).unwrap(), 1);
            assert_eq!(batch.get(0).unwrap(), (&b"v6"[..], b.local_addr().unwrap()));
        }
    }
}
