//! Consistent hashing as twemproxy and libmemcached do it ("ketama"): each server gets points on
//! a 32-bit circle in proportion to its weight, 160 for an average one, from the MD5 of
//! `<name>-<i>` (four points per digest); a key goes to the first point at or after its hash,
//! wrapping at the top. A server's name is its `name` when the pool gives one, else
//! `host` (port 11211) or `host:port` — twemproxy's rule, so a pool moved from twemproxy keeps
//! every key where it was (`tests/tests/route_ketama.rs` checks 100k keys against nutcracker).

mod hash;

pub use hash::KeyHash;

use md5::{Digest, Md5};

/// Points of an average-weight server.
const POINTS_PER_SERVER: u32 = 160;
/// Points from one digest.
const POINTS_PER_HASH: u32 = 4;

/// One server on the circle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What its points are hashed from.
    pub name: String,
    pub weight: u32,
}

/// A pool's circle.
#[derive(Debug, Clone)]
pub struct Continuum {
    /// (point, server index), sorted by point.
    points: Vec<(u32, u32)>,
    servers: usize,
}

/// twemproxy's `ketama_hash`: word `alignment` of the MD5 of `text`, little endian.
fn point(digest: &[u8], alignment: usize) -> u32 {
    let a = alignment * 4;
    u32::from_le_bytes([digest[a], digest[a + 1], digest[a + 2], digest[a + 3]])
}

impl Continuum {
    /// The circle of `nodes` (every one live; a weight of 0 counts as 1).
    pub fn new(nodes: &[Node]) -> Continuum {
        let live = nodes.len() as u32;
        let total: u32 = nodes.iter().map(|n| n.weight.max(1)).sum();
        let mut points = Vec::with_capacity(nodes.len() * POINTS_PER_SERVER as usize);
        for (i, n) in nodes.iter().enumerate() {
            // twemproxy computes this in single precision; so does this.
            let pct = n.weight.max(1) as f32 / total as f32;
            let per_server = ((pct * POINTS_PER_SERVER as f32 / 4.0 * live as f32 + 0.000_000_000_1)
                .floor() as u32)
                * 4;
            for p in 0..per_server / POINTS_PER_HASH {
                let digest = Md5::digest(format!("{}-{p}", n.name).as_bytes());
                for x in 0..POINTS_PER_HASH as usize {
                    points.push((point(&digest, x), i as u32));
                }
            }
        }
        // Equal points keep server order (twemproxy's qsort leaves them in an unspecified
        // order; two servers sharing a 32-bit point is about one pool in ten thousand).
        points.sort_by_key(|&(v, _)| v);
        Continuum {
            points,
            servers: nodes.len(),
        }
    }

    /// The server of a key whose pool hash is `hash`.
    pub fn server(&self, hash: u32) -> usize {
        if self.servers <= 1 || self.points.is_empty() {
            return 0;
        }
        let i = self.points.partition_point(|&(v, _)| v < hash);
        let (_, s) = self.points[if i == self.points.len() { 0 } else { i }];
        s as usize
    }

    /// The server of `key` under `hash`: twemproxy hashes nothing for a one-server pool or an
    /// empty key (both go to the first server).
    pub fn locate(&self, hash: KeyHash, key: &[u8]) -> usize {
        if self.servers <= 1 || key.is_empty() {
            return 0;
        }
        self.server(hash.hash(key))
    }

    pub fn servers(&self) -> usize {
        self.servers
    }
}

/// The part of `key` a pool's `hash_tag` (two characters, like `{}`) selects: what lies between
/// the first opening character and the next closing one, when that is not empty; else the key.
pub fn hash_tag(key: &[u8], tag: [u8; 2]) -> &[u8] {
    let Some(open) = memchr::memchr(tag[0], key) else {
        return key;
    };
    let rest = &key[open + 1..];
    match memchr::memchr(tag[1], rest) {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| Node {
                name: format!("127.0.0.1:{}", 12000 + i),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn points_in_proportion_to_weight() {
        let c = Continuum::new(&nodes(3));
        assert_eq!(c.points.len(), 3 * 160);
        let mut weighted = nodes(2);
        weighted[1].weight = 3;
        let c = Continuum::new(&weighted);
        let heavy = c.points.iter().filter(|p| p.1 == 1).count();
        // pct 0.75 × 160 / 4 × 2 live = 60 digests → 240 points; the light one 80.
        assert_eq!((c.points.len() - heavy, heavy), (80, 240));
    }

    #[test]
    fn keys_spread_and_stay() {
        let c = Continuum::new(&nodes(3));
        let mut count = [0usize; 3];
        for i in 0..30_000 {
            count[c.locate(KeyHash::Fnv1a64, format!("key:{i}").as_bytes())] += 1;
        }
        for n in count {
            assert!((6_000..14_000).contains(&n), "{count:?}");
        }
        // Adding a fourth server moves only keys to it, about a quarter of them.
        let d = Continuum::new(&nodes(4));
        let mut moved = 0;
        for i in 0..30_000 {
            let k = format!("key:{i}");
            let (a, b) = (
                c.locate(KeyHash::Fnv1a64, k.as_bytes()),
                d.locate(KeyHash::Fnv1a64, k.as_bytes()),
            );
            if a != b {
                assert_eq!(b, 3, "{k} moved between old servers");
                moved += 1;
            }
        }
        assert!((4_000..12_000).contains(&moved), "{moved}");
    }

    #[test]
    fn wraps_and_single() {
        let c = Continuum::new(&nodes(2));
        let top = c.points.last().map_or(0, |p| p.0);
        assert_eq!(
            c.server(top.wrapping_add(1).max(top)),
            c.points[c.points.len() - 1].1 as usize
        );
        if top < u32::MAX {
            assert_eq!(c.server(u32::MAX), c.points[0].1 as usize);
        }
        assert_eq!(Continuum::new(&nodes(1)).locate(KeyHash::Md5, b"k"), 0);
        assert_eq!(c.locate(KeyHash::Md5, b""), 0);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(hash_tag(b"user:{42}:name", *b"{}"), b"42");
        assert_eq!(hash_tag(b"user:{}:name", *b"{}"), b"user:{}:name");
        assert_eq!(hash_tag(b"plain", *b"{}"), b"plain");
        assert_eq!(hash_tag(b"a{b", *b"{}"), b"a{b");
    }
}
