//! Replays a byte stream from stdin through one shard of the request pipeline and prints the
//! replies: a quick way to compare kcache's core with a live memcached (`printf 'get a\r\n' |
//! cargo run --example replay`). A second argument sets the number of shards.
use std::io::{Read, Write};

use cache_core::pipeline::sim::{Config, Sim};

fn main() -> std::io::Result<()> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let mut args = std::env::args().skip(1);
    let now: u32 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_700_000_000);
    let shards = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = Config {
        shards,
        arena: 8 << 20,
        ..Config::default()
    };
    let Ok(mut sim) = Sim::new(&cfg, now) else {
        return Err(std::io::Error::other("store"));
    };
    let c = sim.connect(0);
    sim.send(c, &input);
    sim.run();
    let mut out = sim.take_read(c);
    if sim.closed(c) {
        out.extend_from_slice(b"<CLOSED>");
    }
    std::io::stdout().write_all(&out)
}
