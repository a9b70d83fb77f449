//! A provided-buffer ring: the kernel picks a free buffer for each multishot receive, tells us its
//! id in the completion, and we hand the buffer back once its bytes are copied out.
//!
//! Layout: one page-aligned array of `io_uring_buf` entries (16 bytes each) shared with the
//! kernel, whose tail (overlaid on entry 0's reserved field) we publish with a release store,
//! and one contiguous block holding every buffer.

use std::{
    io,
    sync::atomic::{AtomicU16, Ordering},
};

use io_uring::{types::BufRingEntry, IoUring};
use memmap2::MmapMut;

pub(crate) struct BufRing {
    ring: MmapMut,
    bufs: Vec<u8>,
    size: usize,
    entries: u16,
    tail: u16,
}

impl BufRing {
    /// Registers a ring of `entries` (a power of two) buffers of `size` bytes as group `group`.
    pub(crate) fn new(uring: &IoUring, group: u16, entries: u16, size: usize) -> io::Result<Self> {
        assert!(
            entries.is_power_of_two(),
            "buffer ring entries must be a power of two"
        );
        let bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let ring = MmapMut::map_anon(bytes.max(4096))?;
        let bufs = vec![0u8; entries as usize * size];
        // SAFETY: `ring` is a page-aligned anonymous mapping of `entries` entries that lives as
        // long as this struct; the kernel reads it until the group is unregistered (in Drop
        // order the ring outlives the registration because io_uring is torn down first or the
        // group is unregistered explicitly by `BufRing::unregister`).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                ring.as_ptr() as u64,
                entries,
                group,
                0,
            )?;
        }
        let mut r = BufRing {
            ring,
            bufs,
            size,
            entries,
            tail: 0,
        };
        for bid in 0..entries {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    fn entry(&mut self, slot: u16) -> &mut BufRingEntry {
        let at = (slot & (self.entries - 1)) as usize;
        let base = self.ring.as_mut_ptr().cast::<BufRingEntry>();
        // SAFETY: `at < entries` and the mapping holds `entries` entries of this type, which is
        // `repr(transparent)` over the kernel's `io_uring_buf` (plain integers, any bit pattern
        // valid); we are the only writer of entries not yet published.
        unsafe { &mut *base.add(at) }
    }

    /// Queues buffer `bid` for the kernel again (visible after [`BufRing::publish`]).
    pub(crate) fn push(&mut self, bid: u16) {
        let addr = self.bufs.as_ptr() as u64 + bid as u64 * self.size as u64;
        let len = self.size as u32;
        let slot = self.tail;
        let e = self.entry(slot);
        e.set_addr(addr);
        e.set_len(len);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    pub(crate) fn publish(&self) {
        let base = self.ring.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `base` is the first entry of a live, registered ring; `tail` returns the
        // address of the shared tail field, a naturally aligned u16 the kernel reads
        // atomically, which we update with a release store as liburing does.
        let tail = unsafe { &*BufRingEntry::tail(base).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`.
    pub(crate) fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.bufs[start..start + len.min(self.size)]
    }

    /// Bytes held by the ring (for the memory overhead figure).
    pub(crate) fn bytes(&self) -> usize {
        self.bufs.len() + self.ring.len()
    }
}
