//! The HOT table: preformatted `get` replies that XDP answers with, written by user space.
//!
//! Two BPF arrays with `BPF_F_MMAPABLE`, `HOT_SMALL` ([`SmallSlot`]) and `HOT_LARGE`
//! ([`LargeSlot`]), each a 4-way set-associative hash table keyed by kcache hash v1: a key's set
//! is `(hash as u32) & set_mask` and its slots are `set * HOT_WAYS .. set * HOT_WAYS + 4`. User
//! space maps both arrays and writes slots in place with plain stores under a seqlock; XDP looks
//! a key up in both tables (an item lives in the one its reply fits, never in both).
//!
//! Why arrays and not a `BPF_MAP_TYPE_HASH`: a hash-map update from user space is a syscall
//! (~1 µs) on the mutation path, and the kernel recycles a replaced hash element at once, so a
//! reader still holding it could copy another key's value. Here user space alone decides when a
//! slot changes, every change is a few stores, and the reader's seqlock check covers all of them.
//!
//! Slot (`HotSlot<N>`, 8-byte aligned, 56-byte head then `N` bytes of reply text):
//!
//! ```text
//!  0      4      8      12     16           24          32     36   37    38      40      42
//!  +------+------+------+------+------------+-----------+------+----+-----+-------+-------+
//!  | seq  | hits | tag  |epoch | expires_ns | version   |flags |klen|state|hdr_len|cas_len|
//!  | u32  | u32  | u32  | u32  | u64        | u64       | u32  | u8 | u8  | u16   | u16   |
//!  +------+------+------+------+------------+-----------+------+----+-----+-------+-------+
//!  42        44      46      48       50      56
//!  +---------+-------+-------+--------+-------+-----------------------------------------+
//!  | tail_len|sum_hdr|sum_cas|sum_tail| _pad  | text [u8; N]                            |
//!  | u16     | u16   | u16   | u16    | [u8;6]|                                         |
//!  +---------+-------+-------+--------+-------+-----------------------------------------+
//! ```
//!
//! `text` holds three parts back to back:
//!
//! ```text
//!  hdr  = "VALUE <key> <flags> <bytes>"     (hdr_len bytes; the key starts at text[6])
//!  cas  = " <cas>"                          (cas_len bytes)
//!  tail = "\r\n<data>\r\n"                  (tail_len bytes)
//! ```
//!
//! `get` copies `hdr` + `tail`, `gets` copies all three. `sum_*` is each part's 16-bit ones'
//! complement sum as if it started at an even offset, so XDP can fill in the UDP checksum
//! without reading the reply again (a part that lands at an odd offset contributes its sum
//! byte-swapped).
//!
//! Seqlock: a writer makes `seq` odd, writes the slot, then makes `seq` even and different from
//! any value it had before. A reader reads `seq` (odd: miss), checks and copies, and re-reads
//! `seq` before the reply leaves; if it changed the request goes up to user space instead. `hits`
//! is outside the lock: XDP adds to it, user space reads and clears it to rank keys.
//!
//! A slot is served only if `state == SLOT_LIVE`, its tag, key length and key bytes equal the
//! request's, `epoch` equals [`serving`]`(config epoch, HOT_GEN)`, and `expires_ns`
//! (CLOCK_MONOTONIC, 0 = never) is in the future.
//!
//! `HOT_GEN` is a third `BPF_F_MMAPABLE` array, one `u32`: the count of `flush_all`s, which user
//! space bumps with one atomic add. A slot carries the serving value it was filled under, so a
//! flush makes every older slot unservable at once, before anything is cleared; user space
//! empties those slots later, at its leisure. Both parts only grow (the bucket-map epoch only
//! moves forward), so the value XDP computes after a bump is larger than any value a slot filled
//! before it carries (until 2^32 flushes wrap it).

/// Longest key memcached accepts.
pub const HOT_KEY_MAX: usize = 250;

/// Slots per set in both tables.
pub const HOT_WAYS: u32 = 4;

/// Reply text bytes of a [`SmallSlot`].
pub const SMALL_TEXT: usize = 200;

/// Reply text bytes of a [`LargeSlot`]: enough for any one-key reply that fits a datagram.
pub const LARGE_TEXT: usize = 1384;

/// `HotSlot::state` of an empty slot.
pub const SLOT_EMPTY: u8 = 0;
/// `HotSlot::state` of a slot XDP may serve.
pub const SLOT_LIVE: u8 = 1;

/// Offset of the key inside `text` (after `VALUE `).
pub const TEXT_KEY_AT: usize = 6;

/// One HOT table slot with `N` bytes of reply text; see the module docs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotSlot<const N: usize> {
    /// Seqlock: odd while user space writes the slot.
    pub seq: u32,
    /// Requests XDP answered from this slot since user space last cleared it.
    pub hits: u32,
    /// `(khash(key) >> 32) as u32`, a quick reject before the key compare.
    pub tag: u32,
    /// [`serving`] when the slot was filled: the bucket-map epoch plus the flushes so far; served
    /// only while it equals the value XDP computes from the config's epoch and `HOT_GEN`.
    pub epoch: u32,
    /// Expiry on CLOCK_MONOTONIC in nanoseconds; 0 = never.
    pub expires_ns: u64,
    /// The item's version (its CAS) when the slot was filled.
    pub version: u64,
    /// The item's client flags (also in `hdr`).
    pub flags: u32,
    /// Key length, 1..=250.
    pub key_len: u8,
    /// [`SLOT_EMPTY`] or [`SLOT_LIVE`].
    pub state: u8,
    /// Bytes of `VALUE <key> <flags> <bytes>`.
    pub hdr_len: u16,
    /// Bytes of ` <cas>`.
    pub cas_len: u16,
    /// Bytes of `\r\n<data>\r\n`.
    pub tail_len: u16,
    /// Ones' complement sums of the three parts (see the module docs).
    pub sum_hdr: u16,
    pub sum_cas: u16,
    pub sum_tail: u16,
    /// Always zero.
    pub _pad: [u8; 6],
    /// `hdr`, `cas` and `tail`, then zeros.
    pub text: [u8; N],
}

/// Slot of the `HOT_SMALL` table (256 bytes).
pub type SmallSlot = HotSlot<SMALL_TEXT>;
/// Slot of the `HOT_LARGE` table (1440 bytes).
pub type LargeSlot = HotSlot<LARGE_TEXT>;

/// Bytes before `text`.
pub const SLOT_HEAD: usize = 56;

const _: () = assert!(core::mem::size_of::<SmallSlot>() == 256);
const _: () = assert!(core::mem::size_of::<LargeSlot>() == 1440);
const _: () = assert!(core::mem::size_of::<HotSlot<0>>() == SLOT_HEAD);

impl<const N: usize> HotSlot<N> {
    /// An empty slot.
    pub const fn zeroed() -> Self {
        Self {
            seq: 0,
            hits: 0,
            tag: 0,
            epoch: 0,
            expires_ns: 0,
            version: 0,
            flags: 0,
            key_len: 0,
            state: SLOT_EMPTY,
            hdr_len: 0,
            cas_len: 0,
            tail_len: 0,
            sum_hdr: 0,
            sum_cas: 0,
            sum_tail: 0,
            _pad: [0; 6],
            text: [0; N],
        }
    }

    /// Whether a writer holds the seqlock (`seq` is odd).
    pub const fn writing(&self) -> bool {
        self.seq & 1 == 1
    }

    /// Bytes of `text` in use, clamped to the buffer.
    pub fn text_len(&self) -> usize {
        (usize::from(self.hdr_len) + usize::from(self.cas_len) + usize::from(self.tail_len)).min(N)
    }

    /// The key, as stored in `hdr` (clamped, so a corrupt length cannot read past the buffer).
    pub fn key(&self) -> &[u8] {
        let end = (TEXT_KEY_AT + usize::from(self.key_len)).min(N);
        &self.text[TEXT_KEY_AT.min(end)..end]
    }
}

/// The set a key hash falls in, for a table whose set count is `set_mask + 1`.
pub const fn hot_set(hash: u64, set_mask: u32) -> u32 {
    (hash as u32) & set_mask
}

/// The tag stored for a key hash.
pub const fn hot_tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The `epoch` a slot must carry to be served, from the bucket-map epoch and the `flush_all`
/// count in `HOT_GEN` (see the module docs).
pub const fn serving(epoch: u32, flushes: u32) -> u32 {
    epoch.wrapping_add(flushes)
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn slot_layout() {
        // Offsets are part of the ABI: the XDP program reads these fields directly.
        assert_eq!(size_of::<SmallSlot>(), 256);
        assert_eq!(size_of::<LargeSlot>(), 1440);
        assert_eq!(align_of::<SmallSlot>(), 8);
        assert_eq!(offset_of!(SmallSlot, seq), 0);
        assert_eq!(offset_of!(SmallSlot, hits), 4);
        assert_eq!(offset_of!(SmallSlot, tag), 8);
        assert_eq!(offset_of!(SmallSlot, epoch), 12);
        assert_eq!(offset_of!(SmallSlot, expires_ns), 16);
        assert_eq!(offset_of!(SmallSlot, version), 24);
        assert_eq!(offset_of!(SmallSlot, flags), 32);
        assert_eq!(offset_of!(SmallSlot, key_len), 36);
        assert_eq!(offset_of!(SmallSlot, state), 37);
        assert_eq!(offset_of!(SmallSlot, hdr_len), 38);
        assert_eq!(offset_of!(SmallSlot, cas_len), 40);
        assert_eq!(offset_of!(SmallSlot, tail_len), 42);
        assert_eq!(offset_of!(SmallSlot, sum_hdr), 44);
        assert_eq!(offset_of!(SmallSlot, sum_cas), 46);
        assert_eq!(offset_of!(SmallSlot, sum_tail), 48);
        assert_eq!(offset_of!(SmallSlot, text), SLOT_HEAD);
        assert_eq!(offset_of!(LargeSlot, text), SLOT_HEAD);
    }

    #[test]
    fn set_and_tag() {
        // The set comes from the low bits, the tag from the high half.
        let h = 0x1234_5678_9abc_def0_u64;
        assert_eq!(hot_set(h, 0xff), 0xf0);
        assert_eq!(hot_tag(h), 0x1234_5678);
    }

    #[test]
    fn serving_value() {
        // (epoch, flushes, serving)
        let cases = [
            // No flush yet: the bucket-map epoch itself (what tests without HOT_GEN rely on).
            (1, 0, 1),
            // Each flush and each newer map moves it on.
            (1, 1, 2),
            (3, 1, 4),
            // It wraps rather than overflows.
            (u32::MAX, 2, 1),
        ];
        for (epoch, flushes, want) in cases {
            assert_eq!(serving(epoch, flushes), want, "{epoch} + {flushes}");
        }
    }

    #[test]
    fn clamped_accessors() {
        // A corrupt length never reads past the buffer.
        let mut s = SmallSlot::zeroed();
        s.key_len = u8::MAX;
        assert_eq!(s.key().len(), SMALL_TEXT - TEXT_KEY_AT);
        s.hdr_len = u16::MAX;
        assert_eq!(s.text_len(), SMALL_TEXT);
        // Odd seq means a writer is inside.
        s.seq = 3;
        assert!(s.writing());
        s.seq = 4;
        assert!(!s.writing());
    }
}
