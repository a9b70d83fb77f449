//! Messages between shard threads: a lock-free queue per shard plus an eventfd to wake it.
//!
//! A producer pushes, then wakes the consumer only if it announced it was about to sleep (a
//! Dekker-style handshake on `sleeping`, both sides sequentially consistent), so a busy shard
//! pays no syscall per message.

use std::{
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use cache_core::{
    bucket::Ownership,
    pipeline::{Answer, Remote, Ticket},
    store::{slabs::ClassStats, Stats},
};
use crossbeam_queue::SegQueue;

use super::conn::ConnId;

/// A client of some shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnRef {
    pub shard: usize,
    pub conn: ConnId,
}

/// One shard's answer to a `stats` request.
pub(crate) type StatsPart = (Stats, Vec<ClassStats>, ShardCounters);

/// One cross-shard message.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Run `op` on your store; answer `from` with `ticket`.
    Exec {
        from: ConnRef,
        ticket: Ticket,
        op: Remote,
    },
    /// The answer to an `Exec`.
    Answer {
        to: ConnRef,
        ticket: Ticket,
        answer: Answer,
    },
    /// Apply `flush_all` (the sender already did); say so to `from`.
    Flush {
        from: ConnRef,
        ticket: Ticket,
        delay: i32,
    },
    Flushed {
        to: ConnRef,
        ticket: Ticket,
    },
    /// Send me your counters for `stats`.
    StatsReq {
        from: ConnRef,
        ticket: Ticket,
    },
    StatsPart {
        to: ConnRef,
        ticket: Ticket,
        part: Box<StatsPart>,
    },
    /// `stats reset` reaches every shard.
    ResetStats,
    /// A newer bucket map: use it from now on and drop the items of the buckets it takes away.
    Buckets(Arc<Ownership>),
}

/// Per-shard counters of the engine, summed for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShardCounters {
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Datagrams dropped: their source is outside the UDP allowlist.
    pub udp_refused: u64,
    /// Reply datagrams dropped: too many were in flight.
    pub udp_dropped: u64,
    /// Requests not run because a key's bucket is not this node's (silent ones included).
    pub bucket_refused: u64,
    /// Of those, `noreply` writes dropped without a reply.
    pub bucket_refused_noreply: u64,
    /// Times accepting stopped because the process ran out of file descriptors.
    pub listen_disabled: u64,
    /// Connections closed because they held borrowed reply memory and read nothing.
    pub stalled_closed: u64,
    /// The longest event-loop turn, microseconds, since the last `stats reset`.
    pub loop_max_us: u64,
    /// Reply and input bytes lent out by the shard's pools now.
    pub reply_pool_lent: u64,
    pub input_pool_lent: u64,
    /// A router shard's backend counters.
    pub route: crate::cluster::route::RouteCounters,
}

pub(crate) struct Mailbox {
    queue: SegQueue<Msg>,
    sleeping: AtomicBool,
    efd: OwnedFd,
}

impl Mailbox {
    pub(crate) fn new() -> std::io::Result<Mailbox> {
        let efd = nix::sys::eventfd::EventFd::from_flags(
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
        )?;
        Ok(Mailbox {
            queue: SegQueue::new(),
            sleeping: AtomicBool::new(false),
            efd: efd.into(),
        })
    }

    pub(crate) fn send(&self, m: Msg) {
        self.queue.push(m);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Wakes the owner unconditionally (shutdown).
    pub(crate) fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // A full counter (EAGAIN) already means "wake up": nothing to do on error.
        let _ = nix::unistd::write(&self.efd, &one);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn pop(&self) -> Option<Msg> {
        self.queue.pop()
    }

    /// Announces the owner is about to block; returns false if messages are already waiting.
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.queue.is_empty() {
            true
        } else {
            self.sleeping.store(false, Ordering::SeqCst);
            false
        }
    }

    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    pub(crate) fn efd(&self) -> i32 {
        self.efd.as_raw_fd()
    }
}
