//! What each in-flight io_uring operation is, and the slab that owns it until it completes.
//!
//! Every submission gets a slot in [`Ops`]; its `user_data` is a [`UserData`] naming the slot
//! and the slot's generation, so a completion finds its operation and nothing else. An [`Op`]
//! owns what the kernel reads or writes while it is in flight — a send owns its buffer, a UDP
//! send its boxed message, a timeout its timespec — and hands it back on completion. A
//! multishot operation keeps its slot until the completion that says it is over.

use io_uring::types::Timespec;

use crate::engine::{conn::ConnId, udp::UdpOut};

/// One operation in flight.
#[derive(Debug)]
pub(crate) enum Op {
    /// Multishot accept on the shard's listener.
    Accept,
    /// Multishot receive on a connection (provided buffers: owns nothing).
    Recv(ConnId),
    /// A send of `buf[at..]` on a connection; the buffer comes back with the completion.
    Send {
        conn: ConnId,
        buf: Vec<u8>,
        at: usize,
    },
    /// Cancelling a connection's receive (backpressure).
    Cancel,
    /// The mailbox eventfd's read, into its 8-byte buffer.
    Mailbox(
        #[expect(dead_code, reason = "owned for the kernel until the read completes")] Box<[u8; 8]>,
    ),
    /// Multishot receive of datagrams.
    UdpRecv,
    /// One reply datagram.
    UdpSend(Box<UdpOut>),
    /// The periodic tick.
    Tick(
        #[expect(dead_code, reason = "owned for the kernel until the timeout fires")] Box<Timespec>,
    ),
    /// Accepting again after the process ran out of descriptors.
    Backoff(
        #[expect(dead_code, reason = "owned for the kernel until the timeout fires")] Box<Timespec>,
    ),
    /// An outbound connection's connect, send, receive or deadline.
    Out(crate::engine::outbound::OutOp),
}

/// An operation's `user_data`: slot index in the low 32 bits, its generation in the high 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserData(u64);

impl UserData {
    fn new(slot: u32, gen: u32) -> UserData {
        UserData(u64::from(slot) | u64::from(gen) << 32)
    }

    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    pub(crate) fn from_raw(raw: u64) -> UserData {
        UserData(raw)
    }

    fn slot(self) -> u32 {
        self.0 as u32
    }

    fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

#[derive(Debug)]
struct Entry {
    gen: u32,
    op: Option<Op>,
}

/// The operations in flight.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
}

impl Ops {
    /// Takes a slot for `op`.
    pub(crate) fn insert(&mut self, op: Op) -> UserData {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.entries.push(Entry { gen: 0, op: None });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[slot as usize];
        e.gen = e.gen.wrapping_add(1);
        e.op = Some(op);
        self.live += 1;
        UserData::new(slot, e.gen)
    }

    fn entry(&mut self, ud: UserData) -> Option<&mut Entry> {
        self.entries
            .get_mut(ud.slot() as usize)
            .filter(|e| e.gen == ud.gen() && e.op.is_some())
    }

    /// The operation a completion is for, left in place (a multishot one goes on).
    pub(crate) fn get(&mut self, ud: UserData) -> Option<&mut Op> {
        self.entry(ud).and_then(|e| e.op.as_mut())
    }

    /// The operation a final completion is for, taken out: its slot is free again.
    pub(crate) fn remove(&mut self, ud: UserData) -> Option<Op> {
        let op = self.entry(ud)?.op.take();
        self.free.push(ud.slot());
        self.live -= 1;
        op
    }

    /// Operations in flight.
    pub(crate) fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_find_their_own_operation_only() {
        let mut ops = Ops::default();
        let a = ops.insert(Op::Accept);
        let b = ops.insert(Op::UdpRecv);
        assert!(matches!(ops.get(a), Some(Op::Accept)));
        // A final completion frees the slot; a stale user_data for it finds nothing, and the
        // slot's next operation has a new generation.
        assert!(matches!(ops.remove(a), Some(Op::Accept)));
        assert!(ops.get(a).is_none());
        let c = ops.insert(Op::Accept);
        assert_ne!(a, c);
        assert!(ops.remove(a).is_none());
        assert!(matches!(
            ops.remove(UserData::from_raw(c.raw())),
            Some(Op::Accept)
        ));
        assert_eq!(ops.live(), 1);
        assert!(matches!(ops.remove(b), Some(Op::UdpRecv)));
        assert_eq!(ops.live(), 0);
    }
}
