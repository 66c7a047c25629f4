//! Reading UDP in batches with each datagram's arrival time from the kernel
//! (`SO_TIMESTAMPNS`, stamped when loopback delivers it), so a benchmark's
//! receiver can sleep between rounds without blurring what it measures, and
//! never makes the sender pay for waking it per packet.

// Each benchmark includes this file and uses part of it.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, RawFd};

/// Ask the kernel to stamp each datagram `fd` receives.
pub fn enable_timestamps(fd: &impl AsRawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setting an int socket option on a socket the caller owns.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Wall-clock now in ns since the epoch: the clock of the kernel's stamps.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

pub const STAMPED_BATCH: usize = 64;
const CONTROL_BYTES: usize = 64;

/// `recvmmsg` buffers with room for each packet's kernel timestamp.
pub struct StampedBatch {
    bufs: Vec<[u8; 2048]>,
    /// Owns the memory the headers' control pointers point into.
    _controls: Vec<[u8; CONTROL_BYTES]>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl StampedBatch {
    pub fn new() -> StampedBatch {
        let mut bufs = vec![[0u8; 2048]; STAMPED_BATCH];
        let mut controls = vec![[0u8; CONTROL_BYTES]; STAMPED_BATCH];
        let mut iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let headers = iovecs
            .iter_mut()
            .zip(controls.iter_mut())
            .map(|(iov, control)| {
                // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = control.as_mut_ptr().cast();
                h
            })
            .collect();
        StampedBatch {
            bufs,
            _controls: controls,
            iovecs,
            headers,
        }
    }

    /// Read what is queued, without waiting; the number of packets read
    /// (WouldBlock when there was none).
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        debug_assert_eq!(self.iovecs.len(), self.headers.len());
        for h in &mut self.headers {
            h.msg_hdr.msg_controllen = CONTROL_BYTES as _;
            h.msg_len = 0;
        }
        // SAFETY: every header points into buffers this struct owns and keeps alive.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                STAMPED_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Packet `i` of the last read and its arrival time in ns since the
    /// epoch (0 when the socket does not stamp).
    pub fn get(&self, i: usize) -> (&[u8], u64) {
        let h = &self.headers[i];
        let mut at_ns = 0;
        // SAFETY: walking the control messages the kernel wrote into our buffer.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    at_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        (&self.bufs[i][..h.msg_len as usize], at_ns)
    }
}
