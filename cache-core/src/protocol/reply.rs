//! Where a server's reply ends: what a client of memcached-protocol servers (an outbound
//! connection, the router) needs to split a pipelined stream of replies without a second
//! parser for every command.
//!
//! The shape depends on what was asked ([`Expect`]):
//! - [`Expect::Line`]: one line (`STORED`, `DELETED`, a number, `HD …`, `MN`, `VERSION …`,
//!   `OK`, `ME …`, any error);
//! - [`Expect::Meta`]: one line, plus `<n>` data bytes and `\r\n` when it is `VA <n> …`;
//! - [`Expect::Values`]: `VALUE`/`LVALUE` blocks and `NOT_FOUND_HOT` lines up to `END` (a
//!   retrieval, mcrouter's `lease-get`);
//! - [`Expect::Stats`]: `STAT` lines up to `END`;
//! - [`Expect::Quiet`]: a meta request sent in quiet mode (`q`) followed by `mn`: its reply, if
//!   it has one, then `MN` — so a quiet request's silence is framed too.
//!
//! An error line (`ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`) ends any reply.

use super::{token::strtol, Request};

/// What a request's reply looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Line,
    Meta,
    Values,
    Stats,
    Quiet,
}

/// How much of a buffer one reply takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The reply is the first `n` bytes.
    Whole(usize),
    /// Not all here yet.
    Partial,
    /// Not a reply this request can get (the stream is out of step: drop the connection).
    Bad,
}

impl Expect {
    /// The reply `req` gets, or `None` when it gets none (`noreply`).
    pub fn of(req: &Request<'_>) -> Option<Expect> {
        Some(match req {
            Request::Get(_) | Request::LeaseGet(_) => Expect::Values,
            Request::Stats(_) => Expect::Stats,
            Request::MetaGet(_) | Request::MetaSet(_) | Request::MetaDelete(_) => Expect::Meta,
            Request::MetaArith(_) => Expect::Meta,
            Request::Store(s) if s.noreply => return None,
            Request::Arith(a) if a.noreply => return None,
            Request::Delete(d) if d.noreply => return None,
            Request::Touch(t) if t.noreply => return None,
            Request::LeaseSet(l) if l.noreply => return None,
            Request::FlushAll { noreply: true, .. } | Request::Verbosity { noreply: true } => {
                return None
            }
            _ => Expect::Line,
        })
    }

    /// How much of `buf` the reply takes.
    pub fn frame(self, buf: &[u8]) -> Frame {
        match self {
            Expect::Line => match line(buf) {
                Some((_, n)) => Frame::Whole(n),
                None => Frame::Partial,
            },
            Expect::Meta => meta(buf),
            Expect::Values => blocks(buf, false),
            Expect::Stats => blocks(buf, true),
            Expect::Quiet => quiet(buf),
        }
    }

    /// Whether `req` is a meta request in quiet mode (`q`): its success gets no reply, so
    /// whoever forwards it sends `mn` after it and expects [`Expect::Quiet`].
    pub fn is_quiet(req: &Request<'_>) -> bool {
        match req {
            Request::MetaGet(m) | Request::MetaDelete(m) | Request::MetaArith(m) => {
                m.flags.has(b'q')
            }
            Request::MetaSet(m) => m.flags.has(b'q'),
            _ => false,
        }
    }
}

/// What `mn` is answered with.
pub const MN: &[u8] = b"MN\r\n";

/// A quiet request's reply (maybe none) and the `MN` after it.
fn quiet(buf: &[u8]) -> Frame {
    if buf.starts_with(MN) {
        return Frame::Whole(MN.len());
    }
    if buf.len() < MN.len() && MN.starts_with(buf) {
        return Frame::Partial;
    }
    match meta(buf) {
        Frame::Whole(n) => {
            let rest = &buf[n..];
            if rest.starts_with(MN) {
                Frame::Whole(n + MN.len())
            } else if rest.len() < MN.len() && MN.starts_with(rest) {
                Frame::Partial
            } else {
                Frame::Bad
            }
        }
        other => other,
    }
}

/// The first line (without `\r\n`) and its length with it.
fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let nl = memchr::memchr(b'\n', buf)?;
    let text = &buf[..nl];
    Some((text.strip_suffix(b"\r").unwrap_or(text), nl + 1))
}

/// Whether a reply line (without `\r\n`, or with it) is an error: `ERROR`, `CLIENT_ERROR …`,
/// `SERVER_ERROR …`.
pub fn is_error(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    line == b"ERROR"
        || line.starts_with(b"ERROR ")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// The data length a `VALUE`/`LVALUE`/`VA` line announces: its `at`th word.
fn data_len(line: &[u8], at: usize) -> Option<usize> {
    let word = line
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .nth(at)?;
    let n = strtol(word)?;
    usize::try_from(n).ok()
}

fn meta(buf: &[u8]) -> Frame {
    let Some((text, n)) = line(buf) else {
        return Frame::Partial;
    };
    if !text.starts_with(b"VA ") {
        return Frame::Whole(n);
    }
    let Some(len) = data_len(text, 1) else {
        return Frame::Bad;
    };
    with_data(buf, n, len)
}

/// A line of `n` bytes followed by `len` data bytes and `\r\n`.
fn with_data(buf: &[u8], n: usize, len: usize) -> Frame {
    let end = n + len + 2;
    if buf.len() < end {
        return Frame::Partial;
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Frame::Bad;
    }
    Frame::Whole(end)
}

fn blocks(buf: &[u8], stats: bool) -> Frame {
    let mut at = 0;
    loop {
        let Some((text, n)) = line(&buf[at..]) else {
            return Frame::Partial;
        };
        if text == b"END" || is_error(text) {
            return Frame::Whole(at + n);
        }
        let len = if stats {
            if !text.starts_with(b"STAT ") {
                return Frame::Bad;
            }
            0
        } else if text.starts_with(b"VALUE ") {
            match data_len(text, 3) {
                Some(len) => len + 2,
                None => return Frame::Bad,
            }
        } else if text.starts_with(b"LVALUE ") {
            match data_len(text, 4) {
                Some(len) => len + 2,
                None => return Frame::Bad,
            }
        } else if text == b"NOT_FOUND_HOT" {
            0
        } else {
            return Frame::Bad;
        };
        if len > 0 {
            match with_data(&buf[at..], n, len - 2) {
                Frame::Whole(w) => at += w,
                other => return other,
            }
        } else {
            at += n;
        }
    }
}

/// One block of a retrieval reply ([`Expect::Values`]), as [`values`] walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block<'a> {
    /// A `VALUE`/`LVALUE` block of `key`: its whole text, data and `\r\n` included.
    Value { key: &'a [u8], text: &'a [u8] },
    /// `NOT_FOUND_HOT` (`lease-get`: someone else holds the lease).
    Hot(&'a [u8]),
    /// An error line (without `\r\n`): the reply ends with it.
    Error(&'a [u8]),
}

/// The blocks of one whole retrieval reply (as framed by [`Expect::Values`]), up to `END` or an
/// error; `None` if it is not one.
pub fn values(reply: &[u8]) -> Option<Vec<Block<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (text, n) = line(&reply[at..])?;
        if text == b"END" {
            return Some(out);
        }
        if is_error(text) {
            out.push(Block::Error(text));
            return Some(out);
        }
        if text == b"NOT_FOUND_HOT" {
            out.push(Block::Hot(&reply[at..at + n]));
            at += n;
            continue;
        }
        let len_at = if text.starts_with(b"VALUE ") {
            3
        } else if text.starts_with(b"LVALUE ") {
            4
        } else {
            return None;
        };
        let key = text
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .nth(1)?;
        let len = data_len(text, len_at)?;
        let Frame::Whole(w) = with_data(&reply[at..], n, len) else {
            return None;
        };
        out.push(Block::Value {
            key,
            text: &reply[at..at + w],
        });
        at += w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_framed_by_what_was_asked() {
        let cases: &[(Expect, &[u8], Frame)] = &[
            (Expect::Line, b"STORED\r\nEND", Frame::Whole(8)),
            (Expect::Line, b"STOR", Frame::Partial),
            (Expect::Meta, b"HD c5\r\n", Frame::Whole(7)),
            (Expect::Meta, b"VA 3 t-1\r\nabc\r\nMN\r\n", Frame::Whole(15)),
            (Expect::Meta, b"VA 3 t-1\r\nab", Frame::Partial),
            (Expect::Meta, b"VA 3\r\nabcd\r\n", Frame::Bad),
            (Expect::Meta, b"VA x\r\n", Frame::Bad),
            (Expect::Meta, b"EN\r\n", Frame::Whole(4)),
            // A value holding `\r\nEND\r\n` is data, not the end.
            (
                Expect::Values,
                b"VALUE a 0 7\r\n\r\nEND\r\n\r\nEND\r\nnext",
                Frame::Whole(27),
            ),
            (Expect::Values, b"VALUE a 0 7 99\r\nabc", Frame::Partial),
            (Expect::Values, b"END\r\n", Frame::Whole(5)),
            (
                Expect::Values,
                b"LVALUE k 42 0 2\r\nhi\r\nNOT_FOUND_HOT\r\nEND\r\n",
                Frame::Whole(41),
            ),
            (
                Expect::Values,
                b"SERVER_ERROR not my vbucket 3 epoch 2\r\n",
                Frame::Whole(39),
            ),
            (Expect::Values, b"STORED\r\n", Frame::Bad),
            (
                Expect::Stats,
                b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n",
                Frame::Whole(32),
            ),
            (Expect::Stats, b"STAT pid 1\r\n", Frame::Partial),
            (Expect::Stats, b"ERROR\r\n", Frame::Whole(7)),
            (Expect::Quiet, b"MN\r\nHD\r\n", Frame::Whole(4)),
            (Expect::Quiet, b"MN", Frame::Partial),
            (Expect::Quiet, b"NS\r\nMN\r\n", Frame::Whole(8)),
            (Expect::Quiet, b"VA 2 f0\r\nhi\r\nMN\r\n", Frame::Whole(17)),
            (Expect::Quiet, b"VA 2 f0\r\nhi\r\nM", Frame::Partial),
            (Expect::Quiet, b"HD\r\nHD\r\n", Frame::Bad),
        ];
        for &(expect, buf, want) in cases {
            assert_eq!(expect.frame(buf), want, "{expect:?} {}", buf.escape_ascii());
        }
    }

    #[test]
    fn retrieval_replies_split_into_blocks() {
        let r = b"VALUE a 0 2\r\nhi\r\nLVALUE b 7 0 1\r\nx\r\nNOT_FOUND_HOT\r\nEND\r\n";
        let b = values(r).unwrap_or_else(|| panic!("not a reply"));
        assert_eq!(
            b,
            vec![
                Block::Value {
                    key: b"a",
                    text: b"VALUE a 0 2\r\nhi\r\n"
                },
                Block::Value {
                    key: b"b",
                    text: b"LVALUE b 7 0 1\r\nx\r\n"
                },
                Block::Hot(b"NOT_FOUND_HOT\r\n"),
            ]
        );
        assert_eq!(values(b"END\r\n"), Some(vec![]));
        assert_eq!(
            values(b"SERVER_ERROR busy\r\n"),
            Some(vec![Block::Error(b"SERVER_ERROR busy")])
        );
        assert_eq!(values(b"STORED\r\n"), None);
        assert_eq!(values(b"VALUE a 0 5\r\nhi\r\nEND\r\n"), None);
    }

    #[test]
    fn requests_say_what_they_expect() {
        let p = super::super::Parser::new();
        let cases: &[(&[u8], Option<Expect>)] = &[
            (b"get a b\r\n", Some(Expect::Values)),
            (b"lease-get a\r\n", Some(Expect::Values)),
            (b"set a 0 0 1\r\nx\r\n", Some(Expect::Line)),
            (b"set a 0 0 1 noreply\r\nx\r\n", None),
            (b"mg a v\r\n", Some(Expect::Meta)),
            (b"stats\r\n", Some(Expect::Stats)),
            (b"version\r\n", Some(Expect::Line)),
            (b"flush_all noreply\r\n", None),
        ];
        for &(text, want) in cases {
            let r = p.parse(text).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(Expect::of(&r.request), want, "{}", text.escape_ascii());
        }
        for (text, quiet) in [
            (&b"mg a v q\r\n"[..], true),
            (b"ms a 1 q\r\nx\r\n", true),
            (b"md a q\r\n", true),
            (b"ma a q\r\n", true),
            (b"mg a v\r\n", false),
            (b"get a\r\n", false),
        ] {
            let r = p.parse(text).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(
                Expect::is_quiet(&r.request),
                quiet,
                "{}",
                text.escape_ascii()
            );
        }
    }
}
