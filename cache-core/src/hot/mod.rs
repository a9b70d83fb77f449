//! What user space puts in the HOT table, and which keys get there.
//!
//! The HOT table (layout in [`crate::abi::HotSlot`]) is two mmapped BPF arrays of preformatted
//! `get`/`gets` replies, `HOT_SMALL` and `HOT_LARGE`, 4-way set-associative by kcache hash; the
//! XDP program answers a UDP get for a key it finds there without waking user space. User space
//! is the only writer, under a per-slot seqlock: it makes `seq` odd, writes the slot with plain
//! stores, then makes `seq` even and never equal to an earlier value; XDP reads `seq` (odd means
//! miss), checks and copies the slot, and re-reads `seq` before the reply leaves, passing the
//! request up to user space if it changed. `hits` sits outside the lock: XDP adds to it and user
//! space reads and clears it.
//!
//! This module is the sans-IO half of that writer:
//!
//! - [`encode`] lays an item out as a slot's `hdr`/`cas`/`tail` text with each part's ones'
//!   complement sum, so XDP can build the UDP checksum from three stored sums ([`combine`],
//!   [`fold`] are the same arithmetic, for tests and for user space's own checks).
//! - [`Tracker`] estimates each key's get popularity in a shard, and [`admit`] decides whether a
//!   key takes a slot from its current holder.
//!
//! Writing slots (the mmap, the seqlock stores) lives in `cache-user`.

mod encode;
mod tracker;

pub use encode::{combine, encode, fold, ones_sum, HotText};
pub use tracker::{admit, Tracker, TrackerConfig, Victim};
