//! The HOT map: key → preformatted `get` reply, read by XDP and written by user space.
//!
//! Key (BPF hash-map key, compared byte for byte by the kernel, so every unused byte is zero):
//!
//! ```text
//!  0     1                  6                                          256
//!  +-----+------------------+-------------------------------------------+
//!  | len | _pad [u8; 5] = 0 | bytes [u8; 250]: key, then zeros          |
//!  | u8  |                  |                                           |
//!  +-----+------------------+-------------------------------------------+
//! ```
//!
//! 250 is memcached's key limit; the 5 padding bytes round the struct to 256, a multiple of 8, so
//! an array of keys (or a key in a larger struct) needs no hidden padding.
//!
//! Value (BPF hash-map value, 8-byte aligned):
//!
//! ```text
//!  0         8         12        16        24        28          30       32              1056
//!  +---------+---------+---------+---------+---------+-----------+--------+-----------------+
//!  | version | expires | flags   | cas     | seq     | reply_len | _pad   | reply           |
//!  | u64     | u32     | u32     | u64     | u32     | u16       | [u8;2] | [u8; 1024]      |
//!  +---------+---------+---------+---------+---------+-----------+--------+-----------------+
//! ```
//!
//! `reply[..reply_len]` is `VALUE <key> <flags> <bytes>\r\n<data>\r\n`, ready to copy into the
//! answer; the program appends `END\r\n` after the last key.
//!
//! `seq` is a seqlock: user space makes it odd, writes the entry, then makes it even again. XDP
//! reads `seq`, passes the request up if it is odd, copies the reply, and passes up if `seq`
//! changed meanwhile. A torn value is therefore never sent.
//!
//! Why [`HOT_REPLY_MAX`] = 1024: an answer must fit one UDP datagram. Ethernet (14) + IPv4 without
//! options (20) + UDP (8) + memcached frame header (8) + 1024 + `END\r\n` (5) = 1079 bytes, under
//! both a 1500-byte MTU and memcached's 1400-byte payload per reply datagram, so a one-key hit never
//! needs a second datagram. A power of two also lets the program bound its copy loop with a mask,
//! which the verifier accepts. Items whose reply is longer are simply never promoted.

/// Longest key memcached accepts, and so the size of [`HotKey::bytes`].
pub const HOT_KEY_MAX: usize = 250;

/// Size of [`HotValue::reply`]; see the module docs for why 1024.
pub const HOT_REPLY_MAX: usize = 1024;

/// HOT map key: a memcached key, zero-padded so equal keys are equal byte strings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotKey {
    /// Key length, 1..=250.
    pub len: u8,
    /// Always zero.
    pub _pad: [u8; 5],
    /// The key in `bytes[..len]`; zeros after it.
    pub bytes: [u8; HOT_KEY_MAX],
}

const _: () = assert!(core::mem::size_of::<HotKey>() == 256);

impl HotKey {
    /// An all-zero key (length 0), a starting point for filling one in place.
    pub const fn zeroed() -> Self {
        Self {
            len: 0,
            _pad: [0; 5],
            bytes: [0; HOT_KEY_MAX],
        }
    }

    /// The key for `key`, or `None` if it is empty or longer than [`HOT_KEY_MAX`].
    pub fn new(key: &[u8]) -> Option<Self> {
        let len = u8::try_from(key.len())
            .ok()
            .filter(|&l| l > 0 && usize::from(l) <= HOT_KEY_MAX)?;
        let mut k = Self::zeroed();
        k.len = len;
        k.bytes[..key.len()].copy_from_slice(key);
        Some(k)
    }

    /// The key bytes (`len` is clamped, so a corrupt length cannot read past the buffer).
    pub fn key(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(HOT_KEY_MAX)]
    }
}

/// HOT map value: what XDP needs to answer a `get` for one key without user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotValue {
    /// The item's version when this entry was filled. kcache bumps it on every mutation (as
    /// memcached bumps CAS); after a fill user space re-reads it and removes the entry if it moved.
    pub version: u64,
    /// Expiry in Unix seconds; 0 = never. An expired entry is a miss.
    pub expires: u32,
    /// The item's client flags (already inside `reply`; kept for `gets` and for stats).
    pub flags: u32,
    /// The CAS unique `gets` reports.
    pub cas: u64,
    /// Seqlock: odd while user space is writing this entry.
    pub seq: u32,
    /// Bytes of `reply` in use, at most [`HOT_REPLY_MAX`].
    pub reply_len: u16,
    /// Always zero.
    pub _pad: [u8; 2],
    /// `VALUE <key> <flags> <bytes>\r\n<data>\r\n`, then zeros.
    pub reply: [u8; HOT_REPLY_MAX],
}

const _: () = assert!(core::mem::size_of::<HotValue>() == 1056);
const _: () = assert!(HOT_REPLY_MAX <= u16::MAX as usize);
const _: () = assert!(HOT_REPLY_MAX.is_power_of_two());

impl HotValue {
    /// An all-zero value.
    pub const fn zeroed() -> Self {
        Self {
            version: 0,
            expires: 0,
            flags: 0,
            cas: 0,
            seq: 0,
            reply_len: 0,
            _pad: [0; 2],
            reply: [0; HOT_REPLY_MAX],
        }
    }

    /// Whether a writer holds the seqlock (`seq` is odd).
    pub const fn writing(&self) -> bool {
        self.seq & 1 == 1
    }

    /// The reply bytes (`reply_len` is clamped to the buffer).
    pub fn reply(&self) -> &[u8] {
        &self.reply[..usize::from(self.reply_len).min(HOT_REPLY_MAX)]
    }
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn key_layout() {
        // Offsets are part of the ABI: the XDP program writes these fields directly.
        assert_eq!(size_of::<HotKey>(), 256);
        assert_eq!(align_of::<HotKey>(), 1);
        assert_eq!(offset_of!(HotKey, len), 0);
        assert_eq!(offset_of!(HotKey, _pad), 1);
        assert_eq!(offset_of!(HotKey, bytes), 6);
    }

    #[test]
    fn value_layout() {
        assert_eq!(size_of::<HotValue>(), 1056);
        assert_eq!(align_of::<HotValue>(), 8);
        assert_eq!(offset_of!(HotValue, version), 0);
        assert_eq!(offset_of!(HotValue, expires), 8);
        assert_eq!(offset_of!(HotValue, flags), 12);
        assert_eq!(offset_of!(HotValue, cas), 16);
        assert_eq!(offset_of!(HotValue, seq), 24);
        assert_eq!(offset_of!(HotValue, reply_len), 28);
        assert_eq!(offset_of!(HotValue, _pad), 30);
        assert_eq!(offset_of!(HotValue, reply), 32);
    }

    #[test]
    fn key_new() {
        let cases: [(&[u8], Option<u8>); 4] = [
            // Empty keys are not memcached keys.
            (b"", None),
            // A short key is stored with its length.
            (b"foo", Some(3)),
            // Exactly the limit fits.
            (&[b'k'; 250], Some(250)),
            // One past the limit does not.
            (&[b'k'; 251], None),
        ];
        for (key, want) in cases {
            let got = HotKey::new(key);
            assert_eq!(got.map(|k| k.len), want, "key of {} bytes", key.len());
            if let Some(k) = got {
                assert_eq!(k.key(), key);
                // Trailing bytes stay zero so equal keys hash and compare equal in the kernel.
                assert!(k.bytes[key.len()..].iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn clamped_accessors() {
        // A corrupt length never reads past the buffer.
        let mut k = HotKey::zeroed();
        k.len = u8::MAX;
        assert_eq!(k.key().len(), HOT_KEY_MAX);
        let mut v = HotValue::zeroed();
        v.reply_len = u16::MAX;
        assert_eq!(v.reply().len(), HOT_REPLY_MAX);
        // Odd seq means a writer is inside.
        v.seq = 3;
        assert!(v.writing());
        v.seq = 4;
        assert!(!v.writing());
    }
}
