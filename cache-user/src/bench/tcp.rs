//! A pipelined TCP connection: requests are appended to an output buffer and written in one go;
//! replies come back in order, so a FIFO of (start time, expected reply) pairs matches them.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::{AsFd, BorrowedFd},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use rand::rngs::SmallRng;

use super::{
    driver::Endpoint,
    record::Recorder,
    reply::{self, Expect},
    workload::Workload,
};

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// A request sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Pending {
    start: Instant,
    expect: Expect,
    keys: u32,
}

#[derive(Debug)]
pub(crate) struct TcpConn {
    stream: TcpStream,
    /// Encoded requests not yet written.
    out: Vec<u8>,
    /// A read buffer, zeroed once: `parsed..filled` is read and not yet parsed.
    input: Vec<u8>,
    parsed: usize,
    filled: usize,
    pending: VecDeque<Pending>,
}

impl TcpConn {
    pub(crate) fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            out: Vec::with_capacity(4096),
            input: vec![0; READ_CHUNK],
            parsed: 0,
            filled: 0,
            pending: VecDeque::new(),
        })
    }

    /// Parses every complete reply in the input and records it at `now`.
    fn parse(&mut self, now: Instant, rec: &mut Recorder) -> Result<()> {
        while let Some(p) = self.pending.front().copied() {
            let unparsed = &self.input[self.parsed..self.filled];
            let Some((r, used)) = reply::parse(unparsed, p.expect)? else {
                break;
            };
            self.parsed += used;
            self.pending.pop_front();
            rec.reply(p.start, now, p.expect, p.keys, r);
        }
        if self.parsed == self.filled {
            (self.parsed, self.filled) = (0, 0);
        }
        Ok(())
    }
}

impl Endpoint for TcpConn {
    fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn push(&mut self, w: &Workload, rng: &mut SmallRng, start: Instant) {
        let (expect, keys) = w.request(rng, &mut self.out);
        self.pending.push_back(Pending {
            start,
            expect,
            keys,
        });
    }

    fn flush(&mut self, _now: Instant) -> io::Result<bool> {
        let mut sent = 0;
        while sent < self.out.len() {
            match self.stream.write(&self.out[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..sent);
        Ok(self.out.is_empty())
    }

    fn readable(&mut self, now: Instant, rec: &mut Recorder) -> Result<()> {
        loop {
            if self.input.len() - self.filled < READ_CHUNK / 4 {
                // Move the partial reply to the front; grow if it fills most of the buffer
                // (a large multiget reply).
                self.input.copy_within(self.parsed..self.filled, 0);
                (self.filled, self.parsed) = (self.filled - self.parsed, 0);
                if self.input.len() - self.filled < READ_CHUNK / 4 {
                    self.input.resize(self.input.len() * 2, 0);
                }
            }
            let space = self.input.len() - self.filled;
            let n = match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => bail!(
                    "the server closed the connection with {} requests in flight",
                    self.pending.len()
                ),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading replies"),
            };
            self.filled += n;
            self.parse(now, rec)?;
            if n < space {
                return Ok(());
            }
        }
    }

    fn abandon(&mut self, rec: &mut Recorder) {
        for p in self.pending.drain(..) {
            if rec.measures(p.start) {
                rec.counts.unanswered += 1;
            }
        }
    }
}

/// Sets every key once, over one connection, `batch` requests per write; returns how many were
/// STORED. This is the pre-population before warm-up, so that gets hit from the first second.
pub(crate) fn populate(addr: SocketAddr, w: &Workload, rng: &mut SmallRng) -> Result<u64> {
    const BATCH: u64 = 256;
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut out, mut input, mut stored) = (Vec::new(), Vec::new(), 0);
    let mut chunk = vec![0; READ_CHUNK];
    let mut next = 0;
    while next < w.keys {
        let end = (next + BATCH).min(w.keys);
        out.clear();
        for key in next..end {
            w.set(key, rng, &mut out);
        }
        stream.write_all(&out).context("sending sets")?;
        let mut left = end - next;
        while left > 0 {
            match reply::parse(&input, Expect::Store)? {
                Some((r, used)) => {
                    input.drain(..used);
                    stored += u64::from(r == reply::Reply::Done);
                    left -= 1;
                }
                None => {
                    let n = stream.read(&mut chunk).context("reading set replies")?;
                    if n == 0 {
                        bail!("the server closed the connection while pre-populating");
                    }
                    input.extend_from_slice(&chunk[..n]);
                }
            }
        }
        next = end;
    }
    Ok(stored)
}
