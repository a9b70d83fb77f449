//! Conformance tables: (request, expected reply) pairs over raw sockets, recorded from memcached
//! 1.6.18 and replayed against the target, each table on a fresh server with `-t 1` so CAS
//! values follow memcached's sequence (1, 2, ...).
//!
//! - `meta.rs`: the meta protocol (`mg ms md ma mn`), flags, modes, quiet mode, base64 keys and
//!   errors, and memcached 1.6's lease exchange from FACTS.md (`N` vivify, `W`/`Z`/`X`, `I`).
//! - `lease.rs`: mcrouter's `lease-get`/`lease-set` (kcache-only: memcached answers `ERROR`).
//! - `udp.rs`: the UDP frame: small and multi-datagram replies, a dropped multi-datagram
//!   request, a 24-key multiget.
//! - `access.rs`: `mg … l h` after a real 2.5 s pause (last access and fetched-before).
//!
//! Each request is followed by `mn`, and the reply is everything before its `MN`
//! (`Conn::expect`), so quiet requests and `noreply` are checked for silence too.

#[path = "conformance_meta/access.rs"]
mod access;
#[path = "conformance_meta/lease.rs"]
mod lease;
#[path = "conformance_meta/meta.rs"]
mod meta;
#[path = "conformance_meta/udp.rs"]
mod udp;

use anyhow::{Context, Result};
use kcache_tests::{Config, Server, Target};

/// A table: each case a request and the exact reply.
type Table<'a> = [(&'a [u8], &'a [u8])];

/// Runs `table` in order on one connection to a fresh `-t 1` server.
fn run(table: &Table<'_>) -> Result<()> {
    let server = Server::start(Target::from_env(), &Config::default().threads(1))?;
    let mut conn = server.connect()?;
    for (i, (request, want)) in table.iter().enumerate() {
        conn.expect(request, want).with_context(|| {
            format!(
                "{}: case {i}; server log:\n{}",
                server.target(),
                server.log()
            )
        })?;
    }
    Ok(())
}
