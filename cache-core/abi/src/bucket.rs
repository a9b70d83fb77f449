//! The bucket map as XDP sees it: a BPF array indexed by vbucket.
//!
//! ```text
//!  0        4        8
//!  +--------+--------+
//!  | owner  | epoch  |
//!  | u32    | u32    |
//!  +--------+--------+
//! ```
//!
//! `owner` is the node id that owns the bucket, or [`NODE_NONE`] if no node does. XDP answers a
//! key only when `owner` is this node's id; anything else goes up to user space, which holds the
//! full map and sends the refusal. `epoch` is the epoch of the map the entry came from; user space
//! rewrites all [`BUCKET_MAP_ENTRIES`] entries when it applies a newer map.

/// Number of virtual buckets (kcache hash v1 maps every key to one of them).
pub const VBUCKETS: u32 = 16384;

/// Entries in the BPF bucket array: one per vbucket.
pub const BUCKET_MAP_ENTRIES: u32 = VBUCKETS;

/// Owner of a bucket no node owns. Never a valid node id.
pub const NODE_NONE: u32 = u32::MAX;

/// One bucket's owner, as the XDP program reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketEntry {
    /// Owning node id, or [`NODE_NONE`].
    pub owner: u32,
    /// Epoch of the map this entry was copied from.
    pub epoch: u32,
}

const _: () = assert!(core::mem::size_of::<BucketEntry>() == 8);

impl BucketEntry {
    /// An entry owned by nobody.
    pub const NONE: Self = Self {
        owner: NODE_NONE,
        epoch: 0,
    };
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layout() {
        // Offsets are read by the XDP program.
        assert_eq!(size_of::<BucketEntry>(), 8);
        assert_eq!(offset_of!(BucketEntry, owner), 0);
        assert_eq!(offset_of!(BucketEntry, epoch), 4);
    }

    #[test]
    fn constants() {
        // The vbucket is the top 14 bits of the key hash.
        assert_eq!(VBUCKETS, 1 << 14);
        assert_eq!(BUCKET_MAP_ENTRIES, VBUCKETS);
        assert_eq!(BucketEntry::NONE.owner, NODE_NONE);
    }
}
