//! Keys whose read is not finished yet, which a later request of the same connection that
//! changes them must wait for.
//!
//! A connection's requests take effect in order. A read handed to another shard runs there in
//! order with everything the connection sends that shard after it — unless its reply did not
//! fit the bytes granted and it must be asked again, or it is part of a multiget whose later
//! keys are read as room allows. Until then, a later write of one of its keys would run before
//! the read and the read would see it. So those keys are noted here, and a request that would
//! change one of them (or a `flush_all`) waits until the read is done. Plain reads of the same
//! keys need not wait: two reads in either order see the same thing — unless the pending read
//! itself changes its keys (`gat`, `lease-get`, `mg` with `T`/`N`/`R`): then every later request
//! on them waits, reads included.

use std::collections::HashMap;

use super::route::Route;
use crate::{bucket::khash, protocol::Request};

#[derive(Debug, Default)]
pub(super) struct Hazards {
    /// Key hash → plain reads pending on it (later changes wait).
    reads: HashMap<u64, u32>,
    /// Key hash → reads that change it pending (everything later on it waits).
    writes: HashMap<u64, u32>,
}

impl Hazards {
    /// A read of the key with this hash is pending; `changes` if it also changes the key.
    pub(super) fn add(&mut self, hash: u64, changes: bool) {
        let map = if changes {
            &mut self.writes
        } else {
            &mut self.reads
        };
        *map.entry(hash).or_insert(0) += 1;
    }

    pub(super) fn remove(&mut self, hash: u64, changes: bool) {
        let map = if changes {
            &mut self.writes
        } else {
            &mut self.reads
        };
        if let Some(n) = map.get_mut(&hash) {
            *n -= 1;
            if *n == 0 {
                map.remove(&hash);
            }
        }
    }

    fn on(&self, hash: u64, changes: bool) -> bool {
        self.writes.contains_key(&hash) || (changes && self.reads.contains_key(&hash))
    }

    /// Whether `req` (routed `route`) must wait for a pending read.
    pub(super) fn blocks(&self, req: &Request<'_>, route: Route) -> bool {
        if self.reads.is_empty() && self.writes.is_empty() {
            return false;
        }
        let changes = mutates(req);
        match route {
            Route::Flush => true,
            Route::Key(hash) => self.on(hash, changes),
            Route::Keys => keys(req).any(|k| self.on(khash(k), changes)),
            Route::Stats | Route::Here => false,
        }
    }
}

/// The keys of a multi-key read.
fn keys<'a>(req: &Request<'a>) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
    match req {
        Request::Get(g) => Box::new(g.keys.iter()),
        Request::LeaseGet(k) => Box::new(k.iter()),
        _ => Box::new(std::iter::empty()),
    }
}

/// Whether `req` can change what a read of its key sees (or reports).
pub(super) fn mutates(req: &Request<'_>) -> bool {
    match req {
        // `gat` touches; plain reads only bump the LRU.
        Request::Get(g) => g.touch.is_some(),
        // Vivify, TTL update and recache tokens change the item or its lease.
        Request::MetaGet(m) => m.flags.has(b'N') || m.flags.has(b'T') || m.flags.has(b'R'),
        Request::MetaDebug { .. } => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{pipeline::route::route, protocol::Parser};

    /// Each request waits (`true`) or not.
    fn check(h: &Hazards, cases: &[(&[u8], bool)]) {
        for &(text, want) in cases {
            let r = Parser::new()
                .parse(text)
                .unwrap_or_else(|e| panic!("{e:?}"));
            let got = h.blocks(&r.request, route(&r.request));
            assert_eq!(got, want, "{}", text.escape_ascii());
        }
    }

    #[test]
    fn writes_of_pending_keys_wait() {
        let mut h = Hazards::default();
        h.add(khash(b"k"), false);
        let cases: &[(&[u8], bool)] = &[
            // Reads of the key go on; writes, touches, leases and flushes wait.
            (b"get k\r\n", false),
            (b"mg k v\r\n", false),
            (b"me k\r\n", false),
            (b"set k 0 0 1\r\nx\r\n", true),
            (b"delete k\r\n", true),
            (b"gat 10 k\r\n", true),
            (b"mg k v T30\r\n", true),
            (b"mg k v N30\r\n", true),
            (b"lease-get j k\r\n", true),
            (b"flush_all\r\n", true),
            // Other keys do not.
            (b"set j 0 0 1\r\nx\r\n", false),
            (b"gat 10 j i\r\n", false),
            (b"stats\r\n", false),
        ];
        check(&h, cases);
        h.remove(khash(b"k"), false);
        assert!(h.reads.is_empty());
        // A pending read that changes its key holds reads back too.
        h.add(khash(b"k"), true);
        check(&h, &[(b"get k\r\n", true), (b"mg j v\r\n", false)]);
        h.remove(khash(b"k"), true);
        assert!(h.writes.is_empty());
    }
}
