//! An incremental parser for memcached's classic text replies, as a load generator needs it: it
//! knows which request a reply answers, so it only has to find where the reply ends and count
//! hits. Input may stop anywhere (a VALUE block split across reads); `Ok(None)` asks for more.

use memchr::memchr;

/// The kind of request a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// `get k1 .. kN`: zero or more VALUE blocks, then END.
    Get,
    /// `set`: STORED and its siblings.
    Store,
    /// `delete`: DELETED or NOT_FOUND.
    Delete,
}

/// What a complete reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A get's reply with this many VALUE blocks.
    Values(u32),
    /// STORED or DELETED.
    Done,
    /// NOT_STORED, EXISTS or NOT_FOUND: answered, but nothing changed.
    Refused,
    /// ERROR, CLIENT_ERROR or SERVER_ERROR.
    Error,
}

/// A reply that fits no request: the stream cannot be followed any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply to a {expect:?}: {line:?}")]
pub(crate) struct Garbage {
    expect: Expect,
    line: String,
}

/// Parses one reply to `expect` from the front of `buf`: `Some((reply, bytes consumed))`, or
/// `None` if `buf` holds only part of it.
pub(crate) fn parse(buf: &[u8], expect: Expect) -> Result<Option<(Reply, usize)>, Garbage> {
    let mut pos = 0;
    let mut values = 0u32;
    loop {
        let Some(line) = line_at(buf, pos) else {
            return Ok(None);
        };
        let next = pos + line.len() + 2;
        if let Some(reply) = error_line(line) {
            return Ok(Some((reply, next)));
        }
        let done = match (expect, line) {
            (Expect::Get, b"END") => Reply::Values(values),
            (Expect::Get, _) if line.starts_with(b"VALUE ") => {
                let bytes = value_len(line).ok_or_else(|| garbage(expect, line))?;
                // The data block and its CRLF must be there too.
                let end = next + bytes + 2;
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(garbage(expect, line));
                }
                values += 1;
                pos = end;
                continue;
            }
            (Expect::Store, b"STORED") | (Expect::Delete, b"DELETED") => Reply::Done,
            (Expect::Store, b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND")
            | (Expect::Delete, b"NOT_FOUND") => Reply::Refused,
            _ => return Err(garbage(expect, line)),
        };
        return Ok(Some((done, next)));
    }
}

/// The line starting at `pos`, without its CRLF, if the CRLF has arrived.
fn line_at(buf: &[u8], pos: usize) -> Option<&[u8]> {
    let rest = buf.get(pos..)?;
    let nl = memchr(b'\n', rest)?;
    let line = &rest[..nl];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

fn error_line(line: &[u8]) -> Option<Reply> {
    (line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR"))
        .then_some(Reply::Error)
}

/// The `<bytes>` field of `VALUE <key> <flags> <bytes> [<cas>]`.
fn value_len(line: &[u8]) -> Option<usize> {
    let field = line.split(|&b| b == b' ').nth(3)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn garbage(expect: Expect, line: &[u8]) -> Garbage {
    let line = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    Garbage { expect, line }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_replies() {
        let two = b"VALUE a 0 3\r\nabc\r\nVALUE b 5 0 77\r\n\r\nEND\r\n";
        let cases: [(&[u8], Expect, Reply, usize); 10] = [
            // A miss.
            (b"END\r\n", Expect::Get, Reply::Values(0), 5),
            // Two hits, one with a CAS field and an empty value.
            (two, Expect::Get, Reply::Values(2), two.len()),
            // A value that itself contains CRLF and "END".
            (
                b"VALUE k 0 7\r\nEND\r\n\r\n\r\nEND\r\n",
                Expect::Get,
                Reply::Values(1),
                27,
            ),
            // Stores.
            (b"STORED\r\n", Expect::Store, Reply::Done, 8),
            (b"NOT_STORED\r\n", Expect::Store, Reply::Refused, 12),
            // Deletes.
            (b"DELETED\r\n", Expect::Delete, Reply::Done, 9),
            (b"NOT_FOUND\r\n", Expect::Delete, Reply::Refused, 11),
            // Errors answer anything.
            (
                b"SERVER_ERROR out of memory\r\n",
                Expect::Store,
                Reply::Error,
                28,
            ),
            (
                b"CLIENT_ERROR bad data chunk\r\n",
                Expect::Get,
                Reply::Error,
                29,
            ),
            // Only the first of two pipelined replies is consumed.
            (b"STORED\r\nSTORED\r\n", Expect::Store, Reply::Done, 8),
        ];
        for (buf, expect, reply, used) in cases {
            let got = parse(buf, expect);
            assert_eq!(
                got,
                Ok(Some((reply, used))),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn split_anywhere() {
        // Every prefix of a reply is incomplete, wherever the read boundary falls: inside a VALUE
        // line, inside its data, between data and CRLF, between blocks, inside END.
        let reply = b"VALUE key:000000000001 0 10\r\n0123456789\r\nVALUE k 1 2\r\nxy\r\nEND\r\n";
        for cut in 0..reply.len() {
            assert_eq!(parse(&reply[..cut], Expect::Get), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse(reply, Expect::Get),
            Ok(Some((Reply::Values(2), reply.len())))
        );
    }

    #[test]
    fn garbage_is_refused() {
        for (buf, expect) in [
            // A store reply where a get's was due.
            (&b"STORED\r\n"[..], Expect::Get),
            // A VALUE line without a length.
            (b"VALUE k 0\r\n", Expect::Get),
            // A data block longer than announced.
            (b"VALUE k 0 1\r\nab\r\nEND\r\n", Expect::Get),
            // A get's reply where a delete's was due.
            (b"END\r\n", Expect::Delete),
        ] {
            assert!(
                parse(buf, expect).is_err(),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }
}
