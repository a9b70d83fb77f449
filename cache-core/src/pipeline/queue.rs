//! A connection's replies still being made, in request order. A reply that waits for another
//! shard (or for the host: `stats`, `flush_all`'s barrier) holds its place; replies made here
//! meanwhile queue behind it, and everything moves to the output in order as the head is done.

use std::collections::VecDeque;

use super::multi::Multi;
use crate::protocol::Owned;

/// A single-key request on another shard.
#[derive(Debug)]
pub(super) struct One {
    pub shard: usize,
    pub hash: u64,
    /// Kept to ask again when the answer was too big for the grant (reads only).
    pub req: Option<Owned>,
    /// Bytes counted for the request's copy while it travels.
    pub copy: usize,
    /// Its key is noted as a hazard until the answer is in (`Some(changes)`; see `hazard`).
    pub hazard: Option<bool>,
    pub state: OneState,
}

#[derive(Debug)]
pub(super) enum OneState {
    /// Asked, with this many bytes granted for the answer.
    Flight(usize),
    /// The answer needs more bytes than granted (the entry's `want`): ask again once there is
    /// room.
    Again,
    Done(Vec<u8>),
}

#[derive(Debug)]
pub(super) enum Slot {
    /// Replies made here behind a pending entry.
    Ready(Vec<u8>),
    One(Box<One>),
    Multi {
        m: Box<Multi>,
        done: bool,
    },
    /// The host answers (`stats`, or `flush_all` once every shard applied it): its bytes, then
    /// `tail`. `held` bytes were counted when the entry was queued.
    Host {
        done: Option<Vec<u8>>,
        tail: &'static [u8],
        held: usize,
    },
    /// Dropped (a datagram whose reply was given up): ready, empty.
    Gone,
}

impl Slot {
    /// A single-key read waiting to be asked again.
    pub(super) fn again(&self) -> bool {
        matches!(self, Slot::One(one) if matches!(one.state, OneState::Again))
    }
}

#[derive(Debug)]
pub(super) struct Entry {
    pub slot: Slot,
    /// Waiting for this much room.
    pub want: Option<usize>,
}

/// The entries, numbered by sequence from `head`.
#[derive(Debug, Default)]
pub(super) struct Queue {
    entries: VecDeque<Entry>,
    head: u64,
    /// Entries with `want` set.
    wants: usize,
}

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn wants(&self) -> usize {
        self.wants
    }

    /// Appends `slot`; returns its sequence number.
    pub(super) fn push(&mut self, slot: Slot) -> u64 {
        self.entries.push_back(Entry { slot, want: None });
        self.head + self.entries.len() as u64 - 1
    }

    /// The buffer for a reply made here now: a `Ready` entry at the tail (made if needed).
    pub(super) fn tail_buf(&mut self) -> &mut Vec<u8> {
        if !matches!(
            self.entries.back(),
            Some(Entry {
                slot: Slot::Ready(_),
                ..
            })
        ) {
            self.push(Slot::Ready(Vec::new()));
        }
        match self.entries.back_mut() {
            Some(Entry {
                slot: Slot::Ready(b),
                ..
            }) => b,
            _ => unreachable!("a Ready entry was just pushed"),
        }
    }

    pub(super) fn get_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let i = seq.checked_sub(self.head)?;
        self.entries.get_mut(usize::try_from(i).ok()?)
    }

    pub(super) fn at_mut(&mut self, i: usize) -> Option<&mut Entry> {
        self.entries.get_mut(i)
    }

    pub(super) fn seq_at(&self, i: usize) -> u64 {
        self.head + i as u64
    }

    pub(super) fn front_mut(&mut self) -> Option<&mut Entry> {
        self.entries.front_mut()
    }

    pub(super) fn pop(&mut self) -> Option<Entry> {
        let e = self.entries.pop_front()?;
        self.head += 1;
        if e.want.is_some() {
            self.wants -= 1;
        }
        Some(e)
    }

    /// Sets entry `seq`'s wait, keeping the count of waiting entries.
    pub(super) fn set_want(&mut self, seq: u64, want: Option<usize>) {
        let Some(e) = self.get_mut(seq) else { return };
        let was = e.want.is_some();
        e.want = want;
        match (was, want.is_some()) {
            (false, true) => self.wants += 1,
            (true, false) => self.wants -= 1,
            _ => {}
        }
    }
}
