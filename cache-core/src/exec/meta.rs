//! Meta command replies. Return flags come back in the order the request sent them, and `t`
//! shows the TTL as it stood at that point of the flag list (a `T` before it already applies),
//! as in memcached 1.6.18.

use super::{write_key, NON_NUMERIC};
use crate::{
    protocol::{
        encode::{self, meta_num, num},
        ErrorReply, Meta, MetaMode, MetaSet,
    },
    store::{
        item::ITEM_KEY_BINARY, realtime, ArithOutcome, DeleteOutcome, Key, MetaDeleteArgs,
        MetaGetArgs, Mode, Store, StoreOutcome, Write,
    },
};

/// `t`: remaining TTL, `-1` for none, computed as memcached does (unsigned wrap included).
fn ttl(out: &mut Vec<u8>, exptime: u32, now: u32) {
    if exptime == 0 {
        out.extend_from_slice(b" t-1");
    } else {
        meta_num(out, b't', exptime.wrapping_sub(now));
    }
}

pub(super) fn get<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    m: &Meta<'_>,
    hash: Option<u64>,
    now: u32,
    out: &mut Vec<u8>,
) {
    let f = &m.flags;
    let mut scratch = [0u8; 256];
    let key = f.decode_key(m.key, &mut scratch);
    let args = MetaGetArgs {
        vivify: f.vivify,
        ttl: f.ttl,
        recache: f.recache,
        no_bump: f.has(b'u'),
        version: f.version,
        // memcached 1.6.18 does not mark a placeholder made by `N` as a binary key, so `k`
        // echoes it decoded.
        key_binary: false,
        ttl_after_vivify: {
            let pos = |c: u8| f.tokens().position(|t| t[0] == c);
            matches!((pos(b'N'), pos(b'T')), (Some(n), Some(t)) if t > n)
        },
    };
    let Some(hit) = store.meta_get(super::key(key, hash), args, now) else {
        if !f.has(b'q') {
            out.extend_from_slice(b"EN");
            echo_opaque_and_key(out, f, key, f.has(b'b'));
            out.extend_from_slice(encode::CRLF);
        }
        return;
    };
    let it = store.view(hit.id);
    let h = it.header;
    // Newer memcached: `C<cas>` with `v` skips the value when the client already has it.
    let send_value = f.has(b'v') && f.compare_cas != Some(h.cas);
    if send_value {
        out.extend_from_slice(b"VA ");
        num(out, it.value.len());
    } else {
        out.extend_from_slice(b"HD");
    }
    let mut exptime = hit.exptime_before;
    for tok in f.tokens() {
        match tok[0] {
            b'T' => exptime = realtime(f.ttl.unwrap_or(0), now),
            b'N' if hit.created => exptime = realtime(f.vivify.unwrap_or(0), now),
            b's' => meta_num(out, b's', it.value.len()),
            b't' => ttl(out, exptime, now),
            b'c' => meta_num(out, b'c', h.cas),
            b'f' => meta_num(out, b'f', h.flags),
            b'l' => meta_num(out, b'l', now.wrapping_sub(hit.atime_before)),
            b'h' => out.extend_from_slice(if hit.fetched_before { b" h1" } else { b" h0" }),
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            b'k' => write_key(out, it.key, h.has(ITEM_KEY_BINARY)),
            _ => {}
        }
    }
    crate::lease::write_flags(out, hit.grant);
    out.extend_from_slice(encode::CRLF);
    if send_value {
        out.extend_from_slice(it.value);
        out.extend_from_slice(encode::CRLF);
    }
}

fn echo_opaque_and_key(
    out: &mut Vec<u8>,
    f: &crate::protocol::MetaFlags<'_>,
    key: &[u8],
    bin: bool,
) {
    for tok in f.tokens() {
        match tok[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            b'k' => write_key(out, key, bin),
            _ => {}
        }
    }
}

pub(super) fn set<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    m: &MetaSet<'_>,
    hash: Option<u64>,
    now: u32,
    out: &mut Vec<u8>,
) {
    let f = &m.flags;
    let mut scratch = [0u8; 256];
    let key = super::key(f.decode_key(m.key, &mut scratch), hash);
    let mut mode = match f.mode {
        MetaMode::Add => Mode::Add,
        MetaMode::Append => Mode::Append,
        MetaMode::Prepend => Mode::Prepend,
        MetaMode::Replace => Mode::Replace,
        _ => Mode::Set,
    };
    // A CAS turns set and replace into cas, as in memcached.
    if f.compare_cas.is_some() && matches!(mode, Mode::Set | Mode::Replace) {
        mode = Mode::Cas;
    }
    let w = Write {
        value: m.value,
        flags: f.client_flags,
        exptime: realtime(f.ttl.unwrap_or(0), now),
        cas: f.compare_cas.unwrap_or(0),
        set_stale: f.has(b'I') && mode == Mode::Cas,
        version: f.version,
        key_binary: f.has(b'b'),
        vivify: f.vivify.map(|n| realtime(n, now)),
    };
    let (outcome, cas) = store.store(mode, key, w, now);
    let code: &[u8] = match outcome {
        StoreOutcome::Stored if f.has(b'q') => return,
        StoreOutcome::Stored => b"HD",
        StoreOutcome::NotStored => b"NS",
        StoreOutcome::Exists => b"EX",
        StoreOutcome::NotFound => b"NF",
        StoreOutcome::NoMemory => {
            store.drop_key(key, now);
            ErrorReply::Server("out of memory storing object").write(out);
            return;
        }
    };
    out.extend_from_slice(code);
    for tok in f.tokens() {
        match tok[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            b'k' => write_key(out, key.bytes, f.has(b'b')),
            b'c' => meta_num(out, b'c', cas),
            b's' if outcome == StoreOutcome::Stored => {
                let size = store
                    .peek(key, now)
                    .map_or(0, |id| store.view(id).value.len());
                meta_num(out, b's', size);
            }
            _ => {}
        }
    }
    out.extend_from_slice(encode::CRLF);
}

pub(super) fn delete<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    m: &Meta<'_>,
    hash: Option<u64>,
    now: u32,
    out: &mut Vec<u8>,
) {
    let f = &m.flags;
    let mut scratch = [0u8; 256];
    let key = f.decode_key(m.key, &mut scratch);
    let args = MetaDeleteArgs {
        cas: f.compare_cas,
        invalidate: f.has(b'I'),
        ttl: f.ttl,
        version: f.version,
        drop_value: f.has(b'x'),
    };
    let code: &[u8] = match store.meta_delete(super::key(key, hash), args, now) {
        DeleteOutcome::Deleted if f.has(b'q') => return,
        DeleteOutcome::Deleted => b"HD",
        DeleteOutcome::NotFound => b"NF",
        DeleteOutcome::Exists => b"EX",
    };
    out.extend_from_slice(code);
    echo_opaque_and_key(out, f, key, f.has(b'b'));
    out.extend_from_slice(encode::CRLF);
}

pub(super) fn arith<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    m: &Meta<'_>,
    hash: Option<u64>,
    now: u32,
    out: &mut Vec<u8>,
) {
    let f = &m.flags;
    let mut scratch = [0u8; 256];
    let key = f.decode_key(m.key, &mut scratch);
    let incr = f.mode != MetaMode::Decr;
    let (r, created) = store.meta_arith(
        super::key(key, hash),
        incr,
        f.delta,
        f.compare_cas.unwrap_or(0),
        f.vivify,
        f.initial,
        f.version,
        now,
    );
    let (value, id) = match r {
        ArithOutcome::Value(v, id) => (v, id),
        ArithOutcome::NonNumeric => return ErrorReply::Client(NON_NUMERIC).write(out),
        ArithOutcome::NoMemory => return ErrorReply::Server("out of memory").write(out),
        ArithOutcome::NotFound | ArithOutcome::Exists => {
            out.extend_from_slice(if r == ArithOutcome::Exists {
                b"EX"
            } else {
                b"NF"
            });
            echo_opaque_and_key(out, f, key, f.has(b'b'));
            out.extend_from_slice(encode::CRLF);
            return;
        }
    };
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value).as_bytes();
    let h = store.view(id).header;
    let mut line = Vec::with_capacity(64);
    if f.has(b'v') {
        line.extend_from_slice(b"VA ");
        num(&mut line, digits.len());
    } else {
        line.extend_from_slice(b"HD");
    }
    let mut exptime = h.exptime;
    for tok in f.tokens() {
        match tok[0] {
            b'c' => meta_num(&mut line, b'c', h.cas),
            b't' => ttl(&mut line, exptime, now),
            b'T' => exptime = realtime(f.ttl.unwrap_or(0), now),
            b'N' if created => exptime = realtime(f.vivify.unwrap_or(0), now),
            b'O' => {
                line.push(b' ');
                line.extend_from_slice(tok);
            }
            b'k' => write_key(&mut line, key, f.has(b'b')),
            _ => {}
        }
    }
    store.set_ttl(id, exptime);
    // memcached's `q` hides a successful delta, but not the reply for an item `N` just created.
    if f.has(b'q') && !created {
        return;
    }
    out.extend_from_slice(&line);
    out.extend_from_slice(encode::CRLF);
    if f.has(b'v') {
        out.extend_from_slice(digits);
        out.extend_from_slice(encode::CRLF);
    }
}

/// `me <key>`: memcached's debug line (its `exp` is `now - exptime`, negative while live).
pub(super) fn debug<B: AsRef<[u8]> + AsMut<[u8]>>(
    store: &mut Store<B>,
    raw: &[u8],
    base64: bool,
    now: u32,
    out: &mut Vec<u8>,
) {
    let mut scratch = [0u8; 256];
    let key = crate::protocol::meta::decode_key(raw, base64, &mut scratch);
    let Some(id) = store.peek(Key::new(key), now) else {
        out.extend_from_slice(encode::EN);
        return;
    };
    let cls = store.class_of(id);
    let it = store.view(id);
    let h = it.header;
    out.extend_from_slice(b"ME ");
    if h.has(ITEM_KEY_BINARY) {
        let mut k = Vec::new();
        write_key(&mut k, it.key, true);
        // write_key adds " k" and " b"; `me` wants the bare encoding.
        out.extend_from_slice(&k[2..k.len() - 2]);
    } else {
        out.extend_from_slice(it.key);
    }
    let exp: i64 = if h.exptime == 0 {
        -1
    } else {
        i64::from(now) - i64::from(h.exptime)
    };
    let fetched = if h.has(crate::store::item::ITEM_FETCHED) {
        "yes"
    } else {
        "no"
    };
    let line = format!(
        " exp={exp} la={} cas={} fetch={fetched} cls={cls} size={}\r\n",
        now.wrapping_sub(h.atime),
        h.cas,
        h.total_len()
    );
    out.extend_from_slice(line.as_bytes());
}
