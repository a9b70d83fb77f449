//! A `get`/`gets` reply laid out as a HOT slot's `text`, with the per-part checksums XDP needs.

use crate::abi::{HOT_KEY_MAX, LARGE_TEXT, SMALL_TEXT};

/// One item's reply text in the three parts of a HOT slot (`hdr`, `cas`, `tail`; see
/// [`crate::abi::HotSlot`]) and each part's [`ones_sum`].
///
/// Only [`HotText::text`] is meaningful; bytes past it are left over from earlier encodes.
#[derive(Clone, Debug)]
pub struct HotText {
    text: [u8; LARGE_TEXT],
    /// Bytes of `VALUE <key> <flags> <bytes>`.
    pub hdr_len: u16,
    /// Bytes of ` <cas>`.
    pub cas_len: u16,
    /// Bytes of `\r\n<data>\r\n`.
    pub tail_len: u16,
    /// [`ones_sum`] of each part.
    pub sum_hdr: u16,
    pub sum_cas: u16,
    pub sum_tail: u16,
}

impl Default for HotText {
    fn default() -> Self {
        Self::new()
    }
}

impl HotText {
    /// An empty text; fill it with [`encode`].
    pub const fn new() -> Self {
        Self {
            text: [0; LARGE_TEXT],
            hdr_len: 0,
            cas_len: 0,
            tail_len: 0,
            sum_hdr: 0,
            sum_cas: 0,
            sum_tail: 0,
        }
    }

    /// `hdr`, `cas` and `tail` back to back: the `gets` reply.
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len()]
    }

    /// Bytes of [`HotText::text`].
    pub fn len(&self) -> usize {
        usize::from(self.hdr_len) + usize::from(self.cas_len) + usize::from(self.tail_len)
    }

    /// Whether nothing is encoded (a fresh text, or one whose last [`encode`] failed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the text fits a `HOT_SMALL` slot.
    pub fn fits_small(&self) -> bool {
        self.len() <= SMALL_TEXT
    }

    fn clear(&mut self) {
        (self.hdr_len, self.cas_len, self.tail_len) = (0, 0, 0);
        (self.sum_hdr, self.sum_cas, self.sum_tail) = (0, 0, 0);
    }
}

/// Writes the reply to `get key` (`hdr` + `tail`) and `gets key` (all three parts) into `out`,
/// byte for byte as memcached sends it, and sums each part.
///
/// Returns false, leaving `out` empty, if the key is empty or longer than 250 bytes or the text
/// would not fit [`LARGE_TEXT`]; such an item is never served from XDP.
pub fn encode(key: &[u8], flags: u32, value: &[u8], cas: u64, out: &mut HotText) -> bool {
    out.clear();
    if key.is_empty() || key.len() > HOT_KEY_MAX {
        return false;
    }
    let (mut f, mut b, mut c) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    let (flags, bytes, cas) = (
        f.format(flags).as_bytes(),
        b.format(value.len()).as_bytes(),
        c.format(cas).as_bytes(),
    );
    let hdr_len = b"VALUE ".len() + key.len() + 1 + flags.len() + 1 + bytes.len();
    let cas_len = 1 + cas.len();
    // Checked: `value` may be anything up to the store's item limit.
    let Some(tail_len) = value.len().checked_add(4) else {
        return false;
    };
    if hdr_len + cas_len + tail_len > LARGE_TEXT {
        return false;
    }
    let parts: [&[u8]; 11] = [
        b"VALUE ", key, b" ", flags, b" ", bytes, b" ", cas, b"\r\n", value, b"\r\n",
    ];
    let mut at = 0;
    for p in parts {
        out.text[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    let (hdr, rest) = out.text[..at].split_at(hdr_len);
    let (cas_part, tail) = rest.split_at(cas_len);
    let sums = (ones_sum(hdr), ones_sum(cas_part), ones_sum(tail));
    // All three lengths are at most LARGE_TEXT, checked above.
    out.hdr_len = hdr_len as u16;
    out.cas_len = cas_len as u16;
    out.tail_len = tail_len as u16;
    (out.sum_hdr, out.sum_cas, out.sum_tail) = sums;
    true
}

/// RFC 1071 ones' complement sum of `bytes` as big-endian 16-bit words starting at an even
/// offset (an odd last byte padded with zero), carries folded in, not complemented.
pub fn ones_sum(bytes: &[u8]) -> u16 {
    // A u64 cannot overflow: a slice would need 2^48 bytes.
    let mut acc = 0u64;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    fold(acc as u32)
}

pub use cache_abi::csum::{combine, fold};

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    use super::*;
    use crate::protocol::encode::value;

    fn reply(key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        value(&mut out, key, flags, data, cas);
        out
    }

    #[test]
    fn replies_match_the_protocol_encoder() {
        let long_key = [b'k'; HOT_KEY_MAX];
        // (key, flags, data, cas)
        let cases: &[(&[u8], u32, &[u8], u64)] = &[
            // The smallest reply: empty value, zero flags and cas.
            (b"a", 0, b"", 0),
            (b"user:1234:profile", 7, b"hello", 42),
            // Binary data with CRLF and NUL inside is copied untouched.
            (b"k", u32::MAX, b"\r\n\0END\r\n\0", u64::MAX),
            // The longest key.
            (&long_key, 1, b"v", 1_000_000),
        ];
        let mut t = HotText::new();
        for &(key, flags, data, cas) in cases {
            assert!(encode(key, flags, data, cas, &mut t));
            let (hdr, cas_len) = (usize::from(t.hdr_len), usize::from(t.cas_len));
            let get = [&t.text()[..hdr], &t.text()[hdr + cas_len..]].concat();
            assert_eq!(get, reply(key, flags, data, None));
            assert_eq!(t.text(), reply(key, flags, data, Some(cas)));
            assert_eq!(t.sum_hdr, ones_sum(&t.text()[..hdr]));
            assert_eq!(t.sum_cas, ones_sum(&t.text()[hdr..hdr + cas_len]));
            assert_eq!(t.sum_tail, ones_sum(&t.text()[hdr + cas_len..]));
            assert_eq!(t.fits_small(), t.len() <= SMALL_TEXT);
        }
    }

    #[test]
    fn limits() {
        let mut t = HotText::new();
        let over_key = [b'k'; HOT_KEY_MAX + 1];
        // Keys must be 1..=250 bytes; a failed encode leaves nothing usable behind.
        assert!(encode(b"k", 0, b"x", 1, &mut t));
        assert!(!encode(b"", 0, b"x", 1, &mut t));
        assert!(t.is_empty());
        assert!(!encode(&over_key, 0, b"x", 1, &mut t));
        // "VALUE k 0 <n> 1\r\n" + data + "\r\n": find the largest data that fits exactly.
        let fixed = |n: usize| reply(b"k", 0, &vec![b'x'; n], Some(1)).len();
        let max = (0..LARGE_TEXT)
            .rev()
            .find(|&n| fixed(n) <= LARGE_TEXT)
            .unwrap_or(0);
        assert!(encode(b"k", 0, &vec![b'x'; max], 1, &mut t));
        assert_eq!(t.len(), LARGE_TEXT);
        assert!(!t.fits_small());
        assert!(!encode(b"k", 0, &vec![b'x'; max + 1], 1, &mut t));
        assert!(t.is_empty());
        // A text of exactly SMALL_TEXT bytes fits a small slot.
        let small = (0..SMALL_TEXT)
            .rev()
            .find(|&n| fixed(n) <= SMALL_TEXT)
            .unwrap_or(0);
        assert!(encode(b"k", 0, &vec![b'x'; small], 1, &mut t));
        assert!(t.fits_small());
        assert!(encode(b"k", 0, &vec![b'x'; small + 1], 1, &mut t));
        assert!(!t.fits_small());
    }

    #[test]
    fn sum_vectors() {
        // (bytes, sum)
        let cases: &[(&[u8], u16)] = &[
            // Nothing and zeros sum to zero.
            (b"", 0),
            (&[0, 0, 0], 0),
            // An odd last byte is the high half of a word.
            (&[0xab], 0xab00),
            (&[0x12, 0x34, 0x56], 0x1234 + 0x5600),
            // The carry out of bit 15 comes back in.
            (&[0xff, 0xff, 0x00, 0x02], 0x0002),
            // RFC 1071 section 3's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
            (&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0xddf2),
        ];
        for &(bytes, want) in cases {
            assert_eq!(ones_sum(bytes), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn parts_combine_to_the_whole() {
        // Random strings cut at random offsets: the parts' sums, combined with their parity, equal
        // the sum of the whole. This is the arithmetic XDP does on hdr/cas/tail.
        let mut rng = SmallRng::seed_from_u64(0x6b63_6163_6865);
        for _ in 0..2000 {
            let len = rng.gen_range(0..600);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let mut cuts: Vec<usize> = (0..rng.gen_range(0..6))
                .map(|_| rng.gen_range(0..=len))
                .collect();
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            let mut acc = 0u32;
            for w in cuts.windows(2) {
                acc = combine(acc, ones_sum(&bytes[w[0]..w[1]]), w[0] % 2 == 1);
            }
            assert_eq!(fold(acc), ones_sum(&bytes), "{cuts:?}");
        }
    }

    #[test]
    fn combine_wraps_bit_31() {
        // 65537 parts of 0xffff overflow a u32; the wrapped carry keeps the sum exact.
        let mut acc = 0u32;
        for _ in 0..65_537 {
            acc = combine(acc, 0xffff, false);
        }
        assert_eq!(fold(acc), 0xffff);
        // A get reply: hdr then tail, with the cas part skipped.
        let mut t = HotText::new();
        assert!(encode(b"odd", 1, b"\0\xff\r\n", 9, &mut t));
        let hdr = usize::from(t.hdr_len);
        let get = [&t.text()[..hdr], &t.text()[hdr + usize::from(t.cas_len)..]].concat();
        let acc = combine(combine(0, t.sum_hdr, false), t.sum_tail, hdr % 2 == 1);
        assert_eq!(fold(acc), ones_sum(&get));
    }
}
