//! Connections a shard opens to other memcached-protocol servers: connect, pipeline requests,
//! frame the replies, time out, close — on the shard's own ring, under the same rule as every
//! other operation (each in-flight operation owns its buffer and socket address until its
//! completion comes back).
//!
//! A caller sends request bytes with what their reply looks like ([`Expect`], or none for a
//! `noreply` request) and a token; replies are split off the stream in order
//! ([`Expect::frame`]) and come back as [`OutEvent`]s carrying the token. A connection whose
//! oldest request passed its deadline, whose server hung up, or whose stream went out of step
//! fails every request in flight (each gets its event) and closes. What the caller does then
//! (retry, mark the server down) is its business; the router builds on this.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    os::fd::RawFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use cache_core::protocol::reply::{Expect, Frame};
use io_uring::{opcode, types::Fd};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage};

use super::{
    conn::slab::{Id, Slab},
    ring::{Op, Ring},
};

/// An outbound connection's id in its shard.
pub(crate) type OutId = Id;

/// Bytes one receive asks for.
const RECV_CHUNK: usize = 16 << 10;

/// An outbound operation in flight, owning what the kernel touches.
#[derive(Debug)]
pub(crate) enum OutOp {
    Connect {
        out: OutId,
        #[expect(dead_code, reason = "owned for the kernel until connected")]
        addr: Box<SockaddrStorage>,
    },
    Send {
        out: OutId,
        buf: Vec<u8>,
        at: usize,
    },
    Recv {
        out: OutId,
        buf: Vec<u8>,
    },
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutError {
    /// The connection could not be made (the errno's text).
    Connect(String),
    /// No reply by the deadline.
    Timeout,
    /// The server hung up, or sent what no request of ours could get.
    Closed(String),
}

/// A reply (or the lack of one) for the request sent with `token`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OutEvent {
    pub(crate) out: OutId,
    pub(crate) token: u64,
    pub(crate) reply: Result<Vec<u8>, OutError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Ready,
    /// Shut down: freed once no operation of it is in flight.
    Closing,
}

#[derive(Debug)]
struct Waiting {
    token: u64,
    expect: Expect,
    deadline: Instant,
}

#[derive(Debug)]
struct Out {
    fd: RawFd,
    state: State,
    timeout: Duration,
    /// Bytes to send once the send in flight (if any) completes.
    queued: Vec<u8>,
    sending: bool,
    receiving: bool,
    connecting: bool,
    /// Requests sent, oldest first.
    waiting: VecDeque<Waiting>,
    /// Received, not yet framed.
    input: Vec<u8>,
}

/// A shard's outbound connections.
#[derive(Debug, Default)]
pub(crate) struct Outbounds {
    outs: Slab<Out>,
    events: Vec<OutEvent>,
    /// Connections with requests queued since the last [`Outbounds::flush`].
    dirty: Vec<OutId>,
}

impl Outbounds {
    /// Starts connecting to `addr`; requests may be sent at once (they go out once connected).
    /// Every request then has `timeout` to be answered.
    pub(crate) fn open(
        &mut self,
        ring: &mut Ring,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<OutId> {
        let family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = socket::socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .with_context(|| format!("a socket for {addr}"))?;
        socket::setsockopt(&fd, socket::sockopt::TcpNoDelay, &true)?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
        let id = self.outs.insert(Out {
            fd,
            state: State::Connecting,
            timeout,
            queued: Vec::new(),
            sending: false,
            receiving: false,
            connecting: true,
            waiting: VecDeque::new(),
            input: Vec::new(),
        });
        let addr = Box::new(SockaddrStorage::from(addr));
        let e = opcode::Connect::new(Fd(fd), addr.as_ptr().cast(), addr.len()).build();
        ring.submit(e, Op::Out(OutOp::Connect { out: id, addr }));
        Ok(id)
    }

    /// Queues `bytes` (whole requests) on `out`, sent at the next [`Outbounds::flush`]; when
    /// `expect` is given, a reply is awaited and reported with `token`. A closed or unknown
    /// connection reports the failure at once.
    pub(crate) fn send(
        &mut self,
        out: OutId,
        bytes: &[u8],
        expect: Option<Expect>,
        token: u64,
        now: Instant,
    ) {
        let Some(o) = self.outs.get_mut(out).filter(|o| o.state != State::Closing) else {
            if expect.is_some() {
                let why = OutError::Closed("connection closed".into());
                self.events.push(OutEvent {
                    out,
                    token,
                    reply: Err(why),
                });
            }
            return;
        };
        let first = o.queued.is_empty();
        o.queued.extend_from_slice(bytes);
        if let Some(expect) = expect {
            o.waiting.push_back(Waiting {
                token,
                expect,
                deadline: now + o.timeout,
            });
        }
        // Sent at the end of the loop turn, with whatever else this turn queues for it.
        if first {
            self.dirty.push(out);
        }
    }

    /// Starts the sends of everything queued since the last call: requests a turn queued for
    /// one server go in one send (called once a loop turn, before the shard sleeps).
    pub(crate) fn flush(&mut self, ring: &mut Ring) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for out in dirty.drain(..) {
            self.pump(ring, out);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Starts the send and the receive a ready connection needs.
    fn pump(&mut self, ring: &mut Ring, out: OutId) {
        let Some(o) = self.outs.get_mut(out) else {
            return;
        };
        if o.state != State::Ready {
            return;
        }
        if !o.sending && !o.queued.is_empty() {
            let buf = std::mem::take(&mut o.queued);
            let e = opcode::Send::new(Fd(o.fd), buf.as_ptr(), buf.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build();
            o.sending = true;
            ring.submit(e, Op::Out(OutOp::Send { out, buf, at: 0 }));
        }
        if !o.receiving && !o.waiting.is_empty() {
            let mut buf = vec![0u8; RECV_CHUNK];
            let e = opcode::Recv::new(Fd(o.fd), buf.as_mut_ptr(), buf.len() as u32).build();
            o.receiving = true;
            ring.submit(e, Op::Out(OutOp::Recv { out, buf }));
        }
    }

    /// An outbound operation completed with `res`.
    pub(crate) fn complete(&mut self, ring: &mut Ring, op: OutOp, res: i32) {
        let out = match &op {
            OutOp::Connect { out, .. } | OutOp::Send { out, .. } | OutOp::Recv { out, .. } => *out,
        };
        match op {
            OutOp::Connect { .. } => {
                let Some(o) = self.outs.get_mut(out) else {
                    return;
                };
                o.connecting = false;
                if res < 0 {
                    let why = std::io::Error::from_raw_os_error(-res).to_string();
                    return self.fail(ring, out, &OutError::Connect(why));
                }
                if o.state == State::Connecting {
                    o.state = State::Ready;
                }
            }
            OutOp::Send { buf, at, .. } => {
                let Some(o) = self.outs.get_mut(out) else {
                    return;
                };
                o.sending = false;
                if res <= 0 {
                    return self.fail(ring, out, &OutError::Closed("send failed".into()));
                }
                let at = at + res as usize;
                if at < buf.len() && o.state == State::Ready {
                    let rest = &buf[at..];
                    let e = opcode::Send::new(Fd(o.fd), rest.as_ptr(), rest.len() as u32)
                        .flags(libc::MSG_NOSIGNAL)
                        .build();
                    o.sending = true;
                    ring.submit(e, Op::Out(OutOp::Send { out, buf, at }));
                }
            }
            OutOp::Recv { buf, .. } => {
                let Some(o) = self.outs.get_mut(out) else {
                    return;
                };
                o.receiving = false;
                if res <= 0 {
                    let why = if res == 0 {
                        "the server closed the connection".to_owned()
                    } else {
                        std::io::Error::from_raw_os_error(-res).to_string()
                    };
                    return self.fail(ring, out, &OutError::Closed(why));
                }
                o.input.extend_from_slice(&buf[..res as usize]);
                if !self.split(out) {
                    let why = OutError::Closed("a reply out of step with the requests".into());
                    return self.fail(ring, out, &why);
                }
            }
        }
        self.pump(ring, out);
        self.finish(ring);
    }

    /// Splits whole replies off `out`'s input; false if the stream is out of step.
    fn split(&mut self, out: OutId) -> bool {
        let Some(o) = self.outs.get_mut(out) else {
            return true;
        };
        let mut at = 0;
        while let Some(w) = o.waiting.front() {
            match w.expect.frame(&o.input[at..]) {
                Frame::Whole(n) => {
                    let reply = o.input[at..at + n].to_vec();
                    at += n;
                    let token = w.token;
                    o.waiting.pop_front();
                    self.events.push(OutEvent {
                        out,
                        token,
                        reply: Ok(reply),
                    });
                }
                Frame::Partial => break,
                Frame::Bad => return false,
            }
        }
        o.input.drain(..at);
        // Bytes nobody asked for put the stream out of step.
        !o.waiting.is_empty() || o.input.is_empty()
    }

    /// Fails every request in flight on `out` and closes it.
    fn fail(&mut self, ring: &mut Ring, out: OutId, why: &OutError) {
        let Some(o) = self.outs.get_mut(out) else {
            return;
        };
        for w in o.waiting.drain(..) {
            self.events.push(OutEvent {
                out,
                token: w.token,
                reply: Err(why.clone()),
            });
        }
        self.close(ring, out);
    }

    /// Closes `out` (its requests in flight get no reply events: close after they are in, or
    /// let a deadline fail them first).
    pub(crate) fn close(&mut self, ring: &mut Ring, out: OutId) {
        let Some(o) = self.outs.get_mut(out) else {
            return;
        };
        if o.state != State::Closing {
            o.state = State::Closing;
            // SAFETY: shutdown(2) on a socket this connection owns; its operations end.
            unsafe { libc::shutdown(o.fd, libc::SHUT_RDWR) };
        }
        self.finish(ring);
    }

    pub(crate) fn close_all(&mut self, ring: &mut Ring) {
        for id in self.outs.ids() {
            self.close(ring, id);
        }
    }

    /// Frees closing connections with nothing in flight.
    fn finish(&mut self, _ring: &mut Ring) {
        for id in self.outs.ids() {
            let done = self.outs.get_mut(id).is_some_and(|o| {
                o.state == State::Closing && !o.sending && !o.receiving && !o.connecting
            });
            if done {
                if let Some(o) = self.outs.remove(id) {
                    // SAFETY: no operation on the socket is in flight.
                    unsafe { libc::close(o.fd) };
                }
            }
        }
    }

    /// Fails the connections whose oldest request is past its deadline.
    pub(crate) fn check_deadlines(&mut self, ring: &mut Ring, now: Instant) {
        for id in self.outs.ids() {
            let late = self
                .outs
                .get_mut(id)
                .and_then(|o| o.waiting.front())
                .is_some_and(|w| w.deadline <= now);
            if late {
                self.fail(ring, id, &OutError::Timeout);
            }
        }
    }

    /// The events since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<OutEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether every connection is freed (the tests check that closing frees them).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.outs.is_empty()
    }
}

#[cfg(test)]
mod tests;
