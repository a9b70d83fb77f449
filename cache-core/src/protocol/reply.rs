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
//! - [`Expect::Stats`]: `STAT` lines up to `END`.
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
        }
    }
}

/// The first line (without `\r\n`) and its length with it.
fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let nl = memchr::memchr(b'\n', buf)?;
    let text = &buf[..nl];
    Some((text.strip_suffix(b"\r").unwrap_or(text), nl + 1))
}

fn is_error(line: &[u8]) -> bool {
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
        ];
        for &(expect, buf, want) in cases {
            assert_eq!(expect.frame(buf), want, "{expect:?} {}", buf.escape_ascii());
        }
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
    }
}
