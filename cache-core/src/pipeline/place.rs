//! Where a key's requests run, as a session sees it: on one of this node's shards (a cache
//! node), or at one of a router's destinations (none of them here).
//!
//! A cache node places a key on shard `vbucket(key) % shards` and runs it itself when that is
//! the core's own shard. A router places it with its route table (prefix → pool → server) and
//! never runs a keyed request itself: the same session, with every keyed request and every
//! multiget's keys handed to the host as [`Outgoing::Exec`](super::Outgoing::Exec), which for a
//! router means a backend connection.

use std::{fmt, sync::Arc};

use super::{
    route::{one_key, shard_of_hash},
    session::Core,
};
use crate::protocol::Request;

/// A router's key placement.
pub trait Placer: Send + Sync + fmt::Debug {
    /// Destinations are numbered `0..count()`.
    fn count(&self) -> usize;
    /// The destination of `key` (`hash` is its [`khash`](crate::bucket::khash)).
    fn place(&self, key: &[u8], hash: u64) -> usize;
    /// Whether `flush_all` is sent on to every server (else it is refused).
    fn flush(&self) -> bool;
}

/// Where keys live.
#[derive(Debug, Clone, Default)]
pub enum Place {
    /// On this node's shards; the core is shard `id` of `shards`.
    #[default]
    Shards,
    /// At a router's destinations.
    Out(Arc<dyn Placer>),
}

/// No destination is "here": what [`Core::here`] says on a router.
pub const NOWHERE: usize = usize::MAX;

impl Place {
    /// The place of `key` (hash `hash`) when keys live on `shards` shards or at a router's
    /// destinations.
    pub fn part_of(&self, shards: usize, key: &[u8], hash: u64) -> usize {
        match self {
            Place::Shards => shard_of_hash(hash, shards),
            Place::Out(p) => p.place(key, hash),
        }
    }
}

impl<B, H> Core<B, H> {
    /// How many places keys are split over (shards, or a router's destinations).
    pub fn parts(&self) -> usize {
        match &self.place {
            Place::Shards => self.shards.max(1),
            Place::Out(p) => p.count(),
        }
    }

    /// This core's own place ([`NOWHERE`] on a router).
    pub fn here(&self) -> usize {
        match &self.place {
            Place::Shards => self.id,
            Place::Out(_) => NOWHERE,
        }
    }

    /// The place of `key`, whose hash is `hash`.
    pub fn part_of(&self, key: &[u8], hash: u64) -> usize {
        self.place.part_of(self.shards, key, hash)
    }

    /// Where a single-key request runs: `None` here, else its place (another shard, or a
    /// router's destination). A router answers a request refused while parsing itself: it
    /// names a key but is not to be run anywhere.
    pub fn target(&self, req: &Request<'_>, hash: u64) -> Option<usize> {
        match &self.place {
            Place::Shards => {
                let s = shard_of_hash(hash, self.shards);
                (s != self.id).then_some(s)
            }
            Place::Out(_) if matches!(req, Request::Refused { .. }) => None,
            Place::Out(p) => {
                let mut scratch = [0u8; 256];
                one_key(req, &mut scratch).map(|k| p.place(k, hash))
            }
        }
    }

    /// Whether every key is here (one shard, not a router): no request needs the host.
    pub fn alone(&self) -> bool {
        matches!(self.place, Place::Shards) && self.shards <= 1
    }

    /// Whether this core routes to other servers.
    pub fn routes(&self) -> bool {
        matches!(self.place, Place::Out(_))
    }

    /// Whether a `flush_all` may run (a router may refuse it).
    pub fn flush_allowed(&self) -> bool {
        match &self.place {
            Place::Shards => true,
            Place::Out(p) => p.flush(),
        }
    }
}
