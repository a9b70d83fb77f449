//! Which shard runs a request. Every key belongs to one shard, `vbucket(key) % shards`, so the
//! bucket map and shard ownership line up: a bucket is wholly on one shard.

use crate::{
    bucket::{khash, vbucket_of},
    protocol::{meta, Request},
};

/// The shard of a key with this [`khash`].
#[inline]
pub fn shard_of_hash(hash: u64, shards: usize) -> usize {
    vbucket_of(hash) as usize % shards.max(1)
}

/// The shard of `key`.
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    shard_of_hash(khash(key), shards)
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Names one key, of this hash (a one-key `get` included).
    Key(u64),
    /// A read of several keys (`get`/`gets`/`gat`/`gats`/`lease-get`).
    Keys,
    /// `flush_all`: every shard.
    Flush,
    /// `stats`: the host answers (it sees every shard and the process).
    Stats,
    /// No key: runs on the shard that took it.
    Here,
}

/// The route of `req`.
pub fn route(req: &Request<'_>) -> Route {
    match req {
        Request::Get(g) => {
            let mut keys = g.keys.iter();
            match (keys.next(), keys.next()) {
                (Some(only), None) => Route::Key(khash(only)),
                _ => Route::Keys,
            }
        }
        Request::LeaseGet(_) => Route::Keys,
        Request::FlushAll { .. } => Route::Flush,
        Request::Stats(_) => Route::Stats,
        _ => key_hash(req).map_or(Route::Here, Route::Key),
    }
}

/// The hash of the one key a single-key request names, as the store sees it (decoded from
/// base64 for meta `b`); `None` for requests without exactly one key.
pub fn key_hash(req: &Request<'_>) -> Option<u64> {
    let mut scratch = [0u8; 256];
    one_key(req, &mut scratch).map(khash)
}

/// The one key a single-key request names, as the store sees it (decoded from base64 for meta
/// `b`, into `scratch`); `None` for requests without exactly one key.
pub fn one_key<'a>(req: &'a Request<'_>, scratch: &'a mut [u8; 256]) -> Option<&'a [u8]> {
    Some(match req {
        Request::Store(s) => s.key,
        Request::Arith(a) => a.key,
        Request::Delete(d) => d.key,
        Request::Touch(t) => t.key,
        Request::LeaseSet(l) => l.key,
        Request::Refused { key, .. } => key,
        Request::MetaGet(m) | Request::MetaDelete(m) | Request::MetaArith(m) => {
            m.flags.decode_key(m.key, scratch)
        }
        Request::MetaSet(m) => m.flags.decode_key(m.key, scratch),
        Request::MetaDebug { key, base64 } => meta::decode_key(key, *base64, scratch),
        Request::Get(g) => {
            let mut keys = g.keys.iter();
            match (keys.next(), keys.next()) {
                (Some(only), None) => only,
                _ => return None,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Parser;

    #[test]
    fn routes() {
        let p = Parser::new();
        let h = khash(b"k");
        let cases: &[(&[u8], Route)] = &[
            // One key, however it is asked for.
            (b"get k\r\n", Route::Key(h)),
            (b"set k 0 0 1\r\nx\r\n", Route::Key(h)),
            (b"mg k v\r\n", Route::Key(h)),
            // base64 keys route by the decoded key ("aw==" is "k").
            (b"mg aw== b v\r\n", Route::Key(h)),
            (b"me aw== b\r\n", Route::Key(h)),
            // Several keys are split by the pipeline.
            (b"get k j\r\n", Route::Keys),
            (b"lease-get k\r\n", Route::Keys),
            (b"flush_all\r\n", Route::Flush),
            (b"stats items\r\n", Route::Stats),
            (b"version\r\n", Route::Here),
            (b"mn\r\n", Route::Here),
        ];
        for &(text, want) in cases {
            let r = p.parse(text).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(route(&r.request), want, "{}", text.escape_ascii());
        }
        // A shard is a vbucket's residue: every key of a bucket is on one shard.
        assert_eq!(shard_of(b"k", 4), usize::from(vbucket_of(h)) % 4);
        assert_eq!(shard_of(b"k", 1), 0);
    }
}
