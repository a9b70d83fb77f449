//! Which shard owns a request. Every key belongs to one shard: `vbucket(key) % shards`, so the
//! bucket map and shard ownership line up (a bucket is wholly on one shard).

use cache_core::{bucket::vbucket, protocol::Request};

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
    vbucket(key) as usize % shards
}

/// The route of `req` seen from shard `me` of `shards`.
pub(crate) fn route(req: &Request<'_>, me: usize, shards: usize) -> Route {
    if shards == 1 {
        return match req {
            Request::Stats(_) => Route::Stats,
            _ => Route::Local,
        };
    }
    let key: Option<&[u8]> = match req {
        Request::Store(s) => Some(s.key),
        Request::Arith(a) => Some(a.key),
        Request::Delete(d) => Some(d.key),
        Request::Touch(t) => Some(t.key),
        Request::LeaseSet(l) => Some(l.key),
        Request::TooLarge { key, .. } => Some(key),
        Request::MetaGet(m) | Request::MetaDelete(m) | Request::MetaArith(m) => {
            return meta_route(m.key, &m.flags, me, shards);
        }
        Request::MetaSet(m) => return meta_route(m.key, &m.flags, me, shards),
        Request::MetaDebug { key, base64 } => {
            if *base64 {
                return Route::Local; // rare debug form: answered from this shard
            }
            Some(key)
        }
        Request::Get(g) => return multi(g.keys.iter(), me, shards),
        Request::LeaseGet(keys) => return multi(keys.iter(), me, shards),
        Request::FlushAll { .. } => return Route::All,
        Request::Stats(_) => return Route::Stats,
        _ => None,
    };
    match key {
        Some(k) => owner(shard_of(k, shards), me),
        None => Route::Local,
    }
}

fn owner(s: usize, me: usize) -> Route {
    if s == me {
        Route::Local
    } else {
        Route::Shard(s)
    }
}

fn meta_route(
    key: &[u8],
    flags: &cache_core::protocol::MetaFlags<'_>,
    me: usize,
    shards: usize,
) -> Route {
    let mut scratch = [0u8; 256];
    let k = flags.decode_key(key, &mut scratch);
    owner(shard_of(k, shards), me)
}

fn multi<'a>(mut keys: impl Iterator<Item = &'a [u8]>, me: usize, shards: usize) -> Route {
    if keys.all(|k| shard_of(k, shards) == me) {
        Route::Local
    } else {
        Route::Split
    }
}
