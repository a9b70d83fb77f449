//! The XDP fast path: loads and attaches `kcache_xdp`, owns the HOT tables it answers from, and
//! keeps them coherent with the shards' stores.
//!
//! - [`loader`]: the program, its maps and their pins; [`allow`]: the UDP source allowlist.
//! - [`HotTables`] ([`tables`], over [`table`]'s seqlock): the mmapped `HOT_SMALL`/`HOT_LARGE`.
//! - [`promote`]: per-shard promotion (tracker, admission) and the once-a-second demotion scan.
//! - [`counters`]: the per-CPU counters for `stats` and `kcache xdp-stats`; [`pass`]: the
//!   `kcache xdp-pass` helper for the test bed's peer interface.
pub(crate) mod allow;
mod bpffs;
mod clock;
pub(crate) mod counters;
pub(crate) mod loader;
mod object;
pub(crate) mod pass;
pub(crate) mod promote;
mod region;
mod table;
mod tables;

pub(crate) use tables::{Fill, HotTables, Owner};
