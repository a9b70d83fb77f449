//! A client connection (or one UDP request): its unparsed input, and its replies, which must
//! leave in request order even when some come back from other shards.
//!
//! Replies go straight into `out` while nothing is pending. Once a request waits on another
//! shard, later replies queue up as slots behind it and move to `out` in order as the head slots
//! complete.

use std::collections::VecDeque;

use cache_core::store::{slabs::ClassStats, Stats};

use super::msg::ShardCounters;

/// Where a UDP request came from and how its reply is framed.
#[derive(Clone)]
pub(crate) struct UdpPeer {
    pub addr: libc::sockaddr_storage,
    pub addr_len: libc::socklen_t,
    pub request_id: u16,
}

/// What to append once all parts of a slot are in.
pub(crate) enum Finish {
    Nothing,
    /// A multiget: `END\r\n`.
    End,
    /// `stats <args>`: format the gathered counters.
    Stats(Vec<u8>),
}

/// One shard's answer to a `stats` request.
pub(crate) type StatsPart = (Stats, Vec<ClassStats>, ShardCounters);

pub(crate) struct Slot {
    parts: Vec<Option<Vec<u8>>>,
    pub stats: Vec<StatsPart>,
    remaining: u32,
    pub finish: Finish,
}

impl Slot {
    pub(crate) fn ready(&self) -> bool {
        self.remaining == 0
    }
}

pub(crate) struct Conn {
    /// The socket, or -1 for a UDP request.
    pub fd: i32,
    pub gen: u32,
    pub udp: Option<UdpPeer>,
    pub inbuf: Vec<u8>,
    /// Bytes of a refused data block still to discard.
    pub swallow: usize,
    slots: VecDeque<Slot>,
    head_seq: u64,
    next_seq: u64,
    pub out: Vec<u8>,
    pub sending: Vec<u8>,
    pub send_off: usize,
    pub send_inflight: bool,
    pub recv_armed: bool,
    pub cancel_inflight: bool,
    /// Input processing (and receiving) stopped until the client reads its replies.
    pub paused: bool,
    pub closing: bool,
    pub close_after_flush: bool,
    /// Already in the shard's list of connections with output to send.
    pub queued: bool,
}

impl Conn {
    pub(crate) fn new(fd: i32, gen: u32, udp: Option<UdpPeer>) -> Conn {
        Conn {
            fd,
            gen,
            udp,
            inbuf: Vec::new(),
            swallow: 0,
            slots: VecDeque::new(),
            head_seq: 0,
            next_seq: 0,
            out: Vec::new(),
            sending: Vec::new(),
            send_off: 0,
            send_inflight: false,
            recv_armed: false,
            cancel_inflight: false,
            paused: false,
            closing: false,
            close_after_flush: false,
            queued: false,
        }
    }

    /// The buffer the next locally computed reply goes into: `out` while nothing is pending,
    /// else a slot behind the pending ones that is ready at once (the last one, if it is such a
    /// slot already, so a run of local replies shares one buffer).
    pub(crate) fn reply_buf(&mut self) -> &mut Vec<u8> {
        if self.slots.is_empty() {
            return &mut self.out;
        }
        let open = self.slots.back().is_some_and(|s| {
            s.ready() && s.parts.len() == 1 && matches!(s.finish, Finish::Nothing)
        });
        if !open {
            self.push_slot(Slot {
                parts: vec![Some(Vec::new())],
                stats: Vec::new(),
                remaining: 0,
                finish: Finish::Nothing,
            });
        }
        match self.slots.back_mut().and_then(|s| s.parts[0].as_mut()) {
            Some(buf) => buf,
            None => &mut self.out,
        }
    }

    fn push_slot(&mut self, slot: Slot) -> u64 {
        if self.slots.is_empty() {
            self.head_seq = self.next_seq;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.push_back(slot);
        seq
    }

    /// Reserves a reply slot of `parts` parts; returns its sequence number.
    pub(crate) fn open_slot(&mut self, parts: u32, finish: Finish) -> u64 {
        self.push_slot(Slot {
            parts: (0..parts).map(|_| None).collect(),
            stats: Vec::new(),
            remaining: parts,
            finish,
        })
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.head_seq)?;
        self.slots.get_mut(usize::try_from(i).ok()?)
    }

    /// Fills part `part` of slot `seq`.
    pub(crate) fn fill(&mut self, seq: u64, part: u32, bytes: Vec<u8>) {
        self.arrive(seq, part, bytes);
    }

    /// Adds one shard's counters to a `stats` slot.
    pub(crate) fn fill_stats(&mut self, seq: u64, part: u32, stats: StatsPart) {
        if let Some(s) = self.arrive(seq, part, Vec::new()) {
            s.stats.push(stats);
        }
    }

    /// Records part `part` of slot `seq` as arrived with `bytes`; returns the slot unless the
    /// part is unknown or already in (a reply for a slot that is gone is dropped).
    fn arrive(&mut self, seq: u64, part: u32, bytes: Vec<u8>) -> Option<&mut Slot> {
        let s = self.slot_mut(seq)?;
        let p = s.parts.get_mut(part as usize).filter(|p| p.is_none())?;
        *p = Some(bytes);
        s.remaining -= 1;
        Some(s)
    }

    /// Moves every completed slot at the head into `out`; `finish` writes a slot's trailer.
    pub(crate) fn drain_ready(&mut self, finish: &mut dyn FnMut(&Slot, &mut Vec<u8>)) {
        while self.slots.front().is_some_and(Slot::ready) {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.head_seq += 1;
            for p in slot.parts.iter().flatten() {
                self.out.extend_from_slice(p);
            }
            finish(&slot, &mut self.out);
        }
    }

    pub(crate) fn pending(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Reply bytes not yet handed to the kernel (what backpressure looks at).
    pub(crate) fn unsent(&self) -> usize {
        self.out.len() + self.sending.len()
    }
}
