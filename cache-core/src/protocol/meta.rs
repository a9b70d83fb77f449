//! Meta commands (`mg ms md ma mn me`) and their flags, as memcached 1.6.18 parses them, plus the
//! newer flags kcache also accepts: `E` (client-supplied version), `x` (md: drop the value),
//! `s` on `ms` (return the stored size) and `N` on `ms` append (create on miss). `S<n>` on `ms`
//! (the early meta syntax for the data length) is accepted and ignored.
//!
//! Flag errors follow memcached's preparse: a repeated flag stops at once with `duplicate flag`,
//! an unknown one with `invalid flag`; bad numbers are remembered and the last one reported.
//! `md` and `ma` report every flag error as `invalid or duplicate flag`.

use base64::Engine as _;

use super::{
    classic::{fail, invalid},
    token::{strtol, strtoul, strtoull, Tokens},
    ErrorReply, Line, Meta, MetaSet, ParseError, Parsed, Parser, Request,
};

/// memcached's `MFLAG_MAX_OPT_LENGTH`: the most tokens a meta line may have.
const MAX_META_TOKENS: usize = 20;
/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`, counted with the `O` itself.
const MAX_OPAQUE: usize = 32;

const BAD_FORMAT: ErrorReply = ErrorReply::Client("bad command line format");
const BAD_TOKEN: &str = "bad token in command line format";
const OPAQUE_TOO_LONG: &str = "opaque token too long";

/// What `ms` or `ma` was asked to do (`M` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetaMode {
    #[default]
    Set,
    Add,
    Append,
    Prepend,
    Replace,
    Incr,
    Decr,
}

/// Parsed meta flags. `raw` keeps the flag tokens in request order for the reply pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaFlags<'a> {
    pub raw: &'a [u8],
    seen: u128,
    /// `N<ttl>`: create on miss (mg: lease placeholder; ma: seed with `J`; ms append).
    pub vivify: Option<i32>,
    /// `T<ttl>`: new TTL.
    pub ttl: Option<i32>,
    /// `R<ttl>`: win the recache token when less TTL than this remains.
    pub recache: Option<i32>,
    /// `C<cas>`: compare CAS.
    pub compare_cas: Option<u64>,
    /// `E<version>`: client-supplied version (becomes the item's CAS).
    pub version: Option<u64>,
    /// `F<flags>`: client flags for `ms`.
    pub client_flags: u32,
    /// `D<delta>` for `ma` (default 1).
    pub delta: u64,
    /// `J<initial>` for `ma` with `N`.
    pub initial: u64,
    pub mode: MetaMode,
    mode_char: u8,
}

impl<'a> MetaFlags<'a> {
    /// The same flags over another copy of their text (`Owned`).
    pub(crate) fn with_raw<'b>(&self, raw: &'b [u8]) -> MetaFlags<'b> {
        MetaFlags {
            raw,
            seen: self.seen,
            vivify: self.vivify,
            ttl: self.ttl,
            recache: self.recache,
            compare_cas: self.compare_cas,
            version: self.version,
            client_flags: self.client_flags,
            delta: self.delta,
            initial: self.initial,
            mode: self.mode,
            mode_char: self.mode_char,
        }
    }

    /// Whether flag character `c` was sent.
    pub fn has(&self, c: u8) -> bool {
        c < 128 && self.seen & (1u128 << c) != 0
    }

    /// The flag tokens in request order.
    pub fn tokens(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.raw.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    /// The key `key` stands for: decoded from base64 when `b` was sent.
    pub fn decode_key<'k>(&self, key: &'k [u8], scratch: &'k mut [u8; 256]) -> &'k [u8] {
        decode_key(key, self.has(b'b'), scratch)
    }
}

/// The key a meta command means: `raw` itself, or `raw` decoded from base64 when the command
/// said `b` (its validity was checked at parse time; an empty key is refused by every command).
pub fn decode_key<'k>(raw: &'k [u8], base64: bool, scratch: &'k mut [u8; 256]) -> &'k [u8] {
    if !base64 {
        return raw;
    }
    match base64::engine::general_purpose::STANDARD.decode_slice(raw, scratch) {
        Ok(n) => &scratch[..n],
        Err(_) => &[],
    }
}

/// Which meta command the flags belong to (for defaults and error texts).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Get,
    Set,
    Delete,
    Arith,
}

pub(super) fn dispatch<'a>(
    p: &Parser,
    line: Line<'a>,
    t: &Tokens<'a>,
) -> Result<Parsed<'a>, ParseError> {
    match t.get(0)[1] {
        b'g' => keyed(p, line, t, Cmd::Get),
        b's' => set(p, line, t),
        b'd' => keyed(p, line, t, Cmd::Delete),
        b'a' => keyed(p, line, t, Cmd::Arith),
        b'n' => Ok(Parsed {
            request: Request::MetaNoop,
            consumed: line.len,
        }),
        b'e' => debug(p, line, t),
        _ => fail(line.len, ErrorReply::Error, false),
    }
}

/// `mg`, `md`, `ma`: `<cm> <key> <flags>*`.
fn keyed<'a>(
    p: &Parser,
    line: Line<'a>,
    t: &Tokens<'a>,
    cmd: Cmd,
) -> Result<Parsed<'a>, ParseError> {
    if t.ntokens() < 3 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let key = t.get(1);
    if !p.key_ok(key) {
        return fail(line.len, BAD_FORMAT, false);
    }
    if t.ntokens() > MAX_META_TOKENS {
        let why = if cmd == Cmd::Get {
            "options flags are too long"
        } else {
            "options flags too long"
        };
        return fail(line.len, ErrorReply::Client(why), false);
    }
    let raw = t.from(2);
    let flags = match preparse(raw, key) {
        Ok(f) => f,
        Err(why) if cmd == Cmd::Get || why == OPAQUE_TOO_LONG => {
            return fail(line.len, ErrorReply::Client(why), false)
        }
        Err(_) => {
            return fail(
                line.len,
                ErrorReply::Client("invalid or duplicate flag"),
                false,
            )
        }
    };
    let mut flags = flags;
    if cmd == Cmd::Arith {
        match mode(cmd, flags.mode_char) {
            Some(m) => flags.mode = m,
            None => {
                return fail(
                    line.len,
                    ErrorReply::Client("invalid mode for ma M token"),
                    false,
                )
            }
        }
    }
    let m = Meta { key, flags };
    let request = match cmd {
        Cmd::Get => Request::MetaGet(m),
        Cmd::Delete => Request::MetaDelete(m),
        _ => Request::MetaArith(m),
    };
    Ok(Parsed {
        request,
        consumed: line.len,
    })
}

/// `ms <key> <datalen> <flags>*` and its data block.
fn set<'a>(p: &Parser, line: Line<'a>, t: &Tokens<'a>) -> Result<Parsed<'a>, ParseError> {
    if t.ntokens() < 3 {
        return fail(line.len, ErrorReply::Error, false);
    }
    let key = t.get(1);
    if !p.key_ok(key) || t.ntokens() == 3 {
        return fail(line.len, BAD_FORMAT, false);
    }
    if t.ntokens() > MAX_META_TOKENS {
        return fail(
            line.len,
            ErrorReply::Client("options flags too long"),
            false,
        );
    }
    let vlen = match strtol(t.get(2)) {
        Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
        _ => return fail(line.len, BAD_FORMAT, false),
    };
    // From here on every error swallows the data block, as memcached does.
    let swallow = line.len + vlen + 2;
    let raw = t.from(3);
    let mut flags = match preparse(raw, key) {
        Ok(f) => f,
        Err(why) => return Err(invalid(swallow, ErrorReply::Client(why))),
    };
    match mode(Cmd::Set, flags.mode_char) {
        Some(m) => flags.mode = m,
        None => {
            return Err(invalid(
                swallow,
                ErrorReply::Client("invalid mode for ms M token"),
            ))
        }
    }
    // Meta commands always answer errors, and a refused `ms` drops the key's item.
    let value = match line.block(p, key, vlen, true, true) {
        Ok(value) => value,
        Err(done) => return done,
    };
    Ok(Parsed {
        request: Request::MetaSet(MetaSet { key, flags, value }),
        consumed: swallow,
    })
}

/// `me <key> [b]`.
fn debug<'a>(p: &Parser, line: Line<'a>, t: &Tokens<'a>) -> Result<Parsed<'a>, ParseError> {
    let key = t.get(1);
    if t.ntokens() < 3 || !p.key_ok(key) {
        return fail(line.len, BAD_FORMAT, false);
    }
    let base64 = t.ntokens() >= 4 && t.get(2) == b"b";
    if base64 && !base64_ok(key) {
        return fail(line.len, BAD_FORMAT, false);
    }
    Ok(Parsed {
        request: Request::MetaDebug { key, base64 },
        consumed: line.len,
    })
}

fn base64_ok(key: &[u8]) -> bool {
    let mut scratch = [0u8; 256];
    matches!(base64::engine::general_purpose::STANDARD.decode_slice(key, &mut scratch), Ok(n) if n > 0)
}

/// memcached's `_meta_flag_preparse`, returning the error text on failure.
fn preparse<'a>(raw: &'a [u8], key: &[u8]) -> Result<MetaFlags<'a>, &'static str> {
    let mut f = MetaFlags {
        raw,
        delta: 1,
        ..MetaFlags::default()
    };
    let mut error: Option<&'static str> = None;
    for tok in f.tokens() {
        let c = tok[0];
        if c >= 127 || f.has(c) {
            return Err("duplicate flag");
        }
        f.seen |= 1u128 << c;
        let arg = &tok[1..];
        match c {
            b'b' => {
                if !base64_ok(key) {
                    error = Some("error decoding key");
                }
            }
            b'N' | b'T' | b'R' => match strtol(arg) {
                Some(v) if c == b'N' => f.vivify = Some(v),
                Some(v) if c == b'T' => f.ttl = Some(v),
                Some(v) => f.recache = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'O' => {
                if tok.len() > MAX_OPAQUE {
                    error = Some(OPAQUE_TOO_LONG);
                }
            }
            b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'l' | b'u' | b'q'
            | b'I' | b'x' | b'S' => {}
            b'F' => match strtoul(arg) {
                Some(v) => f.client_flags = v,
                None => error = Some("bad command line format"),
            },
            b'C' => match strtoull(arg) {
                Some(v) => f.compare_cas = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'E' => match strtoull(arg) {
                Some(v) => f.version = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'M' => {
                if tok.len() != 2 {
                    error = Some("incorrect length for M token");
                } else {
                    f.mode_char = arg[0];
                }
            }
            b'J' => match strtoull(arg) {
                Some(v) => f.initial = v,
                None => error = Some("invalid numeric initial value"),
            },
            b'D' => match strtoull(arg) {
                Some(v) => f.delta = v,
                None => error = Some("invalid numeric delta value"),
            },
            _ => return Err("invalid flag"),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(f),
    }
}

/// The mode for `M<c>` (0 = not sent), with memcached 1.6.18's letters.
fn mode(cmd: Cmd, c: u8) -> Option<MetaMode> {
    match (cmd, c) {
        (Cmd::Arith, 0 | b'I' | b'+') => Some(MetaMode::Incr),
        (Cmd::Arith, b'D' | b'-') => Some(MetaMode::Decr),
        (Cmd::Arith, _) => None,
        (_, 0 | b'S') => Some(MetaMode::Set),
        (_, b'E') => Some(MetaMode::Add),
        (_, b'A') => Some(MetaMode::Append),
        (_, b'P') => Some(MetaMode::Prepend),
        (_, b'R') => Some(MetaMode::Replace),
        (_, _) => None,
    }
}
