//! The shard's io_uring: submissions that never spin, and completions matched to the
//! operations that own their memory ([`op`]).
//!
//! A submission goes into the submission queue if it has room; if not, the queue is handed to
//! the kernel once and the push tried again, and if the kernel cannot take it either (its
//! completion queue is full, so `io_uring_enter` answers EBUSY) the entry waits in a backlog
//! that the event loop pushes once it has reaped completions. Nothing ever loops on a full ring.

pub(crate) mod bufring;
pub(crate) mod op;

use std::collections::VecDeque;

use anyhow::{Context, Result};
use io_uring::{cqueue, squeue, IoUring};

use self::op::Ops;
pub(crate) use self::op::{Op, UserData};

/// A ring and the operations in flight on it.
pub(crate) struct Ring {
    pub(crate) uring: IoUring,
    ops: Ops,
    backlog: VecDeque<squeue::Entry>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.ops.live())
            .field("backlog", &self.backlog.len())
            .finish()
    }
}

impl Ring {
    pub(crate) fn new(entries: u32) -> Result<Ring> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            // Raises a flag in the ring when completions are queued, so a poll can see them
            // without entering the kernel.
            .setup_taskrun_flag()
            .build(entries)
            .context("creating io_uring (needs Linux 6.1+ with io_uring enabled)")?;
        Ok(Ring {
            uring,
            ops: Ops::default(),
            backlog: VecDeque::new(),
        })
    }

    /// Submits `entry`, whose memory `op` owns (the caller built `entry` pointing into `op`'s
    /// heap buffers, which do not move when `op` does).
    pub(crate) fn submit(&mut self, entry: squeue::Entry, op: Op) -> UserData {
        let ud = self.ops.insert(op);
        self.push(entry.user_data(ud.raw()));
        ud
    }

    /// Submits an entry that needs no memory of its own (a cancel, say), as `op`.
    fn push(&mut self, entry: squeue::Entry) {
        if !self.backlog.is_empty() || !self.try_push(&entry) {
            // Hand the kernel what it has, then try once more before waiting in the backlog.
            let _ = self.uring.submit();
            if !self.backlog.is_empty() || !self.try_push(&entry) {
                self.backlog.push_back(entry);
            }
        }
    }

    fn try_push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: every entry points only at memory owned by its `Op`, which stays in `ops`
        // until the operation's final completion (see the module docs of `op`); the ring
        // copies the entry itself.
        unsafe { self.uring.submission().push(entry) }.is_ok()
    }

    /// Moves backlogged entries into the submission queue while it has room.
    pub(crate) fn flush_backlog(&mut self) {
        while let Some(e) = self.backlog.front() {
            let e = e.clone();
            if !self.try_push(&e) {
                break;
            }
            self.backlog.pop_front();
        }
    }

    /// Hands queued submissions to the kernel and waits for `want` completions (0: none).
    pub(crate) fn enter(&mut self, want: usize) -> std::io::Result<usize> {
        self.flush_backlog();
        self.uring.submit_and_wait(want)
    }

    /// Hands queued submissions to the kernel now.
    pub(crate) fn kick(&mut self) {
        let _ = self.uring.submit();
    }

    /// Moves every queued completion into `out`.
    pub(crate) fn reap(&mut self, out: &mut Vec<cqueue::Entry>) {
        out.extend(self.uring.completion());
    }

    /// The operation a completion belongs to: taken out on a final completion, borrowed while
    /// a multishot one goes on (`Err` holds the borrow).
    pub(crate) fn complete(&mut self, cqe: &cqueue::Entry) -> Option<Done<'_>> {
        let ud = UserData::from_raw(cqe.user_data());
        if cqueue::more(cqe.flags()) {
            self.ops.get(ud).map(Done::More)
        } else {
            self.ops.remove(ud).map(Done::Last)
        }
    }

    /// Whether the kernel has completions queued (no syscall).
    pub(crate) fn has_work(&mut self) -> bool {
        self.uring.submission().taskrun() || !self.uring.completion().is_empty()
    }

    /// Whether the submission queue holds entries not yet handed over.
    pub(crate) fn pending(&mut self) -> bool {
        !self.uring.submission().is_empty() || !self.backlog.is_empty()
    }
}

/// A completed operation.
#[derive(Debug)]
pub(crate) enum Done<'a> {
    /// The operation is over and its memory back.
    Last(Op),
    /// A multishot operation goes on.
    More(&'a mut Op),
}
