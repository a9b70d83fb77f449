//! The bucket map shared by router, engine and XDP: vbucket → owning node, at an epoch.
//!
//! The locator is the authority on the map; everyone else holds a copy and only ever moves to a
//! strictly newer epoch ([`BucketMap::apply`]), so a delayed or replayed update can never roll a
//! node back to an ownership it already gave up.

use thiserror::Error;

use super::{vbucket_of, Refusal, VBUCKETS};
use crate::abi::{BucketEntry, BUCKET_MAP_ENTRIES, NODE_NONE};

/// A node's id in the cluster. [`NODE_NONE`] (`u32::MAX`) is reserved for "no owner".
pub type NodeId = u32;

/// What can go wrong building, updating or exporting a [`BucketMap`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BucketError {
    /// An update whose epoch is not newer than the map's.
    #[error("map epoch {offered} is not newer than the current epoch {current}")]
    StaleEpoch { current: u64, offered: u64 },
    /// A vbucket number at or past [`VBUCKETS`].
    #[error("vbucket {0} out of range (0..{VBUCKETS})")]
    VbucketOutOfRange(u32),
    /// [`NODE_NONE`] used as a node id.
    #[error("node id {0} is reserved for \"no owner\"")]
    ReservedNode(NodeId),
    /// [`BucketMap::balanced`] with no nodes.
    #[error("a balanced map needs at least one node")]
    NoNodes,
    /// The same node given twice.
    #[error("node {0} listed twice")]
    DuplicateNode(NodeId),
    /// [`BucketMap::fill_abi`] given a slice of the wrong length.
    #[error("output has {got} entries, the BPF bucket map has {expected}")]
    AbiLength { expected: usize, got: usize },
    /// The epoch does not fit [`BucketEntry::epoch`].
    #[error("epoch {0} does not fit the BPF map's 32-bit epoch")]
    EpochTooLarge(u64),
    /// A malformed line in the text form (1-based line number).
    #[error("bucket map line {line}: {reason}")]
    Parse { line: usize, reason: String },
}

/// Owner of every vbucket at one epoch, plus the table of known nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMap {
    pub(super) epoch: u64,
    /// `VBUCKETS` entries; [`NODE_NONE`] where no node owns the bucket.
    pub(super) owners: Vec<NodeId>,
    /// Known nodes, sorted, unique; a node may own no bucket (joining, or drained).
    pub(super) nodes: Vec<NodeId>,
}

impl BucketMap {
    /// A map at `epoch` in which no node owns anything.
    pub fn empty(epoch: u64) -> Self {
        Self {
            epoch,
            owners: vec![NODE_NONE; usize::from(VBUCKETS)],
            nodes: Vec::new(),
        }
    }

    /// Every bucket owned by `node`, at epoch 1: the single-process default.
    pub fn new_single(node: NodeId) -> Result<Self, BucketError> {
        Self::balanced(&[node], 1)
    }

    /// Buckets spread evenly over `nodes` in contiguous blocks, in the order given: bucket `b`
    /// goes to `nodes[b * n / 16384]`. Blocks (rather than dealing buckets out one at a time)
    /// keep the text form to one range per node; either way the counts differ by at most one and
    /// keys spread over buckets uniformly.
    pub fn balanced(nodes: &[NodeId], epoch: u64) -> Result<Self, BucketError> {
        if nodes.is_empty() {
            return Err(BucketError::NoNodes);
        }
        let mut map = Self::empty(epoch);
        for &node in nodes {
            map.add_node(node)?;
        }
        if map.nodes.len() != nodes.len() {
            let dup = nodes
                .iter()
                .enumerate()
                .find(|(i, n)| nodes[..*i].contains(n));
            return Err(BucketError::DuplicateNode(
                dup.map_or(NODE_NONE, |(_, &n)| n),
            ));
        }
        let total = usize::from(VBUCKETS);
        for (b, owner) in map.owners.iter_mut().enumerate() {
            *owner = nodes[b * nodes.len() / total];
        }
        Ok(map)
    }

    /// The map's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sets the epoch (the locator does this after editing a copy, before publishing it).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Known nodes, ascending.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Adds `node` to the node table without giving it buckets.
    pub fn add_node(&mut self, node: NodeId) -> Result<(), BucketError> {
        if node == NODE_NONE {
            return Err(BucketError::ReservedNode(node));
        }
        if let Err(at) = self.nodes.binary_search(&node) {
            self.nodes.insert(at, node);
        }
        Ok(())
    }

    /// Owner of `vbucket`, or `None` if nobody owns it or it is out of range.
    pub fn owner(&self, vbucket: u16) -> Option<NodeId> {
        self.owners
            .get(usize::from(vbucket))
            .copied()
            .filter(|&n| n != NODE_NONE)
    }

    /// Whether `node` owns the bucket of the key whose [`khash`](super::khash) is `key_hash`.
    pub fn owns(&self, node: NodeId, key_hash: u64) -> bool {
        node != NODE_NONE && self.owner(vbucket_of(key_hash)) == Some(node)
    }

    /// The key's vbucket if `node` owns it, otherwise the refusal to send.
    pub fn check(&self, node: NodeId, key_hash: u64) -> Result<u16, Refusal> {
        let vbucket = vbucket_of(key_hash);
        if self.owns(node, key_hash) {
            Ok(vbucket)
        } else {
            Err(Refusal {
                vbucket,
                epoch: self.epoch,
            })
        }
    }

    /// Gives `vbucket` to `node` (adding it to the node table). The epoch is left alone: the
    /// caller bumps it once after a batch of moves.
    pub fn assign(&mut self, vbucket: u16, node: NodeId) -> Result<(), BucketError> {
        let slot = self
            .owners
            .get_mut(usize::from(vbucket))
            .ok_or(BucketError::VbucketOutOfRange(u32::from(vbucket)))?;
        if node == NODE_NONE {
            return Err(BucketError::ReservedNode(node));
        }
        *slot = node;
        self.add_node(node)
    }

    /// Replaces this map with `update` if its epoch is strictly newer.
    pub fn apply(&mut self, update: BucketMap) -> Result<(), BucketError> {
        if update.epoch <= self.epoch {
            return Err(BucketError::StaleEpoch {
                current: self.epoch,
                offered: update.epoch,
            });
        }
        *self = update;
        Ok(())
    }

    /// The buckets `node` owns, ascending.
    pub fn buckets_of(&self, node: NodeId) -> impl Iterator<Item = u16> + '_ {
        self.owners
            .iter()
            .enumerate()
            .filter(move |&(_, &owner)| owner == node && node != NODE_NONE)
            .filter_map(|(b, _)| u16::try_from(b).ok())
    }

    /// How many buckets no node owns.
    pub fn unowned(&self) -> usize {
        self.owners.iter().filter(|&&n| n == NODE_NONE).count()
    }

    /// Writes the BPF bucket array: `out[vbucket]` = owner (or [`NODE_NONE`]) and the epoch.
    pub fn fill_abi(&self, out: &mut [BucketEntry]) -> Result<(), BucketError> {
        let expected = BUCKET_MAP_ENTRIES as usize;
        if out.len() != expected {
            return Err(BucketError::AbiLength {
                expected,
                got: out.len(),
            });
        }
        let epoch =
            u32::try_from(self.epoch).map_err(|_| BucketError::EpochTooLarge(self.epoch))?;
        for (entry, &owner) in out.iter_mut().zip(&self.owners) {
            *entry = BucketEntry { owner, epoch };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::khash;

    const ALL: usize = VBUCKETS as usize;

    /// Nodes in the order given, and the bucket count each should end up with.
    type Shares = (&'static [NodeId], &'static [(NodeId, usize)]);

    #[test]
    fn single_owns_everything() {
        let map = BucketMap::new_single(7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(map.epoch(), 1);
        assert_eq!(map.nodes(), &[7]);
        assert_eq!(map.buckets_of(7).count(), ALL);
        assert_eq!(map.unowned(), 0);
        // Any key, any hash.
        for key in [&b"foo"[..], b"", b"user:1234:profile"] {
            assert!(map.owns(7, khash(key)));
            assert!(!map.owns(8, khash(key)));
        }
    }

    #[test]
    fn balanced_counts() {
        let cases: [Shares; 3] = [
            // Two nodes split exactly in half.
            (&[1, 2], &[(1, 8192), (2, 8192)]),
            // Three nodes: counts differ by at most one.
            (&[10, 20, 30], &[(10, 5462), (20, 5461), (30, 5461)]),
            // Order given decides who gets the low buckets, not the ids.
            (&[9, 3], &[(9, 8192), (3, 8192)]),
        ];
        for (nodes, want) in cases {
            let map = BucketMap::balanced(nodes, 5).unwrap_or_else(|e| panic!("{e}"));
            for &(node, count) in want {
                assert_eq!(map.buckets_of(node).count(), count, "{nodes:?} node {node}");
            }
            assert_eq!(map.owner(0), Some(nodes[0]));
            assert_eq!(map.unowned(), 0);
        }
    }

    #[test]
    fn balanced_rejects() {
        let cases: [(&[NodeId], BucketError); 3] = [
            // Nobody to own anything.
            (&[], BucketError::NoNodes),
            // NODE_NONE means "no owner", never a node.
            (&[1, NODE_NONE], BucketError::ReservedNode(NODE_NONE)),
            // A node twice would silently get two shares.
            (&[1, 2, 1], BucketError::DuplicateNode(1)),
        ];
        for (nodes, want) in cases {
            assert_eq!(BucketMap::balanced(nodes, 1), Err(want), "{nodes:?}");
        }
    }

    #[test]
    fn assign_and_owner() {
        let mut map = BucketMap::empty(3);
        // Nobody owns anything yet.
        assert_eq!(map.owner(0), None);
        assert_eq!(map.unowned(), ALL);
        // Assigning adds the node and leaves the epoch alone.
        assert_eq!(map.assign(100, 4), Ok(()));
        assert_eq!(map.owner(100), Some(4));
        assert_eq!(map.nodes(), &[4]);
        assert_eq!(map.epoch(), 3);
        // Out of range and reserved ids are refused.
        assert_eq!(
            map.assign(16384, 4),
            Err(BucketError::VbucketOutOfRange(16384))
        );
        assert_eq!(
            map.assign(1, NODE_NONE),
            Err(BucketError::ReservedNode(NODE_NONE))
        );
        assert_eq!(map.owner(16384), None);
        assert_eq!(map.buckets_of(4).collect::<Vec<_>>(), vec![100]);
        // NODE_NONE owns nothing, even though unowned slots hold it internally.
        assert_eq!(map.buckets_of(NODE_NONE).count(), 0);
    }

    #[test]
    fn apply_only_newer() {
        let mut map = BucketMap::balanced(&[1, 2], 5).unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            // Same epoch: a replay, refused.
            (
                5,
                Err(BucketError::StaleEpoch {
                    current: 5,
                    offered: 5,
                }),
            ),
            // Older epoch: a delayed update, refused.
            (
                4,
                Err(BucketError::StaleEpoch {
                    current: 5,
                    offered: 4,
                }),
            ),
            // Newer epoch: taken.
            (6, Ok(())),
            // And now 6 is the floor.
            (
                6,
                Err(BucketError::StaleEpoch {
                    current: 6,
                    offered: 6,
                }),
            ),
        ];
        for (epoch, want) in cases {
            let update = BucketMap::balanced(&[2], epoch).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(map.apply(update), want, "epoch {epoch}");
        }
        assert_eq!(map.buckets_of(2).count(), ALL);
    }

    #[test]
    fn check_refuses_foreign_keys() {
        let map = BucketMap::balanced(&[1, 2], 9).unwrap_or_else(|e| panic!("{e}"));
        let h = khash(b"foo");
        let vb = vbucket_of(h);
        let owner = map.owner(vb).unwrap_or(NODE_NONE);
        let other = if owner == 1 { 2 } else { 1 };
        // The owner gets the bucket back; anyone else gets the refusal with the map's epoch.
        assert_eq!(map.check(owner, h), Ok(vb));
        assert_eq!(
            map.check(other, h),
            Err(Refusal {
                vbucket: vb,
                epoch: 9
            })
        );
    }

    #[test]
    fn fill_abi_cases() {
        let mut map = BucketMap::empty(2);
        map.assign(1, 5).unwrap_or_else(|e| panic!("{e}"));
        let mut out = vec![BucketEntry::NONE; ALL];
        // Owned buckets carry owner and epoch; the rest say NODE_NONE.
        assert_eq!(map.fill_abi(&mut out), Ok(()));
        assert_eq!(out[1], BucketEntry { owner: 5, epoch: 2 });
        assert_eq!(
            out[0],
            BucketEntry {
                owner: NODE_NONE,
                epoch: 2
            }
        );
        // A slice that is not the whole BPF array is refused.
        let mut short = vec![BucketEntry::NONE; 10];
        assert_eq!(
            map.fill_abi(&mut short),
            Err(BucketError::AbiLength {
                expected: ALL,
                got: 10
            })
        );
        // The BPF entry holds a 32-bit epoch.
        map.set_epoch(u64::from(u32::MAX) + 1);
        assert_eq!(
            map.fill_abi(&mut out),
            Err(BucketError::EpochTooLarge(1 << 32))
        );
    }
}
