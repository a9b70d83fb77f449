//! The XDP fast path: loads and attaches `kcache_xdp`, owns the HOT tables it answers from, and
//! keeps them coherent with the shards' stores.
//!
//! - [`loader`]: the program, its maps and their pins; [`allow`]: the UDP source allowlist;
//!   [`dest`]: the destination addresses XDP answers for (those the server listens on).
//! - [`HotTables`] (`tables.rs`, over `table.rs`'s seqlock): the mmapped `HOT_SMALL`/`HOT_LARGE`
//!   and `HOT_GEN` (the flush count).
//! - [`promote`]: per-shard promotion (tracker, admission) and the demotion scan, spread over
//!   time (a pass a second, a slice per call: no event-loop stall).
//! - [`counters`]: the per-CPU counters for `stats` and `kcache xdp-stats`; [`pass`]: the
//!   `kcache xdp-pass` helper for the test bed's peer interface.
//! - [`ordering`]: refuses `--xdp` on CPUs whose load ordering point 2 below does not cover.
//!
//! # Why XDP never serves a value older than an acknowledged write (invariant 1)
//!
//! Every key has one owner shard (`vbucket % shards`), and only that shard's thread changes its
//! item, writes its HOT copy, or demotes it; other shards only ever fill free ways or ways
//! holding their own keys (`Owner`). Take a write W of key K, acknowledged to some client.
//!
//! 1. *Invalidate before the reply.* The store marks an item whose copy is in the tables
//!    (`ITEM_HOT`) and logs its key whenever the item changes or leaves memory (set family, cas,
//!    incr/decr, touch/gat, delete, meta commands, expiry found lazily, eviction, page moves).
//!    The owner shard drains that log into [`HotTables::invalidate`] right after every request
//!    it runs against its store, before the reply bytes are queued to a socket or sent to
//!    another shard (`engine::shard`'s `hot_after_request`). So by the time W's reply exists,
//!    every slot holding K is `SLOT_EMPTY`, published with `seq = v + 2` (Release).
//! 2. *XDP's seq re-check.* A packet XDP is answering from K's slot read `seq` even before
//!    copying and re-reads it before `XDP_TX`. If the invalidation's claim (`seq` odd) happened
//!    before that re-read, the re-check fails and the request goes up to user space, which
//!    answers after W. If the re-read happened before the claim, the packet's reply left before
//!    W was even applied (the claim precedes W's reply), so it is not "older than an
//!    acknowledged write": W's acknowledgement was not yet sent.
//!
//!    This needs the reader's loads to happen in order: its first `seq` load before every load
//!    of the slot, and those before its second `seq` load. The program is built so (every slot
//!    field is a volatile read, and the second `seq` read is made only once the copies have
//!    returned; cache-ebpf `slot.rs`), and x86's TSO never reorders a load with a load, so the
//!    CPU keeps that order. The writer's stores are ordered too (`table.rs`: the claim's
//!    compare-exchange, a Release fence, the field stores, the Release publish; and x86 keeps
//!    stores in order), so a reader whose loads saw any of a write's field stores saw the claim
//!    before them, and its second `seq` load, made after them, cannot see the old value.
//!    A weakly ordered CPU could satisfy the loads out of order, and BPF gives this program no
//!    cheap way to stop it (acquire loads for every slot read, or an atomic RMW on every hit),
//!    so [`ordering`] refuses `--xdp` on anything but x86.
//! 3. *Promotion re-checks.* A promotion reads the item, encodes it, writes the slot, marks the
//!    item HOT, and then re-reads the item's CAS; if the item is gone or its CAS moved, it
//!    invalidates at once. Since the owner's thread does all of this between two requests, no
//!    write to K can interleave; the re-check guards the reasoning rather than a race.
//! 4. *flush_all.* XDP serves a slot only if its `epoch` equals `serving(config epoch,
//!    HOT_GEN)` (`cache_abi::hot`), `HOT_GEN` being a mapped word that counts flushes. The
//!    shard taking the command bumps it (one locked add, globally visible once it returns)
//!    before any store applies the flush and before its `OK` ([`HotTables::flush`]); nothing is
//!    cleared then. Every slot filled before carries `serving(e, f)`: `e` an epoch XDP's config
//!    already had (the loader writes `CONFIG` before `HotTables::set_epoch`, and at start before
//!    the program is attached), `f` a count read before the bump. Both parts only grow, so a
//!    read of `HOT_GEN` after the bump computes a larger value and finds no such slot
//!    servable. A get sent after the `OK` reads `HOT_GEN` after the bump; one that read it
//!    before took effect before the flush was applied, as in step 2.
//!    Promotions: a shard promotes only while `HOT_GEN` equals the flushes its own store has
//!    applied, and its fill carries the count it read *before* reading the item, so a flush
//!    that overtakes it leaves the slot unservable from the first instant; the re-check after
//!    writing (a SeqCst fence) then gives the way back and unmarks the item. The shards' scans
//!    empty flushed slots within a pass (about a second); a fill may take one at once as a dead
//!    way. A delayed flush also holds all promotions until its time, when the store starts
//!    treating older items as dead. A bucket-map change moves the serving value through its
//!    epoch part (besides the `BUCKETS` check, `engine/reload.rs`). The value wraps after 2^32
//!    flushes, which a slot would have to outlive without a visit from the scan.
//! 5. *Expiry.* A slot carries the item's expiry on CLOCK_MONOTONIC, 10 ms early; items within a
//!    second of expiring are not promoted.
//!
//! Items under a lease, tombstones, stale (`md … I`) items and lease placeholders are never
//! promoted, so XDP only serves what a plain `get` would.
pub(crate) mod allow;
mod bpffs;
mod clock;
pub(crate) mod counters;
mod dest;
pub(crate) mod loader;
mod object;
mod ordering;
pub(crate) mod pass;
pub(crate) mod promote;
mod region;
mod table;
mod tables;

pub(crate) use tables::{Fill, HotTables, Owner};
