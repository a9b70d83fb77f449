//! SIGHUP: re-read `bucket_map` and move the node (XDP first, then every shard) to it if its
//! epoch is newer than the current one; otherwise log why and keep the current map.
//!
//! XDP is moved before the shards, in an order that is safe at every step even if a step
//! fails: the config epoch first (from then on no HOT slot and no `BUCKETS` entry of the old
//! epoch is served, so XDP passes every get up), then the `BUCKETS` entries, each servable again
//! once it carries the new epoch. Then every shard gets the map, refuses what it lost and drops
//! those items, which also empties their HOT copies. HOT slots of buckets still owned are
//! re-promoted under the new epoch as gets come in (the old ones are demoted by the once-a-second
//! scan), so a map change costs XDP's hit rate for a second or two.

use std::sync::{atomic::Ordering, Arc, Mutex, PoisonError};

use cache_core::bucket::{NodeId, Ownership};

use super::{msg::Msg, own, Shared};
use crate::fastpath::loader::Fastpath;

/// The signal thread's side of the bucket map.
pub(crate) struct Reloader {
    path: String,
    node: NodeId,
    current: Arc<Ownership>,
    fastpath: Arc<Mutex<Option<Fastpath>>>,
}

impl Reloader {
    pub(crate) fn new(
        path: String,
        node: NodeId,
        current: Arc<Ownership>,
        fastpath: Arc<Mutex<Option<Fastpath>>>,
    ) -> Reloader {
        Reloader {
            path,
            node,
            current,
            fastpath,
        }
    }

    /// Re-reads the file and applies it if newer (see the module docs).
    pub(crate) fn reload(&mut self, shared: &Shared) {
        let epoch = self.current.epoch();
        if self.path.is_empty() {
            tracing::info!("SIGHUP: no bucket_map configured; nothing to reload");
            return;
        }
        let new = match own::load(&self.path, self.node) {
            Ok(own) => own,
            Err(e) => {
                tracing::warn!("SIGHUP: keeping the bucket map of epoch {epoch}: {e:#}");
                return;
            }
        };
        if new.epoch() <= epoch {
            tracing::warn!(
                "SIGHUP: keeping the bucket map of epoch {epoch}: {} has epoch {}, not newer",
                self.path,
                new.epoch()
            );
            return;
        }
        if new.owned() == 0 {
            tracing::warn!(
                node = self.node,
                "the bucket map of epoch {} gives this node no bucket: every keyed request will \
                 be refused",
                new.epoch()
            );
        }
        let lost = (0..cache_core::bucket::VBUCKETS)
            .filter(|&vb| self.current.owns_vbucket(vb) && !new.owns_vbucket(vb))
            .count();
        let gained = (0..cache_core::bucket::VBUCKETS)
            .filter(|&vb| !self.current.owns_vbucket(vb) && new.owns_vbucket(vb))
            .count();
        let new = Arc::new(new);
        if let Some(f) = self
            .fastpath
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            // On failure XDP passes more up, never less (module docs); the shards still move.
            if let Err(e) = f.apply_map(new.map()) {
                tracing::error!("moving XDP to bucket map epoch {}: {e:#}", new.epoch());
            }
        }
        for m in &shared.mailboxes {
            m.send(Msg::Buckets(Arc::clone(&new)));
        }
        shared.bucket_epoch.store(new.epoch(), Ordering::Relaxed);
        shared
            .buckets_owned
            .store(new.owned() as u64, Ordering::Relaxed);
        tracing::info!(
            from = epoch,
            to = new.epoch(),
            owned = new.owned(),
            lost,
            gained,
            "bucket map reloaded"
        );
        self.current = new;
    }
}
