//! A memcached UDP client: the 8-byte frame header (request id, sequence number, total
//! datagrams, reserved; big-endian u16s), and replies collected by request id and put back in
//! sequence order.

use std::{
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use crate::show;

/// Frame header bytes.
pub const HEADER: usize = 8;
/// memcached's largest reply datagram, header included.
pub const MAX_DATAGRAM: usize = 1400;

/// One datagram of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub id: u16,
    pub seq: u16,
    pub total: u16,
    pub reserved: u16,
    /// Bytes on the wire, header included.
    pub len: usize,
    pub payload: Vec<u8>,
}

impl Datagram {
    /// Splits a received datagram; fails if it is shorter than the header.
    pub fn parse(bytes: &[u8]) -> Result<Datagram> {
        ensure!(bytes.len() >= HEADER, "datagram of {} bytes", bytes.len());
        let word = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        Ok(Datagram {
            id: word(0),
            seq: word(2),
            total: word(4),
            reserved: word(6),
            len: bytes.len(),
            payload: bytes[HEADER..].to_vec(),
        })
    }
}

/// A request datagram: header then `payload`.
pub fn frame(id: u16, seq: u16, total: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    for word in [id, seq, total, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// A UDP socket talking to one server.
#[derive(Debug)]
pub struct Udp {
    sock: UdpSocket,
    next_id: u16,
}

impl Udp {
    /// A socket on 127.0.0.1 connected to `server` (so only its datagrams arrive).
    pub fn connect(server: SocketAddr) -> Result<Udp> {
        Udp::connect_from("127.0.0.1:0".parse()?, server)
    }

    /// A socket bound to `local` (port 0 = any) connected to `server`.
    pub fn connect_from(local: SocketAddr, server: SocketAddr) -> Result<Udp> {
        let sock = UdpSocket::bind(local).with_context(|| format!("binding UDP to {local}"))?;
        sock.connect(server)
            .with_context(|| format!("connecting UDP to {server}"))?;
        Ok(Udp { sock, next_id: 1 })
    }

    /// Sends raw bytes as one datagram.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        self.sock.send(bytes).context("sending a datagram")?;
        Ok(())
    }

    /// The next datagram, or `None` if none arrives within `limit`.
    pub fn recv(&self, limit: Duration) -> Result<Option<Datagram>> {
        let mut buf = vec![0u8; 65_536];
        self.sock
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .context("setting the UDP read timeout")?;
        match self.sock.recv(&mut buf) {
            Ok(n) => Datagram::parse(&buf[..n]).map(Some),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e).context("receiving a datagram"),
        }
    }

    /// Sends `payload` as a one-datagram request with a fresh id and returns the datagrams of
    /// the reply in arrival order, once all `total` have arrived. Datagrams of other ids (late
    /// replies to earlier requests) are dropped.
    pub fn request(&mut self, payload: &[u8], limit: Duration) -> Result<Vec<Datagram>> {
        self.request_until(payload, limit, |got| {
            got.first()
                .is_some_and(|first| got.len() >= usize::from(first.total))
        })
    }

    /// Like [`Udp::request`], but collects datagrams of the reply until `done` says the ones so
    /// far (in arrival order) are all of it.
    pub fn request_until(
        &mut self,
        payload: &[u8],
        limit: Duration,
        done: impl Fn(&[Datagram]) -> bool,
    ) -> Result<Vec<Datagram>> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.send_raw(&frame(id, 0, 1, payload))?;
        let deadline = Instant::now() + limit;
        let mut got: Vec<Datagram> = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "request {} (id {id}): {} datagrams within {limit:?}: {:?}",
                    show(payload, 80),
                    got.len(),
                    got.iter().map(|d| (d.seq, d.total)).collect::<Vec<_>>()
                );
            }
            match self.recv(left)? {
                Some(d) if d.id == id => got.push(d),
                _ => {}
            }
        }
        Ok(got)
    }

    /// [`Udp::request`], retried until the server answers (its UDP socket may be bound a moment
    /// before its threads read it); gives up after `limit`.
    pub fn request_when_ready(&mut self, payload: &[u8], limit: Duration) -> Result<Vec<Datagram>> {
        let start = Instant::now();
        loop {
            match self.request(payload, Duration::from_millis(200)) {
                Ok(reply) => return Ok(reply),
                Err(e) if start.elapsed() > limit => return Err(e),
                Err(_) => {}
            }
        }
    }
}

/// The reply bytes of `datagrams`, which must be one complete reply: one id, the same total,
/// sequence numbers 0..total each exactly once.
pub fn reassemble(datagrams: &[Datagram]) -> Result<Vec<u8>> {
    let first = datagrams.first().context("no datagrams")?;
    let total = usize::from(first.total);
    ensure!(
        datagrams.len() == total,
        "{} datagrams, header says {total}",
        datagrams.len()
    );
    let mut sorted: Vec<&Datagram> = datagrams.iter().collect();
    sorted.sort_by_key(|d| d.seq);
    let mut out = Vec::new();
    for (i, d) in sorted.iter().enumerate() {
        ensure!(
            d.id == first.id && usize::from(d.total) == total && usize::from(d.seq) == i,
            "datagram {i} of {total}: id {} seq {} total {} (want id {} seq {i})",
            d.id,
            d.seq,
            d.total,
            first.id
        );
        out.extend_from_slice(&d.payload);
    }
    Ok(out)
}
