//! The item header: how one cached item sits in a slab chunk.
//!
//! ```text
//!  byte 0        8          12         16         20         24    25     27    28
//!       +--------+----------+----------+----------+----------+-----+------+-----+---------
//!       | cas    | exptime  | atime    | flags    | vlen     | klen| iflag| gen | key ...
//!       | u64    | u32      | u32      | u32      | u32      | u8  | u16  | u8  |
//!       +--------+----------+----------+----------+----------+-----+------+-----+---------
//!  28 + klen            28 + klen + vlen                    (+ 8 if FLOOR)
//!       | value ...     | floor u64 (only when iflag & FLOOR) |
//! ```
//!
//! All fields are little-endian and read unaligned (chunks are 8-byte aligned, fields are not),
//! so the header costs 28 bytes against memcached's 48–56.
//!
//! - `cas`: the item's CAS unique, which is also its version (see [`crate::version`]). With
//!   [`EXT_VERSION`] set it came from a client (`E` flag) rather than the store's counter.
//! - `exptime`: absolute Unix seconds; 0 never expires. An item is dead once `exptime <= now`.
//! - `atime`: Unix seconds of the last access (meta `l`, `me la=`, and delayed `flush_all`): set
//!   by the write, then moved by every fetch but the first and by in-place updates, as in
//!   memcached 1.6.18 (`Store::bump`).
//! - `flags`: the client's opaque 32-bit flags.
//! - `vlen`, `klen`: value and key lengths. `klen == 0` marks a free chunk (keys are never
//!   empty), which is how a CLOCK sweep or a page move tells free chunks from items.
//! - `iflag`: the `ITEM_*` bits below.
//! - `gen`: the store's flush generation when the item was written; an immediate `flush_all`
//!   bumps the store's generation, which kills every older item without touching it.
//! - `floor`: the highest external version seen for this key, carried forward across
//!   unversioned writes so an older versioned fill is still refused (see [`crate::version`]).
//!
//! Changing this layout bumps [`LAYOUT_VERSION`].

/// Version of the layout drawn above.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes before the key.
pub const HEADER_LEN: usize = 28;
/// Bytes of the optional floor trailer.
pub const FLOOR_LEN: usize = 8;

/// Item has been fetched at least once (meta `h`, `me fetch=`).
pub const ITEM_FETCHED: u16 = 1 << 0;
/// CLOCK reference bit: set on access, cleared by a passing sweep hand.
pub const ITEM_REF: u16 = 1 << 1;
/// Marked stale by `md … I` or an `ms … I` with an older CAS (meta `X`).
pub const ITEM_STALE: u16 = 1 << 2;
/// A client already holds the recache/lease token for this item (meta `Z` for the others).
pub const ITEM_TOKEN_SENT: u16 = 1 << 3;
/// The key was sent base64-encoded (meta `b`); `k` returns it encoded again.
pub const ITEM_KEY_BINARY: u16 = 1 << 4;
/// `cas` is an external version supplied with `E`, not the store's counter.
pub const ITEM_EXT_VERSION: u16 = 1 << 5;
/// A floor trailer follows the value.
pub const ITEM_FLOOR: u16 = 1 << 6;
/// The item is a tombstone left by a versioned delete: invisible to reads, holds a floor.
pub const ITEM_TOMBSTONE: u16 = 1 << 7;
/// A copy of this item may sit in the XDP HOT map; any change must be reported first.
pub const ITEM_HOT: u16 = 1 << 8;
/// A lease placeholder made by `mg … N` on a miss; holds no real value yet.
pub const ITEM_PLACEHOLDER: u16 = 1 << 9;

const CAS: usize = 0;
const EXPTIME: usize = 8;
const ATIME: usize = 12;
const FLAGS: usize = 16;
const VLEN: usize = 20;
const KLEN: usize = 24;
const IFLAG: usize = 25;
const GEN: usize = 27;

/// A decoded copy of an item header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub cas: u64,
    pub exptime: u32,
    pub atime: u32,
    pub flags: u32,
    pub vlen: u32,
    pub klen: u8,
    pub iflag: u16,
    pub gen: u8,
}

impl Header {
    /// Reads a header from the start of `chunk` (at least [`HEADER_LEN`] bytes).
    pub fn read(chunk: &[u8]) -> Header {
        Header {
            cas: u64::from_le_bytes(arr(chunk, CAS)),
            exptime: u32::from_le_bytes(arr(chunk, EXPTIME)),
            atime: u32::from_le_bytes(arr(chunk, ATIME)),
            flags: u32::from_le_bytes(arr(chunk, FLAGS)),
            vlen: u32::from_le_bytes(arr(chunk, VLEN)),
            klen: chunk[KLEN],
            iflag: u16::from_le_bytes(arr(chunk, IFLAG)),
            gen: chunk[GEN],
        }
    }

    /// Writes this header to the start of `chunk` (at least [`HEADER_LEN`] bytes).
    pub fn write(&self, chunk: &mut [u8]) {
        chunk[CAS..CAS + 8].copy_from_slice(&self.cas.to_le_bytes());
        chunk[EXPTIME..EXPTIME + 4].copy_from_slice(&self.exptime.to_le_bytes());
        chunk[ATIME..ATIME + 4].copy_from_slice(&self.atime.to_le_bytes());
        chunk[FLAGS..FLAGS + 4].copy_from_slice(&self.flags.to_le_bytes());
        chunk[VLEN..VLEN + 4].copy_from_slice(&self.vlen.to_le_bytes());
        chunk[KLEN] = self.klen;
        chunk[IFLAG..IFLAG + 2].copy_from_slice(&self.iflag.to_le_bytes());
        chunk[GEN] = self.gen;
    }

    /// Bytes this item occupies: header, key, value and the floor trailer if present.
    pub fn total_len(&self) -> usize {
        item_len(
            self.klen as usize,
            self.vlen as usize,
            self.iflag & ITEM_FLOOR != 0,
        )
    }

    pub fn has(&self, bit: u16) -> bool {
        self.iflag & bit != 0
    }
}

/// Bytes an item with these lengths needs.
pub fn item_len(klen: usize, vlen: usize, floor: bool) -> usize {
    HEADER_LEN + klen + vlen + if floor { FLOOR_LEN } else { 0 }
}

/// Reads the `cas` field only.
pub fn read_cas(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(arr(chunk, CAS))
}

/// Writes the `cas` field only.
pub fn write_cas(chunk: &mut [u8], cas: u64) {
    chunk[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
}

/// Reads the `exptime` field only.
pub fn read_exptime(chunk: &[u8]) -> u32 {
    u32::from_le_bytes(arr(chunk, EXPTIME))
}

/// Writes the `exptime` field only.
pub fn write_exptime(chunk: &mut [u8], exptime: u32) {
    chunk[EXPTIME..EXPTIME + 4].copy_from_slice(&exptime.to_le_bytes());
}

/// Reads the `atime` field only.
pub fn read_atime(chunk: &[u8]) -> u32 {
    u32::from_le_bytes(arr(chunk, ATIME))
}

/// Writes the `atime` field only.
pub fn write_atime(chunk: &mut [u8], atime: u32) {
    chunk[ATIME..ATIME + 4].copy_from_slice(&atime.to_le_bytes());
}

/// Reads the `klen` field only (0 means the chunk is free).
pub fn read_klen(chunk: &[u8]) -> u8 {
    chunk[KLEN]
}

/// Writes the `klen` field only; writing 0 marks the chunk free.
pub fn write_klen(chunk: &mut [u8], klen: u8) {
    chunk[KLEN] = klen;
}

/// Reads the `iflag` field only.
pub fn read_iflag(chunk: &[u8]) -> u16 {
    u16::from_le_bytes(arr(chunk, IFLAG))
}

/// Writes the `iflag` field only.
pub fn write_iflag(chunk: &mut [u8], iflag: u16) {
    chunk[IFLAG..IFLAG + 2].copy_from_slice(&iflag.to_le_bytes());
}

/// The key bytes of the item at the start of `chunk`.
pub fn key(chunk: &[u8]) -> &[u8] {
    let klen = chunk[KLEN] as usize;
    &chunk[HEADER_LEN..HEADER_LEN + klen]
}

/// The value bytes of the item at the start of `chunk`.
pub fn value(chunk: &[u8]) -> &[u8] {
    let h = Header::read(chunk);
    let start = HEADER_LEN + h.klen as usize;
    &chunk[start..start + h.vlen as usize]
}

/// The floor trailer, if the item has one.
pub fn floor(chunk: &[u8]) -> Option<u64> {
    let h = Header::read(chunk);
    if !h.has(ITEM_FLOOR) {
        return None;
    }
    let at = HEADER_LEN + h.klen as usize + h.vlen as usize;
    Some(u64::from_le_bytes(arr(chunk, at)))
}

/// Writes the floor trailer; the caller sized the chunk with `floor = true`.
pub fn write_floor(chunk: &mut [u8], floor: u64) {
    let h = Header::read(chunk);
    let at = HEADER_LEN + h.klen as usize + h.vlen as usize;
    chunk[at..at + 8].copy_from_slice(&floor.to_le_bytes());
}

fn arr<const N: usize>(chunk: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&chunk[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            cas: 0x0102_0304_0506_0708,
            exptime: 7,
            atime: 9,
            flags: u32::MAX,
            vlen: 1 << 20,
            klen: 250,
            iflag: ITEM_STALE | ITEM_HOT,
            gen: 3,
        };
        let mut chunk = [0u8; 64];
        h.write(&mut chunk);
        assert_eq!(Header::read(&chunk), h);
        assert_eq!(read_cas(&chunk), h.cas);
        assert_eq!(read_klen(&chunk), 250);
        assert_eq!(read_iflag(&chunk), ITEM_STALE | ITEM_HOT);
    }

    #[test]
    fn lengths_include_the_floor_only_when_flagged() {
        // 16-byte key, 32-byte value: the benchmark item.
        assert_eq!(item_len(16, 32, false), 76);
        assert_eq!(item_len(16, 32, true), 84);
    }
}
