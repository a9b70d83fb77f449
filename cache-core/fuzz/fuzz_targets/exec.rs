//! Fuzz target for a client stream through the request pipeline, as the engine runs it: one to
//! three shards (the first byte decides), small arenas, small memory budgets and a small socket
//! window, so every path of `pipeline` is reached by short inputs — cross-shard requests and
//! multigets, answers too big for their grant, waits for room, refused values.
//!
//! For every input, on a fresh server:
//! - nothing panics;
//! - the same bytes fed in two pieces (cut where the second byte says) give the same replies as
//!   fed at once: the connection's requests take effect in order however its shards interleave;
//! - once the client has read everything, the connection holds no reply bytes and no pool has
//!   anything lent for replies;
//! - a client that reads nothing never makes the connection hold more than its cap.
#![no_main]

use cache_core::{
    pipeline::{
        budget::REPLY_SLACK,
        sim::{Config, Sim},
        Limits,
    },
    protocol::Parser,
    store::StoreConfig,
};
use libfuzzer_sys::fuzz_target;

const NOW: u32 = 1_700_000_000;
const ITEM_MAX: usize = 64 * 1024;

fn config(shards: usize, seed: u64) -> Config {
    let limits = Limits {
        reply_free: 4 << 10,
        input_free: 4 << 10,
        datagram_max: 128 << 10,
        grant: 1 << 10,
        ..Limits::new(ITEM_MAX, 80 << 10)
    };
    Config {
        shards,
        arena: 512 << 10,
        store: StoreConfig {
            page_size: 64 * 1024,
            item_max: ITEM_MAX,
            ..StoreConfig::default()
        },
        parser: Parser::new().item_max(ITEM_MAX),
        limits,
        reply_pool: 160 << 10,
        input_pool: 160 << 10,
        window: 8 << 10,
        seed,
    }
}

/// Feeds `pieces` in turn on one connection; returns what the client read, and whether the
/// server hung up.
fn replay(cfg: &Config, now: u32, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
    let Ok(mut sim) = Sim::new(cfg, now) else {
        panic!("the fuzz server could not be created");
    };
    let c = sim.connect(0);
    let mut read = Vec::new();
    for piece in pieces {
        sim.send(c, piece);
        sim.run();
        read.extend(sim.take_read(c));
    }
    assert_eq!(
        sim.held(c),
        0,
        "bytes still held after the client read everything"
    );
    for s in 0..sim.shards() {
        assert_eq!(
            sim.core(s).replies.lent(),
            0,
            "shard {s}'s reply pool still lent"
        );
    }
    (read, sim.closed(c))
}

fuzz_target!(|data: &[u8]| {
    let (Some(&a), Some(&b)) = (data.first(), data.get(1)) else {
        return;
    };
    let shards = 1 + usize::from(a % 3);
    let now = NOW + u32::from(a / 3 % 8) * 600;
    let cfg = config(shards, u64::from(b) + 1);
    let input = &data[2..];
    let whole = replay(&cfg, now, &[input]);
    let cut = usize::from(b) * input.len() / 255;
    let split = replay(&cfg, now, &[&input[..cut], &input[cut..]]);
    assert_eq!(
        whole.0.escape_ascii().to_string(),
        split.0.escape_ascii().to_string(),
        "fed at once and in two pieces (cut at {cut}), the replies differ"
    );
    assert_eq!(whole.1, split.1, "the connection closed in one case only");
    // A client that never reads.
    let Ok(mut sim) = Sim::new(&cfg, now) else {
        return;
    };
    let c = sim.connect(0);
    sim.set_reading(c, false);
    sim.send(c, input);
    sim.run();
    assert!(
        sim.held(c) <= cfg.limits.reply_max + REPLY_SLACK,
        "a client that does not read made the connection hold {} bytes",
        sim.held(c)
    );
});
