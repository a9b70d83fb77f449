//! Byte-for-byte conformance with memcached 1.6.18.
//!
//! `conformance.tsv` holds request scripts with the replies a live memcached 1.6.18 gave to each
//! (recorded by `record_conformance.py` against Debian's package). Every script is replayed here
//! through kcache's parser, store and reply encoder on a fresh store, and must produce the same
//! bytes.

use cache_core::{
    pipeline::sim::{Config, Sim},
    protocol::Parser,
};

const TABLE: &str = include_str!("conformance.tsv");
const NOW: u32 = 1_700_000_000;

/// `\r`, `\n`, `\t`, `\0`, `\\` and `\xNN` escapes, as Python's `unicode_escape` writes them,
/// and `{{N}}` for N filler bytes.
fn unescape(s: &str) -> Vec<u8> {
    let mut expanded = String::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        expanded.push_str(&rest[..open]);
        let n: usize = rest[open + 2..open + close].parse().unwrap_or(0);
        expanded.push_str(&"v".repeat(n));
        rest = &rest[open + close + 2..];
    }
    expanded.push_str(rest);
    let b = expanded.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match b[i + 1] {
            b'r' => (b'\r', 2),
            b'n' => (b'\n', 2),
            b't' => (b'\t', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            b'x' => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("00");
                (u8::from_str_radix(hex, 16).unwrap_or(0), 4)
            }
            other => (other, 2),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// Replays `script` on one connection of a fresh one-shard server (the engine's pipeline:
/// CAS values count as memcached's only with one shard).
fn replay(parser: &Parser, script: &[u8]) -> Vec<u8> {
    let cfg = Config {
        shards: 1,
        arena: 16 << 20,
        parser: parser.clone(),
        ..Config::default()
    };
    let Ok(mut sim) = Sim::new(&cfg, NOW) else {
        panic!("store");
    };
    sim.stats_with(|_, _| {});
    let c = sim.connect(0);
    sim.send(c, script);
    sim.run();
    let mut out = sim.take_read(c);
    if sim.closed(c) {
        out.extend_from_slice(b"<CLOSED>");
    }
    out
}

#[test]
fn replies_match_memcached() {
    let mut failures = Vec::new();
    let mut n = 0;
    for line in TABLE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.splitn(3, '\t');
        let (Some(name), Some(script), Some(reply)) = (cols.next(), cols.next(), cols.next())
        else {
            panic!("bad row: {line}");
        };
        n += 1;
        // memcached's own text checks only: kcache's stricter key rule is tested below.
        let parser = Parser::new().strict_keys(false);
        let got = version_free(replay(&parser, &unescape(script)));
        let want = version_free(unescape(reply));
        if got != want {
            failures.push(format!(
                "{name}\n  script: {script}\n  memcached: {:?}\n  kcache:    {:?}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(n > 100, "only {n} cases");
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Drops what follows `VERSION ` on each line: the one reply kcache words differently.
fn version_free(reply: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&reply).into_owned();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with("VERSION ") {
            out.push_str("VERSION\r\n");
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

#[test]
fn strict_keys_refuse_control_characters() {
    // memcached documents that keys exclude control characters but its text parser accepts them;
    // kcache can enforce the rule (`strict_keys`) and then answers as memcached does for a
    // malformed key.
    let parser = Parser::new().strict_keys(true);
    let cases: &[(&[u8], &[u8])] = &[
        // a tab inside a key
        (b"get a\tb\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        // a stray CR before the line end
        (b"get a\r\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        // DEL in a set key: the data line is then read as a command, as memcached does
        (
            b"set a\x7f 0 0 1\r\nx\r\n",
            b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        // meta commands too
        (
            b"mg a\x01 v\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        // printable keys are untouched
        (b"get a~b!\r\n", b"END\r\n"),
    ];
    for &(script, want) in cases {
        assert_eq!(
            String::from_utf8_lossy(&replay(&parser, script)),
            String::from_utf8_lossy(want),
            "{:?}",
            String::from_utf8_lossy(script)
        );
    }
    let version = version_free(replay(&parser, b"version\r\n"));
    assert_eq!(version, b"VERSION\r\n");
}
