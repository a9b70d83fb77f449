//! The bucket map's text form, for files, the locator and humans:
//!
//! ```text
//! epoch 7
//! node 1 0-8191
//! node 2 8192-16000,16383
//! node 3
//! ```
//!
//! The first significant line is `epoch <u64>`; then one `node <id> [<ranges>]` line per known
//! node, where ranges are comma-separated `a-b` (inclusive) or single buckets, no spaces. A node
//! without ranges is known but owns nothing. Buckets no line names are unowned. Blank lines and
//! `#` comments are skipped. [`BucketMap::to_text`] writes nodes ascending with merged ranges, so
//! encoding is canonical and `from_text(to_text(m)) == m`.

use std::fmt::Write as _;

use super::{BucketError, BucketMap, NodeId, VBUCKETS};

impl BucketMap {
    /// The canonical text form (see the module docs).
    pub fn to_text(&self) -> String {
        let mut out = format!("epoch {}\n", self.epoch);
        for &node in &self.nodes {
            let _ = write!(out, "node {node}");
            let mut sep = ' ';
            let mut buckets = self.buckets_of(node).peekable();
            while let Some(lo) = buckets.next() {
                let mut hi = lo;
                while let Some(next) = buckets.next_if(|&b| b == hi + 1) {
                    hi = next;
                }
                let _ = if lo == hi {
                    write!(out, "{sep}{lo}")
                } else {
                    write!(out, "{sep}{lo}-{hi}")
                };
                sep = ',';
            }
            out.push('\n');
        }
        out
    }

    /// Parses the text form, rejecting unknown words, buckets out of range, a bucket given to two
    /// nodes and a node listed twice.
    pub fn from_text(text: &str) -> Result<Self, BucketError> {
        let mut map: Option<BucketMap> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: String| BucketError::Parse {
                line: i + 1,
                reason,
            };
            let mut words = line.split_ascii_whitespace();
            let head = words.next().unwrap_or_default();
            match (head, map.as_mut()) {
                ("epoch", None) => {
                    let epoch = number::<u64>(words.next(), "epoch").map_err(fail)?;
                    map = Some(BucketMap::empty(epoch));
                }
                ("epoch", Some(_)) => return Err(fail("a second `epoch` line".into())),
                ("node", None) => return Err(fail("`node` before `epoch`".into())),
                ("node", Some(m)) => {
                    let node = number::<NodeId>(words.next(), "node id").map_err(fail)?;
                    if m.nodes.contains(&node) {
                        return Err(BucketError::DuplicateNode(node));
                    }
                    m.add_node(node)?;
                    if let Some(ranges) = words.next() {
                        give(m, node, ranges).map_err(fail)?;
                    }
                }
                (other, _) => return Err(fail(format!("unknown word `{other}`"))),
            }
            if let Some(extra) = words.next() {
                return Err(fail(format!("unexpected `{extra}`")));
            }
        }
        map.ok_or_else(|| BucketError::Parse {
            line: 1,
            reason: "no `epoch` line".into(),
        })
    }
}

/// Gives every bucket in `ranges` (`a-b,c,...`) to `node`.
fn give(map: &mut BucketMap, node: NodeId, ranges: &str) -> Result<(), String> {
    for range in ranges.split(',') {
        let (lo, hi) = match range.split_once('-') {
            Some((lo, hi)) => (vbucket(lo)?, vbucket(hi)?),
            None => (vbucket(range)?, vbucket(range)?),
        };
        if lo > hi {
            return Err(format!("range `{range}` runs backwards"));
        }
        for b in lo..=hi {
            if let Some(prev) = map.owner(b) {
                return Err(format!(
                    "vbucket {b} given to both node {prev} and node {node}"
                ));
            }
            map.assign(b, node).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn vbucket(word: &str) -> Result<u16, String> {
    let b = number::<u16>(Some(word), "vbucket")?;
    if b >= VBUCKETS {
        return Err(format!("vbucket {b} out of range (0..{VBUCKETS})"));
    }
    Ok(b)
}

fn number<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, String> {
    let word = word.ok_or_else(|| format!("missing {what}"))?;
    // `str::parse` takes a leading `+`; the canonical form never writes one.
    if !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what} `{word}`"));
    }
    word.parse().map_err(|_| format!("bad {what} `{word}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BucketMap {
        BucketMap::from_text(text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }

    #[test]
    fn round_trips() {
        let mut holes = BucketMap::empty(42);
        for b in [0, 1, 2, 5, 16383] {
            holes.assign(b, 3).unwrap_or_else(|e| panic!("{e}"));
        }
        holes.add_node(9).unwrap_or_else(|e| panic!("{e}"));
        let maps = [
            // One node, one range.
            BucketMap::new_single(1).unwrap_or_else(|e| panic!("{e}")),
            // Three uneven blocks.
            BucketMap::balanced(&[30, 10, 20], 7).unwrap_or_else(|e| panic!("{e}")),
            // Singletons, a run, a hole, a node that owns nothing, unowned buckets.
            holes,
            // Nothing at all.
            BucketMap::empty(u64::MAX),
        ];
        for map in maps {
            let text = map.to_text();
            assert_eq!(parse(&text), map, "{text}");
        }
    }

    #[test]
    fn canonical_text() {
        let cases: [(BucketMap, &str); 2] = [
            // A single node writes one range.
            (
                BucketMap::new_single(1).unwrap_or_else(|e| panic!("{e}")),
                "epoch 1\nnode 1 0-16383\n",
            ),
            // Nodes come out ascending whatever order they were balanced in.
            (
                BucketMap::balanced(&[2, 1], 3).unwrap_or_else(|e| panic!("{e}")),
                "epoch 3\nnode 1 8192-16383\nnode 2 0-8191\n",
            ),
        ];
        for (map, want) in cases {
            assert_eq!(map.to_text(), want);
        }
        let mut m = BucketMap::empty(2);
        for b in [0, 1, 2, 5, 7, 8] {
            m.assign(b, 4).unwrap_or_else(|e| panic!("{e}"));
        }
        // Runs merge, singletons stay single.
        assert_eq!(m.to_text(), "epoch 2\nnode 4 0-2,5,7-8\n");
    }

    #[test]
    fn accepts_comments_and_blank_lines() {
        // Comments, blank lines, CRLF and extra spaces are all fine.
        let map = parse("# generated\n\nepoch 5\r\n  node 2   0-9,11  \n# tail\n");
        assert_eq!(map.epoch(), 5);
        assert_eq!(map.buckets_of(2).count(), 11);
        assert_eq!(map.owner(10), None);
    }

    #[test]
    fn rejects() {
        let cases: [(&str, &str); 13] = [
            // Empty input has no epoch.
            ("", "line 1: no `epoch` line"),
            // Node lines need an epoch first.
            ("node 1 0\n", "line 1: `node` before `epoch`"),
            // Only one epoch.
            ("epoch 1\nepoch 2\n", "line 2: a second `epoch` line"),
            // Unknown words are errors, not ignored.
            ("epoch 1\nowner 1 0\n", "line 2: unknown word `owner`"),
            // Epoch must be a number.
            ("epoch x\n", "line 1: bad epoch `x`"),
            // A leading plus is not canonical.
            ("epoch +1\n", "line 1: bad epoch `+1`"),
            // Trailing words are errors.
            ("epoch 1 2\n", "line 1: unexpected `2`"),
            // Bucket numbers stop at 16383.
            (
                "epoch 1\nnode 1 16384\n",
                "line 2: vbucket 16384 out of range (0..16384)",
            ),
            // Ranges run upwards.
            (
                "epoch 1\nnode 1 9-3\n",
                "line 2: range `9-3` runs backwards",
            ),
            // Empty range pieces are malformed.
            ("epoch 1\nnode 1 1,,2\n", "line 2: bad vbucket ``"),
            // One owner per bucket.
            (
                "epoch 1\nnode 1 0-9\nnode 2 9\n",
                "line 3: vbucket 9 given to both node 1 and node 2",
            ),
            // NODE_NONE is not a node.
            (
                "epoch 1\nnode 4294967295 0\n",
                "node id 4294967295 is reserved for \"no owner\"",
            ),
            // One line per node.
            ("epoch 1\nnode 1 0\nnode 1 1\n", "node 1 listed twice"),
        ];
        for (text, want) in cases {
            match BucketMap::from_text(text) {
                Ok(map) => panic!("{text:?} parsed as {map:?}"),
                Err(e) => assert_eq!(
                    e.to_string().trim_start_matches("bucket map "),
                    want,
                    "{text:?}"
                ),
            }
        }
    }
}
