//! One store per shard: slab memory, the index, and memcached's storage semantics.
//!
//! [`Store`] is driven through one method per command (`get`, `store`, `arith`, `touch`,
//! `delete`, `flush_all`, `meta_get`, `meta_delete`, `meta_arith`, `lease_get`, `lease_set`);
//! time comes in as `now` (Unix seconds). It never allocates item memory outside the arena it was
//! given: when full it evicts with a per-class CLOCK hand (see [`slabs`]).

mod evict;
mod flush;
pub mod item;
mod meta_ops;
mod ops;
mod shard;
pub mod slabs;
mod stats;

pub use flush::{log_key, logged_keys};
pub use meta_ops::{DeleteOutcome, LeaseGet, MetaDeleteArgs, MetaGetArgs, MetaGetHit};
pub use ops::{
    realtime, ArithOutcome, Bounded, ItemView, Mode, StoreOutcome, Write, REALTIME_MAXDELTA,
};
pub use shard::{Key, Store, StoreConfig};
pub use stats::Stats;
