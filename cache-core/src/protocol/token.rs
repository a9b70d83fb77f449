//! Splitting a command line into tokens and reading numbers the way memcached 1.6 does.
//!
//! memcached splits on `' '` only (a tab is part of a token), stops at the first NUL (it treats
//! the line as a C string), and keeps at most 23 tokens before lumping the rest together. Its
//! numbers come from `strtol`/`strtoul`/`strtoull` followed by checks (`safe_strto*` in util.c);
//! the quirks are reproduced here on purpose so replies match byte for byte, e.g. client flags
//! of `4294967297` are stored as `1` (the 64-bit result is truncated to 32 bits).

/// memcached's `MAX_TOKENS` minus the terminal token.
pub const MAX_TOKENS: usize = 23;

/// Up to [`MAX_TOKENS`] tokens of one line; `rest` holds whatever followed the last one.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    toks: [&'a [u8]; MAX_TOKENS],
    len: usize,
    /// Unsplit remainder after the 23rd token (empty if the line had fewer).
    pub rest: &'a [u8],
    /// The line as tokenized (cut at its first NUL).
    line: &'a [u8],
}

impl<'a> Tokens<'a> {
    /// Splits `line` (without its `\r\n`) on spaces.
    pub fn split(line: &'a [u8]) -> Tokens<'a> {
        let line = match memchr::memchr(0, line) {
            Some(nul) => &line[..nul],
            None => line,
        };
        let mut toks: [&'a [u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
        let mut len = 0;
        let mut i = 0;
        while i < line.len() {
            while i < line.len() && line[i] == b' ' {
                i += 1;
            }
            if i == line.len() {
                break;
            }
            if len == MAX_TOKENS {
                return Tokens {
                    toks,
                    len,
                    rest: &line[i..],
                    line,
                };
            }
            let start = i;
            while i < line.len() && line[i] != b' ' {
                i += 1;
            }
            toks[len] = &line[start..i];
            len += 1;
        }
        Tokens {
            toks,
            len,
            rest: &[],
            line,
        }
    }

    /// memcached's `ntokens`: the tokens plus its terminal token.
    pub fn ntokens(&self) -> usize {
        self.len + 1
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Token `i`, or an empty slice past the end (memcached's terminal token).
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.len {
            self.toks[i]
        } else {
            &[]
        }
    }

    /// The last token, which memcached checks for `noreply`.
    pub fn last(&self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            self.toks[self.len - 1]
        }
    }

    /// The line from token `i` to its end, the unsplit rest included (empty if there is no
    /// token `i`): the keys of a multiget, the flags of a meta command, the args of `stats`.
    pub fn from(&self, i: usize) -> &'a [u8] {
        let tok = self.get(i);
        if tok.is_empty() {
            return &[];
        }
        // Every token is a subslice of `line`.
        let at = tok.as_ptr() as usize - self.line.as_ptr() as usize;
        self.line.get(at..).unwrap_or(&[])
    }

    /// memcached's `set_noreply_maybe`: the last token is exactly `noreply`.
    pub fn noreply(&self) -> bool {
        self.last() == b"noreply"
    }
}

/// C's `isspace`, which memcached's `xisspace` wraps.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Digits after optional leading whitespace and sign; returns (negative, magnitude, end) or
/// `None` on no digits or 64-bit overflow. The magnitude is what `strtoull` would accumulate.
fn digits(s: &[u8]) -> Option<(bool, u64, usize, bool)> {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(s[i] - b'0')))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return None;
    }
    Some((neg, v, i, overflow))
}

/// The end of a number must be the end of the token or whitespace.
fn ends_clean(s: &[u8], end: usize) -> bool {
    // NUL counts as an end too: memcached parses item data that way in incr/decr.
    end == s.len() || is_space(s[end]) || s[end] == 0
}

/// `safe_strtoull`: unsigned 64-bit; a negative sign is refused only when the wrapped result
/// looks negative as a signed number (so `-0` is 0, as in memcached).
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let (neg, mag, end, overflow) = digits(s)?;
    if overflow || !ends_clean(s, end) {
        return None;
    }
    let v = if neg { mag.wrapping_neg() } else { mag };
    // memcached's `strchr(str, '-')` stops at the first NUL.
    if (v as i64) < 0 && s.iter().take_while(|&&b| b != 0).any(|&b| b == b'-') {
        return None;
    }
    Some(v)
}

/// `safe_strtoul` on a 64-bit host: parsed as 64-bit, then truncated to 32 bits.
pub fn strtoul(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

/// `safe_strtol` on a 64-bit host: `strtol` (fails outside the i64 range), truncated to i32.
pub fn strtol(s: &[u8]) -> Option<i32> {
    let (neg, mag, end, overflow) = digits(s)?;
    if overflow || !ends_clean(s, end) {
        return None;
    }
    let v: i64 = if neg {
        if mag > (i64::MAX as u64) + 1 {
            return None;
        }
        (mag as i64).wrapping_neg()
    } else {
        if mag > i64::MAX as u64 {
            return None;
        }
        mag as i64
    };
    Some(v as i32)
}

#[cfg(test)]
#[expect(clippy::type_complexity, reason = "table-driven test rows")]
mod tests {
    use super::*;

    #[test]
    fn split_matches_memcached_tokenizer() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            // plain
            (b"get a b", &[b"get", b"a", b"b"]),
            // repeated and trailing spaces vanish
            (b"  get  a   b ", &[b"get", b"a", b"b"]),
            // tabs are not separators
            (b"get a\tb", &[b"get", b"a\tb"]),
            // NUL ends the line
            (b"get a\0b c", &[b"get", b"a"]),
            // empty line
            (b"", &[]),
        ];
        for (line, want) in cases {
            let t = Tokens::split(line);
            let got: Vec<&[u8]> = (0..t.len()).map(|i| t.get(i)).collect();
            assert_eq!(&got, want, "line {:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn split_keeps_23_tokens_and_a_rest() {
        let line: Vec<u8> = (0..30)
            .map(|i| format!("t{i} "))
            .collect::<String>()
            .into_bytes();
        let t = Tokens::split(&line);
        assert_eq!(t.len(), 23);
        assert_eq!(t.ntokens(), 24);
        assert!(t.rest.starts_with(b"t23 "));
    }

    #[test]
    fn numbers_follow_safe_strto() {
        // (input, strtoull, strtoul, strtol)
        let cases: &[(&[u8], Option<u64>, Option<u32>, Option<i32>)] = &[
            (b"0", Some(0), Some(0), Some(0)),
            (b"42", Some(42), Some(42), Some(42)),
            // leading sign and whitespace are accepted by strto*
            (b"+7", Some(7), Some(7), Some(7)),
            (b"\t7", Some(7), Some(7), Some(7)),
            // a trailing whitespace character ends the number
            (b"7\r", Some(7), Some(7), Some(7)),
            // negative: refused unsigned, accepted signed
            (b"-1", None, None, Some(-1)),
            (b"-0", Some(0), Some(0), Some(0)),
            // 2^32 + 1 truncates to 1 in the 32-bit forms
            (b"4294967297", Some(4_294_967_297), Some(1), Some(1)),
            // u64::MAX fits strtoull, overflows strtol
            (
                b"18446744073709551615",
                Some(u64::MAX),
                Some(u32::MAX),
                None,
            ),
            // one past u64::MAX is ERANGE everywhere
            (b"18446744073709551616", None, None, None),
            // garbage
            (b"", None, None, None),
            (b"abc", None, None, None),
            (b"12abc", None, None, None),
            (b"-", None, None, None),
        ];
        for &(s, ull, ul, l) in cases {
            let name = String::from_utf8_lossy(s);
            assert_eq!(strtoull(s), ull, "strtoull {name:?}");
            assert_eq!(strtoul(s), ul, "strtoul {name:?}");
            assert_eq!(strtol(s), l, "strtol {name:?}");
        }
    }
}
