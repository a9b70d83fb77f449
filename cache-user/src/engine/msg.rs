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

use cache_core::store::{slabs::ClassStats, Stats};
use crossbeam_queue::SegQueue;

use super::own::Ownership;

/// Which connection slot a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnRef {
    pub shard: usize,
    pub idx: u32,
    pub gen: u32,
}

/// One cross-shard message.
pub(crate) enum Msg {
    /// Run these request bytes (one whole request) on your store; reply to `to`.
    Exec {
        to: ConnRef,
        seq: u64,
        part: u32,
        /// The key's hash, when routing computed it (see `exec::execute_hashed`).
        hash: Option<u64>,
        bytes: Vec<u8>,
    },
    /// The keys of a multiget that live on your store (`get`/`gets`/`gat`/`gats`/`lease-get`).
    GetKeys {
        to: ConnRef,
        seq: u64,
        part: u32,
        kind: GetKind,
        keys: Vec<u8>,
    },
    /// `flush_all` reaches every shard.
    Flush { delay: i32 },
    /// `stats reset` reaches every shard.
    ResetStats,
    /// A newer bucket map: use it from now on and drop the items of the buckets it takes away.
    Buckets(Arc<Ownership>),
    /// Send me your counters for `stats`.
    StatsReq { to: ConnRef, seq: u64, part: u32 },
    /// A finished reply part.
    Reply {
        to: ConnRef,
        seq: u64,
        part: u32,
        bytes: Vec<u8>,
    },
    /// A shard's counters.
    StatsPart {
        to: ConnRef,
        seq: u64,
        part: u32,
        stats: Box<(Stats, Vec<ClassStats>, ShardCounters)>,
    },
}

/// How the keys of a [`Msg::GetKeys`] are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetKind {
    Get { cas: bool, touch: Option<i32> },
    Lease,
}

/// Per-shard network counters, summed for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShardCounters {
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Datagrams dropped: their source is outside the UDP allowlist.
    pub udp_refused: u64,
    /// Requests not run because a key's bucket is not this node's (silent ones included).
    pub bucket_refused: u64,
    /// Of those, `noreply` writes dropped without a reply.
    pub bucket_refused_noreply: u64,
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
