//! kcache's refusal: the reply to a request for a key whose bucket this node does not own.
//!
//! ```text
//! SERVER_ERROR not my vbucket <vbucket> epoch <epoch>\r\n
//! ```
//!
//! memcached has no such reply; this text is kcache's own. It is a `SERVER_ERROR` so that a client
//! that has never heard of buckets sees a failed request on a connection that stays usable, while
//! kcache's router recognises it ([`Refusal::parse`]), fetches the map if `epoch` is newer than its
//! own, and retries at the new owner. Sending the server's epoch lets the router tell "my map is
//! old" from "the server's map is old" without another round trip.

use std::fmt;

/// A refusal for one key: its bucket and the refusing server's map epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The key's vbucket.
    pub vbucket: u16,
    /// The epoch of the refusing server's bucket map.
    pub epoch: u64,
}

impl Refusal {
    /// Everything before the numbers.
    pub const PREFIX: &'static str = "SERVER_ERROR not my vbucket ";

    /// Appends the reply line, `\r\n` included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Reads a refusal line (with or without its `\r\n`); `None` for any other reply.
    pub fn parse(line: &[u8]) -> Option<Self> {
        let line = line.strip_suffix(b"\r\n").unwrap_or(line);
        let rest = std::str::from_utf8(line.strip_prefix(Self::PREFIX.as_bytes())?).ok()?;
        let (vbucket, epoch) = rest.split_once(" epoch ")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(vbucket) || !digits(epoch) {
            return None;
        }
        Some(Self {
            vbucket: vbucket.parse().ok()?,
            epoch: epoch.parse().ok()?,
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{} epoch {}", Self::PREFIX, self.vbucket, self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let cases = [
            // The smallest numbers.
            (
                Refusal {
                    vbucket: 0,
                    epoch: 0,
                },
                "SERVER_ERROR not my vbucket 0 epoch 0\r\n",
            ),
            // The largest ones still fit one line.
            (
                Refusal {
                    vbucket: 16383,
                    epoch: u64::MAX,
                },
                "SERVER_ERROR not my vbucket 16383 epoch 18446744073709551615\r\n",
            ),
        ];
        for (refusal, want) in cases {
            let mut out = Vec::new();
            refusal.encode(&mut out);
            assert_eq!(out, want.as_bytes());
            assert_eq!(Refusal::parse(&out), Some(refusal));
        }
    }

    #[test]
    fn parses() {
        let cases: [(&[u8], Option<Refusal>); 7] = [
            // With and without the line end.
            (
                b"SERVER_ERROR not my vbucket 12 epoch 3\r\n",
                Some(Refusal {
                    vbucket: 12,
                    epoch: 3,
                }),
            ),
            (
                b"SERVER_ERROR not my vbucket 12 epoch 3",
                Some(Refusal {
                    vbucket: 12,
                    epoch: 3,
                }),
            ),
            // Other server errors are not refusals.
            (b"SERVER_ERROR out of memory storing object\r\n", None),
            // Missing epoch.
            (b"SERVER_ERROR not my vbucket 12\r\n", None),
            // Signs and junk are not numbers.
            (b"SERVER_ERROR not my vbucket +12 epoch 3\r\n", None),
            (b"SERVER_ERROR not my vbucket 12 epoch 3x\r\n", None),
            // A vbucket that does not fit u16.
            (b"SERVER_ERROR not my vbucket 70000 epoch 3\r\n", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                Refusal::parse(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
