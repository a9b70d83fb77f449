//! Differential test: one seeded random request stream (`differential/draw.rs`) sent to the
//! target and to memcached 1.6.18, each fresh with `-t 1` (so CAS values follow the same
//! sequence); every reply must be byte-for-byte the same, `VERSION` lines aside.
//!
//! Requests go one at a time, each followed by `mn`, and the reply is everything before `MN`:
//! `noreply` and quiet requests are checked for silence, and nothing depends on how a server
//! batches a pipeline (memcached's `incr` pads in place or not depending on whether an earlier
//! read in the same pipeline still holds the item; memcached runs without its LRU background
//! threads for the same reason, see `Config::quiet_background`). At the end, an `mg` of every key compares
//! what each server holds. With `KCACHE_TEST_TARGET=memcached` both sides are memcached, which
//! shows the stream itself is deterministic.

#[path = "differential/draw.rs"]
mod draw;

use std::collections::VecDeque;

use anyhow::{bail, Result};
use kcache_tests::{show, Config, Conn, Server, Target};

use self::draw::Draw;

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
    let config = Config::default()
        .threads(1)
        .memory_mb(64)
        .quiet_background();
    let target = Target::from_env();
    let subject = Server::start(target, &config)?;
    let reference = Server::start(Target::Memcached, &config)?;
    let mut pair = Pair {
        seed,
        subject: subject.connect()?,
        reference: reference.connect()?,
        recent: VecDeque::new(),
    };
    let mut draw = Draw::new(seed);
    for i in 0..REQUESTS {
        let request = draw.request();
        let reply = pair.check(i, &request).map_err(|e| {
            e.context(format!(
                "{target} log:\n{}\nmemcached log:\n{}",
                subject.log(),
                reference.log()
            ))
        })?;
        draw.observe(&reply);
    }
    // What each server holds at the end.
    for key in draw.keys().to_vec() {
        pair.check(REQUESTS, format!("mg {key} v f c s k\r\n").as_bytes())?;
    }
    Ok(())
}

/// One connection to each server, and the last few exchanges for failure messages.
struct Pair {
    seed: u64,
    subject: Conn,
    reference: Conn,
    recent: VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl Pair {
    /// Sends `request` to both; fails unless the replies match. Returns memcached's.
    fn check(&mut self, index: usize, request: &[u8]) -> Result<Vec<u8>> {
        let theirs = normalize(request, self.reference.call_synced(request)?);
        let ours = match self.subject.call_synced(request) {
            Ok(reply) => normalize(request, reply),
            Err(e) => bail!("{}\nthe target failed: {e:#}", self.context(index, request)),
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
