//! Layouts shared between kcache's user space and its XDP program.
//!
//! Everything here is a BPF map key, a BPF map value or an index into one, so it is `#[repr(C)]`,
//! `Copy`, has its padding spelled out as fields, uses integers instead of `bool`, and carries a
//! compile-time size check. The XDP program and user space must agree byte for byte: any change to
//! a layout or to a constant's meaning bumps [`LAYOUT_VERSION`].
//!
//! - [`hot`]: the HOT tables (set-associative, mmapped), the replies XDP answers `get` with, and
//!   `HOT_GEN`, the flush count a slot must match.
//! - [`config`]: the program's settings, the addresses it answers for, the source allowlist key.
//! - [`csum`]: the ones' complement sums both sides compute the UDP checksum with.
//! - [`bucket`]: the bucket map (vbucket → `BucketEntry`), which says whether this node owns a key.
//! - [`counter`]: indexes into the per-CPU counter array.
//!
//! No dependencies and `no_std`: the eBPF crate compiles this for `bpfel-unknown-none`. The `user`
//! feature adds user-space-only extras (`aya::Pod` impls, in `pod.rs`) and the optional aya
//! dependency they need; the eBPF side never turns it on.
#![no_std]

pub mod bucket;
pub mod config;
pub mod counter;
pub mod csum;
pub mod hot;
#[cfg(feature = "user")]
mod pod;

pub use bucket::{BucketEntry, BUCKET_MAP_ENTRIES, NODE_NONE, VBUCKETS};
pub use config::{mapped_v4, AllowKey, Listen, XdpConfig, CFG_ALLOWLIST, LISTEN_MAX};
pub use hot::{
    hot_set, hot_tag, serving, HotSlot, LargeSlot, SmallSlot, HOT_KEY_MAX, HOT_WAYS, LARGE_TEXT,
    SLOT_EMPTY, SLOT_HEAD, SLOT_LIVE, SMALL_TEXT, TEXT_KEY_AT,
};

/// Version of every layout and constant in this crate. User space refuses to load an XDP object
/// built against another version.
pub const LAYOUT_VERSION: u32 = 4;

/// Most keys one `get` may name and still be answered in XDP; more go up to user space.
pub const XDP_KEYS_MAX: usize = 24;

/// memcached's UDP frame header: request id, sequence number, datagram count, reserved.
pub const FRAME_HEADER_LEN: usize = 8;

/// Default for `XdpConfig::reply_cap`: memcached's largest UDP reply payload.
pub const REPLY_CAP_DEFAULT: u16 = 1400;
