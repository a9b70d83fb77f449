//! Replays a byte stream from stdin through one store and prints the replies: a quick way to
//! compare kcache's core with a live memcached (`printf 'get a\r\n' | cargo run --example replay`).
use std::io::{Read, Write};

use cache_core::{
    exec::Session,
    protocol::Parser,
    store::{Store, StoreConfig},
};

fn main() -> std::io::Result<()> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let now: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_700_000_000);
    let Ok(mut store) = Store::new(vec![0u8; 8 << 20], StoreConfig::default()) else {
        return Err(std::io::Error::other("store"));
    };
    let parser = Parser::new();
    let mut out = Vec::new();
    let mut s = Session::new();
    let fed = s.feed(
        &parser,
        &mut store,
        &input,
        now,
        &mut out,
        &mut |_, _, o| o.extend_from_slice(b"END\r\n"),
    );
    if fed.close {
        out.extend_from_slice(b"<CLOSED>");
    }
    std::io::stdout().write_all(&out)
}
