//! Random requests. Keys come from a small pool so they collide often; values are binary (`\r\n`
//! and NUL included), from empty to 3000 bytes, or numbers for `incr`/`decr`; TTLs are short so
//! items expire as the injected clock moves.

use rand::{rngs::SmallRng, seq::SliceRandom, Rng};

use crate::{
    plain::Plain,
    request::{Flag, Op, StoreCmd},
};

/// The keys requests pick from: 40 hot short ones (1..=20 bytes) that collide all the time, a
/// few of 200 bytes, and many cold ones so that slab classes fill up and the CLOCK hand evicts.
#[derive(Debug)]
pub(crate) struct Pool {
    hot: Vec<Vec<u8>>,
    long: Vec<Vec<u8>>,
    cold: Vec<Vec<u8>>,
}

/// Cold keys: enough that a phase of similar-sized values overflows its slab class.
const COLD: usize = 1000;

const KEY_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:.!~{}";

impl Pool {
    pub(crate) fn new(rng: &mut SmallRng) -> Pool {
        let mut word = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| KEY_CHARS[rng.gen_range(0..KEY_CHARS.len())])
                .collect()
        };
        let mut seen = std::collections::HashSet::new();
        let mut short = Vec::new();
        while short.len() < 40 + COLD {
            let k = word(1 + short.len() % 20);
            if seen.insert(k.clone()) {
                short.push(k);
            }
        }
        let cold = short.split_off(40);
        let long = (0..4).map(|_| word(200)).collect();
        Pool {
            hot: short,
            long,
            cold,
        }
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.hot.iter().chain(&self.long).chain(&self.cold)
    }

    fn pick(&self, rng: &mut SmallRng) -> Vec<u8> {
        let keys = match rng.gen_range(0..40) {
            0 => &self.long,
            1..=20 => &self.cold,
            _ => &self.hot,
        };
        keys[rng.gen_range(0..keys.len())].clone()
    }
}

/// Numbers that probe `safe_strtoull`'s edges inside item data.
const TRICKY_NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"9",
    b"99",
    b" 42",
    b"+7",
    b"-0",
    b"-5",
    b"12 ",
    b"12\r\nxx",
    b"12\0junk",
    b"12abc",
    b"abc",
    b"18446744073709551615",
    b"18446744073709551614",
    b"18446744073709551616",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"00000000000000000000000000000",
    b"\t\x0b\x0c8",
];

/// Draws one request. `plain` is read (never changed) to aim CAS values at live items.
pub(crate) fn op(rng: &mut SmallRng, pool: &Pool, phase: Phase, plain: &Plain) -> Op {
    let key = pool.pick(rng);
    let noreply = rng.gen_ratio(1, 10);
    let sizes = phase.sizes;
    if rng.gen_ratio(1, phase.flush_odds) {
        let delay = match rng.gen_range(0..6) {
            0 => None,
            1 => Some(0),
            2 => Some(-1),
            3 => Some(1),
            _ => Some(rng.gen_range(2..=5)),
        };
        return Op::Flush { delay, noreply };
    }
    match rng.gen_range(0..1000) {
        0..=179 => store(rng, StoreCmd::Set, key, sizes, plain, noreply),
        180..=229 => store(rng, StoreCmd::Add, key, sizes, plain, noreply),
        230..=279 => store(rng, StoreCmd::Replace, key, sizes, plain, noreply),
        280..=329 => store(rng, StoreCmd::Append, key, sizes, plain, noreply),
        330..=369 => store(rng, StoreCmd::Prepend, key, sizes, plain, noreply),
        370..=429 => store(rng, StoreCmd::Cas, key, sizes, plain, noreply),
        430..=609 => {
            let n = rng.gen_range(1..=5);
            let keys = (0..n).map(|_| pool.pick(rng)).collect();
            let touch = rng.gen_ratio(1, 5).then(|| ttl(rng, plain.now));
            Op::Get {
                cas: rng.gen(),
                touch,
                keys,
            }
        }
        610..=699 => Op::Arith {
            incr: rng.gen_ratio(5, 9),
            key,
            delta: delta(rng),
            noreply,
        },
        700..=729 => Op::Touch {
            key,
            exptime: ttl(rng, plain.now),
            noreply,
        },
        730..=771 => Op::Delete { key, noreply },
        772..=869 => Op::MetaGet {
            key,
            flags: mg_flags(rng, plain),
        },
        870..=939 => {
            let value = value(rng, sizes);
            let flags = ms_flags(rng, &key, plain);
            Op::MetaSet { key, value, flags }
        }
        940..=964 => {
            let mut flags = Vec::new();
            if rng.gen_ratio(1, 4) {
                flags.push(Flag::Cas(cas_for(rng, &key, plain)));
            }
            extras(rng, &mut flags, b"qk");
            Op::MetaDelete { key, flags }
        }
        _ => {
            let mut flags = Vec::new();
            if rng.gen_ratio(2, 3) {
                flags.push(Flag::Delta(delta(rng)));
            }
            if rng.gen_ratio(1, 2) {
                flags.push(Flag::Mode(
                    *[b'I', b'D', b'+', b'-'].choose(rng).unwrap_or(&b'I'),
                ));
            }
            if rng.gen_ratio(1, 8) {
                flags.push(Flag::Cas(cas_for(rng, &key, plain)));
            }
            if rng.gen_ratio(1, 8) {
                flags.push(Flag::Ttl(ttl(rng, plain.now)));
            }
            extras(rng, &mut flags, b"vctqk");
            Op::MetaArith { key, flags }
        }
    }
}

fn store(
    rng: &mut SmallRng,
    cmd: StoreCmd,
    key: Vec<u8>,
    sizes: Sizes,
    plain: &Plain,
    noreply: bool,
) -> Op {
    let cas = if cmd == StoreCmd::Cas {
        cas_for(rng, &key, plain)
    } else {
        0
    };
    Op::Store {
        cmd,
        flags: client_flags(rng),
        exptime: ttl(rng, plain.now),
        cas,
        value: value(rng, sizes),
        key,
        noreply,
    }
}

/// `mg`: half the time `v c f t s`, else a random subset (maybe with `T`) in random order.
fn mg_flags(rng: &mut SmallRng, plain: &Plain) -> Vec<Flag> {
    if rng.gen_ratio(1, 2) {
        return b"vcfts".iter().map(|&c| Flag::Ret(c)).collect();
    }
    let mut flags = Vec::new();
    if rng.gen_ratio(1, 6) {
        flags.push(Flag::Ttl(ttl(rng, plain.now)));
    }
    extras(rng, &mut flags, b"vcftskq");
    flags
}

fn ms_flags(rng: &mut SmallRng, key: &[u8], plain: &Plain) -> Vec<Flag> {
    let mut flags = Vec::new();
    if rng.gen_ratio(3, 5) {
        flags.push(Flag::Ttl(ttl(rng, plain.now)));
    }
    if rng.gen_ratio(3, 5) {
        flags.push(Flag::ClientFlags(client_flags(rng)));
    }
    if rng.gen_ratio(1, 5) {
        flags.push(Flag::Cas(cas_for(rng, key, plain)));
    }
    if rng.gen_ratio(2, 5) {
        flags.push(Flag::Mode(*b"SEAPR".choose(rng).unwrap_or(&b'S')));
    }
    extras(rng, &mut flags, b"ckq");
    flags
}

/// Adds some of the bare flags in `from` and maybe an opaque, then shuffles the whole list.
fn extras(rng: &mut SmallRng, flags: &mut Vec<Flag>, from: &[u8]) {
    for &c in from {
        let odds = if c == b'q' { 8 } else { 2 };
        if rng.gen_ratio(1, odds) {
            flags.push(Flag::Ret(c));
        }
    }
    if rng.gen_ratio(1, 6) {
        flags.push(Flag::Opaque(rng.gen_range(0..100_000u32).to_string()));
    }
    flags.shuffle(rng);
}

/// A CAS: usually the key's current one, sometimes a near miss, zero or anything.
fn cas_for(rng: &mut SmallRng, key: &[u8], plain: &Plain) -> u64 {
    let current = plain.live(key).map_or(plain.cas_counter(key), |it| it.cas);
    match rng.gen_range(0..10) {
        0..=5 => current,
        6 => current + 1,
        7 => current.saturating_sub(1),
        8 => 0,
        _ => rng.gen(),
    }
}

/// Exptimes: mostly none or a few seconds; sometimes already expired, absolute, or 30 days.
fn ttl(rng: &mut SmallRng, now: u32) -> i32 {
    match rng.gen_range(0..100) {
        0..=49 => 0,
        50..=89 => rng.gen_range(1..=5),
        90..=92 => -rng.gen_range(1..=3),
        93..=95 => 30 * 24 * 3600,
        // Absolute Unix time, a few seconds either side of now.
        _ => now as i32 + rng.gen_range(-3..=6),
    }
}

fn client_flags(rng: &mut SmallRng) -> u32 {
    match rng.gen_range(0..4) {
        0 => 0,
        1 => rng.gen_range(1..100),
        2 => u32::MAX,
        _ => rng.gen(),
    }
}

fn delta(rng: &mut SmallRng) -> u64 {
    match rng.gen_range(0..10) {
        0..=6 => rng.gen_range(0..100),
        7 => rng.gen_range(0..1_000_000_000),
        8 => u64::MAX,
        _ => rng.gen(),
    }
}

/// A stretch of requests with one value-size profile and one rate of `flush_all`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    pub(crate) sizes: Sizes,
    /// One request in this many is a `flush_all`.
    pub(crate) flush_odds: u32,
}

impl Phase {
    pub(crate) const SPREAD: Phase = Phase {
        sizes: Sizes::Spread,
        flush_odds: 20_000,
    };

    pub(crate) fn draw(rng: &mut SmallRng) -> Phase {
        let sizes = if rng.gen_ratio(1, 2) {
            Sizes::Spread
        } else {
            let lo = rng.gen_range(1000..2500);
            Sizes::Band(lo, lo + lo / 16)
        };
        // Mostly rare, so the arena can fill; sometimes frequent; now and then a storm that
        // wraps the store's 8-bit flush generation while items of older ones are still around.
        let flush_odds = match rng.gen_range(0..10) {
            0 => 4,
            1 | 2 => 50,
            _ => 20_000,
        };
        Phase { sizes, flush_odds }
    }
}

/// How value sizes are spread. Spread values land in some 55 slab classes; a band keeps most
/// values in one or two classes, which then fill up and evict.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sizes {
    Spread,
    Band(usize, usize),
}

/// A value: binary (of the phase's sizes, or short), or numeric.
fn value(rng: &mut SmallRng, sizes: Sizes) -> Vec<u8> {
    match rng.gen_range(0..20) {
        0..=6 => match sizes {
            Sizes::Spread => binary(rng, 0, 3000),
            Sizes::Band(lo, hi) => binary(rng, lo, hi),
        },
        7..=11 => match sizes {
            Sizes::Spread => binary(rng, 0, 40),
            Sizes::Band(lo, hi) => binary(rng, lo, hi),
        },
        12..=16 => {
            let n: u64 = match rng.gen_range(0..4) {
                0 => rng.gen_range(0..10),
                1 => rng.gen_range(0..100_000),
                2 => u64::MAX - rng.gen_range(0..100),
                _ => rng.gen(),
            };
            let pad = if rng.gen_ratio(1, 4) {
                rng.gen_range(1..6)
            } else {
                0
            };
            let mut v = n.to_string().into_bytes();
            v.resize(v.len() + pad, b' ');
            v
        }
        _ => TRICKY_NUMBERS[rng.gen_range(0..TRICKY_NUMBERS.len())].to_vec(),
    }
}

fn binary(rng: &mut SmallRng, min: usize, max: usize) -> Vec<u8> {
    let mut v = vec![0u8; rng.gen_range(min..=max)];
    rng.fill(&mut v[..]);
    // Make the protocol's own bytes common, not 1 in 256.
    for _ in 0..rng.gen_range(0..4) {
        if v.len() >= 2 {
            let at = rng.gen_range(0..v.len() - 1);
            v[at..at + 2].copy_from_slice(if rng.gen() { b"\r\n" } else { b"\0\0" });
        }
    }
    v
}
