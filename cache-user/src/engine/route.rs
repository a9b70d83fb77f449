//! Which shard owns a request. Every key belongs to one shard: `vbucket(key) % shards`, so the
//! bucket map and shard ownership line up (a bucket is wholly on one shard).

use cache_core::{
    bucket::{khash, vbucket_of},
    protocol::{meta, Request},
};

/// Where a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// On this shard (no key, or the key is ours).
    Local,
    /// On shard `n`.
    Shard(usize),
    /// A multi-key read: split by key.
    Split,
    /// On every shard (`flush_all`).
    All,
    /// `stats`: every shard's counters, formatted here.
    Stats,
}

pub(crate) fn shard_of(key: &[u8], shards: usize) -> usize {
    shard_of_hash(khash(key), shards)
}

fn shard_of_hash(hash: u64, shards: usize) -> usize {
    vbucket_of(hash) as usize % shards
}

/// The route of `req` seen from shard `me` of `shards`, and the hash of its key exactly when it
/// names one key (the store reuses it rather than hashing again; `own.rs` checks it against the
/// bucket map).
pub(crate) fn route(req: &Request<'_>, me: usize, shards: usize) -> (Route, Option<u64>) {
    let whole = |r| (r, None);
    let mut scratch = [0u8; 256];
    let key: &[u8] = match req {
        Request::Store(s) => s.key,
        Request::Arith(a) => a.key,
        Request::Delete(d) => d.key,
        Request::Touch(t) => t.key,
        Request::LeaseSet(l) => l.key,
        Request::Refused { key, .. } => key,
        Request::MetaGet(m) | Request::MetaDelete(m) | Request::MetaArith(m) => {
            m.flags.decode_key(m.key, &mut scratch)
        }
        Request::MetaSet(m) => m.flags.decode_key(m.key, &mut scratch),
        Request::MetaDebug { key, base64 } => meta::decode_key(key, *base64, &mut scratch),
        Request::Get(g) => {
            let mut keys = g.keys.iter();
            match (keys.next(), keys.next()) {
                (Some(only), None) => only,
                _ => return whole(multi(g.keys.iter(), me, shards)),
            }
        }
        Request::LeaseGet(keys) => return whole(multi(keys.iter(), me, shards)),
        Request::FlushAll { .. } => return whole(Route::All),
        Request::Stats(_) => return whole(Route::Stats),
        _ => return whole(Route::Local),
    };
    let hash = khash(key);
    if shards == 1 {
        return (Route::Local, Some(hash));
    }
    let s = shard_of_hash(hash, shards);
    (
        if s == me {
            Route::Local
        } else {
            Route::Shard(s)
        },
        Some(hash),
    )
}

/// A multi-key read runs here if every key is ours (the common case, no allocation), else it
/// is split by key.
fn multi<'a>(mut keys: impl Iterator<Item = &'a [u8]>, me: usize, shards: usize) -> Route {
    if shards == 1 || keys.all(|k| shard_of(k, shards) == me) {
        Route::Local
    } else {
        Route::Split
    }
}
