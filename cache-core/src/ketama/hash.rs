//! The key hashes twemproxy (nutcracker 0.5) offers for a pool's `hash:` setting, bit for bit:
//! a pool moved from twemproxy must send every key to the same server. Several of them read the
//! key through a signed `char` in C, so a byte of 0x80 or more enters sign-extended; that is
//! kept here (it only matters for keys with such bytes).

use md5::{Digest, Md5};

/// A twemproxy key hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHash {
    OneAtATime,
    Md5,
    Crc32,
    Crc32a,
    Fnv1_64,
    Fnv1a64,
    Fnv1_32,
    Fnv1a32,
    Murmur,
}

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

/// A key byte as C's `(uint32_t)(char)b`.
fn sx32(b: u8) -> u32 {
    b as i8 as i32 as u32
}

/// A key byte as C's `(uint64_t)(char)b`.
fn sx64(b: u8) -> u64 {
    b as i8 as i64 as u64
}

impl KeyHash {
    /// The hash of a `hash:` name as twemproxy spells it.
    pub fn from_name(name: &str) -> Option<KeyHash> {
        Some(match name {
            "one_at_a_time" => KeyHash::OneAtATime,
            "md5" => KeyHash::Md5,
            "crc32" => KeyHash::Crc32,
            "crc32a" => KeyHash::Crc32a,
            "fnv1_64" => KeyHash::Fnv1_64,
            "fnv1a_64" => KeyHash::Fnv1a64,
            "fnv1_32" => KeyHash::Fnv1_32,
            "fnv1a_32" => KeyHash::Fnv1a32,
            "murmur" => KeyHash::Murmur,
            _ => return None,
        })
    }

    /// The names [`KeyHash::from_name`] knows.
    pub const NAMES: &'static [&'static str] = &[
        "one_at_a_time",
        "md5",
        "crc32",
        "crc32a",
        "fnv1_64",
        "fnv1a_64",
        "fnv1_32",
        "fnv1a_32",
        "murmur",
    ];

    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::OneAtATime => {
                let mut v: u32 = 0;
                for &b in key {
                    v = v.wrapping_add(sx32(b));
                    v = v.wrapping_add(v << 10);
                    v ^= v >> 6;
                }
                v = v.wrapping_add(v << 3);
                v ^= v >> 11;
                v.wrapping_add(v << 15)
            }
            KeyHash::Md5 => {
                let d = Md5::digest(key);
                u32::from_le_bytes([d[0], d[1], d[2], d[3]])
            }
            KeyHash::Crc32 => (crc32fast::hash(key) >> 16) & 0x7fff,
            KeyHash::Crc32a => crc32fast::hash(key),
            KeyHash::Fnv1_64 => {
                let mut h = FNV_64_INIT;
                for &b in key {
                    h = h.wrapping_mul(FNV_64_PRIME);
                    h ^= sx64(b);
                }
                h as u32
            }
            // twemproxy's "fnv1a_64" is a 32-bit FNV-1a seeded and multiplied with the low
            // halves of the 64-bit constants.
            KeyHash::Fnv1a64 => {
                let mut h = FNV_64_INIT as u32;
                for &b in key {
                    h ^= sx32(b);
                    h = h.wrapping_mul(FNV_64_PRIME as u32);
                }
                h
            }
            KeyHash::Fnv1_32 => {
                let mut h = FNV_32_INIT;
                for &b in key {
                    h = h.wrapping_mul(FNV_32_PRIME);
                    h ^= sx32(b);
                }
                h
            }
            KeyHash::Fnv1a32 => {
                let mut h = FNV_32_INIT;
                for &b in key {
                    h ^= sx32(b);
                    h = h.wrapping_mul(FNV_32_PRIME);
                }
                h
            }
            KeyHash::Murmur => murmur(key),
        }
    }
}

/// twemproxy's MurmurHash2 variant (seed `0xdeadbeef * len`, native-endian words: little
/// endian on the hosts kcache runs on).
fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let len = key.len() as u32;
    let mut h = 0xdead_beef_u32.wrapping_mul(len) ^ len;
    let mut words = key.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // FNV-1a 32 of "a" and "foobar" (the published test vectors).
        assert_eq!(KeyHash::Fnv1a32.hash(b"a"), 0xe40c_292c);
        assert_eq!(KeyHash::Fnv1a32.hash(b"foobar"), 0xbf9c_f968);
        // FNV-1 64 of "a", truncated as twemproxy returns it.
        assert_eq!(
            KeyHash::Fnv1_64.hash(b"a"),
            0xaf63_bd4c_8601_b7be_u64 as u32
        );
        // CRC-32 (IEEE) of "123456789".
        assert_eq!(KeyHash::Crc32a.hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            KeyHash::Crc32.hash(b"123456789"),
            (0xcbf4_3926 >> 16) & 0x7fff
        );
        // MD5("") = d41d8cd9...: its first word, little endian.
        assert_eq!(KeyHash::Md5.hash(b""), 0xd98c_1dd4);
        // Jenkins' one-at-a-time of "a".
        assert_eq!(KeyHash::OneAtATime.hash(b"a"), 0xca2e_9442);
        for name in KeyHash::NAMES {
            assert!(KeyHash::from_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn high_bytes_enter_sign_extended() {
        // In C, (uint32_t)(char)0xff is 0xffffffff: FNV-1a 32 of [0xff] xors that in.
        let want = (FNV_32_INIT ^ 0xffff_ffff).wrapping_mul(FNV_32_PRIME);
        assert_eq!(KeyHash::Fnv1a32.hash(&[0xff]), want);
    }
}
