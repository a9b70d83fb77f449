//! Accepting connections, refusing those past `-c`, and backing off when the process is out of
//! file descriptors instead of spinning on a listener that keeps failing.
//!
//! A multishot accept that fails with EMFILE or ENFILE ends. Re-arming it at once would fail
//! again at once, a busy loop; instead accepting stops (memcached's `listen_disabled_num`
//! counts each time) until a connection of this shard closes or a backoff timer fires (10 ms,
//! doubling to 1 s while it keeps failing). Pending connections wait in the kernel's backlog.

use std::{os::fd::AsRawFd, sync::atomic::Ordering};

use io_uring::{
    opcode,
    types::{Fd, Timespec},
};

use super::{conn::Conn, ring::Op, shard::Shard};

const REJECT: &[u8] = b"SERVER_ERROR too many open connections\r\n";
const BACKOFF_MIN_MS: u64 = 10;
const BACKOFF_MAX_MS: u64 = 1000;

/// The listener's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Accept {
    /// No accept in flight (before the first, or after the last at shutdown).
    #[default]
    Idle,
    /// An accept is in flight; `backoff_ms` is the last backoff, if it failed just before.
    Armed { backoff_ms: u64 },
    /// Out of descriptors: waiting `ms` before trying again (or for a connection to close).
    Backoff { ms: u64 },
}

impl Shard {
    pub(crate) fn arm_accept(&mut self) {
        let backoff_ms = match self.accept {
            Accept::Armed { .. } => return,
            Accept::Backoff { ms } => ms,
            Accept::Idle => 0,
        };
        if self.stopping {
            return;
        }
        let e = opcode::AcceptMulti::new(Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.ring.submit(e, Op::Accept);
        self.accept = Accept::Armed { backoff_ms };
    }

    /// An accept completed (`more`: the multishot accept goes on).
    pub(crate) fn accepted(&mut self, res: i32, more: bool) {
        if res >= 0 {
            self.admit(res);
            self.accept = Accept::Armed { backoff_ms: 0 };
        }
        if more {
            return;
        }
        let backoff = match self.accept {
            Accept::Armed { backoff_ms } => backoff_ms,
            _ => 0,
        };
        self.accept = Accept::Idle;
        if res == -libc::EMFILE || res == -libc::ENFILE {
            self.counters.listen_disabled += 1;
            let ms = (backoff * 2).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
            tracing::warn!(
                shard = self.id,
                "out of file descriptors ({}): not accepting for {ms} ms or until a connection \
                 closes",
                std::io::Error::from_raw_os_error(-res)
            );
            self.accept = Accept::Backoff { ms };
            let ts = Box::new(Timespec::from(std::time::Duration::from_millis(ms)));
            let e = opcode::Timeout::new(&*ts).build();
            self.ring.submit(e, Op::Backoff(ts));
        } else {
            self.arm_accept();
        }
    }

    /// The backoff timer fired.
    /// The backoff timer fired (it may have been overtaken by a connection closing).
    pub(crate) fn backed_off(&mut self) {
        // Armed remembers the wait, so a failure right away doubles it.
        if matches!(self.accept, Accept::Backoff { .. }) {
            self.arm_accept();
        }
    }

    /// A connection of this shard closed: a descriptor is free, so accept again now.
    pub(crate) fn on_close(&mut self) {
        if matches!(self.accept, Accept::Backoff { .. }) {
            self.arm_accept();
        }
    }

    fn admit(&mut self, fd: i32) {
        let shared = &self.shared;
        let max = shared.cfg.max_connections as u64;
        if self.stopping || shared.curr_conns.load(Ordering::Relaxed) >= max {
            shared.rejected_conns.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `fd` is a freshly accepted socket we own; the buffer outlives the call.
            unsafe {
                libc::send(
                    fd,
                    REJECT.as_ptr().cast(),
                    REJECT.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                );
                libc::close(fd);
            }
            return;
        }
        shared.curr_conns.fetch_add(1, Ordering::Relaxed);
        shared.total_conns.fetch_add(1, Ordering::Relaxed);
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        let id = self.conns.insert(Conn::stream(fd, self.now));
        self.arm_recv(id);
    }
}

/// Raises `RLIMIT_NOFILE` to what `connections` clients and `threads` shards need (the soft
/// limit up to the hard one; the hard one too when the process may), or logs why it cannot.
pub(crate) fn raise_nofile(connections: usize, threads: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // Per shard: listener, UDP socket, eventfd, io_uring; per process: logs, XDP maps, spare.
    let need = (connections + threads * 8 + 64) as u64;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        tracing::warn!("could not read RLIMIT_NOFILE");
        return;
    };
    if soft >= need {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, need, need.max(hard)) {
        Ok(()) => tracing::info!(from = soft, to = need, "raised RLIMIT_NOFILE for -c"),
        Err(_) if hard > soft => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::warn!(
                need,
                hard,
                "RLIMIT_NOFILE raised only to its hard limit {hard}: fewer connections than -c \
                 can be open at once (accepting backs off when descriptors run out)"
            ),
            Err(e) => tracing::warn!(need, soft, hard, "could not raise RLIMIT_NOFILE: {e}"),
        },
        Err(e) => tracing::warn!(
            need,
            soft,
            "could not raise RLIMIT_NOFILE ({e}): fewer connections than -c can be open at once"
        ),
    }
}
