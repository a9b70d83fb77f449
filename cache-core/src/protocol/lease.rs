//! mcrouter's lease commands, the ASCII form of Facebook's leases:
//!
//! ```text
//! lease-get <key>*\r\n
//! lease-set <key> <token> <flags> <exptime> <bytes> [noreply]\r\n<data>\r\n
//! ```
//!
//! Replies (per key of `lease-get`, then `END`): `VALUE <key> <flags> <bytes>` on a hit,
//! `LVALUE <key> <token> <flags> <bytes>` when the caller gets the lease, `NOT_FOUND_HOT` while
//! another caller holds it. `lease-set` answers like `set`, refusing a stale token with
//! `NOT_STORED`.

use super::{
    classic::fail,
    token::{strtol, strtoul, strtoull, Tokens},
    ErrorReply, Keys, LeaseSet, Line, ParseError, Parsed, Parser, Request,
};

const BAD_FORMAT: ErrorReply = ErrorReply::Client("bad command line format");

pub(super) fn get<'a>(
    p: &Parser,
    line: Line<'a>,
    t: &Tokens<'a>,
) -> Result<Parsed<'a>, ParseError> {
    if t.ntokens() < 3 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let keys = Keys::new(t.from(1));
    if keys.iter().any(|k| !p.key_ok(k)) {
        return fail(line.len, BAD_FORMAT, false);
    }
    Ok(Parsed {
        request: Request::LeaseGet(keys),
        consumed: line.len,
    })
}

pub(super) fn set<'a>(
    p: &Parser,
    line: Line<'a>,
    t: &Tokens<'a>,
) -> Result<Parsed<'a>, ParseError> {
    if t.ntokens() != 7 && t.ntokens() != 8 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let noreply = t.noreply();
    let key = t.get(1);
    if !p.key_ok(key) {
        return fail(line.len, BAD_FORMAT, noreply);
    }
    let (Some(token), Some(flags), Some(exptime), Some(vlen)) = (
        strtoull(t.get(2)),
        strtoul(t.get(3)),
        strtol(t.get(4)),
        strtol(t.get(5)),
    ) else {
        return fail(line.len, BAD_FORMAT, noreply);
    };
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return fail(line.len, BAD_FORMAT, noreply);
    }
    let vlen = vlen as usize;
    let value = match line.block(p, key, vlen, false, !noreply) {
        Ok(value) => value,
        Err(done) => return done,
    };
    let request = Request::LeaseSet(LeaseSet {
        key,
        token,
        flags,
        exptime,
        value,
        noreply,
    });
    Ok(Parsed {
        request,
        consumed: line.len + vlen + 2,
    })
}
