//! Key → vbucket → owner.
//!
//! Every key belongs to one of [`VBUCKETS`] virtual buckets, chosen by a fixed hash that user
//! space, the XDP program and any smart client compute the same way (kcache hash v1):
//!
//! ```text
//! h = 0x243F_6A88_85A3_08D3 ^ (len(key) * P)          P = 0x9E37_79B9_7F4A_7C15
//! for each 8-byte chunk w of the key (little-endian; the last one zero-padded):
//!     h = rotl64((h ^ w) * P, 29)
//! h = fmix64(h)                      (MurmurHash3's 64-bit finalizer)
//! vbucket = h >> 50                  (top 14 bits: 0..16383)
//! ```
//!
//! All arithmetic wraps. The same `h` keys the store's index, so a single-key request hashes
//! its key once even when it is routed first (`exec::execute_hashed`); a multi-key read on a
//! multi-shard server hashes each key to route it and again in the store.
//!
//! Which node owns each bucket is a [`BucketMap`] with an epoch; a server asked for a key whose
//! bucket it does not own answers with a [`Refusal`].

mod map;
mod own;
mod refusal;
mod text;

pub use map::{BucketError, BucketMap, NodeId};
pub use own::{Ownership, RefusalCounts, Verdict};
pub use refusal::Refusal;

/// Number of virtual buckets.
pub const VBUCKETS: u16 = 16384;

const _: () = assert!(VBUCKETS as u32 == crate::abi::VBUCKETS);

const SEED: u64 = 0x243F_6A88_85A3_08D3;
const P: u64 = 0x9E37_79B9_7F4A_7C15;

/// kcache hash v1 of `key` (see the module docs).
#[inline]
pub fn khash(key: &[u8]) -> u64 {
    let mut h = SEED ^ (key.len() as u64).wrapping_mul(P);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(P).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(P).rotate_left(29);
    }
    fmix64(h)
}

/// The vbucket of a key hash.
#[inline]
pub fn vbucket_of(hash: u64) -> u16 {
    (hash >> 50) as u16
}

/// The vbucket of `key`.
#[inline]
pub fn vbucket(key: &[u8]) -> u16 {
    vbucket_of(khash(key))
}

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fixed() {
        // Pinned values: changing the hash moves every key to another bucket and breaks clients.
        assert_eq!(khash(b""), fmix64(SEED));
        assert_eq!(vbucket(b"foo"), vbucket_of(khash(b"foo")));
        let a = khash(b"user:1234:profile");
        assert_eq!(a, khash(b"user:1234:profile"));
        assert_ne!(a, khash(b"user:1234:profilf"));
    }

    #[test]
    fn hash_vectors() {
        // Test vectors for other implementations (XDP, smart clients). They were checked against
        // an independent implementation of the module docs' pseudo-code, not only against this one.
        let long = [b'k'; 250];
        let cases: [(&[u8], u64, u16); 7] = [
            // Empty key: only the length mix and the finalizer.
            (b"", 0x7acd_bb98_b134_4213, 7859),
            // One partial chunk.
            (b"a", 0x27a0_2e16_8da2_1aa0, 2536),
            (b"foo", 0xbe5c_e6e0_e000_0a58, 12183),
            // Exactly one full chunk, then one full chunk and one byte.
            (b"12345678", 0xec35_be10_93e1_75b0, 15117),
            (b"123456789", 0xa9c1_3dad_5787_f4ac, 10864),
            // A typical key.
            (b"user:1234:profile", 0xf81f_63c7_7897_1f0d, 15879),
            // The longest memcached key.
            (&long, 0x0abf_9081_fc67_f37a, 687),
        ];
        for (key, hash, vb) in cases {
            assert_eq!(khash(key), hash, "{}", String::from_utf8_lossy(key));
            assert_eq!(vbucket(key), vb, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn buckets_spread_evenly() {
        // 163840 sequential keys over 16384 buckets: every bucket should get roughly 10.
        let mut counts = vec![0u32; VBUCKETS as usize];
        for i in 0..163_840u32 {
            counts[vbucket(format!("key:{i}").as_bytes()) as usize] += 1;
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        let empty = counts.iter().filter(|&&c| c == 0).count();
        assert!(max < 30, "a bucket got {max} keys");
        assert!(empty < 10, "{empty} empty buckets");
    }
}
