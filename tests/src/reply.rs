//! Where memcached replies end, so a client reads exactly one reply and never sleeps to guess.
//!
//! A reply stream is a sequence of units: a line ending in `\n`, or a value — a header line that
//! gives a byte count (`VALUE <key> <flags> <bytes> [<cas>]`, `VA <bytes> ...`,
//! `LVALUE <key> <token> <flags> <bytes>`) followed by that many bytes and `\r\n`. Data bytes are
//! skipped by count, so a value holding `END\r\n` or `MN\r\n` never ends a reply early.

/// The first complete unit of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Bytes in the unit, data included.
    pub len: usize,
    /// True for a value (header plus data block), false for a plain line.
    pub value: bool,
}

impl Unit {
    /// The unit's first line, `\r\n` included.
    pub fn line(self, buf: &[u8]) -> &[u8] {
        let end = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        &buf[..end.min(self.len)]
    }
}

/// The first complete unit of `buf`, or `None` if more bytes are needed.
pub fn unit(buf: &[u8]) -> Option<Unit> {
    let line_len = buf.iter().position(|&b| b == b'\n')? + 1;
    let data = data_len(&buf[..line_len]);
    match data {
        Some(n) => {
            let len = line_len.checked_add(n)?.checked_add(2)?;
            (buf.len() >= len).then_some(Unit { len, value: true })
        }
        None => Some(Unit {
            len: line_len,
            value: false,
        }),
    }
}

/// The data length announced by a value header line, if `line` is one.
fn data_len(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_ascii_whitespace();
    let index = match words.next()? {
        "VALUE" => 3,
        "VA" => 1,
        "LVALUE" => 4,
        _ => return None,
    };
    text.split_ascii_whitespace().nth(index)?.parse().ok()
}

/// The shape of the reply a request gets, which says where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// Nothing (`noreply`, `quit`).
    None,
    /// One line.
    Line,
    /// One meta reply: a `VA` value or one line. Quiet (`q`) meta requests may send nothing: use
    /// [`crate::Conn::call_synced`] for those.
    Meta,
    /// Values (`VALUE`, `LVALUE`) and `NOT_FOUND_HOT` lines up to `END`, or an error line.
    Retrieval,
    /// `STAT` lines up to `END`, or another single line (`RESET`, `OK`, an error).
    Stats,
}

impl ReplyKind {
    /// The reply shape for the first command in `request`.
    pub fn of(request: &[u8]) -> ReplyKind {
        let line_end = request
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(request.len());
        let line = &request[..line_end];
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let Some(command) = words.next() else {
            return ReplyKind::Line;
        };
        let last = words.next_back();
        match command {
            b"get" | b"gets" | b"gat" | b"gats" | b"lease-get" => ReplyKind::Retrieval,
            b"stats" => ReplyKind::Stats,
            b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me" => ReplyKind::Meta,
            b"quit" => ReplyKind::None,
            _ if last == Some(b"noreply".as_slice()) => ReplyKind::None,
            _ => ReplyKind::Line,
        }
    }
}

/// The length of the first complete reply of `kind` at the start of `buf`, or `None` if more
/// bytes are needed.
pub fn reply_len(buf: &[u8], kind: ReplyKind) -> Option<usize> {
    match kind {
        ReplyKind::None => Some(0),
        ReplyKind::Line | ReplyKind::Meta => unit(buf).map(|u| u.len),
        ReplyKind::Retrieval | ReplyKind::Stats => {
            let mut at = 0;
            loop {
                let u = unit(&buf[at..])?;
                let line = u.line(&buf[at..]);
                at += u.len;
                let more = match kind {
                    ReplyKind::Retrieval => u.value || line == b"NOT_FOUND_HOT\r\n",
                    _ => line.starts_with(b"STAT "),
                };
                if !more {
                    return Some(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_where_memcached_ends_them() {
        let cases: &[(&[u8], ReplyKind, Option<usize>)] = &[
            // A line.
            (b"STORED\r\nEND\r\n", ReplyKind::Line, Some(8)),
            // Half a line.
            (b"STOR", ReplyKind::Line, None),
            // A value whose data holds END: skipped by count.
            (
                b"VALUE k 0 5\r\nEND\r\n\r\nEND\r\n",
                ReplyKind::Retrieval,
                Some(25),
            ),
            // A value not complete yet.
            (b"VALUE k 0 5\r\nEN", ReplyKind::Retrieval, None),
            // gets, with a CAS.
            (
                b"VALUE k 0 1 7\r\na\r\nEND\r\n",
                ReplyKind::Retrieval,
                Some(23),
            ),
            // An error ends a get.
            (
                b"CLIENT_ERROR bad command line format\r\n",
                ReplyKind::Retrieval,
                Some(38),
            ),
            // Lease replies.
            (
                b"LVALUE k 99 0 0\r\n\r\nEND\r\n",
                ReplyKind::Retrieval,
                Some(24),
            ),
            (b"NOT_FOUND_HOT\r\nEND\r\n", ReplyKind::Retrieval, Some(20)),
            // A meta value with MN in its data, then the MN sentinel.
            (b"VA 4 c1\r\nMN\r\n\r\nMN\r\n", ReplyKind::Meta, Some(15)),
            // A meta line.
            (b"HD\r\n", ReplyKind::Meta, Some(4)),
            // Stats up to END; RESET alone.
            (b"STAT pid 1\r\nEND\r\n", ReplyKind::Stats, Some(17)),
            (b"RESET\r\n", ReplyKind::Stats, Some(7)),
            // Nothing for noreply.
            (b"", ReplyKind::None, Some(0)),
        ];
        for &(buf, kind, want) in cases {
            assert_eq!(
                reply_len(buf, kind),
                want,
                "{kind:?} {}",
                buf.escape_ascii()
            );
        }
    }

    #[test]
    fn requests_name_their_reply_kind() {
        let cases: &[(&[u8], ReplyKind)] = &[
            (b"get a b\r\n", ReplyKind::Retrieval),
            (b"gats 0 a\r\n", ReplyKind::Retrieval),
            (b"lease-get a\r\n", ReplyKind::Retrieval),
            (b"set a 0 0 1 noreply\r\nx\r\n", ReplyKind::None),
            (b"set a 0 0 1\r\nx\r\n", ReplyKind::Line),
            (b"mg a v\r\n", ReplyKind::Meta),
            (b"stats settings\r\n", ReplyKind::Stats),
            (b"version\r\n", ReplyKind::Line),
        ];
        for &(req, want) in cases {
            assert_eq!(ReplyKind::of(req), want, "{}", req.escape_ascii());
        }
    }
}
