//! TCP clients: bytes in to the session, replies out, and the connection's end.
//!
//! A connection's input is received while its session wants input ([`Fed::read`]); when it
//! stops wanting (its replies wait for room), the receive is cancelled and the client's bytes
//! wait in the kernel — backpressure all the way to the client. Each reply buffer the session
//! hands over is owned by its send operation until the completion; the session counts its
//! bytes until they are reported sent.
//!
//! [`Fed::read`]: cache_core::pipeline::Fed::read

use io_uring::{cqueue, opcode, types::Fd};

use super::{
    conn::{ConnId, Kind, Life, Recv, Send},
    ring::Op,
    shard::{Shard, TCP_GROUP},
};

/// The largest buffer a connection keeps between requests.
const KEEP: usize = 32 << 10;

impl Shard {
    /// Arms the connection's multishot receive if its session wants input.
    pub(crate) fn arm_recv(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let wants = c.life == Life::Open && c.session.may_read();
        let Kind::Stream(s) = &mut c.kind else { return };
        if s.recv != Recv::Idle || !wants {
            return;
        }
        let e = opcode::RecvMulti::new(Fd(s.fd), TCP_GROUP).build();
        let fd_ud = self.ring.submit(e, Op::Recv(id));
        if let Some(Kind::Stream(s)) = self.conns.get_mut(id).map(|c| &mut c.kind) {
            s.recv = Recv::Armed(fd_ud);
        }
    }

    /// A receive completed (`more`: the multishot receive goes on).
    pub(crate) fn received(&mut self, id: ConnId, res: i32, flags: u32, more: bool) {
        let bid = cqueue::buffer_select(flags);
        let Some(c) = self.conns.get_mut(id) else {
            if let Some(bid) = bid {
                self.bufs.push(bid);
            }
            return;
        };
        if let Some(bid) = bid {
            if res > 0 {
                c.inbuf.extend_from_slice(self.bufs.buf(bid, res as usize));
            }
            self.bufs.push(bid);
        }
        if let Kind::Stream(s) = &mut c.kind {
            if !more {
                s.recv = Recv::Idle;
            }
        }
        if res > 0 {
            self.counters.bytes_read += res as u64;
            self.feed(id);
        } else if res == 0 || (res != -libc::ENOBUFS && res != -libc::ECANCELED) {
            // EOF or a socket error: the client is gone.
            let why = if res == 0 {
                "the client hung up".to_owned()
            } else {
                format!(
                    "receive failed: {}",
                    std::io::Error::from_raw_os_error(-res)
                )
            };
            self.begin_close(id, &why);
        } else {
            self.after(id);
        }
        self.try_finish(id);
    }

    /// Runs what the connection's input holds through its session.
    pub(crate) fn feed(&mut self, id: ConnId) {
        if let Some((c, mut cx)) = self.client(id) {
            if !c.inbuf.is_empty() && c.life == Life::Open && c.session.may_read() {
                let input = std::mem::take(&mut c.inbuf);
                let fed = c.session.feed(&mut cx, &input);
                c.inbuf = input;
                c.inbuf.drain(..fed.consumed);
                // What a big request grew the buffer to goes once it is used (the budget counts
                // bytes held; this keeps the allocation in line with them).
                if c.inbuf.is_empty() {
                    if c.inbuf.capacity() > KEEP / 2 {
                        c.inbuf = Vec::new();
                    }
                } else if c.inbuf.capacity() > KEEP && c.inbuf.len() <= KEEP / 2 {
                    c.inbuf.shrink_to(KEEP / 2);
                }
            }
        }
        self.after(id);
    }

    /// After a session call that may have let it take input again (an answer, bytes sent, a
    /// pool wake-up): the input already received goes first.
    pub(crate) fn resume(&mut self, id: ConnId) {
        let buffered = self
            .conns
            .get_mut(id)
            .is_some_and(|c| !c.inbuf.is_empty() && c.session.may_read());
        if buffered {
            self.feed(id);
        } else {
            self.after(id);
        }
    }

    /// After any session call: carries its work, queues its output, and starts or stops
    /// receiving as the session now wants.
    pub(crate) fn after(&mut self, id: ConnId) {
        self.dispatch(id);
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let closing = c.session.closing();
        let (may_read, has_output, pending) = (
            c.session.may_read(),
            c.session.has_output(),
            c.session.pending(),
        );
        match &mut c.kind {
            Kind::Datagram(_) => {
                // Done once nothing is pending and the input is used up (what is left when the
                // session could read on is an incomplete request: the datagram is all of it),
                // or the reply was given up. A session waiting for room is not done.
                let used = c.inbuf.is_empty() || may_read || c.session.failed();
                if !pending && used {
                    self.finish_datagram(id);
                }
            }
            Kind::Stream(s) => {
                if closing && c.life == Life::Open {
                    c.life = Life::Draining;
                }
                let wants = may_read && c.life == Life::Open;
                if (has_output || c.life == Life::Draining) && !s.queued {
                    s.queued = true;
                    self.dirty.push(id);
                }
                match s.recv {
                    Recv::Armed(target) if !wants => {
                        s.recv = Recv::Cancelling;
                        let e = opcode::AsyncCancel::new(target.raw()).build();
                        self.ring.submit(e, Op::Cancel);
                    }
                    Recv::Idle if wants => self.arm_recv(id),
                    _ => {}
                }
            }
        }
    }

    /// Starts a send for every connection with output waiting and none in flight; hangs up on
    /// a draining one whose output is all out.
    pub(crate) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            let Kind::Stream(s) = &mut c.kind else {
                continue;
            };
            s.queued = false;
            if c.life == Life::Closing {
                continue;
            }
            if let Send::Idle(buf) = &mut s.send {
                let mut buf = std::mem::take(buf);
                if c.session.take_output(&mut buf) {
                    let e = opcode::Send::new(Fd(s.fd), buf.as_ptr(), buf.len() as u32)
                        .flags(libc::MSG_NOSIGNAL)
                        .build();
                    s.send = Send::Busy;
                    self.ring.submit(
                        e,
                        Op::Send {
                            conn: id,
                            buf,
                            at: 0,
                        },
                    );
                } else {
                    s.send = Send::Idle(buf);
                    if c.life == Life::Draining && !c.session.pending() {
                        self.begin_close(id, "replies sent before hanging up");
                        self.try_finish(id);
                    }
                }
            }
        }
        // Nothing above queues a connection, so the list is empty again: keep its allocation.
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// A send completed: `buf[at..]` was being sent.
    pub(crate) fn sent(&mut self, id: ConnId, res: i32, mut buf: Vec<u8>, at: usize) {
        if res > 0 {
            self.counters.bytes_written += res as u64;
        }
        let now = self.now;
        let Some((c, mut cx)) = self.client(id) else {
            return;
        };
        let Kind::Stream(s) = &mut c.kind else { return };
        if res < 0 {
            s.send = Send::Idle(Vec::new());
            let why = format!("send failed: {}", std::io::Error::from_raw_os_error(-res));
            self.begin_close(id, &why);
            self.try_finish(id);
            return;
        }
        let n = res as usize;
        if n > 0 {
            s.last_sent = now;
        }
        let at = at + n;
        let again = if at < buf.len() && c.life != Life::Closing {
            // The rest of the buffer, still owned by the operation.
            let rest = &buf[at..];
            let e = opcode::Send::new(Fd(s.fd), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build();
            Some((e, buf))
        } else {
            buf.clear();
            if buf.capacity() > KEEP {
                // A big reply's buffer goes; the next small ones need none this large.
                buf = Vec::new();
            }
            s.send = Send::Idle(buf);
            None
        };
        c.session.sent(&mut cx, n);
        if let Some((e, buf)) = again {
            self.ring.submit(e, Op::Send { conn: id, buf, at });
        }
        self.resume(id);
        if let Some(Kind::Stream(s)) = self.conns.get_mut(id).map(|c| &mut c.kind) {
            if !s.queued {
                s.queued = true;
                self.dirty.push(id);
            }
        }
        self.try_finish(id);
    }

    /// Hangs up: the receive ends with a 0-byte completion; the slot is freed once nothing of
    /// the connection is in flight (`try_finish`).
    pub(crate) fn begin_close(&mut self, id: ConnId, why: &str) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.life == Life::Closing {
            return;
        }
        tracing::debug!(shard = self.id, conn = id.idx, "closing: {why}");
        c.life = Life::Closing;
        if let Kind::Stream(s) = &c.kind {
            // SAFETY: shutdown(2) on a socket this connection owns.
            unsafe { libc::shutdown(s.fd, libc::SHUT_RDWR) };
        }
    }

    /// Frees a closing connection once none of its operations is in flight.
    pub(crate) fn try_finish(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let Kind::Stream(s) = &c.kind else {
            // A datagram's client (shutting down): nothing of it is in flight on the ring; an
            // answer still on its way finds it gone.
            if c.life == Life::Closing {
                if let Some((c, mut cx)) = self.client(id) {
                    c.session.close(&mut cx);
                }
                self.conns.remove(id);
            }
            return;
        };
        if c.life != Life::Closing || s.recv != Recv::Idle || matches!(s.send, Send::Busy) {
            return;
        }
        let fd = s.fd;
        if let Some((c, mut cx)) = self.client(id) {
            c.session.close(&mut cx);
        }
        self.conns.remove(id);
        // SAFETY: the connection owned `fd` and no operation on it is in flight.
        unsafe { libc::close(fd) };
        self.shared
            .curr_conns
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.forget_host_work(id);
        self.on_close();
    }
}
