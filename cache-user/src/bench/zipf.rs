//! Zipf-distributed key ranks from a precomputed CDF table: rank `k` (0-based, 0 hottest) of `n`
//! is drawn with probability proportional to `1 / (k + 1)^s`.
//!
//! One table per run, shared by every client thread; a draw is one uniform number and a binary
//! search (17 steps for 100k keys). Building costs `n` powers, which is why it is done once.

use rand::Rng;

/// The cumulative distribution of Zipf(`s`) over `n` ranks.
#[derive(Debug)]
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The table for `n` ranks (at least one) and exponent `s` (0 gives the uniform distribution).
    pub(crate) fn new(n: u64, s: f64) -> Self {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(usize::try_from(n).unwrap_or(usize::MAX));
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    /// A rank in `0..n`.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.gen();
        let i = self.cdf.partition_point(|&c| c <= u);
        i.min(self.cdf.len() - 1) as u64
    }

    /// The probability of rank `k`.
    #[cfg(test)]
    fn probability(&self, k: usize) -> f64 {
        let below = if k == 0 { 0.0 } else { self.cdf[k - 1] };
        self.cdf[k] - below
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};

    use super::*;

    /// Draws `draws` ranks and returns how often each came up.
    fn histogram(z: &Zipf, n: usize, draws: usize, seed: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut seen = vec![0u64; n];
        for _ in 0..draws {
            seen[z.sample(&mut rng) as usize] += 1;
        }
        seen
    }

    #[test]
    fn matches_its_distribution() {
        let (n, draws) = (1000, 1_000_000);
        let z = Zipf::new(n as u64, 0.99);
        let seen = histogram(&z, n, draws, 7);
        // Chi-square over all 1000 ranks: 999 degrees of freedom, mean 999, sd ~45; 1250 is more
        // than five sd above, so only a wrong sampler fails (the seed is fixed anyway).
        let chi2: f64 = (0..n)
            .map(|k| {
                let want = z.probability(k) * draws as f64;
                (seen[k] as f64 - want).powi(2) / want
            })
            .sum();
        assert!(chi2 < 1250.0, "chi-square {chi2}");
        // The hottest keys by name: rank 0 takes 1/H(1000, 0.99) ~ 12.9% of draws, rank 1 about
        // half that; each within 2% of its expectation.
        for (k, &got) in seen.iter().enumerate().take(10) {
            let (want, got) = (z.probability(k) * draws as f64, got as f64);
            assert!(
                (got - want).abs() < want * 0.02,
                "rank {k}: {got} vs {want}"
            );
        }
        assert!(
            (z.probability(0) - 0.1294).abs() < 0.0005,
            "{}",
            z.probability(0)
        );
    }

    #[test]
    fn exponent_zero_is_uniform() {
        let z = Zipf::new(10, 0.0);
        let seen = histogram(&z, 10, 100_000, 3);
        for (k, &c) in seen.iter().enumerate() {
            assert!((9_500..10_500).contains(&c), "rank {k}: {c}");
        }
    }

    #[test]
    fn one_key() {
        // A single rank is always drawn, whatever the exponent.
        let z = Zipf::new(1, 2.0);
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..100).all(|_| z.sample(&mut rng) == 0));
    }
}
