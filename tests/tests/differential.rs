//! Differential test: one seeded random request stream (`differential/draw.rs`) sent to the
//! target, with two threads, and to memcached 1.6.18; every reply must be byte-for-byte the
//! same, `VERSION` lines aside and CAS values renumbered (`differential/cas.rs`: two kcache
//! shards count CAS values apart, memcached with one counter).
//!
//! Two threads make two shards: a key lives on `vbucket(key) % 2` (computed here with the
//! server's own placement), so most multigets span both and every request of a key on the
//! other shard than the connection's crosses between them. Each run counts the multigets whose
//! keys are on both shards and requires some.
//!
//! Requests go one at a time, each followed by `mn`, and the reply is everything before `MN`:
//! `noreply` and quiet requests are checked for silence. One time in ten a pipelined burst of
//! 2..=12 requests goes at once instead, with one `mn` after it. Bursts leave out `incr`/`decr`
//! (memcached pads in place or not depending on whether an earlier read in the same pipeline
//! still holds the item; it runs without its LRU background threads for the same reason, see
//! `Config::quiet_background`), requests naming a CAS value and malformed ones. At the end, an
//! `mg` of every key compares what each server holds. With `KCACHE_TEST_TARGET=memcached` both
//! sides are memcached, which shows the stream itself is deterministic.

#[path = "differential/cas.rs"]
mod cas;
#[path = "differential/draw.rs"]
mod draw;

use std::collections::VecDeque;

use anyhow::{bail, ensure, Result};
use cache_core::pipeline::route::shard_of;
use kcache_tests::{show, Config, Conn, Server, Target};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use self::{cas::CasMap, draw::Draw};

/// The target's threads, and so shards.
const SHARDS: usize = 2;
/// The longest pipelined burst.
const BURST: usize = 12;

/// Requests per seed.
const REQUESTS: usize = 5000;
/// Requests shown before a difference.
const CONTEXT: usize = 8;

#[test]
fn same_replies_as_memcached_seeds_0_to_3() -> Result<()> {
    for seed in 0..4 {
        run(seed)?;
    }
    Ok(())
}

#[test]
fn same_replies_as_memcached_seeds_4_to_7() -> Result<()> {
    for seed in 4..8 {
        run(seed)?;
    }
    Ok(())
}

fn run(seed: u64) -> Result<()> {
    let reference_config = Config::default()
        .threads(1)
        .memory_mb(64)
        .quiet_background();
    let config = reference_config.clone().threads(SHARDS as u32);
    let target = Target::from_env();
    let subject = Server::start(target, &config)?;
    let reference = Server::start(Target::Memcached, &reference_config)?;
    let mut pair = Pair {
        seed,
        subject: subject.connect()?,
        reference: reference.connect()?,
        recent: VecDeque::new(),
        cas: CasMap::default(),
    };
    let mut draw = Draw::new(seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6b63);
    let (mut spread, mut bursts) = (0, 0);
    let mut i = 0;
    while i < REQUESTS {
        let batch = if rng.gen_ratio(1, 10) {
            bursts += 1;
            burst(&mut draw, &pair.cas, rng.gen_range(2..=BURST))
        } else {
            vec![draw.request()]
        };
        spread += batch.iter().filter(|r| spans_shards(r)).count();
        let reply = pair.check(i, &batch).map_err(|e| {
            e.context(format!(
                "{target} log:\n{}\nmemcached log:\n{}",
                subject.log(),
                reference.log()
            ))
        })?;
        draw.observe(&reply);
        i += batch.len();
    }
    // What each server holds at the end.
    for key in draw.keys().to_vec() {
        pair.check(REQUESTS, &[format!("mg {key} v f c s k\r\n").into_bytes()])?;
    }
    eprintln!("seed {seed}: {spread} multigets across shards, {bursts} pipelined bursts");
    ensure!(
        spread > 50 && bursts > 50,
        "seed {seed}: {spread} multigets across shards, {bursts} bursts"
    );
    Ok(())
}

/// `n` requests fit for a burst (see the module docs).
fn burst(draw: &mut Draw, cas: &CasMap, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = draw.request();
        let line = r.split(|&b| b == b'\n').next().unwrap_or_default();
        let word = line.split(|&b| b == b' ').next().unwrap_or_default();
        let arith = matches!(word, b"incr" | b"decr" | b"ma");
        let named_cas =
            word == b"cas" || line.split(|&b| b == b' ').any(|w| w.first() == Some(&b'C'));
        let known = matches!(
            word,
            b"set"
                | b"add"
                | b"replace"
                | b"append"
                | b"prepend"
                | b"get"
                | b"gets"
                | b"gat"
                | b"gats"
                | b"touch"
                | b"delete"
                | b"mg"
                | b"ms"
                | b"md"
                | b"version"
        );
        // A malformed one too: memcached drops the replies queued before an error in a pipeline.
        let valid = cache_core::protocol::Parser::new().parse(&r).is_ok();
        if known && valid && !arith && !named_cas && cas.probe(&r).is_none() {
            out.push(r);
        }
    }
    out
}

/// Whether `request` is a multiget whose keys live on more than one shard.
fn spans_shards(request: &[u8]) -> bool {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let skip = match words.next() {
        Some(b"get" | b"gets") => 0,
        Some(b"gat" | b"gats") => 1,
        _ => return false,
    };
    let shards: Vec<usize> = words.skip(skip).map(|k| shard_of(k, SHARDS)).collect();
    shards.windows(2).any(|w| w[0] != w[1])
}

/// One connection to each server, and the last few exchanges for failure messages.
struct Pair {
    seed: u64,
    subject: Conn,
    reference: Conn,
    recent: VecDeque<(Vec<u8>, Vec<u8>)>,
    cas: CasMap,
}

impl Pair {
    /// Sends `requests`, pipelined, to both; fails unless the replies match. Returns
    /// memcached's.
    fn check(&mut self, index: usize, requests: &[Vec<u8>]) -> Result<Vec<u8>> {
        if let [one] = requests {
            if let Some(probe) = self.cas.probe(one) {
                self.exchange(index, &probe, &probe)?;
            }
        }
        let request = requests.concat();
        let renumbered: Vec<u8> = requests.iter().flat_map(|r| self.cas.request(r)).collect();
        self.exchange(index, &request, &renumbered)
    }

    /// `request` to memcached and `renumbered` (the same in the subject's CAS numbering) to
    /// the subject; the replies must match.
    fn exchange(&mut self, index: usize, request: &[u8], renumbered: &[u8]) -> Result<Vec<u8>> {
        let theirs = normalize(request, self.reference.call_synced(request)?);
        let ours = match self.subject.call_synced(renumbered) {
            Ok(reply) => normalize(request, reply),
            Err(e) => bail!("{}\nthe target failed: {e:#}", self.context(index, request)),
        };
        let ours = match self.cas.reply(&ours, &theirs) {
            Ok(ours) => ours,
            Err(e) => bail!("{}\n{e}", self.context(index, request)),
        };
        if ours != theirs {
            bail!(
                "{}\n  target:    {}\n  memcached: {}",
                self.context(index, request),
                show(&ours, 600),
                show(&theirs, 600)
            );
        }
        if self.recent.len() == CONTEXT {
            self.recent.pop_front();
        }
        self.recent.push_back((request.to_vec(), theirs.clone()));
        Ok(theirs)
    }

    fn context(&self, index: usize, request: &[u8]) -> String {
        let mut text = format!(
            "seed {} request {index}: replies differ; before it:\n",
            self.seed
        );
        for (req, reply) in &self.recent {
            text.push_str(&format!(
                "  > {}\n  < {}\n",
                show(req, 200),
                show(reply, 200)
            ));
        }
        text.push_str(&format!("  > {}", show(request, 600)));
        text
    }
}

/// The version string is the one allowed difference.
fn normalize(request: &[u8], reply: Vec<u8>) -> Vec<u8> {
    if request == b"version\r\n" && reply.starts_with(b"VERSION ") {
        return b"VERSION *\r\n".to_vec();
    }
    reply
}
