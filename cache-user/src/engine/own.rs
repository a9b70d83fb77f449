//! Which keys this node may serve: the bucket map at its current epoch, as one shard sees it.
//!
//! Every shard holds an `Arc<Ownership>` of its own and reads it without locks or atomics; a new
//! map reaches it as a message (`Msg::Buckets`) and the shard drops the items of the buckets it
//! lost in the same step, on its own thread. A bucket lives wholly on one shard (route.rs), so
//! the shard that stores a key is also the one that checks it: a request checked against the old
//! map ran before the drop, one checked against the new map is refused (invariant 2).
//!
//! Where the check runs:
//! - a single-key request, on the shard that executes it (here, or on arrival of its `Exec`);
//! - a multi-key read, whole, on the shard that took it, before it is split: if any key is not
//!   ours the request is refused with the first such key's refusal. A router splits multigets by
//!   owner, so a mixed one means the router's map is stale; a whole refusal makes it refetch the
//!   map and resend, rather than leaving it to patch together a partial answer;
//! - each part of a split multiget again on the shard that runs it (`keep`): only a map that
//!   changed between the split and the part can fail there, and that key is then left out, as a
//!   miss, so the reply's framing (`VALUE` blocks, one `END`) stays intact.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use cache_core::{
    bucket::{khash, vbucket_of, BucketMap, NodeId, Refusal, VBUCKETS},
    protocol::Request,
};

use super::msg::ShardCounters;

/// The bucket map and this node's id in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ownership {
    map: BucketMap,
    node: NodeId,
    /// This node owns every bucket: the check is skipped (the single-node default).
    whole: bool,
    /// Buckets this node owns.
    owned: usize,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Run,
    /// Not ours: reply with the refusal.
    Refuse(Refusal),
    /// Not ours, and the client asked for no reply (`noreply`): drop it without a word.
    Drop,
}

impl Verdict {
    /// For a request that does not run: writes its refusal (nothing when silent) and counts it.
    pub(crate) fn answer(self, counters: &mut ShardCounters, out: &mut Vec<u8>) {
        match self {
            Verdict::Run => {}
            Verdict::Refuse(r) => {
                counters.bucket_refused += 1;
                r.encode(out);
            }
            Verdict::Drop => {
                counters.bucket_refused += 1;
                counters.bucket_refused_noreply += 1;
            }
        }
    }
}

impl Ownership {
    pub(crate) fn new(map: BucketMap, node: NodeId) -> Ownership {
        let owned = map.buckets_of(node).count();
        Ownership {
            whole: owned == usize::from(VBUCKETS),
            owned,
            map,
            node,
        }
    }

    /// `path`'s map, or for an empty path every bucket owned by `node` at epoch 1.
    pub(crate) fn load(path: &str, node: NodeId) -> Result<Ownership> {
        let map = if path.is_empty() {
            BucketMap::new_single(node).context("the single-node bucket map")?
        } else {
            let path = Path::new(path);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading bucket_map {}", path.display()))?;
            BucketMap::from_text(&text)
                .with_context(|| format!("decoding bucket_map {}", path.display()))?
        };
        // XDP's bucket entries and HOT slots carry the epoch in 32 bits.
        ensure!(
            u32::try_from(map.epoch()).is_ok(),
            "bucket map epoch {} does not fit 32 bits (XDP's epoch)",
            map.epoch()
        );
        Ok(Ownership::new(map, node))
    }

    pub(crate) fn map(&self) -> &BucketMap {
        &self.map
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.map.epoch()
    }

    /// How many buckets this node owns.
    pub(crate) fn owned(&self) -> usize {
        self.owned
    }

    pub(crate) fn owns_vbucket(&self, vbucket: u16) -> bool {
        self.whole || self.map.owner(vbucket) == Some(self.node)
    }

    /// `Ok` if the key with this [`khash`] is ours, else its refusal.
    #[inline]
    pub(crate) fn check(&self, hash: u64) -> Result<(), Refusal> {
        let vbucket = vbucket_of(hash);
        if self.owns_vbucket(vbucket) {
            Ok(())
        } else {
            Err(Refusal {
                vbucket,
                epoch: self.map.epoch(),
            })
        }
    }

    /// Whether the key with this [`khash`] of a split multiget part may still be read here (see
    /// the module docs). Takes the hash so the store reuses it for the read.
    pub(crate) fn keep(&self, hash: u64) -> bool {
        self.check(hash).is_ok()
    }

    /// The verdict on `req`. `hash` is the key's hash for a request naming one key (route.rs
    /// computes it for exactly those); multi-key reads are checked key by key; requests without a
    /// key always run.
    pub(crate) fn verdict(&self, req: &Request<'_>, hash: Option<u64>) -> Verdict {
        if self.whole {
            return Verdict::Run;
        }
        let checked = match (hash, req) {
            (Some(h), _) => self.check(h),
            (None, Request::Get(g)) => g.keys.iter().try_for_each(|k| self.check(khash(k))),
            (None, Request::LeaseGet(keys)) => keys.iter().try_for_each(|k| self.check(khash(k))),
            (None, _) => Ok(()),
        };
        match checked {
            Ok(()) => Verdict::Run,
            Err(_) if silent(req) => Verdict::Drop,
            Err(r) => Verdict::Refuse(r),
        }
    }
}

/// Whether the client asked for no reply. Meta quiet mode (`q`) is not silence here: it hides
/// success codes only, and memcached still sends errors under it.
fn silent(req: &Request<'_>) -> bool {
    match req {
        Request::Store(s) => s.noreply,
        Request::Arith(a) => a.noreply,
        Request::Delete(d) => d.noreply,
        Request::Touch(t) => t.noreply,
        Request::LeaseSet(l) => l.noreply,
        Request::Refused { reply, .. } => !reply,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use cache_core::protocol::Parser;

    use super::*;

    /// Node 0 owns buckets 0..8192, node 1 the rest, at epoch 5.
    fn half() -> Ownership {
        let map = BucketMap::from_text("epoch 5\nnode 0 0-8191\nnode 1 8192-16383\n")
            .unwrap_or_else(|e| panic!("{e}"));
        Ownership::new(map, 0)
    }

    /// A key whose vbucket is (`mine`) or is not below 8192.
    fn key(mine: bool) -> String {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| (cache_core::bucket::vbucket(k.as_bytes()) < 8192) == mine)
            .unwrap_or_default()
    }

    fn verdict(own: &Ownership, text: &str) -> Verdict {
        let p = Parser::new()
            .parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        let hash = super::super::route::route(&p.request, 0, 1).1;
        own.verdict(&p.request, hash)
    }

    #[test]
    fn verdicts() {
        let own = half();
        let (a, b) = (key(true), key(false));
        let refusal = Verdict::Refuse(Refusal {
            vbucket: cache_core::bucket::vbucket(b.as_bytes()),
            epoch: 5,
        });
        let cases = [
            // Owned keys run, whatever the command.
            (format!("get {a}\r\n"), Verdict::Run),
            (format!("set {a} 0 0 1\r\nx\r\n"), Verdict::Run),
            (format!("mg {a} v\r\n"), Verdict::Run),
            // Unowned ones are refused with the key's bucket and the map's epoch.
            (format!("get {b}\r\n"), refusal),
            (format!("set {b} 0 0 1\r\nx\r\n"), refusal),
            (format!("delete {b}\r\n"), refusal),
            (format!("ms {b} 1\r\nx\r\n"), refusal),
            (format!("md {b} q\r\n"), refusal),
            (format!("lease-get {b}\r\n"), refusal),
            // A multiget mixing both is refused whole, with the first unowned key's refusal.
            (format!("get {a} {b} {a}\r\n"), refusal),
            (format!("gets {b} {a}\r\n"), refusal),
            (format!("get {a} {a}\r\n"), Verdict::Run),
            // noreply writes are dropped silently.
            (format!("set {b} 0 0 1 noreply\r\nx\r\n"), Verdict::Drop),
            (format!("delete {b} noreply\r\n"), Verdict::Drop),
            (format!("incr {b} 1 noreply\r\n"), Verdict::Drop),
            // Requests without keys are not the map's business.
            ("stats\r\n".to_owned(), Verdict::Run),
            ("version\r\n".to_owned(), Verdict::Run),
            ("flush_all\r\n".to_owned(), Verdict::Run),
            ("mn\r\n".to_owned(), Verdict::Run),
        ];
        for (text, want) in cases {
            assert_eq!(verdict(&own, &text), want, "{text:?}");
        }
    }

    /// Standard base64 with padding (cache-user has no base64 crate of its own).
    fn base64(bytes: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn base64_meta_keys_are_checked_decoded() {
        // `mg <base64> b` names the decoded key, and its bucket is the decoded key's.
        let own = half();
        let b = base64(key(false).as_bytes());
        assert!(matches!(
            verdict(&own, &format!("mg {b} b v\r\n")),
            Verdict::Refuse(_)
        ));
        let a = base64(key(true).as_bytes());
        assert_eq!(verdict(&own, &format!("mg {a} b v\r\n")), Verdict::Run);
        // The encoder agrees with RFC 4648's vectors.
        assert_eq!(
            (base64(b"f"), base64(b"foob")),
            ("Zg==".into(), "Zm9vYg==".into())
        );
    }

    #[test]
    fn whole_map_skips_the_check() {
        // The default: every bucket, every key.
        let own = Ownership::load("", 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((own.epoch(), own.owned()), (1, usize::from(VBUCKETS)));
        assert_eq!(
            verdict(&own, &format!("get {}\r\n", key(false))),
            Verdict::Run
        );
        assert!(own.keep(khash(b"anything")));
        // Someone else's map owns nothing here.
        let other = Ownership::new(half().map().clone(), 9);
        assert_eq!(other.owned(), 0);
        assert!(!other.keep(khash(key(true).as_bytes())));
    }

    #[test]
    fn load_errors() {
        let dir = std::env::temp_dir().join(format!("kcache-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            // Not there.
            ("", "reading bucket_map"),
            // Not a map.
            ("epoch x\n", "decoding bucket_map"),
            // An epoch XDP cannot carry.
            ("epoch 4294967296\nnode 0 0\n", "does not fit 32 bits"),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("map{i}"));
            if !text.is_empty() {
                std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
            }
            let e = Ownership::load(&path.to_string_lossy(), 0)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
