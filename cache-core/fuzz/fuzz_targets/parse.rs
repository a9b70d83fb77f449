//! Fuzz target for the request parser: whatever the bytes, `Parser::parse` must not panic and its
//! answer must be one a connection can act on without looping, losing its place or reading part
//! of a request as another.
//!
//! Checked with memcached's default limits and with tight ones (short lines, keys and items), so
//! the limit paths are reached by short inputs too:
//! - `Ok`: `consumed` is the line, plus `<value>\r\n` for requests with a data block; the same
//!   request comes back from exactly `data[..consumed]` and from any longer input; a strict
//!   prefix of it is `Incomplete` or `Invalid` (or the same swallow), never another request.
//! - `Invalid`: `consumed > 0`, and more bytes never make it `Incomplete` (except `line too
//!   long`, which closes the connection; see `check`).
#![no_main]

use cache_core::protocol::{ParseError, Parsed, Parser, Refuse, Request};
use libfuzzer_sys::fuzz_target;

/// Bytes appended to test that a decision never waits for more input once made.
const TAILS: [u8; 4] = [b'\n', b'\r', b' ', b'a'];

fuzz_target!(|data: &[u8]| {
    let tight = Parser::new()
        .max_key(16)
        .item_max(256)
        .max_line(64)
        .max_get_line(128);
    for parser in [Parser::new(), tight] {
        check(&parser, data);
    }
});

fn check(parser: &Parser, data: &[u8]) {
    let first = parser.parse(data);
    no_room(parser, data, &first);
    match &first {
        Ok(p) => ok_shape(data, p),
        Err(ParseError::Invalid(bad)) => assert!(bad.consumed > 0, "Invalid consumed 0: {bad:?}"),
        Err(ParseError::Incomplete) => {}
    }
    // A decision is final: one more byte never takes it back.
    let mut longer = Vec::with_capacity(data.len() + 1);
    for tail in TAILS {
        longer.clear();
        longer.extend_from_slice(data);
        longer.push(tail);
        let again = parser.parse(&longer);
        match (&first, &again) {
            (Err(ParseError::Incomplete), _) => {}
            // `line too long` before any newline: memcached's rule, decided on the bytes read so
            // far (a newline in the same read would have let the line through). The connection
            // closes, so no later byte is ever parsed against this decision.
            (Err(ParseError::Invalid(bad)), _) if bad.close && memchr(data).is_none() => {}
            (_, Err(ParseError::Incomplete)) => {
                panic!("{first:?} became Incomplete after appending {tail:#04x}")
            }
            (Ok(p), Ok(q)) => assert_eq!(
                (p.consumed, format!("{:?}", p.request)),
                (q.consumed, format!("{:?}", q.request)),
                "request changed after appending {tail:#04x}"
            ),
            (Ok(p), Err(e)) => panic!("{p:?} became {e:?} after appending {tail:#04x}"),
            (Err(_), _) => {}
        }
    }
    let Ok(p) = first else { return };
    if p.consumed > data.len() {
        // A swallow: the rest of the data block is not here, nothing more to compare.
        return;
    }
    // The request is delimited by its own bytes.
    match parser.parse(&data[..p.consumed]) {
        Ok(q) => assert_eq!(
            (p.consumed, format!("{:?}", p.request)),
            (q.consumed, format!("{:?}", q.request)),
            "request changed when cut to its own bytes"
        ),
        Err(e) => panic!("{p:?} became {e:?} when cut to its own bytes"),
    }
    // One byte short, it is not there yet (or already refused), never some other request. A
    // swallow (`Refused`) is decided by its line alone, so it may come back unchanged.
    if let Ok(q) = parser.parse(&data[..p.consumed - 1]) {
        assert_eq!(
            (p.consumed, format!("{:?}", p.request)),
            (q.consumed, format!("{:?}", q.request)),
            "a strict prefix parsed as another request"
        );
        assert!(
            matches!(q.request, Request::Refused { .. }),
            "a strict prefix of {p:?} parsed"
        );
    }
}

/// With no room to buffer a data block, a storage command still arriving is refused as out of
/// memory, swallowing the rest of its block; anything else parses as it would with room.
fn no_room(parser: &Parser, data: &[u8], first: &Result<Parsed<'_>, ParseError>) {
    let tight = parser.parse_no_room(data);
    match (first, &tight) {
        (Err(ParseError::Incomplete), Err(ParseError::Incomplete)) => {}
        (Err(ParseError::Incomplete), Ok(p)) => {
            assert!(
                matches!(
                    p.request,
                    Request::Refused {
                        why: Refuse::NoMemory,
                        ..
                    }
                ) && p.consumed > data.len(),
                "an incomplete request became {p:?} without room"
            );
            assert_eq!(parser.pending_block(data), Some(p.consumed));
        }
        (a, b) => assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "without room a whole request parsed differently"
        ),
    }
}

/// `consumed` covers the command line, and for a data block exactly `<value>\r\n` after it.
fn ok_shape(data: &[u8], p: &Parsed<'_>) {
    assert!(p.consumed > 0, "Ok consumed 0: {p:?}");
    let line = match memchr(data) {
        Some(nl) => nl + 1,
        None => panic!("Ok without a newline in the input: {p:?}"),
    };
    let value = match &p.request {
        Request::Store(s) => Some(s.value.len()),
        Request::MetaSet(s) => Some(s.value.len()),
        Request::LeaseSet(s) => Some(s.value.len()),
        Request::Refused { .. } => {
            assert!(
                p.consumed >= line + 2,
                "swallow shorter than line + \\r\\n: {p:?}"
            );
            return;
        }
        _ => None,
    };
    match value {
        Some(v) => {
            assert_eq!(
                p.consumed,
                line + v + 2,
                "data block not line + value + \\r\\n: {p:?}"
            );
            assert_eq!(
                &data[line + v..line + v + 2],
                b"\r\n",
                "data block without \\r\\n: {p:?}"
            );
            assert!(data.len() >= p.consumed);
        }
        None => assert_eq!(
            p.consumed, line,
            "line-only request consumed more than its line"
        ),
    }
}

fn memchr(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}
