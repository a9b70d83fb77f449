//! One store per shard: slab memory, the index, and memcached's storage semantics.

pub mod item;
pub mod slabs;
