//! Runs a parsed request against one store and writes memcached's reply.
//!
//! The pipeline's [`crate::pipeline::Worker`] calls [`execute`] for requests that touch one
//! shard. Requests that concern every shard come back as an [`Action`] for the caller (`stats`),
//! or expose per-key pieces ([`get_key`], [`lease_key`]) so a multiget can be split across
//! shards and closed with `END` once.

mod meta;

use base64::Engine as _;

use crate::{
    protocol::{
        encode::{self, num},
        ErrorReply, Refuse, Request, Slabs,
    },
    store::{realtime, ArithOutcome, Key, LeaseGet, Mode, Store, StoreOutcome, Write},
};

/// The version this server reports: memcached's protocol level, then kcache's own.
pub const VERSION: &str = concat!("1.6.18-kcache-", env!("CARGO_PKG_VERSION"));

/// What the caller must still do after [`execute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The reply (possibly none) is in `out`.
    Done,
    /// `quit`: close the connection once `out` is sent.
    Close,
    /// `stats …`: only the server can answer (it sees every shard and the process).
    Stats,
}

/// Executes `req` on `store` at time `now`, appending the reply to `out`.
pub fn execute<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    req: &Request<'_>,
    now: u32,
    out: &mut Vec<u8>,
) -> Action {
    execute_hashed(store, req, None, now, out)
}

/// [`execute`] for a caller that already hashed the request's key to route it: `key_hash` is
/// `khash` of the one key a single-key request (a one-key `get` included) names, as the store
/// sees it (decoded from base64 for meta `b`); other requests ignore it. Saves hashing twice.
pub fn execute_hashed<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    req: &Request<'_>,
    key_hash: Option<u64>,
    now: u32,
    out: &mut Vec<u8>,
) -> Action {
    let key = |bytes| key(bytes, key_hash);
    match req {
        Request::Get(g) => {
            // A routing hash belongs to the key of a one-key get only.
            let mut keys = g.keys.iter().peekable();
            while let Some(k) = keys.next() {
                let hash = key_hash.filter(|_| keys.peek().is_none());
                get_key(store, g.cas, g.touch, self::key(k, hash), now, out);
            }
            out.extend_from_slice(encode::END);
        }
        Request::Store(s) => {
            let mode = s.cmd;
            let key = key(s.key);
            let w = Write {
                value: s.value,
                flags: s.flags,
                exptime: realtime(s.exptime, now),
                cas: s.cas,
                ..Write::default()
            };
            let (outcome, _) = store.store(mode, key, w, now);
            if outcome == StoreOutcome::NoMemory && mode == Mode::Set {
                store.drop_key(key, now);
            }
            if !s.noreply {
                store_reply(outcome, out);
            }
        }
        Request::Arith(a) => {
            let r = store.arith(key(a.key), a.incr, a.delta, 0, None, now);
            if !a.noreply {
                match r {
                    ArithOutcome::Value(v, _) => {
                        num(out, v);
                        out.extend_from_slice(encode::CRLF);
                    }
                    ArithOutcome::NotFound | ArithOutcome::Exists => {
                        out.extend_from_slice(encode::NOT_FOUND)
                    }
                    ArithOutcome::NonNumeric => ErrorReply::Client(NON_NUMERIC).write(out),
                    ArithOutcome::NoMemory => ErrorReply::Server("out of memory").write(out),
                }
            }
        }
        Request::Delete(d) => {
            let hit = store.delete(key(d.key), now);
            if !d.noreply {
                out.extend_from_slice(if hit {
                    encode::DELETED
                } else {
                    encode::NOT_FOUND
                });
            }
        }
        Request::Touch(t) => {
            let hit = store.touch(key(t.key), t.exptime, now);
            if !t.noreply {
                out.extend_from_slice(if hit {
                    encode::TOUCHED
                } else {
                    encode::NOT_FOUND
                });
            }
        }
        Request::FlushAll { delay, noreply } => {
            store.flush_all(*delay, now);
            if !noreply {
                out.extend_from_slice(encode::OK);
            }
        }
        Request::Stats(_) => return Action::Stats,
        Request::Version => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(VERSION.as_bytes());
            out.extend_from_slice(encode::CRLF);
        }
        Request::Verbosity { noreply } => {
            if !noreply {
                out.extend_from_slice(encode::OK);
            }
        }
        Request::Quit => return Action::Close,
        Request::Shutdown => out.extend_from_slice(b"ERROR: shutdown not enabled\r\n"),
        Request::Slabs(s) => slabs(store, *s, now, out),
        Request::MetaNoop => out.extend_from_slice(encode::MN),
        Request::MetaGet(m) => meta::get(store, m, key_hash, now, out),
        Request::MetaSet(m) => meta::set(store, m, key_hash, now, out),
        Request::MetaDelete(m) => meta::delete(store, m, key_hash, now, out),
        Request::MetaArith(m) => meta::arith(store, m, key_hash, now, out),
        Request::MetaDebug { key, base64 } => meta::debug(store, key, *base64, now, out),
        Request::LeaseGet(keys) => {
            for k in keys.iter() {
                lease_key(store, k, now, out);
            }
            out.extend_from_slice(encode::END);
        }
        Request::LeaseSet(l) => {
            let w = Write {
                value: l.value,
                flags: l.flags,
                exptime: realtime(l.exptime, now),
                ..Write::default()
            };
            let r = store.lease_set(key(l.key), l.token, w, now);
            if !l.noreply {
                store_reply(r, out);
            }
        }
        Request::Refused {
            key: k,
            drop_existing,
            reply,
            why,
        } => {
            if *why == Refuse::TooLarge {
                store.note_too_large();
            }
            if *drop_existing {
                store.drop_key(key(k), now);
            }
            if *reply {
                why.reply().write(out);
            }
        }
    }
    Action::Done
}

const NON_NUMERIC: &str = "cannot increment or decrement non-numeric value";

fn store_reply(outcome: StoreOutcome, out: &mut Vec<u8>) {
    match outcome {
        StoreOutcome::Stored => out.extend_from_slice(encode::STORED),
        StoreOutcome::NotStored => out.extend_from_slice(encode::NOT_STORED),
        StoreOutcome::Exists => out.extend_from_slice(encode::EXISTS),
        StoreOutcome::NotFound => out.extend_from_slice(encode::NOT_FOUND),
        StoreOutcome::NoMemory => ErrorReply::Server("out of memory storing object").write(out),
    }
}

/// One key of a `get`/`gets`/`gat`/`gats`: appends its `VALUE` block on a hit. The caller ends
/// the reply with `END` after the last key.
pub fn get_key<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    cas: bool,
    touch: Option<i32>,
    key: Key<'_>,
    now: u32,
    out: &mut Vec<u8>,
) {
    if let Some(id) = store.get(key, touch, now) {
        let it = store.view(id);
        encode::value(
            out,
            it.key,
            it.header.flags,
            it.value,
            cas.then_some(it.header.cas),
        );
    }
}

/// One key of mcrouter's `lease-get`.
pub fn lease_key<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    key: &[u8],
    now: u32,
    out: &mut Vec<u8>,
) {
    match store.lease_get(Key::new(key), now) {
        LeaseGet::Hit(id) => {
            let it = store.view(id);
            encode::value(out, it.key, it.header.flags, it.value, None);
        }
        LeaseGet::Lease(token, id) => {
            let it = store.view(id);
            out.extend_from_slice(b"LVALUE ");
            out.extend_from_slice(it.key);
            out.push(b' ');
            num(out, token);
            out.push(b' ');
            num(out, it.header.flags);
            out.push(b' ');
            num(out, it.value.len());
            out.extend_from_slice(encode::CRLF);
            out.extend_from_slice(it.value);
            out.extend_from_slice(encode::CRLF);
        }
        LeaseGet::Hot => out.extend_from_slice(encode::NOT_FOUND_HOT),
        LeaseGet::Miss => {}
    }
}

/// memcached's `slabs` replies; class ids on the wire are 1-based, `-1` means any source.
fn slabs<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    s: Slabs,
    now: u32,
    out: &mut Vec<u8>,
) {
    match s {
        Slabs::Automove(_) => out.extend_from_slice(encode::OK),
        Slabs::Reassign { src, dst } => {
            let classes = store.slabs().class_sizes().len() as i32;
            let src = if src == -1 {
                largest_class(store)
            } else {
                src - 1
            };
            let dst = dst - 1;
            let reply: &[u8] = if src == dst {
                b"SAME src and dst class are identical\r\n"
            } else if !(0..classes).contains(&src) || !(0..classes).contains(&dst) {
                b"BADCLASS invalid src or dst class id\r\n"
            } else if store.reassign(src as u8, dst as u8, now).is_ok() {
                encode::OK
            } else {
                b"NOSPARE source class has no spare pages\r\n"
            };
            out.extend_from_slice(reply);
        }
    }
}

fn largest_class<B: AsRef<[u8]> + AsMut<[u8]>>(store: &Store<B>) -> i32 {
    let stats = store.slabs().class_stats();
    let best = stats
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| c.pages)
        .map(|(i, _)| i);
    best.map_or(-2, |i| i as i32)
}

/// The key as `k` returns it: base64 again (with a ` b` after it) if it came in that way.
pub(crate) fn write_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        let mut buf = [0u8; 512];
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(key, &mut buf)
            .unwrap_or(0);
        out.extend_from_slice(&buf[..n]);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// The store's key for `bytes`, hashing it unless the caller already did.
pub(crate) fn key(bytes: &[u8], hash: Option<u64>) -> Key<'_> {
    match hash {
        Some(hash) => Key { bytes, hash },
        None => Key::new(bytes),
    }
}
