//! The seeded request stream the differential test sends: classic and meta commands over a
//! small key set, values with binary bytes, `noreply` and quiet (`q`) variants, and a few
//! malformed requests whose replies are fixed.
//!
//! Left out, because the reply depends on timing or on implementation details rather than on
//! the request stream: the `t`, `l`, `h` and `R` meta flags (TTL left, last access, hit-before,
//! recache-by-TTL), finite TTLs other than "already expired" (`-1`, an absolute time in 1970)
//! or "far away" (100000 s), delayed `flush_all`, `stats`, `me` (slab classes), and requests
//! shorter than the data they announce (the server would wait for the rest).
//!
//! Two corners where memcached reads past the end of an item's data, into whatever memory
//! follows, so that two memcached processes fed the same stream disagree on whether a value is
//! numeric: `safe_strtoull` runs `strchr(data, '-')` on values of 2^63 and up, and `strtoull`
//! skips leading whitespace right through a value that is all whitespace (or empty) and its
//! `\r\n`. So numbers stay far below 2^63, and blank values (empty or all whitespace, which
//! includes the empty placeholder an `mg ... N` miss creates) only ever go to the `BLANK` keys,
//! which `incr`, `decr` and `ma` never touch.

#[path = "meta.rs"]
mod meta;

use rand::{rngs::SmallRng, seq::SliceRandom, Rng, SeedableRng};

/// Keys that may hold blank values (see the top of the file), by index into `Draw::keys`.
const BLANK: std::ops::Range<usize> = 10..14;
/// TTLs whose effect does not depend on the clock.
const TTLS: [i64; 6] = [0, 0, 0, -1, 100_000, 2_592_001];

pub(crate) struct Draw {
    rng: SmallRng,
    keys: Vec<String>,
    /// CAS values seen in replies, for `cas` and `C` that can hit.
    cas_seen: Vec<u64>,
    /// The last CAS seen for some keys, so `cas` can follow `gets` as clients do.
    cas_of_key: Vec<(String, u64)>,
}

impl Draw {
    pub(crate) fn new(seed: u64) -> Draw {
        let mut keys: Vec<String> = (0..14).map(|i| format!("k{i}")).collect();
        keys.extend([
            "a:b/c".into(),
            "~!@#$%^&*()_+[]".into(),
            "K-e_y.9".into(),
            "x".repeat(250),
        ]);
        Draw {
            rng: SmallRng::seed_from_u64(seed),
            keys,
            cas_seen: Vec::new(),
            cas_of_key: Vec::new(),
        }
    }

    /// Every key the stream uses.
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Learns the CAS values in a reply (`VALUE <k> <f> <n> <cas>` and meta `c<cas>`).
    pub(crate) fn observe(&mut self, reply: &[u8]) {
        for line in reply.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let (key, cas) = match words.first() {
                Some(&"VALUE") if words.len() == 5 => (Some(words[1]), words[4].parse().ok()),
                Some(&("VA" | "HD" | "EN" | "NF" | "NS" | "EX")) => {
                    let flag = |c: char| words.iter().find_map(|w| w.strip_prefix(c));
                    // A base64 key (`b`) is not the key the stream names.
                    let key = flag('k').filter(|_| !words.contains(&"b"));
                    (key, flag('c').and_then(|c| c.parse().ok()))
                }
                _ => (None, None),
            };
            let Some(cas) = cas else { continue };
            self.cas_seen.push(cas);
            if self.cas_seen.len() > 16 {
                self.cas_seen.remove(0);
            }
            if let Some(key) = key {
                self.cas_of_key.retain(|(k, _)| k != key);
                self.cas_of_key.push((key.to_owned(), cas));
                if self.cas_of_key.len() > 8 {
                    self.cas_of_key.remove(0);
                }
            }
        }
    }

    /// The next request.
    pub(crate) fn request(&mut self) -> Vec<u8> {
        match self.rng.gen_range(0..100) {
            0..=19 => self.store(),
            20..=24 => self.cas(),
            25..=39 => self.retrieve(),
            40..=43 => self.touch(),
            44..=49 => self.delete(),
            50..=57 => self.arithmetic(),
            58..=72 => self.meta_get(),
            73..=84 => self.meta_set(),
            85..=89 => self.meta_delete(),
            90..=95 => self.meta_arithmetic(),
            96 => self.flush(),
            97 => b"version\r\n".to_vec(),
            _ => self.malformed(),
        }
    }

    fn store(&mut self) -> Vec<u8> {
        let cmd = *["set", "set", "set", "add", "replace", "append", "prepend"]
            .choose(&mut self.rng)
            .unwrap_or(&"set");
        let (value, flags, ttl) = (self.value(), self.flags(), self.ttl());
        let key = self.key_for(&value);
        let noreply = self.noreply();
        let mut out =
            format!("{cmd} {key} {flags} {ttl} {}{noreply}\r\n", value.len()).into_bytes();
        with_data(&mut out, &value);
        out
    }

    fn cas(&mut self) -> Vec<u8> {
        let (mut value, flags, ttl) = (self.value(), self.flags(), self.ttl());
        let known = self.cas_of_key.choose(&mut self.rng).cloned();
        let (key, cas) = match known {
            Some((key, cas)) if self.rng.gen_ratio(1, 2) => {
                let blank_key = self.keys[BLANK].contains(&key);
                while !blank_key && is_blank(&value) {
                    value = self.value();
                }
                (key, cas)
            }
            _ => (self.key_for(&value), self.cas_value()),
        };
        let noreply = self.noreply();
        let mut out =
            format!("cas {key} {flags} {ttl} {} {cas}{noreply}\r\n", value.len()).into_bytes();
        with_data(&mut out, &value);
        out
    }

    fn retrieve(&mut self) -> Vec<u8> {
        let cmd = *["get", "get", "gets", "gat", "gats"]
            .choose(&mut self.rng)
            .unwrap_or(&"get");
        let mut out = cmd.to_owned();
        if cmd.starts_with("gat") {
            out.push_str(&format!(" {}", self.ttl()));
        }
        for _ in 0..self.rng.gen_range(1..=4) {
            out.push(' ');
            out.push_str(&self.key());
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn touch(&mut self) -> Vec<u8> {
        let (key, ttl, noreply) = (self.key(), self.ttl(), self.noreply());
        format!("touch {key} {ttl}{noreply}\r\n").into_bytes()
    }

    fn delete(&mut self) -> Vec<u8> {
        let (key, noreply) = (self.key(), self.noreply());
        format!("delete {key}{noreply}\r\n").into_bytes()
    }

    fn arithmetic(&mut self) -> Vec<u8> {
        let cmd = if self.rng.gen_bool(0.5) {
            "incr"
        } else {
            "decr"
        };
        let (key, noreply) = (self.numeric_key(), self.noreply());
        let delta = match self.rng.gen_range(0..20) {
            0 => self.rng.gen::<u32>().to_string(),
            1 => "abc".to_owned(),
            _ => self.rng.gen_range(0..100u64).to_string(),
        };
        format!("{cmd} {key} {delta}{noreply}\r\n").into_bytes()
    }

    fn flush(&mut self) -> Vec<u8> {
        let form = ["flush_all", "flush_all 0", "flush_all noreply"].choose(&mut self.rng);
        format!("{}\r\n", form.unwrap_or(&"flush_all")).into_bytes()
    }

    /// Requests with a fixed error reply, each complete (never shorter than it announces).
    fn malformed(&mut self) -> Vec<u8> {
        let key = self.key();
        let long = "y".repeat(251);
        let forms = [
            "bogus command\r\n".to_owned(),
            "get\r\n".to_owned(),
            format!("get {long}\r\n"),
            format!("set {key} 0 0\r\n"),
            format!("set {key} 0 0 -1\r\n"),
            format!("set {key} 0 0 3\r\nabcde\r\n"),
            format!("set {long} 0 0 1\r\nz\r\n"),
            format!("incr {key} -1\r\n"),
            format!("touch {key}\r\n"),
            format!("delete {key} 5\r\n"),
            format!("mg {key} v v\r\n"),
            format!("mg {key} v !\r\n"),
            format!("mg {key} O{}\r\n", "o".repeat(40)),
            format!("ms {key} 2 Fx\r\nab\r\n"),
            format!("ms {key} x\r\n"),
            format!("ma {key} Dx\r\n"),
        ];
        forms
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_default()
            .into_bytes()
    }

    fn key(&mut self) -> String {
        // Hot keys more often, so commands meet existing items.
        let n = if self.rng.gen_ratio(2, 3) {
            6
        } else {
            self.keys.len()
        };
        self.keys[self.rng.gen_range(0..n)].clone()
    }

    /// A key never holding a blank value.
    fn numeric_key(&mut self) -> String {
        loop {
            let key = self.key();
            if !self.keys[BLANK].contains(&key) {
                return key;
            }
        }
    }

    fn blank_key(&mut self) -> String {
        self.keys[self.rng.gen_range(BLANK)].clone()
    }

    /// A key for storing `value`: blank values go to the blank keys.
    fn key_for(&mut self, value: &[u8]) -> String {
        if value
            .iter()
            .all(|&b| b == b' ' || (b'\t'..=b'\r').contains(&b))
        {
            self.blank_key()
        } else {
            self.key()
        }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.gen_range(0..10) {
            0..=2 => {
                let numbers = ["0", "1", "9", "10", "99", "100", "4294967295", "007", " 12"];
                let n = numbers.choose(&mut self.rng).unwrap_or(&"0");
                if self.rng.gen_ratio(1, 4) {
                    self.rng.gen::<u32>().to_string().into_bytes()
                } else {
                    n.as_bytes().to_vec()
                }
            }
            3 => Vec::new(),
            4..=7 => self.bytes(1..16),
            8 => self.bytes(16..300),
            _ => self.bytes(300..3000),
        }
    }

    /// Random bytes, one in eight a CR or LF so line endings turn up inside values.
    fn bytes(&mut self, len: std::ops::Range<usize>) -> Vec<u8> {
        let n = self.rng.gen_range(len);
        (0..n)
            .map(|_| match self.rng.gen_range(0..16) {
                0 => b'\r',
                1 => b'\n',
                _ => self.rng.gen(),
            })
            .collect()
    }

    fn flags(&mut self) -> u32 {
        if self.rng.gen_ratio(3, 4) {
            0
        } else {
            self.rng.gen()
        }
    }

    fn ttl(&mut self) -> i64 {
        *TTLS.choose(&mut self.rng).unwrap_or(&0)
    }

    fn cas_value(&mut self) -> u64 {
        match self.cas_seen.choose(&mut self.rng) {
            Some(&cas) if self.rng.gen_ratio(3, 4) => cas,
            _ => self.rng.gen_range(0..200),
        }
    }

    fn noreply(&mut self) -> &'static str {
        if self.rng.gen_ratio(1, 8) {
            " noreply"
        } else {
            ""
        }
    }

    fn opaque(&mut self) -> String {
        format!("O{}", self.rng.gen_range(0..100_000u32))
    }

    /// Each of `flags` with probability 1/3.
    fn pick(&mut self, flags: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for &f in flags {
            if self.rng.gen_ratio(1, 3) && !out.iter().any(|o| o == f) {
                out.push(f.to_owned());
            }
        }
        out
    }
}

/// Empty or all whitespace, as C's `isspace` has it.
fn is_blank(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b' ' || (b'\t'..=b'\r').contains(&b))
}

fn with_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}
