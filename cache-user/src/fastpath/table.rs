//! One HOT table (`HOT_SMALL` or `HOT_LARGE`) over shared memory: slot addressing and the
//! seqlock, for the shard threads that write slots and for user-space readers. The XDP program
//! is the other reader; the layout and the protocol are `cache_abi::hot`'s.
//!
//! Several shards may write slots of one set, so a writer first *claims* a slot: a
//! compare-exchange of `seq` from the even value it last read to that value + 1. A failed claim
//! means someone else is writing or has written the slot since; the caller picks another way or
//! tries later. Then `fence(Release)`, the field stores (volatile: XDP and other threads read
//! them concurrently and discard what they read if `seq` moved), and `seq = v + 2` with Release.
//! Readers: `seq` even (else busy), read, `fence(Acquire)`, re-read `seq` (else retry).

use std::{
    ptr::{addr_of, addr_of_mut},
    sync::atomic::{fence, AtomicU32, Ordering},
};

use cache_core::abi::{HotSlot, HOT_KEY_MAX, HOT_WAYS, SLOT_EMPTY, TEXT_KEY_AT};

use super::region::Region;

/// Tries of a read before it reports the slot busy.
const READ_TRIES: u32 = 4;

/// A slot's head and key as one consistent read saw them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snap {
    /// The even `seq` the read was consistent under (what a claim compares against).
    pub(crate) seq: u32,
    pub(crate) state: u8,
    pub(crate) tag: u32,
    pub(crate) epoch: u32,
    pub(crate) expires_ns: u64,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by HotTables::find, in tests")
    )]
    pub(crate) version: u64,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by HotTables::find, in tests")
    )]
    pub(crate) flags: u32,
    key_len: u8,
    key: [u8; HOT_KEY_MAX],
}

impl Snap {
    /// The slot's key (empty for a slot never filled).
    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len).min(HOT_KEY_MAX)]
    }
}

/// Everything a writer stores in a claimed slot besides `seq` and `hits`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotData<'a> {
    pub(crate) state: u8,
    pub(crate) tag: u32,
    pub(crate) epoch: u32,
    pub(crate) expires_ns: u64,
    pub(crate) version: u64,
    pub(crate) flags: u32,
    pub(crate) key_len: u8,
    /// `hdr_len`, `cas_len`, `tail_len`.
    pub(crate) lens: [u16; 3],
    /// `sum_hdr`, `sum_cas`, `sum_tail`.
    pub(crate) sums: [u16; 3],
    pub(crate) text: &'a [u8],
}

/// `slots` slots of `HotSlot<N>` at the start of a [`Region`].
#[derive(Debug)]
pub(crate) struct Table<const N: usize> {
    region: Region,
    slots: u32,
}

impl<const N: usize> Table<N> {
    /// A table of `slots` slots (a power of two, at least [`HOT_WAYS`]) over `region`.
    pub(crate) fn new(region: Region, slots: u32) -> Result<Self, String> {
        if !slots.is_power_of_two() || slots < HOT_WAYS {
            return Err(format!(
                "{slots} slots: need a power of two of at least {HOT_WAYS}"
            ));
        }
        let need = slots as usize * std::mem::size_of::<HotSlot<N>>();
        if region.len() < need {
            return Err(format!("{} bytes mapped, {need} needed", region.len()));
        }
        Ok(Table { region, slots })
    }

    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    /// Sets minus one: `hot_set`'s mask, `XdpConfig::{small,large}_mask`.
    pub(crate) fn set_mask(&self) -> u32 {
        self.slots / HOT_WAYS - 1
    }

    /// The slots of the set `hash` falls in.
    pub(crate) fn set_of(&self, hash: u64) -> std::ops::Range<u32> {
        let first = cache_core::abi::hot_set(hash, self.set_mask()) * HOT_WAYS;
        first..first + HOT_WAYS
    }

    fn slot(&self, i: u32) -> *mut HotSlot<N> {
        assert!(i < self.slots, "slot {i} of {}", self.slots);
        // SAFETY: `new` checked the region holds `slots` slots, and `i < slots`; the region is
        // page-aligned, which satisfies the slot's 8-byte alignment.
        unsafe { self.region.base().cast::<HotSlot<N>>().add(i as usize) }
    }

    fn seq(&self, i: u32) -> &AtomicU32 {
        // SAFETY: the field is 4-byte aligned, lives as long as `self.region`, and every access
        // to it (here, in other threads through this type, and in XDP) is atomic.
        unsafe { AtomicU32::from_ptr(addr_of_mut!((*self.slot(i)).seq)) }
    }

    /// XDP's hit counter of slot `i` (outside the seqlock).
    pub(crate) fn hits(&self, i: u32) -> &AtomicU32 {
        // SAFETY: as for `seq`: aligned, as long-lived as the region, only accessed atomically.
        unsafe { AtomicU32::from_ptr(addr_of_mut!((*self.slot(i)).hits)) }
    }

    /// `state` and `tag` without the seqlock, for scans that then `read` the slots they want.
    pub(crate) fn glance(&self, i: u32) -> (u8, u32) {
        let p = self.slot(i);
        // SAFETY: in-bounds, aligned fields of a live mapping; a torn value only makes a scan
        // look at (or skip) a slot, which its following `read` settles.
        unsafe {
            (
                addr_of!((*p).state).read_volatile(),
                addr_of!((*p).tag).read_volatile(),
            )
        }
    }

    /// A consistent copy of slot `i`'s head and key, and of its text into `text` if given;
    /// `None` while a writer holds the slot (or it kept changing).
    pub(crate) fn read(&self, i: u32, mut text: Option<&mut Vec<u8>>) -> Option<Snap> {
        let seq = self.seq(i);
        let p = self.slot(i);
        for _ in 0..READ_TRIES {
            let v = seq.load(Ordering::Acquire);
            if v & 1 == 1 {
                return None;
            }
            // SAFETY: in-bounds, aligned fields of a live mapping. A writer may change them
            // concurrently; the values are only used if `seq` is unchanged afterwards.
            let snap = unsafe {
                let key_len = addr_of!((*p).key_len).read_volatile();
                let mut key = [0u8; HOT_KEY_MAX];
                let n = usize::from(key_len).min(HOT_KEY_MAX).min(N - TEXT_KEY_AT);
                let at = addr_of!((*p).text).cast::<u8>().add(TEXT_KEY_AT);
                for (j, b) in key[..n].iter_mut().enumerate() {
                    *b = at.add(j).read_volatile();
                }
                if let Some(t) = text.as_deref_mut() {
                    let len = usize::from(addr_of!((*p).hdr_len).read_volatile())
                        + usize::from(addr_of!((*p).cas_len).read_volatile())
                        + usize::from(addr_of!((*p).tail_len).read_volatile());
                    let from = addr_of!((*p).text).cast::<u8>();
                    t.clear();
                    t.extend((0..len.min(N)).map(|j| from.add(j).read_volatile()));
                }
                Snap {
                    seq: v,
                    state: addr_of!((*p).state).read_volatile(),
                    tag: addr_of!((*p).tag).read_volatile(),
                    epoch: addr_of!((*p).epoch).read_volatile(),
                    expires_ns: addr_of!((*p).expires_ns).read_volatile(),
                    version: addr_of!((*p).version).read_volatile(),
                    flags: addr_of!((*p).flags).read_volatile(),
                    key_len: n as u8,
                    key,
                }
            };
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == v {
                return Some(snap);
            }
        }
        None
    }

    /// Claims slot `i` if its `seq` is still the even `v` a read saw; see the module docs.
    pub(crate) fn claim(&self, i: u32, v: u32) -> bool {
        if v & 1 == 1 {
            return false;
        }
        let won = self
            .seq(i)
            .compare_exchange(v, v.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if won {
            fence(Ordering::Release);
        }
        won
    }

    /// Claims slot `i` whatever it holds, waiting out another writer; returns the `seq` to
    /// [`Table::release`] with (tests: another writer holding a slot).
    #[cfg(test)]
    pub(crate) fn claim_wait(&self, i: u32) -> u32 {
        let mut spins = 0u32;
        loop {
            let v = self.seq(i).load(Ordering::Relaxed);
            if self.claim(i, v) {
                return v;
            }
            spins += 1;
            if spins % 64 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Ends a claim made at `v`: `seq = v + 2`, publishing the slot's new contents.
    pub(crate) fn release(&self, i: u32, v: u32) {
        self.seq(i).store(v.wrapping_add(2), Ordering::Release);
    }

    /// Stores `d` in slot `i`, which the caller has claimed. `new_key` resets `hits`.
    pub(crate) fn store(&self, i: u32, d: &SlotData<'_>, new_key: bool) {
        let p = self.slot(i);
        let len = d.text.len().min(N);
        // SAFETY: in-bounds, aligned fields of a live mapping, written only by the claim holder
        // (concurrent readers discard what they see: `seq` is odd until `release`).
        unsafe {
            let old_len = usize::from(addr_of!((*p).hdr_len).read_volatile())
                + usize::from(addr_of!((*p).cas_len).read_volatile())
                + usize::from(addr_of!((*p).tail_len).read_volatile());
            addr_of_mut!((*p).state).write_volatile(d.state);
            addr_of_mut!((*p).tag).write_volatile(d.tag);
            addr_of_mut!((*p).epoch).write_volatile(d.epoch);
            addr_of_mut!((*p).expires_ns).write_volatile(d.expires_ns);
            addr_of_mut!((*p).version).write_volatile(d.version);
            addr_of_mut!((*p).flags).write_volatile(d.flags);
            addr_of_mut!((*p).key_len).write_volatile(d.key_len);
            addr_of_mut!((*p).hdr_len).write_volatile(d.lens[0]);
            addr_of_mut!((*p).cas_len).write_volatile(d.lens[1]);
            addr_of_mut!((*p).tail_len).write_volatile(d.lens[2]);
            addr_of_mut!((*p).sum_hdr).write_volatile(d.sums[0]);
            addr_of_mut!((*p).sum_cas).write_volatile(d.sums[1]);
            addr_of_mut!((*p).sum_tail).write_volatile(d.sums[2]);
            let text = addr_of_mut!((*p).text).cast::<u8>();
            std::ptr::copy_nonoverlapping(d.text.as_ptr(), text, len);
            // The layout promises zeros after the text.
            if old_len.min(N) > len {
                std::ptr::write_bytes(text.add(len), 0, old_len.min(N) - len);
            }
        }
        if new_key {
            self.hits(i).store(0, Ordering::Relaxed);
        }
    }

    /// Marks claimed slot `i` empty (XDP serves only `SLOT_LIVE`).
    pub(crate) fn set_empty(&self, i: u32) {
        // SAFETY: an in-bounds, aligned field, written by the claim holder only.
        unsafe { addr_of_mut!((*self.slot(i)).state).write_volatile(SLOT_EMPTY) };
    }
}

#[cfg(test)]
mod tests;
