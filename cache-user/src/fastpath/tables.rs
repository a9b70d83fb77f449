//! [`HotTables`]: both HOT tables, shared by every shard thread, and the operations the
//! coherence and promotion code needs (fill, invalidate, flush, scan).
//!
//! A flush clears nothing: it bumps `HOT_GEN`, the flush count XDP adds to the bucket-map epoch
//! to get the `epoch` a slot must carry to be served (`cache_abi::serving`). Every slot filled
//! before the bump is unservable from that instant; the shards' scans empty them later
//! (`promote.rs`), and a fill may take such a way at once as a dead one.

use std::sync::atomic::{fence, AtomicI64, AtomicU32, Ordering};

use cache_core::{
    abi::{hot_tag, serving, LARGE_TEXT, SLOT_LIVE, SMALL_TEXT},
    bucket::khash,
    hot::HotText,
};

use super::{
    clock,
    region::Region,
    table::{SlotData, Snap, Table},
};

/// Which shard a writer is: it may replace (evict or demote) only slots holding its own keys,
/// so the store that marked a key HOT is always the one told when its copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) shard: usize,
    pub(crate) shards: usize,
}

impl Owner {
    /// Whether the key with this slot tag belongs to this shard: its vbucket is the top 14 bits
    /// of the hash (`tag >> 18`), its shard `vbucket % shards` (engine/route.rs's rule).
    pub(crate) fn owns_tag(&self, tag: u32) -> bool {
        (tag >> 18) as usize % self.shards.max(1) == self.shard
    }
}

/// One item to copy into a slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fill<'a> {
    pub(crate) key: &'a [u8],
    /// `khash(key)`.
    pub(crate) hash: u64,
    /// The encoded reply (`cache_core::hot::encode`).
    pub(crate) text: &'a HotText,
    /// The item's client flags.
    pub(crate) flags: u32,
    /// The item's CAS, its version.
    pub(crate) version: u64,
    /// CLOCK_MONOTONIC ns after which XDP must not serve it; 0 = never (see `clock`).
    pub(crate) expires_ns: u64,
    /// [`HotTables::flush_count`] taken before the item was read: the slot is servable only
    /// while no flush has come since.
    pub(crate) flushes: u32,
}

/// A slot: `large` picks `HOT_LARGE`, `index` the slot in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    pub(crate) large: bool,
    pub(crate) index: u32,
}

/// A live slot as a user-space reader found it.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) slot: SlotRef,
    pub(crate) version: u64,
    pub(crate) flags: u32,
    pub(crate) expires_ns: u64,
    pub(crate) epoch: u32,
}

/// `HOT_SMALL`, `HOT_LARGE` and `HOT_GEN`, mapped, plus the state every writer shares.
#[derive(Debug)]
pub(crate) struct HotTables {
    small: Table<SMALL_TEXT>,
    large: Table<LARGE_TEXT>,
    /// `HOT_GEN`'s one `u32`: the `flush_all`s so far (see the module docs).
    flushes: Region,
    /// `LIVE` slots (filled minus emptied), for `stats`; slots a flush made unservable count
    /// until a scan empties them.
    live: AtomicI64,
    /// The bucket-map epoch slots are filled under (`XdpConfig::epoch`).
    epoch: AtomicU32,
    /// Unix seconds before which nothing is promoted (a delayed `flush_all` pending).
    quiet_until: AtomicU32,
}

impl HotTables {
    /// Tables over anonymous memory: no kernel involved (tests).
    #[cfg(test)]
    pub(crate) fn anon(small_slots: u32, large_slots: u32) -> std::io::Result<HotTables> {
        use cache_core::abi::{LargeSlot, SmallSlot};
        let small = Region::anon(small_slots as usize * std::mem::size_of::<SmallSlot>())?;
        let large = Region::anon(large_slots as usize * std::mem::size_of::<LargeSlot>())?;
        let flushes = Region::anon(std::mem::size_of::<u32>())?;
        Self::over(small, small_slots, large, large_slots, flushes).map_err(std::io::Error::other)
    }

    /// Tables over two mappings of at least `slots` slots each, and `HOT_GEN`'s mapping.
    pub(crate) fn over(
        small: Region,
        small_slots: u32,
        large: Region,
        large_slots: u32,
        flushes: Region,
    ) -> Result<HotTables, String> {
        if flushes.len() < std::mem::size_of::<u32>() {
            return Err(format!("HOT_GEN: {} bytes mapped", flushes.len()));
        }
        Ok(HotTables {
            small: Table::new(small, small_slots).map_err(|e| format!("HOT_SMALL: {e}"))?,
            large: Table::new(large, large_slots).map_err(|e| format!("HOT_LARGE: {e}"))?,
            flushes,
            live: AtomicI64::new(0),
            epoch: AtomicU32::new(1),
            quiet_until: AtomicU32::new(0),
        })
    }

    /// `HOT_GEN[0]`.
    fn flushes(&self) -> &AtomicU32 {
        // SAFETY: the mapping is page-aligned and at least 4 bytes (`over` checked), lives as
        // long as `self`, and every access to the word is atomic: here, in other shard threads
        // through this type, and in XDP (one aligned 32-bit load).
        unsafe { AtomicU32::from_ptr(self.flushes.base().cast::<u32>()) }
    }

    /// `XdpConfig::small_mask` and `large_mask`.
    pub(crate) fn masks(&self) -> (u32, u32) {
        (self.small.set_mask(), self.large.set_mask())
    }

    /// Slots holding a live copy.
    pub(crate) fn live_slots(&self) -> u64 {
        self.live.load(Ordering::Relaxed).max(0) as u64
    }

    fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// New fills carry `epoch`; the loader writes the same into `CONFIG` first.
    pub(crate) fn set_epoch(&self, epoch: u32) {
        self.epoch.store(epoch, Ordering::Release);
    }

    /// The `epoch` a slot must carry to be served now: what XDP computes from `CONFIG` and
    /// `HOT_GEN` (once the loader has written `CONFIG`'s epoch, which it does first).
    pub(crate) fn serving(&self) -> u32 {
        serving(self.epoch(), self.flush_count())
    }

    /// Copies an item into the table its text fits, in its set, carrying `serving(epoch,
    /// f.flushes)`: over a way already holding the key, else a free way, else a way of
    /// `owner`'s with an expired or unservable (old epoch, flushed) copy,
    /// else the way of `owner`'s with the fewest hits if `admit(victim_hash, victim_hits)`
    /// says so. Returns whether the item was written; the key it displaced (if any) is left in
    /// `evicted` (cleared first), so the caller can unmark it in its store. False also when a
    /// way changed under us (another shard's write): try again later.
    #[cfg(test)]
    pub(crate) fn write(
        &self,
        f: &Fill<'_>,
        owner: Owner,
        admit: impl FnOnce(u64, u32) -> bool,
        evicted: &mut Vec<u8>,
    ) -> bool {
        self.write_scored(f, owner, |_, hits| hits, admit, evicted)
    }

    /// [`HotTables::write`], choosing the victim as the way with the lowest
    /// `score(victim_hash, victim_hits)` (the promoter's popularity estimate) rather than the
    /// fewest hits since the last scan, which are mostly zero for all but the hottest keys.
    pub(crate) fn write_scored(
        &self,
        f: &Fill<'_>,
        owner: Owner,
        score: impl Fn(u64, u32) -> u32,
        admit: impl FnOnce(u64, u32) -> bool,
        evicted: &mut Vec<u8>,
    ) -> bool {
        evicted.clear();
        let small = f.text.fits_small();
        // An item lives only in the table its reply fits (XDP stops at the first match).
        if small {
            invalidate_in(&self.large, f.key, f.hash, &self.live);
        } else {
            invalidate_in(&self.small, f.key, f.hash, &self.live);
        }
        let tag = hot_tag(f.hash);
        let epoch = serving(self.epoch(), f.flushes);
        let text = f.text.text();
        let data = SlotData {
            state: SLOT_LIVE,
            tag,
            epoch,
            expires_ns: f.expires_ns,
            version: f.version,
            flags: f.flags,
            key_len: f.key.len().min(u8::MAX.into()) as u8,
            lens: [f.text.hdr_len, f.text.cas_len, f.text.tail_len],
            sums: [f.text.sum_hdr, f.text.sum_cas, f.text.sum_tail],
            text,
        };
        if small {
            self.write_in(&self.small, f, &data, owner, (score, admit), evicted)
        } else {
            self.write_in(&self.large, f, &data, owner, (score, admit), evicted)
        }
    }

    /// `pick` is `write_scored`'s `(score, admit)`.
    fn write_in<const N: usize, S, A>(
        &self,
        t: &Table<N>,
        f: &Fill<'_>,
        data: &SlotData<'_>,
        owner: Owner,
        (score, admit): (S, A),
        evicted: &mut Vec<u8>,
    ) -> bool
    where
        S: Fn(u64, u32) -> u32,
        A: FnOnce(u64, u32) -> bool,
    {
        let now_ns = clock::monotonic_ns();
        let current = self.serving();
        let (mut same, mut free, mut dead) = (None, None, None);
        // (way, its snapshot, its hits, its score)
        let mut victim: Option<(u32, Snap, u32, u32)> = None;
        for i in t.set_of(f.hash) {
            // A busy way is another shard's write in progress: never ours to take.
            let Some(s) = t.read(i, None) else { continue };
            if s.state == SLOT_LIVE && s.tag == data.tag && s.key() == f.key {
                same = Some((i, s));
                break;
            }
            if s.state != SLOT_LIVE {
                free = free.or(Some((i, s)));
            } else if !owner.owns_tag(s.tag) {
                continue;
            } else if s.epoch != current || (s.expires_ns != 0 && s.expires_ns <= now_ns) {
                dead = dead.or(Some((i, s)));
            } else {
                let h = t.hits(i).load(Ordering::Relaxed);
                let sc = score(khash(s.key()), h);
                if victim.is_none_or(|(.., vs)| sc < vs) {
                    victim = Some((i, s, h, sc));
                }
            }
        }
        let (i, s, displaced) = match (same, free, dead, victim) {
            (Some((i, s)), ..) => (i, s, false),
            (None, Some((i, s)), ..) => (i, s, false),
            (None, None, Some((i, s)), _) => (i, s, true),
            (None, None, None, Some((i, s, h, _))) if admit(khash(s.key()), h) => (i, s, true),
            _ => return false,
        };
        if !t.claim(i, s.seq) {
            return false;
        }
        t.store(i, data, same.is_none());
        t.release(i, s.seq);
        if s.state != SLOT_LIVE {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        if displaced {
            evicted.extend_from_slice(s.key());
        }
        true
    }

    /// Empties every live way of `key`'s sets, in both tables. Waits out a writer holding one
    /// of them (only the key's owner writes it, so that is brief).
    pub(crate) fn invalidate(&self, key: &[u8], hash: u64) {
        invalidate_in(&self.small, key, hash, &self.live);
        invalidate_in(&self.large, key, hash, &self.live);
    }

    /// `flush_all`, in O(1): nothing is promoted before `quiet_until` (Unix seconds; the flush
    /// time of a delayed flush), and once this returns, no slot filled before is servable, by
    /// XDP (its next read of `HOT_GEN` sees the bump: a locked add is globally visible when it
    /// completes) or by a promotion that started earlier (it carries the old count). The slots
    /// stay as they are until the shards' scans empty them.
    pub(crate) fn flush(&self, quiet_until: u32) {
        self.quiet_until.fetch_max(quiet_until, Ordering::SeqCst);
        self.flushes().fetch_add(1, Ordering::SeqCst);
    }

    /// `HOT_GEN`: the token a promotion takes before it reads its item ([`Fill::flushes`],
    /// [`HotTables::flushed_since`]).
    pub(crate) fn flush_count(&self) -> u32 {
        self.flushes().load(Ordering::SeqCst)
    }

    /// Whether a flush began since `count` was taken; a promotion asks after writing its slot,
    /// to give the way back (the slot is unservable anyway: it carries `count`).
    pub(crate) fn flushed_since(&self, count: u32) -> bool {
        fence(Ordering::SeqCst);
        self.flush_count() != count
    }

    /// Whether promotions wait for a delayed flush at `now` (Unix seconds).
    pub(crate) fn quiet(&self, now: u32) -> bool {
        now < self.quiet_until.load(Ordering::Acquire)
    }

    /// The live copy of `key`, its text into `text`: the user-space reader's view (tests,
    /// checks). `None` if absent or being written.
    #[cfg(test)]
    pub(crate) fn find(&self, key: &[u8], hash: u64, text: &mut Vec<u8>) -> Option<Entry> {
        find_in(&self.small, false, key, hash, text)
            .or_else(|| find_in(&self.large, true, key, hash, text))
    }

    /// Slots in both tables; [`HotTables::slot_at`] numbers them `0..total`.
    pub(crate) fn total_slots(&self) -> u32 {
        self.small.slots() + self.large.slots()
    }

    pub(crate) fn slot_at(&self, n: u32) -> SlotRef {
        if n < self.small.slots() {
            SlotRef {
                large: false,
                index: n,
            }
        } else {
            SlotRef {
                large: true,
                index: n - self.small.slots(),
            }
        }
    }

    /// `state` and `tag` of a slot without the seqlock (scan filter).
    pub(crate) fn glance(&self, r: SlotRef) -> (u8, u32) {
        match r.large {
            false => self.small.glance(r.index),
            true => self.large.glance(r.index),
        }
    }

    /// A consistent read of a slot (`None` while it is being written).
    pub(crate) fn read(&self, r: SlotRef) -> Option<Snap> {
        match r.large {
            false => self.small.read(r.index, None),
            true => self.large.read(r.index, None),
        }
    }

    /// XDP's hits on a slot since the last call, leaving zero.
    pub(crate) fn take_hits(&self, r: SlotRef) -> u32 {
        match r.large {
            false => self.small.hits(r.index).swap(0, Ordering::Relaxed),
            true => self.large.hits(r.index).swap(0, Ordering::Relaxed),
        }
    }

    /// Adds to a slot's hits as XDP does.
    #[cfg(test)]
    pub(crate) fn add_hits_for_test(&self, r: SlotRef, n: u32) {
        match r.large {
            false => self.small.hits(r.index).fetch_add(n, Ordering::Relaxed),
            true => self.large.hits(r.index).fetch_add(n, Ordering::Relaxed),
        };
    }

    /// Empties a slot if it is unchanged since `s` was read; returns whether it did.
    pub(crate) fn demote(&self, r: SlotRef, s: &Snap) -> bool {
        let done = match r.large {
            false => empty_if(&self.small, r.index, s),
            true => empty_if(&self.large, r.index, s),
        };
        if done && s.state == SLOT_LIVE {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        done
    }
}

fn empty_if<const N: usize>(t: &Table<N>, i: u32, s: &Snap) -> bool {
    if !t.claim(i, s.seq) {
        return false;
    }
    t.set_empty(i);
    t.release(i, s.seq);
    true
}

fn invalidate_in<const N: usize>(t: &Table<N>, key: &[u8], hash: u64, live: &AtomicI64) {
    let tag = hot_tag(hash);
    for i in t.set_of(hash) {
        // Only this key's owner writes a slot holding it, and it is the caller: a way whose
        // state or tag does not match cannot be turning into this key meanwhile.
        let (state, t_tag) = t.glance(i);
        if state != SLOT_LIVE || t_tag != tag {
            continue;
        }
        empty_matching(t, i, live, |s| s.tag == tag && s.key() == key);
    }
}

/// Empties slot `i` if it is live and `wanted`, waiting out any writer.
fn empty_matching<const N: usize>(
    t: &Table<N>,
    i: u32,
    live: &AtomicI64,
    wanted: impl Fn(&Snap) -> bool,
) {
    let mut spins = 0u32;
    loop {
        match t.read(i, None) {
            Some(s) if s.state != SLOT_LIVE || !wanted(&s) => return,
            Some(s) if empty_if(t, i, &s) => {
                live.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            // Being written, or it changed between the read and the claim: look again.
            _ => {}
        }
        spins += 1;
        if spins % 64 == 0 {
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
fn find_in<const N: usize>(
    t: &Table<N>,
    large: bool,
    key: &[u8],
    hash: u64,
    text: &mut Vec<u8>,
) -> Option<Entry> {
    let tag = hot_tag(hash);
    t.set_of(hash).find_map(|i| {
        let s = t.read(i, Some(text))?;
        (s.state == SLOT_LIVE && s.tag == tag && s.key() == key).then_some(Entry {
            slot: SlotRef { large, index: i },
            version: s.version,
            flags: s.flags,
            expires_ns: s.expires_ns,
            epoch: s.epoch,
        })
    })
}

#[cfg(test)]
mod tests;
