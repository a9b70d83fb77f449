//! Two servers' CAS numbering, side by side. memcached counts CAS values with one counter; a
//! kcache of several shards counts per shard (shard `s` of `n` hands out `s + n`, `s + 2n`,
//! ...), so the same item version has a different number on each side. The differential keeps
//! the pairing it has seen: the reference's CAS values in a request are rewritten into the
//! subject's before it is sent there, and the subject's CAS values in a reply into the
//! reference's before the replies are compared. A value the subject reports for two different
//! reference values (or the reverse) is an error: one version, one CAS.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct CasMap {
    to_subject: HashMap<u64, u64>,
    to_reference: HashMap<u64, u64>,
    /// The last pair the last reply showed (after a probe: the probed key's current CAS).
    last: Option<(u64, u64)>,
}

/// A CAS the subject never reported: kept clear of every real one (they are small).
const UNSEEN: u64 = 1 << 62;

impl CasMap {
    /// `request` (one request: a command line and maybe its data) in the subject's numbering.
    pub(crate) fn request(&self, request: &[u8]) -> Vec<u8> {
        let Some(nl) = request.iter().position(|&b| b == b'\n') else {
            return request.to_vec();
        };
        let Ok(line) = std::str::from_utf8(&request[..nl]) else {
            return request.to_vec();
        };
        let words: Vec<&str> = line.split(' ').collect();
        let cmd = words.first().copied().unwrap_or_default();
        let mut out: Vec<String> = Vec::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            let word = match (cmd, i) {
                ("cas", 5) => self.subject_number(w, ""),
                ("mg" | "ms" | "md" | "ma", i) if i >= 2 && w.starts_with('C') => {
                    self.subject_number(w, "C")
                }
                _ => None,
            };
            out.push(word.unwrap_or_else(|| (*w).to_owned()));
        }
        let mut bytes = out.join(" ").into_bytes();
        bytes.extend_from_slice(&request[nl..]);
        bytes
    }

    /// For a request naming a CAS value, an `mg … c` of its key to send to both servers first,
    /// so the key's current pair is known: the value is then placed against it (see
    /// `subject_number`). An item rewritten by a `set` has a CAS no reply showed, and CAS values
    /// of different keys (of different shards) do not keep their order across numberings.
    pub(crate) fn probe(&self, request: &[u8]) -> Option<Vec<u8>> {
        let nl = request.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&request[..nl]).ok()?;
        let words: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
        let cmd = *words.first()?;
        let key = *words.get(1)?;
        let unseen = |v: Option<u64>| v.is_some_and(|v| v != 0);
        let needs = match cmd {
            "cas" => unseen(words.get(5).and_then(|w| number(w, ""))),
            "mg" | "ms" | "md" | "ma" => words.iter().skip(2).any(|w| unseen(number(w, "C"))),
            _ => false,
        };
        let b = if cmd != "cas" && words.contains(&"b") {
            " b"
        } else {
            ""
        };
        needs.then(|| format!("mg {key}{b} c\r\n").into_bytes())
    }

    /// `word` (`prefix` then a number, maybe with a `\r`) renumbered for the subject.
    fn subject_number(&self, word: &str, prefix: &str) -> Option<String> {
        let rest = word.strip_prefix(prefix)?;
        let (digits, cr) = match rest.strip_suffix('\r') {
            Some(d) => (d, "\r"),
            None => (rest, ""),
        };
        let v: u64 = digits.parse().ok()?;
        // Placed against the key's current CAS (the probe's pair) as it is on the reference:
        // equal stays equal, older older (`ms … I` compares which is older), newer newer.
        let s = match (v, self.last) {
            (0, _) => 0,
            (v, Some((r, cur))) if v <= r => cur.saturating_sub(r - v).max(1),
            (v, Some((r, cur))) => cur + (v - r),
            // The key is not there: any value finds nothing to match.
            (v, None) => v | UNSEEN,
        };
        Some(format!("{prefix}{s}{cr}"))
    }

    /// The subject's `reply` with its CAS values in the reference's numbering, learning the
    /// pairs where the two replies differ only in CAS values.
    pub(crate) fn reply(&mut self, subject: &[u8], reference: &[u8]) -> Result<Vec<u8>, String> {
        self.last = None;
        if subject == reference {
            // Same numbers: they pair with themselves.
            for (s, r) in cas_words(subject).into_iter().zip(cas_words(reference)) {
                self.pair(s, r)?;
            }
            return Ok(subject.to_vec());
        }
        let split = |b: &[u8]| {
            b.split(|&c| c == b'\n')
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        };
        let (s_lines, r_lines) = (split(subject), split(reference));
        if s_lines.len() != r_lines.len() {
            return Ok(subject.to_vec());
        }
        let mut out = Vec::with_capacity(subject.len());
        for (i, (sl, rl)) in s_lines.iter().zip(&r_lines).enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend(self.line(sl, rl)?);
        }
        Ok(out)
    }

    /// One line of the subject's reply (bytes: values need not be text), renumbered where it
    /// differs from the reference's only in CAS positions.
    fn line(&mut self, s: &[u8], r: &[u8]) -> Result<Vec<u8>, String> {
        if s == r {
            return Ok(s.to_vec());
        }
        let words = |l: &[u8]| {
            l.split(|&c| c == b' ')
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        };
        let (sw, rw) = (words(s), words(r));
        if sw.len() != rw.len() {
            return Ok(s.to_vec());
        }
        let first = sw.first().map(Vec::as_slice);
        let value_line = first == Some(b"VALUE");
        let meta_line = matches!(first, Some(b"VA" | b"HD" | b"NS" | b"EX" | b"NF" | b"EN"));
        let me_line = first == Some(b"ME");
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(sw.len());
        for (i, (a, b)) in sw.iter().zip(&rw).enumerate() {
            let (a_text, b_text) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
            let cas = if value_line && i == 4 {
                number(&a_text, "").zip(number(&b_text, ""))
            } else if meta_line && i > 0 {
                number(&a_text, "c").zip(number(&b_text, "c"))
            } else if me_line {
                number(&a_text, "cas=").zip(number(&b_text, "cas="))
            } else {
                None
            };
            match cas {
                Some((sv, rv)) if sv != 0 && rv != 0 => {
                    self.pair(sv, rv)?;
                    out.push(b.clone());
                }
                _ => out.push(a.clone()),
            }
        }
        Ok(out.join(&b' '))
    }

    fn pair(&mut self, s: u64, r: u64) -> Result<(), String> {
        if s == 0 || r == 0 {
            // "No CAS" on one side only is a plain difference, left to the comparison.
            return Ok(());
        }
        self.last = Some((r, s));
        if let Some(&known) = self.to_reference.get(&s) {
            if known != r {
                return Err(format!(
                    "the subject's CAS {s} stands for memcached's {known} and now for {r}"
                ));
            }
        }
        if let Some(&known) = self.to_subject.get(&r) {
            if known != s {
                return Err(format!(
                    "memcached's CAS {r} stood for the subject's {known}, now for {s}"
                ));
            }
        }
        self.to_reference.insert(s, r);
        self.to_subject.insert(r, s);
        Ok(())
    }
}

/// `prefix` then a number (with maybe a trailing `\r`).
fn number(word: &str, prefix: &str) -> Option<u64> {
    let rest = word.strip_prefix(prefix)?;
    rest.strip_suffix('\r').unwrap_or(rest).parse().ok()
}

/// The CAS values a reply shows, in order.
fn cas_words(reply: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(reply);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let w: Vec<&str> = line.split(' ').collect();
        match w.first() {
            Some(&"VALUE") if w.len() == 5 => out.extend(number(w[4], "")),
            Some(&("VA" | "HD" | "NS" | "EX" | "NF" | "EN")) => {
                out.extend(w.iter().skip(1).filter_map(|x| number(x, "c")));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_carried_across() {
        let mut m = CasMap::default();
        let got = m.reply(
            b"VALUE k 0 1 35\r\nx\r\nEND\r\n",
            b"VALUE k 0 1 17\r\nx\r\nEND\r\n",
        );
        assert_eq!(got.as_deref(), Ok(&b"VALUE k 0 1 17\r\nx\r\nEND\r\n"[..]));
        assert_eq!(
            m.request(b"cas k 0 0 1 17\r\ny\r\n"),
            b"cas k 0 0 1 35\r\ny\r\n"
        );
        assert_eq!(m.request(b"mg k v C17 c\r\n"), b"mg k v C35 c\r\n");
        // Unseen ones keep their place against the last pair shown (the probed key's): newer
        // stays newer, older older; with nothing shown they match nothing; 0 stays 0.
        assert_eq!(m.request(b"ms k 1 C18\r\n"), b"ms k 1 C36\r\n");
        assert_eq!(m.request(b"ms k 1 C15 I\r\n"), b"ms k 1 C33 I\r\n");
        let _ = m.reply(b"EN\r\n", b"EN\r\n");
        let unseen = format!("ms k 1 C{}\r\n", 18 | UNSEEN);
        assert_eq!(m.request(b"ms k 1 C18\r\n"), unseen.as_bytes());
        assert_eq!(
            m.request(b"cas k 0 0 1 0\r\ny\r\n"),
            b"cas k 0 0 1 0\r\ny\r\n"
        );
        // A request naming an unpaired CAS is preceded by a look at its key.
        assert_eq!(
            m.probe(b"cas j 0 0 1 99\r\ny\r\n").as_deref(),
            Some(&b"mg j c\r\n"[..])
        );
        assert_eq!(
            m.probe(b"md aw== b C98\r\n").as_deref(),
            Some(&b"mg aw== b c\r\n"[..])
        );
        assert_eq!(m.probe(b"get k\r\n"), None);
        // A contradiction is an error.
        assert!(m.reply(b"HD c35\r\n", b"HD c18\r\n").is_err());
    }
}
