//! The plain model: a `HashMap` of items plus CAS counters, with memcached 1.6's semantics
//! written out from the protocol (not from cache-core), computing the exact reply bytes.
//!
//! A server of several shards counts CAS values per shard, shard `s` of `n` handing out
//! `s + n`, `s + 2n`, ... (one shard: memcached's 1, 2, 3, ...), so the model keeps one counter
//! per shard and finds a key's shard as the server does.
//!
//! Dead items stay in the map until something looks their key up, as in the store: a later
//! delayed `flush_all` can make an item flushed by an earlier one visible again (memcached's
//! `item_is_flushed` only applies while `oldest_live <= now`), so "dead" is not forever.

#[path = "meta.rs"]
mod meta;

use std::collections::HashMap;

use cache_core::pipeline::route::shard_of;

use super::request::{Op, StoreCmd};

/// memcached's `REALTIME_MAXDELTA`: larger exptimes are absolute Unix times.
const MAXDELTA: i32 = 60 * 60 * 24 * 30;
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) value: Vec<u8>,
    pub(crate) flags: u32,
    /// Absolute Unix seconds, 0 = never.
    pub(crate) exptime: u32,
    pub(crate) cas: u64,
    /// When this version was written: a delayed flush kills items written at or before its time.
    pub(crate) born: u32,
}

/// What one request did to the model.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) reply: Vec<u8>,
    /// A new version of the request's key was written.
    pub(crate) wrote: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Plain {
    items: HashMap<Vec<u8>, Item>,
    /// CAS ids handed out, per shard.
    cas: Vec<u64>,
    /// memcached's `settings.oldest_live` (0 = no flush yet).
    oldest_live: u32,
    pub(crate) now: u32,
}

/// An exptime from the wire as absolute seconds (memcached's `realtime`).
fn realtime(e: i32, now: u32) -> u32 {
    match e {
        0 => 0,
        e if e < 0 => 1,
        e if e > MAXDELTA => e as u32,
        e => now.wrapping_add(e as u32),
    }
}

/// memcached's `safe_strtoull` over an item's data: C `strtoull` (leading whitespace, a sign,
/// ERANGE on overflow), a number must end at whitespace, NUL or the end, and a result that is
/// negative as `i64` is refused if a `-` comes before the first NUL (memcached's `strchr`; with
/// no NUL in the value, the whole value is the well-defined reading).
fn strtoull(data: &[u8]) -> Option<u64> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut i = data.iter().take_while(|&&b| is_space(b)).count();
    let neg = matches!(data.get(i), Some(b'-'));
    if matches!(data.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while let Some(&d) = data.get(i).filter(|b| b.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    if i == start || !data.get(i).is_none_or(|&b| is_space(b) || b == 0) {
        return None;
    }
    let v = if neg { v.wrapping_neg() } else { v };
    if (v as i64) < 0 && data.iter().take_while(|&&b| b != 0).any(|&b| b == b'-') {
        return None;
    }
    Some(v)
}

impl Plain {
    pub(crate) fn new(now: u32, shards: usize) -> Plain {
        Plain {
            now,
            cas: vec![0; shards.max(1)],
            ..Plain::default()
        }
    }

    fn shard(&self, key: &[u8]) -> usize {
        shard_of(key, self.cas.len())
    }

    /// The CAS id of the `seq`th write on `shard`.
    fn cas_value(&self, shard: usize, seq: u64) -> u64 {
        shard as u64 + seq * self.cas.len() as u64
    }

    fn dead(&self, it: &Item) -> bool {
        let flushed = self.oldest_live != 0 && self.oldest_live <= self.now;
        (it.exptime != 0 && it.exptime <= self.now) || (flushed && it.born <= self.oldest_live)
    }

    /// The live item for `key`, without touching anything.
    pub(crate) fn live(&self, key: &[u8]) -> Option<&Item> {
        self.items.get(key).filter(|it| !self.dead(it))
    }

    /// The live items, for the end-of-run scan.
    pub(crate) fn live_items(&self) -> impl Iterator<Item = (&Vec<u8>, &Item)> {
        self.items.iter().filter(|(_, it)| !self.dead(it))
    }

    /// The last CAS id handed out on `key`'s shard.
    pub(crate) fn cas_counter(&self, key: &[u8]) -> u64 {
        let s = self.shard(key);
        self.cas_value(s, self.cas[s])
    }

    /// The store dropped `key` on its own (eviction, reclaim, page move).
    pub(crate) fn forget(&mut self, key: &[u8]) {
        self.items.remove(key);
    }

    /// A lookup by a request: a dead item goes for good, as the store unlinks it on sight.
    fn find(&mut self, key: &[u8]) -> Option<&mut Item> {
        if self.items.get(key).is_some_and(|it| self.dead(it)) {
            self.items.remove(key);
        }
        self.items.get_mut(key)
    }

    /// The next CAS id of `key`'s shard.
    fn next_cas(&mut self, key: &[u8]) -> u64 {
        let s = self.shard(key);
        self.cas[s] += 1;
        self.cas_value(s, self.cas[s])
    }

    /// Writes a new version of `key` and returns its CAS.
    fn link(&mut self, key: &[u8], value: Vec<u8>, flags: u32, exptime: u32) -> u64 {
        let cas = self.next_cas(key);
        let born = self.now;
        self.items.insert(
            key.to_vec(),
            Item {
                value,
                flags,
                exptime,
                cas,
                born,
            },
        );
        cas
    }

    /// Runs `op` at `self.now` and returns the reply memcached would send.
    pub(crate) fn apply(&mut self, op: &Op) -> Outcome {
        let mut out = Vec::new();
        let mut wrote = false;
        match op {
            Op::Store {
                cmd,
                key,
                flags,
                exptime,
                cas,
                value,
                noreply,
            } => {
                let exptime = realtime(*exptime, self.now);
                let reply = self.store(*cmd, key, *flags, exptime, *cas, value);
                wrote = reply == b"STORED\r\n";
                if !noreply {
                    out.extend_from_slice(reply);
                }
            }
            Op::Get { cas, touch, keys } => {
                for key in keys {
                    let now = self.now;
                    let Some(it) = self.find(key) else { continue };
                    out.extend_from_slice(b"VALUE ");
                    out.extend_from_slice(key);
                    let cas = if *cas {
                        format!(" {}", it.cas)
                    } else {
                        String::new()
                    };
                    let head = format!(" {} {}{cas}\r\n", it.flags, it.value.len());
                    out.extend_from_slice(head.as_bytes());
                    out.extend_from_slice(&it.value);
                    out.extend_from_slice(b"\r\n");
                    if let Some(t) = touch {
                        it.exptime = realtime(*t, now);
                    }
                }
                out.extend_from_slice(b"END\r\n");
            }
            Op::Arith {
                incr,
                key,
                delta,
                noreply,
            } => {
                let reply = match self.arith(key, *incr, *delta, 0) {
                    Arith::Value(digits) => {
                        wrote = true;
                        [&digits[..], b"\r\n"].concat()
                    }
                    Arith::NotFound | Arith::Exists => b"NOT_FOUND\r\n".to_vec(),
                    Arith::NonNumeric => NON_NUMERIC.to_vec(),
                };
                if !noreply {
                    out = reply;
                }
            }
            Op::Touch {
                key,
                exptime,
                noreply,
            } => {
                let now = self.now;
                let reply: &[u8] = match self.find(key) {
                    Some(it) => {
                        it.exptime = realtime(*exptime, now);
                        b"TOUCHED\r\n"
                    }
                    None => b"NOT_FOUND\r\n",
                };
                if !noreply {
                    out.extend_from_slice(reply);
                }
            }
            Op::Delete { key, noreply } => {
                let hit = self.find(key).is_some();
                self.items.remove(key.as_slice());
                if !noreply {
                    out.extend_from_slice(if hit {
                        b"DELETED\r\n"
                    } else {
                        b"NOT_FOUND\r\n"
                    });
                }
            }
            Op::Flush { delay, noreply } => {
                self.flush(delay.unwrap_or(0));
                if !noreply {
                    out.extend_from_slice(b"OK\r\n");
                }
            }
            Op::MetaGet { key, flags } => self.meta_get(key, flags, &mut out),
            Op::MetaSet { key, value, flags } => wrote = self.meta_set(key, value, flags, &mut out),
            Op::MetaDelete { key, flags } => self.meta_delete(key, flags, &mut out),
            Op::MetaArith { key, flags } => wrote = self.meta_arith(key, flags, &mut out),
        }
        Outcome { reply: out, wrote }
    }

    /// memcached's `do_store_item`; returns the classic reply line.
    fn store(
        &mut self,
        cmd: StoreCmd,
        key: &[u8],
        flags: u32,
        exptime: u32,
        cas: u64,
        value: &[u8],
    ) -> &'static [u8] {
        let old = self.find(key).map(|it| it.clone());
        match (cmd, old) {
            (StoreCmd::Set, _) | (StoreCmd::Add, None) => {}
            (StoreCmd::Add, Some(_)) | (StoreCmd::Replace, None) => return b"NOT_STORED\r\n",
            (StoreCmd::Replace, Some(_)) => {}
            (StoreCmd::Cas, None) => return b"NOT_FOUND\r\n",
            (StoreCmd::Cas, Some(old)) if old.cas != cas => return b"EXISTS\r\n",
            (StoreCmd::Cas, Some(_)) => {}
            (StoreCmd::Append | StoreCmd::Prepend, None) => return b"NOT_STORED\r\n",
            (StoreCmd::Append | StoreCmd::Prepend, Some(old)) => {
                if cas != 0 && cas != old.cas {
                    return b"EXISTS\r\n";
                }
                let joined = match cmd {
                    StoreCmd::Append => [&old.value[..], value].concat(),
                    _ => [value, &old.value[..]].concat(),
                };
                self.link(key, joined, old.flags, old.exptime);
                return b"STORED\r\n";
            }
        }
        self.link(key, value.to_vec(), flags, exptime);
        b"STORED\r\n"
    }

    /// memcached's `do_add_delta`: the new value's digits, written in place (space-padded to
    /// the old length) when they fit, else as a new item of exactly the digits.
    fn arith(&mut self, key: &[u8], incr: bool, delta: u64, cas: u64) -> Arith {
        let Some(it) = self.find(key) else {
            return Arith::NotFound;
        };
        if it.value.is_empty() {
            return Arith::NonNumeric;
        }
        if cas != 0 && it.cas != cas {
            return Arith::Exists;
        }
        let Some(v) = strtoull(&it.value) else {
            return Arith::NonNumeric;
        };
        let v = if incr {
            v.wrapping_add(delta)
        } else {
            v.saturating_sub(delta)
        };
        let digits = v.to_string().into_bytes();
        if digits.len() <= it.value.len() {
            it.value[..digits.len()].copy_from_slice(&digits);
            it.value[digits.len()..].fill(b' ');
            let cas = self.next_cas(key);
            if let Some(it) = self.items.get_mut(key) {
                it.cas = cas;
            }
        } else {
            let (flags, exptime) = (it.flags, it.exptime);
            self.link(key, digits.clone(), flags, exptime);
        }
        Arith::Value(digits)
    }

    /// `flush_all [delay]`: `oldest_live = realtime(delay) - 1`; when that is not in the
    /// future the flush is immediate, kills everything and spends a CAS id (on every shard:
    /// each applies it).
    fn flush(&mut self, delay: i32) {
        let new_oldest = if delay > 0 {
            realtime(delay, self.now)
        } else {
            self.now
        };
        self.oldest_live = new_oldest.wrapping_sub(1);
        if self.oldest_live <= self.now {
            for c in &mut self.cas {
                *c += 1;
            }
            self.items.clear();
        }
    }
}

enum Arith {
    Value(Vec<u8>),
    NotFound,
    NonNumeric,
    Exists,
}
