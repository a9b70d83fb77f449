//! The harness for kcache's integration tests: start a server (kcache or, to validate the tests
//! themselves, memcached 1.6) on a free loopback port, talk to it over raw TCP and UDP, and find
//! the external tools the tests drive.
//!
//! `KCACHE_TEST_TARGET=memcached cargo test -p kcache-tests` runs the whole suite against memcached
//! (tests of kcache-only features are skipped for that target, see `skip`); the default is kcache,
//! from `KCACHE_BIN` or the workspace's `target/debug/kcache`, built once per test process.
//! The model test (`tests/model.rs`) uses none of this: it drives `cache-core` in memory.

pub mod buckets;
pub mod conn;
pub mod hunt;
pub mod kcache;
pub mod reply;
pub mod server;
pub mod skip;
pub mod target;
pub mod testbed;
pub mod tools;
pub mod udp;
pub mod xdp;

pub use self::{
    conn::Conn,
    server::{Config, Server},
    target::Target,
};

/// Bytes as escaped ASCII for failure messages, cut to `max` bytes of input.
pub fn show(bytes: &[u8], max: usize) -> String {
    let cut = bytes.len().min(max);
    let mut text = bytes[..cut].escape_ascii().to_string();
    if cut < bytes.len() {
        text.push_str(&format!("... ({} bytes in all)", bytes.len()));
    }
    text
}
