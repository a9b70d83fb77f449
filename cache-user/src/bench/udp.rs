//! Requests over UDP with memcached's 8-byte frame header:
//!
//! ```text
//!  0       2       4       6       8
//!  +-------+-------+-------+-------+----------------------
//!  | req id| seq no| total | 0     | request or reply text
//!  +-------+-------+-------+-------+----------------------
//! ```
//!
//! (big-endian u16s). A request is one datagram; a reply may come in `total` datagrams, in any
//! order, which are put back together by sequence number. A request not fully answered within the
//! timeout counts as a UDP loss, not as a latency; datagrams arriving after that count as late.

use std::{
    collections::{HashMap, VecDeque},
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::{AsFd, BorrowedFd},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rand::rngs::SmallRng;

use super::{
    driver::Endpoint,
    record::Recorder,
    reply::{self, Expect, Reply},
    workload::Workload,
};

/// Frame header length.
const HEADER: usize = 8;

/// A request sent (or queued) and not yet answered.
#[derive(Debug)]
struct Pending {
    start: Instant,
    /// When it actually went out: the loss timeout runs from here.
    sent: Option<Instant>,
    expect: Expect,
    keys: u32,
    /// Reply datagrams by sequence number, once the first says how many there are.
    parts: Vec<Option<Vec<u8>>>,
    got: usize,
}

#[derive(Debug)]
pub(crate) struct UdpConn {
    sock: UdpSocket,
    next_id: u16,
    /// Encoded datagrams not yet sent, with their request ids, in order.
    queue: VecDeque<(u16, Vec<u8>)>,
    pending: HashMap<u16, Pending>,
    timeout: Duration,
    next_expiry: Option<Instant>,
    recv: Vec<u8>,
}

impl UdpConn {
    pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .context("wildcard address")?;
        let sock = UdpSocket::bind(local).context("binding a UDP socket")?;
        sock.connect(addr)
            .with_context(|| format!("connecting UDP to {addr}"))?;
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock,
            next_id: 0,
            queue: VecDeque::new(),
            pending: HashMap::new(),
            timeout,
            next_expiry: None,
            recv: vec![0; 65536],
        })
    }

    /// Takes one reply datagram.
    fn datagram(&mut self, len: usize, now: Instant, rec: &mut Recorder) {
        let dgram = &self.recv[..len];
        let Some(header) = dgram.get(..HEADER) else {
            rec.counts.udp_late += 1;
            return;
        };
        let field = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
        let (id, seq, total) = (field(0), usize::from(field(2)), usize::from(field(4)));
        let Some(p) = self.pending.get_mut(&id).filter(|p| p.sent.is_some()) else {
            rec.counts.udp_late += 1;
            return;
        };
        let payload = &dgram[HEADER..];
        let whole;
        let text = if total <= 1 {
            payload
        } else {
            if p.parts.len() != total {
                p.parts = vec![None; total];
                p.got = 0;
            }
            match p.parts.get_mut(seq) {
                Some(slot @ None) => {
                    *slot = Some(payload.to_vec());
                    p.got += 1;
                }
                // A duplicate, or a sequence number past the total: ignore it.
                _ => return,
            }
            if p.got < total {
                return;
            }
            whole = p
                .parts
                .iter()
                .flatten()
                .flatten()
                .copied()
                .collect::<Vec<u8>>();
            &whole[..]
        };
        // A reply that is all there yet does not parse is the server's error, not ours.
        let r = match reply::parse(text, p.expect) {
            Ok(Some((r, _))) => r,
            Ok(None) | Err(_) => Reply::Error,
        };
        rec.reply(p.start, now, p.expect, p.keys, r);
        self.pending.remove(&id);
    }
}

impl Endpoint for UdpConn {
    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn push(&mut self, w: &Workload, rng: &mut SmallRng, start: Instant) {
        // Skip ids still waiting for replies (only possible after 65536 requests in flight).
        while self.pending.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        let mut dgram = Vec::with_capacity(64);
        dgram.extend_from_slice(&id.to_be_bytes());
        dgram.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
        let (expect, keys) = w.request(rng, &mut dgram);
        let p = Pending {
            start,
            sent: None,
            expect,
            keys,
            parts: Vec::new(),
            got: 0,
        };
        self.pending.insert(id, p);
        self.queue.push_back((id, dgram));
    }

    fn flush(&mut self, now: Instant) -> io::Result<bool> {
        while let Some((id, dgram)) = self.queue.front() {
            match self.sock.send(dgram) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Some(p) = self.pending.get_mut(id) {
                p.sent = Some(now);
            }
            self.queue.pop_front();
        }
        Ok(true)
    }

    fn readable(&mut self, now: Instant, rec: &mut Recorder) -> Result<()> {
        loop {
            match self.sock.recv(&mut self.recv) {
                Ok(n) => self.datagram(n, now, rec),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("receiving UDP replies"),
            }
        }
    }

    fn expire(&mut self, now: Instant, rec: &mut Recorder) {
        // Look a few times per timeout, not on every wake-up: the open loop may have thousands
        // of requests in flight.
        if self.next_expiry.is_some_and(|t| now < t) {
            return;
        }
        self.next_expiry = Some(now + self.timeout / 5);
        let timeout = self.timeout;
        self.pending.retain(|_, p| match p.sent {
            Some(sent) if now.saturating_duration_since(sent) >= timeout => {
                rec.lost(p.start);
                false
            }
            _ => true,
        });
    }

    fn abandon(&mut self, rec: &mut Recorder) {
        self.queue.clear();
        for (_, p) in self.pending.drain() {
            rec.lost(p.start);
        }
    }
}
