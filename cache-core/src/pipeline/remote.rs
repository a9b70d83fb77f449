//! What one shard asks another to run, and what comes back. Requests travel parsed and owned
//! ([`Owned`]); a multiget's keys travel as a shared key list with the positions the target
//! shard owns, never as text to parse again.

use std::sync::Arc;

use crate::protocol::{Keys, Owned};

/// How the keys of a multi-key read are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetKind {
    /// `get`/`gets` (`cas`), `gat`/`gats` (`touch`).
    Get { cas: bool, touch: Option<i32> },
    /// mcrouter's `lease-get`.
    Lease,
}

/// The keys of one multi-key read, copied once, each with its hash and shard.
#[derive(Debug)]
pub struct KeyList {
    text: Box<[u8]>,
    /// Start and length of each key in `text`.
    spans: Vec<(u32, u8)>,
    hashes: Vec<u64>,
    shards: Vec<u16>,
}

impl KeyList {
    /// The keys of `keys` (the first `skip`, already answered, left out), hashed and each
    /// given its place by `place(key, hash)` (a shard, or a router's destination).
    pub fn new(keys: &Keys<'_>, skip: usize, place: &dyn Fn(&[u8], u64) -> usize) -> KeyList {
        let mut text = Vec::with_capacity(keys.text().len());
        let mut spans = Vec::new();
        let mut hashes = Vec::new();
        let mut owners = Vec::new();
        for k in keys.iter().skip(skip) {
            spans.push((text.len() as u32, k.len() as u8));
            text.extend_from_slice(k);
            let h = crate::bucket::khash(k);
            hashes.push(h);
            owners.push(place(k, h) as u16);
        }
        KeyList {
            text: text.into_boxed_slice(),
            spans,
            hashes,
            shards: owners,
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Key `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        let (at, len) = self.spans[i];
        &self.text[at as usize..at as usize + len as usize]
    }

    pub fn hash(&self, i: usize) -> u64 {
        self.hashes[i]
    }

    pub fn shard(&self, i: usize) -> usize {
        usize::from(self.shards[i])
    }

    /// Bytes held (what a budget counts).
    pub fn bytes(&self) -> usize {
        self.text.len() + self.spans.len() * 15
    }
}

/// The keys one shard reads for a multiget: positions into the shared list.
#[derive(Debug, Clone)]
pub struct Part {
    pub kind: GetKind,
    pub list: Arc<KeyList>,
    pub keys: Arc<[u32]>,
}

/// A request for another shard.
#[derive(Debug)]
pub enum Remote {
    /// One single-key request. Its reply may take at most `grant` bytes; one that would take
    /// more does not run (see [`Answer::Over`]).
    One { req: Owned, hash: u64, grant: usize },
    /// `part.keys[from..]`, in order, while their replies fit `grant` bytes.
    Keys { part: Part, from: u32, grant: usize },
}

/// What came back.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The request ran; its reply.
    Done(Vec<u8>),
    /// Not run: its reply would need this many bytes, more than the grant.
    Over(usize),
    /// Replies to `part.keys[from..next]`: key `from + i`'s reply is `bytes[ends[i-1]..ends[i]]`
    /// (empty for a miss). `over` is the size the key at `next` needs, when it did not fit.
    Keys {
        bytes: Vec<u8>,
        ends: Vec<u32>,
        next: u32,
        over: Option<usize>,
    },
}
