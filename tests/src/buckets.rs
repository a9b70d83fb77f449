//! Bucket-map fixtures shared by the bucket tests: a map giving node 0 half the buckets, keys on
//! either side of it, and the refusal a server sends for the other half.

use cache_core::bucket::{vbucket, Refusal};

/// Node 0 owns the lower half of the buckets, at epoch 3.
pub const HALF: &str = "epoch 3\nnode 0 0-8191\nnode 1 8192-16383\n";

/// The first key `<prefix><n>` whose vbucket is below 8192 (`low`) or not.
pub fn key(prefix: &str, low: bool) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| (vbucket(k.as_bytes()) < 8192) == low)
        .unwrap_or_default()
}

/// The refusal line for `key` from a server at `epoch`.
pub fn refusal(key: &str, epoch: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Refusal {
        vbucket: vbucket(key.as_bytes()),
        epoch,
    }
    .encode(&mut out);
    out
}
