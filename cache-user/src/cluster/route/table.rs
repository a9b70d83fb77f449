//! The route table: key → pool (longest matching prefix) → server of that pool (ketama, or the
//! bucket map) → one of the router's destinations, which are every pool's servers in one list.
//! The pipeline asks it through [`Placer`]; a destination that no server stands for (a bucket
//! the map gives nobody) is the last one, [`RouteTable::unroutable`], whose requests the host
//! answers with an error.

use std::{
    net::SocketAddr,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use cache_core::{
    bucket::{vbucket_of, BucketMap},
    ketama::{hash_tag, Continuum, KeyHash, Node},
    pipeline::Placer,
};

use super::{
    config::{parse_server, PoolKind, RouteConfig},
    health::{Health, Rules},
    spool::Spool,
};

/// One server a router sends to.
#[derive(Debug, Clone)]
pub(crate) struct Dest {
    pub(crate) addr: SocketAddr,
    pub(crate) timeout: Duration,
    /// Its pool.
    pub(crate) pool: usize,
}

#[derive(Debug)]
enum How {
    Hash {
        ring: Continuum,
        hash: KeyHash,
        tag: Option<[u8; 2]>,
    },
    Buckets {
        /// The map, replaced when a server refuses a key and the file has a newer epoch.
        map: RwLock<Arc<BucketMap>>,
        path: String,
    },
}

#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) name: String,
    /// Its servers are destinations `first..first + servers`.
    first: usize,
    servers: usize,
    how: How,
    /// The gutter pool (its index) and the TTL cap of writes sent there.
    gutter: Option<(usize, i32)>,
}

#[derive(Debug)]
pub(crate) struct RouteTable {
    pub(crate) dests: Vec<Dest>,
    pub(crate) pools: Vec<Pool>,
    /// (prefix, pool), longest prefix first.
    routes: Vec<(Vec<u8>, usize)>,
    flush: bool,
    /// Whether each server is up, shared by every thread.
    pub(crate) health: Health,
    /// The clock `health` runs on.
    born: Instant,
    /// Deletes waiting for their server.
    pub(crate) spool: Spool,
}

impl RouteTable {
    pub(crate) fn new(cfg: &RouteConfig) -> Result<RouteTable> {
        let mut dests = Vec::new();
        let mut pools = Vec::new();
        let mut rules = Vec::new();
        for (name, p) in &cfg.pools {
            let specs = p
                .servers
                .iter()
                .map(|s| parse_server(s))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("pool {name:?}"))?;
            let how = match p.kind {
                PoolKind::Hash => {
                    let nodes: Vec<Node> = specs
                        .iter()
                        .map(|s| Node {
                            name: s.name.clone(),
                            weight: s.weight,
                        })
                        .collect();
                    let tag = p.hash_tag.as_bytes();
                    How::Hash {
                        ring: Continuum::new(&nodes),
                        hash: KeyHash::from_name(&p.hash)
                            .with_context(|| format!("pool {name:?}: hash {:?}", p.hash))?,
                        tag: (tag.len() == 2).then(|| [tag[0], tag[1]]),
                    }
                }
                PoolKind::Buckets => {
                    let text = std::fs::read_to_string(&p.map)
                        .with_context(|| format!("pool {name:?}: reading map {}", p.map))?;
                    let map = BucketMap::from_text(&text)
                        .with_context(|| format!("pool {name:?}: decoding map {}", p.map))?;
                    How::Buckets {
                        map: RwLock::new(Arc::new(map)),
                        path: p.map.clone(),
                    }
                }
            };
            let index = pools.len();
            let first = dests.len();
            rules.extend(specs.iter().map(|_| Rules {
                tko_timeouts: p.tko_timeouts,
                probe_ms: p.probe_ms,
                probe_max_ms: p.probe_max_ms,
            }));
            dests.extend(specs.iter().map(|s| Dest {
                addr: s.addr,
                pool: index,
                timeout: Duration::from_millis(p.timeout_ms),
            }));
            pools.push(Pool {
                name: name.clone(),
                first,
                servers: specs.len(),
                how,
                // Resolved once every pool is known (below).
                gutter: None,
            });
        }
        anyhow::ensure!(
            dests.len() < usize::from(u16::MAX) - 1,
            "{} servers: a router sends to fewer than 65534",
            dests.len()
        );
        for (name, p) in cfg.pools.iter().filter(|(_, p)| !p.gutter.is_empty()) {
            let g = pools.iter().position(|x| x.name == p.gutter);
            if let (Some(pool), Some(g)) = (pools.iter_mut().find(|x| &x.name == name), g) {
                pool.gutter = Some((g, p.gutter_ttl));
            }
        }
        let mut routes: Vec<(Vec<u8>, usize)> = cfg
            .routes
            .iter()
            .filter_map(|r| {
                let pool = pools.iter().position(|p| p.name == r.pool)?;
                Some((r.prefix.as_bytes().to_vec(), pool))
            })
            .collect();
        if routes.is_empty() {
            routes.push((Vec::new(), 0));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let addrs: Vec<SocketAddr> = dests.iter().map(|d| d.addr).collect();
        let spool = Spool::open(std::path::Path::new(&cfg.spool_dir), &addrs)?;
        let health = Health::new(rules);
        // Deletes left from an earlier run go first: their servers count as down until a
        // probe has replayed them.
        for (d, dest) in dests.iter().enumerate() {
            if spool.pending(d) {
                tracing::warn!(server = %dest.addr, "spooled deletes from an earlier run: replaying before use");
                health.unreachable(d, 0);
            }
        }
        Ok(RouteTable {
            dests,
            pools,
            routes,
            flush: cfg.flush_all,
            health,
            born: Instant::now(),
            spool,
        })
    }

    /// Milliseconds on the health clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// The destination of keys no server stands for.
    pub(crate) fn unroutable(&self) -> usize {
        self.dests.len()
    }

    /// Where `key` goes while destination `d` (its server) is down: its server in `d`'s pool's
    /// gutter pool, and the TTL cap; `None` without a gutter.
    pub(crate) fn gutter_of(&self, d: usize, key: &[u8], hash: u64) -> Option<(usize, i32)> {
        let pool = self.pools.get(self.dests.get(d)?.pool)?;
        let (g, ttl) = pool.gutter?;
        let g = self.pools.get(g)?;
        Some((g.first + g.server(key, hash)?, ttl))
    }

    /// Whether destination `d` is in a bucket-map pool (its refusals are worth a retry).
    pub(crate) fn by_buckets(&self, d: usize) -> bool {
        self.dests
            .get(d)
            .and_then(|x| self.pools.get(x.pool))
            .is_some_and(|p| matches!(p.how, How::Buckets { .. }))
    }

    /// After destination `d` refused a key as not its bucket's: reads its pool's map file
    /// again and takes it if its epoch is newer. Returns whether the map changed.
    pub(crate) fn reload_map(&self, d: usize) -> bool {
        let Some(pool) = self.dests.get(d).and_then(|x| self.pools.get(x.pool)) else {
            return false;
        };
        let How::Buckets { map, path } = &pool.how else {
            return false;
        };
        let newer = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| BucketMap::from_text(&t).map_err(|e| e.to_string()));
        match newer {
            Ok(m) => {
                let mut held = map.write().unwrap_or_else(PoisonError::into_inner);
                if m.epoch() <= held.epoch() {
                    return false;
                }
                tracing::info!(pool = %pool.name, epoch = m.epoch(), "bucket map reloaded after a refusal");
                *held = Arc::new(m);
                true
            }
            Err(e) => {
                tracing::warn!(pool = %pool.name, "reloading the bucket map {path}: {e}");
                false
            }
        }
    }

    /// The pool of `key`, if a route matches it.
    fn pool_of(&self, key: &[u8]) -> Option<&Pool> {
        let (_, p) = self
            .routes
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix))?;
        self.pools.get(*p)
    }
}

impl Pool {
    /// The server (index in the pool) of `key`.
    fn server(&self, key: &[u8], hash: u64) -> Option<usize> {
        match &self.how {
            How::Hash { ring, hash, tag } => {
                let k = tag.map_or(key, |t| hash_tag(key, t));
                Some(ring.locate(*hash, k))
            }
            How::Buckets { map, .. } => {
                let map = map.read().unwrap_or_else(PoisonError::into_inner);
                let node = map.owner(vbucket_of(hash))? as usize;
                (node < self.servers).then_some(node)
            }
        }
    }
}

impl Placer for RouteTable {
    fn count(&self) -> usize {
        self.dests.len() + 1
    }

    fn place(&self, key: &[u8], hash: u64) -> usize {
        self.pool_of(key)
            .and_then(|p| Some(p.first + p.server(key, hash)?))
            .unwrap_or(self.unroutable())
    }

    fn flush(&self) -> bool {
        self.flush
    }
}

#[cfg(test)]
mod tests {
    use cache_core::bucket::khash;

    use super::*;

    fn table(text: &str) -> RouteTable {
        let mut cfg = RouteConfig::from_toml(text).unwrap_or_else(|e| panic!("{e:#}"));
        let dir = std::env::temp_dir().join(format!("kcache-spool-unit-{}", std::process::id()));
        cfg.spool_dir = dir.display().to_string();
        RouteTable::new(&cfg).unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn prefixes_pick_pools_and_ketama_picks_servers() {
        let t = table(
            r#"
[pools.a]
kind = "hash"
servers = ["127.0.0.1:1001", "127.0.0.1:1002"]
[pools.b]
kind = "hash"
hash = "md5"
servers = ["127.0.0.1:2001", "127.0.0.1:2002", "127.0.0.1:2003"]
[[route]]
prefix = ""
pool = "a"
[[route]]
prefix = "feed:"
pool = "b"
"#,
        );
        assert_eq!(t.count(), 6);
        let mut seen = [0usize; 6];
        for i in 0..3000 {
            let k = format!("feed:{i}");
            seen[t.place(k.as_bytes(), khash(k.as_bytes()))] += 1;
            let k = format!("user:{i}");
            seen[t.place(k.as_bytes(), khash(k.as_bytes()))] += 1;
        }
        // "feed:" keys on pool b's three servers, the rest on pool a's two; none unroutable.
        assert!(seen[..2].iter().all(|&n| n > 800), "{seen:?}");
        assert!(seen[2..5].iter().all(|&n| n > 600), "{seen:?}");
        assert_eq!(seen[..2].iter().sum::<usize>(), 3000);
        assert_eq!(seen[5], 0);
        assert_eq!(t.dests[3].addr.port(), 2002);
    }

    #[test]
    fn bucket_pools_follow_the_map() {
        let dir = std::env::temp_dir().join(format!("kcache-route-map-{}", std::process::id()));
        let map = BucketMap::balanced(&[0, 1], 7).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&dir, map.to_text()).unwrap_or_else(|e| panic!("{e}"));
        let t = table(&format!(
            "[pools.n]\nkind = \"buckets\"\nmap = \"{}\"\nservers = [\"127.0.0.1:3001\", \"127.0.0.1:3002\"]\n",
            dir.display()
        ));
        let _ = std::fs::remove_file(&dir);
        for i in 0..1000 {
            let k = format!("k{i}");
            let h = khash(k.as_bytes());
            let owner = map.owner(vbucket_of(h)).map(|n| n as usize);
            assert_eq!(Some(t.place(k.as_bytes(), h)), owner, "{k}");
        }
    }
}
