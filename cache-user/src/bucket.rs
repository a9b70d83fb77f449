//! `kcache bucket` and `kcache version`: where keys live, read off the fixed hash and a map file.

use std::{ffi::OsString, io::Write, path::Path};

use anyhow::{Context, Result};
use cache_core::{
    abi::LAYOUT_VERSION,
    bucket::{khash, vbucket_of, BucketMap},
};

/// Longest key memcached accepts.
const KEY_MAX: usize = 250;

/// Prints the map summary (if `map` is given), then one line per key.
pub(crate) fn run(out: &mut impl Write, map: Option<&Path>, keys: &[OsString]) -> Result<()> {
    let map = map.map(load).transpose()?;
    if let Some(map) = &map {
        summary(out, map)?;
    }
    for key in keys {
        let bytes = key.as_encoded_bytes();
        if let Some(problem) = key_problem(bytes) {
            eprintln!("warning: {key:?} {problem}; memcached would refuse it");
        }
        let hash = khash(bytes);
        let vbucket = vbucket_of(hash);
        write!(
            out,
            "{} vbucket={vbucket} hash={hash:016x}",
            key.to_string_lossy()
        )?;
        if let Some(map) = &map {
            match map.owner(vbucket) {
                Some(node) => write!(out, " owner={node}")?,
                None => write!(out, " owner=none")?,
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Prints the version and the layout version the XDP program must match.
pub(crate) fn version(out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "kcache {} (xdp layout {LAYOUT_VERSION})",
        env!("CARGO_PKG_VERSION")
    )?;
    Ok(())
}

fn load(path: &Path) -> Result<BucketMap> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading bucket map {}", path.display()))?;
    BucketMap::from_text(&text).with_context(|| format!("decoding bucket map {}", path.display()))
}

fn summary(out: &mut impl Write, map: &BucketMap) -> Result<()> {
    writeln!(out, "epoch {}", map.epoch())?;
    for &node in map.nodes() {
        writeln!(out, "node {node} buckets={}", map.buckets_of(node).count())?;
    }
    writeln!(out, "unowned buckets={}", map.unowned())?;
    Ok(())
}

/// Why memcached would refuse `key`, if it would.
fn key_problem(key: &[u8]) -> Option<&'static str> {
    if key.is_empty() {
        Some("is empty")
    } else if key.len() > KEY_MAX {
        Some("is longer than 250 bytes")
    } else if key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        Some("contains a space or control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_problems() {
        let long = [b'k'; 251];
        let cases: [(&[u8], Option<&str>); 6] = [
            // Ordinary keys are fine.
            (b"user:1", None),
            // The longest key memcached takes.
            (&long[..250], None),
            // Empty, too long, spaces and control characters are not keys.
            (b"", Some("is empty")),
            (&long, Some("is longer than 250 bytes")),
            (b"a b", Some("contains a space or control character")),
            (b"a\x7f", Some("contains a space or control character")),
        ];
        for (key, want) in cases {
            assert_eq!(key_problem(key), want, "{}", String::from_utf8_lossy(key));
        }
    }
}
