//! Reply encoders: each appends one memcached reply (or part of one) to an output buffer.

/// Fixed reply lines, `\r\n` included.
pub const STORED: &[u8] = b"STORED\r\n";
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
pub const EXISTS: &[u8] = b"EXISTS\r\n";
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
pub const DELETED: &[u8] = b"DELETED\r\n";
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
pub const END: &[u8] = b"END\r\n";
pub const OK: &[u8] = b"OK\r\n";
pub const RESET: &[u8] = b"RESET\r\n";
pub const MN: &[u8] = b"MN\r\n";
pub const EN: &[u8] = b"EN\r\n";
pub const CRLF: &[u8] = b"\r\n";
pub const NOT_FOUND_HOT: &[u8] = b"NOT_FOUND_HOT\r\n";

/// Appends the decimal form of `n`.
#[inline]
pub fn num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
#[inline]
pub fn value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    num(out, flags);
    out.push(b' ');
    num(out, data.len());
    if let Some(cas) = cas {
        out.push(b' ');
        num(out, cas);
    }
    out.extend_from_slice(CRLF);
    out.extend_from_slice(data);
    out.extend_from_slice(CRLF);
}

/// `STAT <name> <value>\r\n`.
pub fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "STAT {name} {value}\r\n");
}

/// ` <c><n>`: one numeric meta return flag.
#[inline]
pub fn meta_num(out: &mut Vec<u8>, c: u8, n: impl itoa::Integer) {
    out.push(b' ');
    out.push(c);
    num(out, n);
}

#[cfg(test)]
#[expect(clippy::type_complexity, reason = "table-driven test rows")]
mod tests {
    use super::*;

    #[test]
    fn value_lines() {
        // (key, flags, data, cas, expected)
        let cases: &[(&[u8], u32, &[u8], Option<u64>, &[u8])] = &[
            (b"a", 0, b"xyz", None, b"VALUE a 0 3\r\nxyz\r\n"),
            (b"a", 7, b"", Some(42), b"VALUE a 7 0 42\r\n\r\n"),
            // binary data is copied untouched
            (
                b"k",
                u32::MAX,
                b"\r\n\0",
                None,
                b"VALUE k 4294967295 3\r\n\r\n\0\r\n",
            ),
        ];
        for &(k, f, d, c, want) in cases {
            let mut out = Vec::new();
            value(&mut out, k, f, d, c);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn stat_lines() {
        let mut out = Vec::new();
        stat(&mut out, "curr_items", 3);
        meta_num(&mut out, b'c', 9u64);
        assert_eq!(out, b"STAT curr_items 3\r\n c9");
    }
}
