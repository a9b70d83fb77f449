//! A raw TCP client that reads exactly one reply at a time: it parses where replies end
//! (`reply.rs`) and waits on the socket with a deadline, never sleeping to guess.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    reply::{self, ReplyKind},
    show,
};

/// How long a reply (or one write) may take before the test fails: a liveness bound, not a
/// latency target.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The sentinel [`Conn::call_synced`] sends after a request.
const SYNC: &[u8] = b"mn\r\n";
const SYNC_REPLY: &[u8] = b"MN\r\n";

/// One client connection and the bytes read past the last reply.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    /// Connects to `addr` (bounded by [`REPLY_TIMEOUT`]).
    pub fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        // A server that stops reading must fail the test, not hang it.
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .context("setting the write timeout")?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            timeout: REPLY_TIMEOUT,
        })
    }

    /// Replaces the per-reply timeout (and the timeout of each write).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.timeout = timeout;
        self.stream
            .set_write_timeout(Some(timeout))
            .context("setting the write timeout")
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .with_context(|| format!("sending {}", show(bytes, 120)))
    }

    /// Closes the sending half, as a client that is done talking does.
    pub fn shutdown_send(&self) -> Result<()> {
        self.stream
            .shutdown(Shutdown::Write)
            .context("shutdown(SHUT_WR)")
    }

    /// Sends `request` and reads its reply, whose shape [`ReplyKind::of`] reads off the request.
    pub fn call(&mut self, request: &[u8]) -> Result<Vec<u8>> {
        self.send(request)?;
        self.read_reply(ReplyKind::of(request))
            .with_context(|| format!("reply to {}", show(request, 120)))
    }

    /// Reads one complete reply of `kind`.
    pub fn read_reply(&mut self, kind: ReplyKind) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(n) = reply::reply_len(&self.buf, kind) {
                return Ok(self.buf.drain(..n).collect());
            }
            self.fill(deadline, &format!("a {kind:?} reply"))?;
        }
    }

    /// Sends `request` followed by `mn`, and returns everything the server sent before the
    /// `MN` answering that sentinel. Works for any request, `noreply` and quiet (`q`) ones
    /// included. `mn` lines inside `request` are counted so their `MN` replies stay in the
    /// result; a request whose data block holds a line `mn` would confuse that count.
    pub fn call_synced(&mut self, request: &[u8]) -> Result<Vec<u8>> {
        let own = count_sync_lines(request);
        let mut full = request.to_vec();
        full.extend_from_slice(SYNC);
        self.send(&full)?;
        let deadline = Instant::now() + self.timeout;
        let mut at = 0;
        let mut seen = 0;
        loop {
            while let Some(u) = reply::unit(&self.buf[at..]) {
                let is_sync = !u.value && u.line(&self.buf[at..]) == SYNC_REPLY;
                at += u.len;
                if is_sync {
                    seen += 1;
                    if seen > own {
                        let mut reply: Vec<u8> = self.buf.drain(..at).collect();
                        reply.truncate(reply.len() - SYNC_REPLY.len());
                        return Ok(reply);
                    }
                }
            }
            let what = format!("the reply to {} then MN", show(request, 120));
            self.fill(deadline, &what)?;
        }
    }

    /// [`Conn::call_synced`], failing unless the reply is exactly `want`.
    pub fn expect(&mut self, request: &[u8], want: &[u8]) -> Result<()> {
        let got = self.call_synced(request)?;
        if got != want {
            bail!(
                "request {}\n  want {}\n  got  {}",
                show(request, 300),
                show(want, 300),
                show(&got, 300)
            );
        }
        Ok(())
    }

    /// Reads one line.
    pub fn read_line(&mut self) -> Result<Vec<u8>> {
        self.read_reply(ReplyKind::Line)
    }

    /// Reads until the server closes the connection (a reset counts as closed), bounded by the
    /// timeout; returns what came before the close.
    pub fn read_to_eof(&mut self) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.fill(deadline, "the server to close the connection") {
                Ok(()) => {}
                Err(e) if is_closed(&e) => return Ok(std::mem::take(&mut self.buf)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads more bytes into the buffer, failing on timeout and on a close.
    fn fill(&mut self, deadline: Instant, what: &str) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "timed out after {:?} waiting for {what}; have {}",
                self.timeout,
                show(&self.buf, 300)
            );
        }
        self.stream
            .set_read_timeout(Some(left))
            .context("setting the read timeout")?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Closed.into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Err(Closed.into()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => bail!(
                "timed out after {:?} waiting for {what}; have {}",
                self.timeout,
                show(&self.buf, 300)
            ),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e).context("reading from the server"),
        }
    }
}

/// The server closed the connection (EOF or reset).
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server closed the connection")
    }
}

impl std::error::Error for Closed {}

/// True if `e` says the server closed the connection.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<Closed>()
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                )
            })
    })
}

/// `mn` commands in a request: lines that are exactly `mn`.
fn count_sync_lines(request: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while at < request.len() {
        if request[at..].starts_with(SYNC) {
            count += 1;
        }
        at = match request[at..].iter().position(|&b| b == b'\n') {
            Some(i) => at + i + 1,
            None => request.len(),
        };
    }
    count
}
