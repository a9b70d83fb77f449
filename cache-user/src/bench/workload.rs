//! What the generator asks: which keys (uniform or Zipf over `key:<zero-padded index>` names of
//! a fixed size), which commands (a get/set/delete mix, gets of one or more keys), which values.
//! Requests are written straight into a connection's output buffer.

use std::{fmt, str::FromStr, sync::Arc};

use rand::{rngs::SmallRng, Rng};

use super::{reply::Expect, zipf::Zipf};

/// The prefix of every key; the rest is the zero-padded key index.
const KEY_PREFIX: &[u8] = b"key:";

/// Key popularity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum KeyDist {
    Uniform,
    /// Zipf with this exponent; rank 0 is `key:..0`.
    Zipf(f64),
}

impl FromStr for KeyDist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "uniform" {
            return Ok(Self::Uniform);
        }
        let exp = s
            .strip_prefix("zipf:")
            .ok_or("expected uniform or zipf:<s>")?;
        match exp.parse::<f64>() {
            Ok(e) if e.is_finite() && e >= 0.0 => Ok(Self::Zipf(e)),
            _ => Err(format!("bad Zipf exponent {exp:?}")),
        }
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uniform => f.write_str("uniform"),
            Self::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Value sizes: fixed (`32`) or uniform over a range (`16-512`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueSize {
    pub(crate) min: usize,
    pub(crate) max: usize,
}

impl FromStr for ValueSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| t.parse::<usize>().map_err(|e| format!("{t:?}: {e}"));
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        };
        if min > max {
            return Err(format!("{min} > {max}"));
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// The request mix and key space of a run.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub(crate) keys: u64,
    pub(crate) key_size: usize,
    pub(crate) value_size: ValueSize,
    /// Fraction of requests that are gets; `delete_ratio` are deletes; the rest are sets.
    pub(crate) get_ratio: f64,
    pub(crate) delete_ratio: f64,
    /// Keys per get.
    pub(crate) multiget: usize,
    pub(crate) dist: KeyDist,
    zipf: Option<Arc<Zipf>>,
    /// `max` bytes of filler that values are cut from.
    filler: Arc<[u8]>,
}

impl Workload {
    /// Checks the numbers and builds the Zipf table if one is needed.
    pub(crate) fn new(
        keys: u64,
        key_size: usize,
        value_size: ValueSize,
        (get_ratio, delete_ratio): (f64, f64),
        multiget: usize,
        dist: KeyDist,
    ) -> Result<Self, String> {
        if keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        let digits = (keys - 1).checked_ilog10().unwrap_or(0) as usize + 1;
        if key_size < KEY_PREFIX.len() + digits || key_size > 250 {
            return Err(format!(
                "--key-size {key_size}: {keys} keys need {}..=250 bytes",
                KEY_PREFIX.len() + digits
            ));
        }
        let ratios_ok = (0.0..=1.0).contains(&get_ratio)
            && (0.0..=1.0).contains(&delete_ratio)
            && get_ratio + delete_ratio <= 1.0 + 1e-9;
        if !ratios_ok {
            return Err("--get-ratio and --delete-ratio must be in 0..=1 and sum to <= 1".into());
        }
        if multiget == 0 {
            return Err("--multiget must be at least 1".into());
        }
        let zipf = match dist {
            KeyDist::Zipf(s) => Some(Arc::new(Zipf::new(keys, s))),
            KeyDist::Uniform => None,
        };
        let filler: Vec<u8> = (0..value_size.max).map(|i| b'a' + (i % 26) as u8).collect();
        Ok(Self {
            keys,
            key_size,
            value_size,
            get_ratio,
            delete_ratio,
            multiget,
            dist,
            zipf,
            filler: filler.into(),
        })
    }

    /// Appends one request to `out` and says what its reply will be and how many keys it reads.
    pub(crate) fn request(&self, rng: &mut SmallRng, out: &mut Vec<u8>) -> (Expect, u32) {
        let roll: f64 = rng.gen();
        if roll < self.get_ratio {
            out.extend_from_slice(b"get");
            for _ in 0..self.multiget {
                out.push(b' ');
                let key = self.key(rng);
                self.push_key(key, out);
            }
            out.extend_from_slice(b"\r\n");
            (Expect::Get, self.multiget as u32)
        } else if roll < self.get_ratio + self.delete_ratio {
            out.extend_from_slice(b"delete ");
            let key = self.key(rng);
            self.push_key(key, out);
            out.extend_from_slice(b"\r\n");
            (Expect::Delete, 0)
        } else {
            let key = self.key(rng);
            self.set(key, rng, out);
            (Expect::Store, 0)
        }
    }

    /// Appends `set <key> 0 0 <len>` and a value of a size drawn from `value_size`.
    pub(crate) fn set(&self, key: u64, rng: &mut SmallRng, out: &mut Vec<u8>) {
        let len = rng.gen_range(self.value_size.min..=self.value_size.max);
        out.extend_from_slice(b"set ");
        self.push_key(key, out);
        out.extend_from_slice(b" 0 0 ");
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.filler[..len]);
        out.extend_from_slice(b"\r\n");
    }

    fn key(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            Some(z) => z.sample(rng),
            None => rng.gen_range(0..self.keys),
        }
    }

    /// Appends key `index` as `key:` and the index zero-padded to `key_size` bytes.
    pub(crate) fn push_key(&self, index: u64, out: &mut Vec<u8>) {
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(index).as_bytes();
        out.extend_from_slice(KEY_PREFIX);
        let pad = self
            .key_size
            .saturating_sub(KEY_PREFIX.len() + digits.len());
        out.resize(out.len() + pad, b'0');
        out.extend_from_slice(digits);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn workload(get: f64, multiget: usize) -> Workload {
        let size = ValueSize { min: 3, max: 3 };
        Workload::new(100, 8, size, (get, 0.0), multiget, KeyDist::Uniform)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn requests() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        // All gets of three keys: `get key:00NN key:00NN key:00NN`.
        let (expect, keys) = workload(1.0, 3).request(&mut rng, &mut out);
        assert_eq!((expect, keys), (Expect::Get, 3));
        assert_eq!(out.len(), b"get \r\n".len() + 3 * 8 + 2);
        assert!(out.starts_with(b"get key:00") && out.ends_with(b"\r\n"));
        // All sets.
        out.clear();
        let (expect, _) = workload(0.0, 1).request(&mut rng, &mut out);
        assert_eq!(expect, Expect::Store);
        assert!(out.starts_with(b"set key:00") && out.ends_with(b" 0 0 3\r\nabc\r\n"));
    }

    #[test]
    fn keys_are_padded() {
        let mut out = Vec::new();
        workload(1.0, 1).push_key(42, &mut out);
        assert_eq!(out, b"key:0042");
    }

    #[test]
    fn bad_settings() {
        let size = ValueSize { min: 1, max: 1 };
        // 1000 keys need 3 digits: key size 6 is too small.
        assert!(Workload::new(1000, 6, size, (0.9, 0.0), 1, KeyDist::Uniform).is_err());
        // Ratios summing past 1.
        assert!(Workload::new(10, 16, size, (0.9, 0.2), 1, KeyDist::Uniform).is_err());
        // Parsing.
        assert_eq!("zipf:0.99".parse(), Ok(KeyDist::Zipf(0.99)));
        assert!("zipf:-1".parse::<KeyDist>().is_err());
        assert_eq!("16-512".parse(), Ok(ValueSize { min: 16, max: 512 }));
        assert!("9-3".parse::<ValueSize>().is_err());
    }
}
