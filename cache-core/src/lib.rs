//! kcache's sans-IO core.
//!
//! Nothing in this crate touches a socket, a thread, a clock or a random number generator: time
//! (`now`, Unix seconds) and seeds are arguments. The engine in `cache-user` owns all of that and
//! drives these types.
//!
//! - [`protocol`]: memcached classic text, meta and mcrouter lease commands; parser, encoder and
//!   the UDP frame header.
//! - [`store`]: one slab store per shard over memory the caller hands in.
//! - [`lease`]: Facebook-style leases in memcached's meta form.
//! - [`version`]: per-item versions and the tombstone rule that keeps old fills out.
//! - [`bucket`]: key → vbucket → owner, with an epoch.
//! - [`abi`]: `no_std` layouts shared with the XDP program (re-export of `cache-abi`).
//! - [`exec`]: runs a parsed request against a store and encodes the reply.
//! - [`hot`]: reply texts and checksums for the XDP HOT table, and which keys earn a slot.
//! - [`ketama`]: twemproxy/libmemcached consistent hashing and key hashes, for the router.
//! - [`pipeline`]: a connection's requests from bytes to ordered replies, across shards, within a
//!   memory budget — the one path the engine and every test drive.
#![forbid(unsafe_code)]

pub use cache_abi as abi;

pub mod bucket;
pub mod exec;
pub mod hot;
pub mod ketama;
pub mod lease;
pub mod pipeline;
pub mod protocol;
pub mod store;
pub mod version;
