//! The coherence hook of a cache node: the XDP fast path's promoter, when XDP is on. The
//! pipeline's `Worker` calls it after every request it runs and before the request's reply can
//! leave, which is what keeps XDP from serving a value older than an acknowledged write
//! (`fastpath`'s module docs).

use std::sync::Arc;

use cache_core::{pipeline::Coherence, store::Store};
use memmap2::MmapMut;

use crate::fastpath::{promote::Promoter, HotTables, Owner};

/// A shard's promoter, or nothing without XDP.
#[derive(Debug)]
pub(crate) struct Hot(Option<Promoter>);

impl Hot {
    /// The hook for shard `shard` of `shards`; with tables, the store starts logging its get
    /// hits for promotion.
    pub(crate) fn new(
        tables: Option<&Arc<HotTables>>,
        store: &mut Store<MmapMut>,
        shard: usize,
        shards: usize,
    ) -> Hot {
        Hot(tables.map(|t| {
            store.log_hits(true);
            Promoter::new(Arc::clone(t), Owner { shard, shards })
        }))
    }
}

impl Coherence<MmapMut> for Hot {
    fn after(&mut self, store: &mut Store<MmapMut>, now: u32) {
        if let Some(p) = self.0.as_mut() {
            p.after_request(store, now);
        }
    }

    fn flush_taken(&mut self, delay: i32, now: u32) {
        if let Some(p) = self.0.as_mut() {
            let quiet = if delay > 0 {
                cache_core::store::realtime(delay, now).saturating_add(1)
            } else {
                0
            };
            p.tables().flush(quiet);
        }
    }

    fn flush_applied(&mut self) {
        if let Some(p) = self.0.as_mut() {
            p.flush_applied();
        }
    }

    fn tick(&mut self, store: &mut Store<MmapMut>, now: u32) {
        if let Some(p) = self.0.as_mut() {
            p.tick(store, now);
        }
    }
}
