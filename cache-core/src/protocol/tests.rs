//! Parser tables: partial input, pipelining, limits and meta flags.

use super::{ErrorReply, Invalid, ParseError, Parser, Refuse, Request};

fn parse(p: &Parser, b: &[u8]) -> Result<(String, usize), ParseError> {
    p.parse(b).map(|x| (format!("{:?}", x.request), x.consumed))
}

#[test]
fn every_strict_prefix_is_incomplete() {
    let p = Parser::new();
    let whole: &[&[u8]] = &[
        b"get a b c\r\n",
        b"gets a\r\n",
        b"set k 1 2 5\r\nhello\r\n",
        b"cas k 0 0 1 99 noreply\r\nx\r\n",
        b"append k 0 0 3\r\n\r\n\r\r\n",
        b"incr k 5\r\n",
        b"delete k\r\n",
        b"touch k 10\r\n",
        b"flush_all 5\r\n",
        b"mg k v c N30\r\n",
        b"ms k 3 T10 F5 C7 E9 q\r\nabc\r\n",
        b"md k I T30\r\n",
        b"ma k MD D5 v\r\n",
        b"mn\r\n",
        b"lease-get k\r\n",
        b"lease-set k 7 0 0 2\r\nhi\r\n",
        b"version\r\n",
    ];
    for w in whole {
        let full = p.parse(w);
        assert!(
            full.is_ok(),
            "{:?} did not parse: {full:?}",
            String::from_utf8_lossy(w)
        );
        assert_eq!(full.map(|x| x.consumed).unwrap_or(0), w.len());
        for cut in 0..w.len() {
            assert_eq!(
                p.parse(&w[..cut]).err(),
                Some(ParseError::Incomplete),
                "{:?} cut at {cut}",
                String::from_utf8_lossy(w)
            );
        }
    }
}

#[test]
fn pipelined_requests_parse_one_by_one() {
    let p = Parser::new();
    let buf = b"set a 0 0 1\r\nx\r\nget a\r\nmg a v\r\ndelete a\r\nget";
    let mut at = 0;
    let mut kinds = Vec::new();
    while let Ok(x) = p.parse(&buf[at..]) {
        kinds.push(
            format!("{:?}", x.request)
                .split('(')
                .next()
                .unwrap_or("")
                .to_string(),
        );
        at += x.consumed;
    }
    assert_eq!(kinds, ["Store", "Get", "MetaGet", "Delete"]);
    assert_eq!(&buf[at..], b"get");
}

#[test]
fn limits_are_builder_fields() {
    let client = |why| Some(ErrorReply::Client(why));
    // (parser, input, expected error or Ok consumed)
    let small_keys = Parser::new().max_key(4);
    assert_eq!(
        small_keys.parse(b"get abcde\r\n").err(),
        Some(ParseError::Invalid(Invalid {
            reply: client("bad command line format"),
            consumed: 11,
            close: false
        }))
    );
    assert!(small_keys.parse(b"get abcd\r\n").is_ok());
    // item_max counts the 28-byte header and the key: 100 - 28 - 1 = 71 bytes of value fit
    let small_items = Parser::new().item_max(100);
    assert!(matches!(
        small_items.parse(b"set k 0 0 71\r\n").err(),
        Some(ParseError::Incomplete)
    ));
    let too_big = small_items.parse(b"set k 0 0 72\r\n");
    match too_big {
        Ok(x) => {
            assert!(matches!(
                x.request,
                Request::Refused {
                    drop_existing: true,
                    reply: true,
                    why: Refuse::TooLarge,
                    ..
                }
            ));
            // the line plus the whole refused block, most of it not yet received
            assert_eq!(x.consumed, 14 + 72 + 2);
        }
        Err(e) => panic!("{e:?}"),
    }
    // a line without newline past max_line closes the connection
    let short = Parser::new().max_line(16);
    assert_eq!(
        short.parse(b"set k 0 0 1 nore").err(),
        Some(ParseError::Incomplete)
    );
    assert_eq!(
        short.parse(b"set k 0 0 1 noreply").err(),
        Some(ParseError::Invalid(Invalid {
            reply: client("line too long"),
            consumed: 19,
            close: true
        }))
    );
    // ... except a multiget, up to max_get_line
    let gets = Parser::new().max_line(16).max_get_line(32);
    assert_eq!(
        gets.parse(b"get aaaa bbbb cccc dddd").err(),
        Some(ParseError::Incomplete)
    );
    assert!(matches!(
        gets.parse(b"get aaaa bbbb cccc dddd eeee ffff gggg").err(),
        Some(ParseError::Invalid(Invalid { close: true, .. }))
    ));
    assert!(parse(&gets, b"get aaaa bbbb cccc dddd eeee\r\n").is_ok());
}

#[test]
fn meta_flags_are_parsed() {
    let p = Parser::new();
    let Ok(x) = p.parse(b"ms a2V5 2 T30 F7 C9 E11 MA q k O12 I b N5\r\nhi\r\n") else {
        panic!("ms did not parse");
    };
    let Request::MetaSet(m) = x.request else {
        panic!("{:?}", x.request)
    };
    let f = m.flags;
    assert_eq!(f.ttl, Some(30));
    assert_eq!(f.client_flags, 7);
    assert_eq!(f.compare_cas, Some(9));
    assert_eq!(f.version, Some(11));
    assert_eq!(f.mode, super::MetaMode::Append);
    assert_eq!(f.vivify, Some(5));
    for c in [b'q', b'k', b'O', b'I', b'b'] {
        assert!(f.has(c), "{}", c as char);
    }
    assert!(!f.has(b'v'));
    assert_eq!(f.tokens().collect::<Vec<_>>().len(), 11);
    assert_eq!(m.value, b"hi");

    let Ok(x) = p.parse(b"ma k D5 J7 N0 MD\r\n") else {
        panic!("ma")
    };
    let Request::MetaArith(m) = x.request else {
        panic!("{:?}", x.request)
    };
    assert_eq!(
        (m.flags.delta, m.flags.initial, m.flags.vivify),
        (5, 7, Some(0))
    );
    assert_eq!(m.flags.mode, super::MetaMode::Decr);

    let Ok(x) = p.parse(b"mg k R30 T-1 s\r\n") else {
        panic!("mg")
    };
    let Request::MetaGet(m) = x.request else {
        panic!("{:?}", x.request)
    };
    assert_eq!((m.flags.recache, m.flags.ttl), (Some(30), Some(-1)));
}

#[test]
fn errors_consume_the_right_amount() {
    let p = Parser::new();
    // (input, reply, consumed): what memcached skips before reading the next command
    let cases: &[(&[u8], Option<ErrorReply>, usize)] = &[
        // unknown command: the line
        (b"bogus\r\nget a\r\n", Some(ErrorReply::Error), 7),
        // bad data chunk: line + declared length + 2, whatever those bytes are
        (
            b"set a 0 0 1\r\nxyz\r\n",
            Some(ErrorReply::Client("bad data chunk")),
            16,
        ),
        // negative length: only the line (the data is then read as a command)
        (
            b"set a 0 0 -1\r\nx\r\n",
            Some(ErrorReply::Client("bad command line format")),
            14,
        ),
        // ms flag errors swallow the block
        (
            b"ms a 1 Zz\r\nx\r\n",
            Some(ErrorReply::Client("invalid flag")),
            14,
        ),
        // noreply silences classic errors
        (b"incr a x noreply\r\n", None, 18),
    ];
    for &(input, reply, consumed) in cases {
        assert_eq!(
            p.parse(input).err(),
            Some(ParseError::Invalid(Invalid {
                reply,
                consumed,
                close: false
            })),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // an HTTP request line: hang up without a word
    assert_eq!(
        p.parse(b"GET / HTTP/1.1\r\n").err(),
        Some(ParseError::Invalid(Invalid {
            reply: None,
            consumed: 16,
            close: true
        }))
    );
}

#[test]
fn long_lines_are_refused_whatever_the_read_boundaries() {
    // A 2100-byte set line is refused with or without its newline, so the outcome cannot
    // depend on how the bytes were split into reads.
    let p = Parser::new();
    let mut line = b"set k 0 0 1".to_vec();
    line.resize(2100, b' ');
    let without = p.parse(&line).err();
    line.extend_from_slice(b"\r\nx\r\n");
    let with = p.parse(&line).err();
    for r in [without, with] {
        assert!(
            matches!(r, Some(ParseError::Invalid(Invalid { close: true, .. }))),
            "{r:?}"
        );
    }
    // multi-key reads may be longer, up to max_get_line
    let keys: String = (0..300).map(|i| format!(" key{i:04}")).collect();
    let get = format!("get{keys}\r\n");
    assert!(get.len() > 2048);
    assert!(p.parse(get.as_bytes()).is_ok());
}

#[test]
fn no_room_refuses_blocks_not_yet_here() {
    let p = Parser::new();
    // (input, what parse_no_room gives, what pending_block gives)
    /// (refusal, drops the existing item, bytes swallowed)
    type Refusal = Option<(Refuse, bool, usize)>;
    let cases: &[(&[u8], Refusal, Option<usize>)] = &[
        // A set whose block is still coming: refused as out of memory, the whole block
        // swallowed, the existing item dropped (memcached does so for `set`).
        (
            b"set k 0 0 10\r\nabc",
            Some((Refuse::NoMemory, true, 14 + 12)),
            Some(26),
        ),
        // Its line alone counts too.
        (
            b"set k 0 0 10\r\n",
            Some((Refuse::NoMemory, true, 26)),
            Some(26),
        ),
        // `add` keeps the existing item; noreply silences the refusal.
        (
            b"add k 0 0 3 noreply\r\nab",
            Some((Refuse::NoMemory, false, 26)),
            Some(26),
        ),
        // `ms` always answers and drops.
        (
            b"ms k 5 T0\r\nab",
            Some((Refuse::NoMemory, true, 11 + 7)),
            Some(18),
        ),
        // A whole block parses as usual.
        (b"set k 0 0 3\r\nabc\r\n", None, None),
        // Not a storage command, or no whole line yet: nothing pending.
        (b"get k", None, None),
        (b"set k 0 0 10", None, None),
    ];
    for &(input, want, pending) in cases {
        let got = p.parse_no_room(input).ok().and_then(|x| match x.request {
            Request::Refused {
                why,
                drop_existing,
                reply,
                ..
            } => Some((why, drop_existing, x.consumed, reply)),
            _ => None,
        });
        let got_short = got.map(|(why, drop, consumed, _)| (why, drop, consumed));
        assert_eq!(got_short, want, "{}", input.escape_ascii());
        if let Some((_, _, _, reply)) = got {
            assert_eq!(reply, !input.windows(7).any(|w| w == b"noreply"));
        }
        assert_eq!(p.pending_block(input), pending, "{}", input.escape_ascii());
        // The plain parse waits for the rest instead.
        if want.is_some() {
            assert_eq!(p.parse(input).err(), Some(ParseError::Incomplete));
        }
    }
}
