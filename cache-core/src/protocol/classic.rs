//! Command dispatch and the classic commands, following memcached 1.6's `process_command_ascii`:
//! token-count checks answer `ERROR`, malformed arguments `CLIENT_ERROR ...`, and a trailing
//! `noreply` silences even the error (memcached's `out_string` does the same).

use super::{
    lease, meta,
    token::{strtol, strtoul, strtoull, Tokens},
    Arith, Delete, ErrorReply, Get, Invalid, Keys, Line, ParseError, Parsed, Parser, Request,
    Slabs, Store, StoreCmd, Touch,
};

const BAD_FORMAT: ErrorReply = ErrorReply::Client("bad command line format");
const BAD_EXPTIME: ErrorReply = ErrorReply::Client("invalid exptime argument");

pub(super) fn dispatch<'a>(p: &Parser, line: Line<'a>) -> Result<Parsed<'a>, ParseError> {
    let t = Tokens::split(line.text);
    let cmd = t.get(0);
    if t.is_empty() || cmd.len() < 2 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let done = |request| {
        Ok(Parsed {
            request,
            consumed: line.len,
        })
    };
    if cmd.len() == 2 && cmd[0] == b'm' {
        return meta::dispatch(p, line, &t);
    }
    match cmd {
        b"get" | b"bget" => get(p, line, &t, false, false),
        b"gets" => get(p, line, &t, true, false),
        b"gat" => get(p, line, &t, false, true),
        b"gats" => get(p, line, &t, true, true),
        b"set" => storage(p, line, &t, StoreCmd::Set),
        b"add" => storage(p, line, &t, StoreCmd::Add),
        b"replace" => storage(p, line, &t, StoreCmd::Replace),
        b"append" => storage(p, line, &t, StoreCmd::Append),
        b"prepend" => storage(p, line, &t, StoreCmd::Prepend),
        b"cas" => storage(p, line, &t, StoreCmd::Cas),
        b"incr" => arith(p, line, &t, true),
        b"decr" => arith(p, line, &t, false),
        b"delete" => delete(p, line, &t),
        b"touch" => touch(p, line, &t),
        b"flush_all" => flush_all(line, &t),
        b"stats" => done(Request::Stats(t.from(1))),
        b"version" => done(Request::Version),
        b"quit" => done(Request::Quit),
        b"shutdown" => done(Request::Shutdown),
        b"verbosity" => verbosity(line, &t),
        b"slabs" => slabs(line, &t),
        b"lease-get" => lease::get(p, line, &t),
        b"lease-set" => lease::set(p, line, &t),
        // An HTTP request sent to a cache port: memcached hangs up without a word.
        _ if t.last().starts_with(b"HTTP/") => Err(ParseError::Invalid(Invalid {
            reply: None,
            consumed: line.len,
            close: true,
        })),
        _ => fail(line.len, ErrorReply::Error, false),
    }
}

/// An error reply after `consumed` bytes, silenced by `noreply`.
pub(super) fn fail<T>(consumed: usize, reply: ErrorReply, noreply: bool) -> Result<T, ParseError> {
    Err(ParseError::Invalid(Invalid {
        reply: (!noreply).then_some(reply),
        consumed,
        close: false,
    }))
}

/// `get <keys>` / `gets <keys>` without tokenizing: the prefix says it all, and the keys are
/// validated as they are walked. Anything unusual (leading spaces, NUL, no key) takes the
/// general path.
pub(super) fn fast_get<'a>(p: &Parser, line: Line<'a>) -> Option<Result<Parsed<'a>, ParseError>> {
    let t = line.text;
    let (cas, rest) = if let Some(rest) = t.strip_prefix(b"get ") {
        (false, rest)
    } else {
        (true, t.strip_prefix(b"gets ")?)
    };
    if rest.first().is_none_or(|&b| b == b' ') || memchr::memchr(0, rest).is_some() {
        return None;
    }
    let keys = Keys::new(rest);
    if keys.iter().any(|k| !p.key_ok(k)) {
        return Some(fail(line.len, BAD_FORMAT, false));
    }
    Some(Ok(Parsed {
        request: Request::Get(Get {
            cas,
            touch: None,
            keys,
        }),
        consumed: line.len,
    }))
}

fn get<'a>(
    p: &Parser,
    line: Line<'a>,
    t: &Tokens<'a>,
    cas: bool,
    touch: bool,
) -> Result<Parsed<'a>, ParseError> {
    if t.ntokens() < 3 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let mut exptime = None;
    let mut first = 1;
    if touch {
        exptime = Some(strtol(t.get(1)).ok_or_else(|| invalid(line.len, BAD_EXPTIME))?);
        first = 2;
    }
    // Keys run from the first key token to the end of the line, including any unsplit rest.
    let text = t.from(first);
    let keys = Keys::new(text);
    if keys.iter().any(|k| !p.key_ok(k)) {
        return fail(line.len, BAD_FORMAT, false);
    }
    Ok(Parsed {
        request: Request::Get(Get {
            cas,
            touch: exptime,
            keys,
        }),
        consumed: line.len,
    })
}

pub(super) fn invalid(consumed: usize, reply: ErrorReply) -> ParseError {
    ParseError::Invalid(Invalid {
        reply: Some(reply),
        consumed,
        close: false,
    })
}

fn storage<'a>(
    p: &Parser,
    line: Line<'a>,
    t: &Tokens<'a>,
    cmd: StoreCmd,
) -> Result<Parsed<'a>, ParseError> {
    let is_cas = cmd == StoreCmd::Cas;
    let (lo, hi) = if is_cas { (7, 8) } else { (6, 7) };
    if t.ntokens() != lo && t.ntokens() != hi {
        return fail(line.len, ErrorReply::Error, false);
    }
    let noreply = t.noreply();
    let key = t.get(1);
    if !p.key_ok(key) {
        return fail(line.len, BAD_FORMAT, noreply);
    }
    let (Some(flags), Some(exptime), Some(vlen)) =
        (strtoul(t.get(2)), strtol(t.get(3)), strtol(t.get(4)))
    else {
        return fail(line.len, BAD_FORMAT, noreply);
    };
    let mut cas = 0;
    if is_cas {
        match strtoull(t.get(5)) {
            Some(c) => cas = c,
            None => return fail(line.len, BAD_FORMAT, noreply),
        }
    }
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return fail(line.len, BAD_FORMAT, noreply);
    }
    let vlen = vlen as usize;
    let value = match line.block(p, key, vlen, cmd == StoreCmd::Set, !noreply) {
        Ok(value) => value,
        Err(done) => return done,
    };
    let request = Request::Store(Store {
        cmd,
        key,
        flags,
        exptime,
        cas,
        value,
        noreply,
    });
    Ok(Parsed {
        request,
        consumed: line.len + vlen + 2,
    })
}

/// `<cmd> <key> <arg> [noreply]` (incr, decr, touch): the token count, `noreply` and the key,
/// checked in memcached's order. Returns the key and `noreply`.
fn key_and_arg<'a>(
    p: &Parser,
    line: &Line<'a>,
    t: &Tokens<'a>,
) -> Result<(&'a [u8], bool), ParseError> {
    if t.ntokens() != 4 && t.ntokens() != 5 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let noreply = t.noreply();
    let key = t.get(1);
    if !p.key_ok(key) {
        return fail(line.len, BAD_FORMAT, noreply);
    }
    Ok((key, noreply))
}

fn arith<'a>(
    p: &Parser,
    line: Line<'a>,
    t: &Tokens<'a>,
    incr: bool,
) -> Result<Parsed<'a>, ParseError> {
    let (key, noreply) = key_and_arg(p, &line, t)?;
    let Some(delta) = strtoull(t.get(2)) else {
        let why = ErrorReply::Client("invalid numeric delta argument");
        return fail(line.len, why, noreply);
    };
    let request = Request::Arith(Arith {
        incr,
        key,
        delta,
        noreply,
    });
    Ok(Parsed {
        request,
        consumed: line.len,
    })
}

fn delete<'a>(p: &Parser, line: Line<'a>, t: &Tokens<'a>) -> Result<Parsed<'a>, ParseError> {
    let n = t.ntokens();
    if !(3..=5).contains(&n) {
        return fail(line.len, ErrorReply::Error, false);
    }
    let mut noreply = false;
    if n > 3 {
        // memcached still accepts the ancient `delete <key> 0` hold time, and nothing else.
        let hold_is_zero = t.get(2) == b"0";
        noreply = t.noreply();
        let valid = (n == 4 && (hold_is_zero || noreply)) || (n == 5 && hold_is_zero && noreply);
        if !valid {
            let why = "bad command line format.  Usage: delete <key> [noreply]";
            return fail(line.len, ErrorReply::Client(why), noreply);
        }
    }
    let key = t.get(1);
    if !p.key_ok(key) {
        return fail(line.len, BAD_FORMAT, noreply);
    }
    Ok(Parsed {
        request: Request::Delete(Delete { key, noreply }),
        consumed: line.len,
    })
}

fn touch<'a>(p: &Parser, line: Line<'a>, t: &Tokens<'a>) -> Result<Parsed<'a>, ParseError> {
    let (key, noreply) = key_and_arg(p, &line, t)?;
    let Some(exptime) = strtol(t.get(2)) else {
        return fail(line.len, BAD_EXPTIME, noreply);
    };
    let request = Request::Touch(Touch {
        key,
        exptime,
        noreply,
    });
    Ok(Parsed {
        request,
        consumed: line.len,
    })
}

fn flush_all<'a>(line: Line<'a>, t: &Tokens<'a>) -> Result<Parsed<'a>, ParseError> {
    let n = t.ntokens();
    if !(2..=4).contains(&n) {
        return fail(line.len, ErrorReply::Error, false);
    }
    let noreply = t.noreply();
    let mut delay = 0;
    if n != if noreply { 3 } else { 2 } {
        match strtol(t.get(1)) {
            Some(d) => delay = d,
            None => return fail(line.len, BAD_EXPTIME, noreply),
        }
    }
    Ok(Parsed {
        request: Request::FlushAll { delay, noreply },
        consumed: line.len,
    })
}

fn verbosity<'a>(line: Line<'a>, t: &Tokens<'a>) -> Result<Parsed<'a>, ParseError> {
    if t.ntokens() != 3 && t.ntokens() != 4 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let noreply = t.noreply();
    if strtoul(t.get(1)).is_none() {
        return fail(line.len, BAD_FORMAT, noreply);
    }
    Ok(Parsed {
        request: Request::Verbosity { noreply },
        consumed: line.len,
    })
}

fn slabs<'a>(line: Line<'a>, t: &Tokens<'a>) -> Result<Parsed<'a>, ParseError> {
    let done = |s| {
        Ok(Parsed {
            request: Request::Slabs(s),
            consumed: line.len,
        })
    };
    match (t.get(1), t.ntokens()) {
        (b"reassign", 5) => match (strtol(t.get(2)), strtol(t.get(3))) {
            (Some(src), Some(dst)) => done(Slabs::Reassign { src, dst }),
            _ => fail(line.len, BAD_FORMAT, false),
        },
        (b"automove", 4) => match strtoul(t.get(2)) {
            Some(n) if n <= 2 => done(Slabs::Automove(n)),
            _ => fail(line.len, BAD_FORMAT, false),
        },
        _ => fail(line.len, ErrorReply::Error, false),
    }
}
