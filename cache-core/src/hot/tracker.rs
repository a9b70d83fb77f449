//! Which keys deserve a HOT slot: a per-shard popularity sketch and the admission rule.
//!
//! [`Tracker`] is a TinyLFU-style count-min sketch: four rows of `u16` counters, each key
//! counted in one counter per row, its estimate the smallest of the four. Updates are
//! conservative (only the counters at the minimum grow), which keeps collisions from inflating
//! estimates much, and every `sample_period` touches all counters are halved, so popularity
//! ages out and a key that was hot an hour ago does not hold a slot against one that is hot now.
//! Counters are `u16` because estimates are compared with XDP's per-slot `hits`, which can be
//! large between two clears; 4 × 65536 × 2 bytes = 512 KiB per shard at the default width.

use crate::abi::SMALL_TEXT;

/// Rows of the sketch.
const ROWS: usize = 4;

/// Odd multipliers, one per row: the row index is the top bits of `hash.rotate_right(16 * row) *
/// K[row]`, so each row reads a different slice of the (already mixed) kcache hash.
const K: [u64; ROWS] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];

/// Sketch size and ageing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Counters per row; rounded up to a power of two, at least 16.
    pub width: usize,
    /// Touches after which every counter is halved; at least 1.
    pub sample_period: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        // TinyLFU's sizes: a row about as wide as the number of keys worth a HOT slot, and a
        // sample of ten touches per counter of a row.
        Self {
            width: 131_072,
            sample_period: 1_310_720,
        }
    }
}

/// Get popularity of one shard's keys, by kcache hash.
#[derive(Clone, Debug)]
pub struct Tracker {
    /// `ROWS` rows of `width` counters, back to back.
    counters: Vec<u16>,
    /// `64 - log2(width)`: a row index is the top `log2(width)` bits of a product.
    shift: u32,
    width: usize,
    sample_period: u32,
    /// Touches since the last halving.
    touches: u32,
}

impl Tracker {
    /// An empty sketch.
    pub fn new(config: TrackerConfig) -> Self {
        let width = config.width.max(16).next_power_of_two();
        Self {
            counters: vec![0; ROWS * width],
            shift: 64 - width.trailing_zeros(),
            width,
            sample_period: config.sample_period.max(1),
            touches: 0,
        }
    }

    /// Counts one get of the key with this hash and returns its new estimate.
    pub fn touch(&mut self, hash: u64) -> u32 {
        self.add(hash, 1)
    }

    /// Counts `n` gets of the key with this hash at once (the XDP hits of its HOT copy, which
    /// never reach user space one by one) and returns its new estimate.
    pub fn add(&mut self, hash: u64, n: u32) -> u32 {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        let slots = self.slots(hash);
        let min = slots.iter().map(|&i| self.counters[i]).min().unwrap_or(0);
        let new = min.saturating_add(n);
        for i in slots {
            // Conservative update: counters already above the new estimate belong to other keys
            // as well and are left alone.
            self.counters[i] = self.counters[i].max(new);
        }
        self.touches = self.touches.saturating_add(u32::from(n));
        if self.touches >= self.sample_period {
            self.halve();
            // Every counter of this key was >= `new` and the smallest was `new`.
            return u32::from(new >> 1);
        }
        u32::from(new)
    }

    /// How many gets of the key with this hash the sketch has seen (an over-estimate, aged).
    pub fn estimate(&self, hash: u64) -> u32 {
        let min = self.slots(hash).iter().map(|&i| self.counters[i]).min();
        u32::from(min.unwrap_or(0))
    }

    /// Halves every counter and starts a new sample period.
    fn halve(&mut self) {
        for c in &mut self.counters {
            *c >>= 1;
        }
        self.touches = 0;
    }

    /// The key's counter in each row, as indexes into `counters`.
    fn slots(&self, hash: u64) -> [usize; ROWS] {
        let mut out = [0; ROWS];
        for (row, (slot, k)) in out.iter_mut().zip(K).enumerate() {
            let bits = hash.rotate_right(16 * row as u32).wrapping_mul(k) >> self.shift;
            *slot = row * self.width + bits as usize;
        }
        out
    }
}

/// The slot a candidate would replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Victim {
    /// The slot's `hits`: gets XDP answered from it since user space last cleared them.
    pub hits: u32,
    /// The tracker's estimate for the slot's key.
    pub estimate: u32,
}

/// Whether a key with `candidate_estimate` and a reply of `text_len` bytes should take a HOT
/// slot, given the slot it would replace (`None`: a free way of its set).
///
/// - A free way takes the key once it has been asked for twice (small text, at most
///   [`SMALL_TEXT`] bytes) or four times (large text): a small slot is cheap to fill and waste,
///   the large table is a fraction of the size and each slot holds up to a datagram, so a
///   one-off get must not evict nothing to get there.
/// - A taken way changes hands only if the candidate's estimate beats the victim's
///   `max(hits, estimate)` by a margin, more than 1.25 × + 1 for a small text and twice that
///   margin (1.5 × + 2) for a large one, and also meets the free-way floor. The margin stops two
///   keys of similar popularity from swapping the slot back and forth (each swap is a rewrite
///   under the seqlock and a burst of misses). The victim's `hits` count because gets XDP
///   answers never reach user space: a slot that serves well looks cold to the tracker, whose
///   estimate of it only decays.
pub fn admit(candidate_estimate: u32, text_len: usize, victim: Option<Victim>) -> bool {
    let small = text_len <= SMALL_TEXT;
    let floor = if small { 2 } else { 4 };
    if candidate_estimate < floor {
        return false;
    }
    let Some(v) = victim else {
        return true;
    };
    // In quarters, in u64 so no estimate or hit count overflows: cand > inc + m(inc / 4 + 1).
    let (cand, inc) = (
        u64::from(candidate_estimate),
        u64::from(v.hits.max(v.estimate)),
    );
    let m = if small { 1 } else { 2 };
    4 * cand > 4 * inc + m * (inc + 4)
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    use super::*;
    use crate::bucket::khash;

    const LARGE: usize = SMALL_TEXT + 1;

    fn victim(hits: u32, estimate: u32) -> Option<Victim> {
        Some(Victim { hits, estimate })
    }

    #[test]
    fn admission_table() {
        // (candidate, text_len, victim, admitted)
        let cases: &[(u32, usize, Option<Victim>, bool)] = &[
            // Free way, small text: two gets are enough, one is not.
            (1, SMALL_TEXT, None, false),
            (2, SMALL_TEXT, None, true),
            // Free way, large text: four gets.
            (3, LARGE, None, false),
            (4, LARGE, None, true),
            // Small over a cold victim: needs more than 1.25 * 0 + 1 and the floor.
            (2, 10, victim(0, 0), true),
            (1, 10, victim(0, 0), false),
            // Small over 8: needs more than 11.
            (11, 10, victim(8, 0), false),
            (12, 10, victim(8, 0), true),
            // The victim's estimate counts as much as its hits.
            (11, 10, victim(0, 8), false),
            (12, 10, victim(3, 8), true),
            // Large over 8: needs more than 1.5 * 8 + 2 = 14.
            (14, LARGE, victim(8, 0), false),
            (15, LARGE, victim(8, 0), true),
            // Large over a cold victim still needs the floor of 4.
            (3, LARGE, victim(0, 0), false),
            (4, LARGE, victim(0, 0), true),
            // Hits XDP served keep a busy slot: the sketch never saw them.
            (1000, 10, victim(1_000_000, 1), false),
            // Nothing overflows at the top of the range.
            (u32::MAX, LARGE, victim(u32::MAX, u32::MAX), false),
            (u32::MAX, 10, victim(1 << 20, 0), true),
        ];
        for &(cand, len, v, want) in cases {
            assert_eq!(admit(cand, len, v), want, "{cand} {len} {v:?}");
        }
    }

    #[test]
    fn never_undercounts_before_halving() {
        // A narrow sketch with many colliding keys still never reports fewer gets than happened.
        let mut t = Tracker::new(TrackerConfig {
            width: 64,
            sample_period: u32::MAX,
        });
        let mut rng = SmallRng::seed_from_u64(7);
        let mut truth = vec![0u32; 500];
        for _ in 0..20_000 {
            let k = rng.gen_range(0..truth.len());
            truth[k] += 1;
            let est = t.touch(khash(&k.to_le_bytes()));
            assert!(est >= truth[k]);
        }
        for (k, &n) in truth.iter().enumerate() {
            assert!(t.estimate(khash(&k.to_le_bytes())) >= n);
        }
    }

    #[test]
    fn halving_halves() {
        // The 10th touch ends the period: 10 -> 5, and an untouched key stays at 0.
        let mut t = Tracker::new(TrackerConfig {
            width: 1024,
            sample_period: 10,
        });
        let (a, b) = (khash(b"a"), khash(b"b"));
        for n in 1..=9 {
            assert_eq!(t.touch(a), n);
        }
        assert_eq!(t.touch(a), 5);
        assert_eq!(t.estimate(a), 5);
        assert_eq!(t.estimate(b), 0);
        // The next period starts from the halved counts; 3 + 7 touches then halve again.
        for _ in 0..3 {
            t.touch(b);
        }
        for _ in 0..6 {
            t.touch(a);
        }
        assert_eq!(t.touch(a), 6);
        assert_eq!(t.estimate(b), 1);
    }

    #[test]
    fn zipf_ranks_hot_over_cold() {
        // 1000 keys, key r drawn with weight 1/(r+1), ageing on: the ten hottest keys each
        // estimate above every key ranked 100 or lower.
        let mut t = Tracker::new(TrackerConfig {
            width: 4096,
            sample_period: 40_960,
        });
        let weights: Vec<f64> = (0..1000).map(|r| 1.0 / f64::from(r + 1)).collect();
        let total: f64 = weights.iter().sum();
        let mut rng = SmallRng::seed_from_u64(42);
        let hash = |r: usize| khash(format!("key:{r}").as_bytes());
        for _ in 0..200_000 {
            let mut x = rng.gen::<f64>() * total;
            let r = weights.iter().position(|w| {
                x -= w;
                x <= 0.0
            });
            t.touch(hash(r.unwrap_or(999)));
        }
        let hot = (0..10).map(|r| t.estimate(hash(r))).min().unwrap_or(0);
        let cold = (100..1000).map(|r| t.estimate(hash(r))).max().unwrap_or(0);
        assert!(hot > cold, "hot {hot} cold {cold}");
    }
}
