//! Layouts shared between kcache's user space and its XDP program.
//!
//! Everything here is a BPF map key, a BPF map value or an index into one, so it is `#[repr(C)]`,
//! `Copy`, has its padding spelled out as fields, uses integers instead of `bool`, and carries a
//! compile-time size check. The XDP program and user space must agree byte for byte: any change to
//! a layout or to a constant's meaning bumps [`LAYOUT_VERSION`].
//!
//! - [`hot`]: the HOT map (`HotKey` → `HotValue`), the values XDP answers `get` with.
//! - [`bucket`]: the bucket map (vbucket → `BucketEntry`), which says whether this node owns a key.
//! - [`counter`]: indexes into the per-CPU counter array.
//!
//! No dependencies and `no_std`: the eBPF crate compiles this for `bpfel-unknown-none`. The `user`
//! feature is reserved for user-space-only extras (such as `aya::Pod` impls) and is empty today.
#![no_std]

pub mod bucket;
pub mod counter;
pub mod hot;

pub use bucket::{BucketEntry, BUCKET_MAP_ENTRIES, NODE_NONE, VBUCKETS};
pub use hot::{HotKey, HotValue, HOT_KEY_MAX, HOT_REPLY_MAX};

/// Version of every layout and constant in this crate. User space refuses to load an XDP object
/// built against another version.
pub const LAYOUT_VERSION: u32 = 1;
