//! `kcache route`'s configuration: TOML, with an embedded example (`route.toml`) that it starts
//! on when no `--config` is given.
//!
//! ```toml
//! port = 22122                  # where clients connect (memcached protocol)
//! flush_all = false             # send flush_all on to every server, or refuse it
//! spool_dir = "/var/tmp/kcache-route-spool"  # deletes a down server missed (spool.rs)
//!
//! [pools.main]
//! kind = "hash"                 # "hash": ketama over servers; "buckets": the bucket map
//! hash = "fnv1a_64"             # twemproxy's hash names (hash pools)
//! servers = ["10.0.0.1:11211:1", "10.0.0.2:11211:1 cache-b"]
//! timeout_ms = 1000
//! tko_timeouts = 3              # failed requests in a row that mark a server down
//! probe_ms = 1000               # first probe of a down server; backs off x1.5 ...
//! probe_max_ms = 60000          # ... up to this
//! gutter = "gutter"             # a pool that serves a down server's keys (gutter.rs)
//! gutter_ttl = 10               # seconds a write to the gutter lives at most
//!
//! [[route]]                     # the longest matching prefix wins; "" matches every key
//! prefix = ""
//! pool = "main"
//! ```
//!
//! A server is written as twemproxy writes it, `host:port[:weight] [name]`: a pool moved from a
//! nutcracker YAML keeps its `servers:` lines and so its key placement. A `buckets` pool's
//! servers are the bucket map's nodes in id order (`servers[i]` is node `i`).

use std::{
    collections::BTreeMap,
    net::{SocketAddr, ToSocketAddrs},
    path::Path,
};

use anyhow::{bail, ensure, Context, Result};
use cache_core::ketama::KeyHash;
use serde::Deserialize;

/// The configuration `kcache route` starts on without `--config`.
pub(crate) const EXAMPLE: &str = include_str!("route.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RouteConfig {
    pub(crate) listen: String,
    pub(crate) port: u16,
    /// 0 = one per core.
    pub(crate) threads: usize,
    pub(crate) max_connections: usize,
    pub(crate) flush_all: bool,
    /// Where deletes that could not reach their server wait to be replayed (`spool.rs`).
    pub(crate) spool_dir: String,
    pub(crate) log: String,
    pub(crate) pin_threads: bool,
    pub(crate) pools: BTreeMap<String, PoolConfig>,
    #[serde(rename = "route")]
    pub(crate) routes: Vec<RouteRule>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PoolKind {
    #[default]
    Hash,
    Buckets,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PoolConfig {
    pub(crate) kind: PoolKind,
    pub(crate) servers: Vec<String>,
    /// Key hash of a `hash` pool (twemproxy's names).
    pub(crate) hash: String,
    /// Two characters, like `"{}"`: only the part of a key between them is hashed.
    pub(crate) hash_tag: String,
    /// Bucket map file of a `buckets` pool (`kcache bucket --map` prints one).
    pub(crate) map: String,
    /// Milliseconds a request waits for its server's reply.
    pub(crate) timeout_ms: u64,
    /// Consecutive failed requests that mark a server down (soft TKO; `health.rs`).
    pub(crate) tko_timeouts: u32,
    /// Milliseconds from a server going down to its first probe, and the most between probes.
    pub(crate) probe_ms: u64,
    pub(crate) probe_max_ms: u64,
    /// Pool that serves this pool's keys while their server is down (`gutter.rs`).
    pub(crate) gutter: String,
    /// Seconds at most a write sent to the gutter lives.
    pub(crate) gutter_ttl: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteRule {
    pub(crate) prefix: String,
    pub(crate) pool: String,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            listen: "127.0.0.1".into(),
            port: 22122,
            threads: 0,
            max_connections: 4096,
            flush_all: false,
            spool_dir: "/var/tmp/kcache-route-spool".into(),
            log: "info".into(),
            pin_threads: true,
            pools: BTreeMap::new(),
            routes: Vec::new(),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            kind: PoolKind::Hash,
            servers: Vec::new(),
            hash: "fnv1a_64".into(),
            hash_tag: String::new(),
            map: String::new(),
            timeout_ms: 1000,
            tko_timeouts: 3,
            probe_ms: 1000,
            probe_max_ms: 60_000,
            gutter: String::new(),
            gutter_ttl: 10,
        }
    }
}

/// One server of a pool, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerSpec {
    pub(crate) addr: SocketAddr,
    pub(crate) weight: u32,
    /// What ketama hashes: the given name, else `host` for port 11211, else `host:port`.
    pub(crate) name: String,
}

/// Parses `host:port[:weight] [name]`.
pub(crate) fn parse_server(text: &str) -> Result<ServerSpec> {
    let text = text.trim();
    let (spec, name) = match text.split_once(' ') {
        Some((s, n)) => (s, Some(n.trim())),
        None => (text, None),
    };
    // An IPv6 host is bracketed: [::1]:11211:1.
    let (host, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (h, rest) = r
            .split_once(']')
            .with_context(|| format!("server {text:?}: unclosed '['"))?;
        (h, rest.strip_prefix(':').unwrap_or(rest))
    } else {
        spec.split_once(':')
            .with_context(|| format!("server {text:?}: want host:port[:weight] [name]"))?
    };
    let (port, weight) = match rest.split_once(':') {
        Some((p, w)) => (p, w),
        None => (rest, "1"),
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("server {text:?}: bad port {port:?}"))?;
    let weight: u32 = weight
        .parse()
        .with_context(|| format!("server {text:?}: bad weight {weight:?}"))?;
    ensure!(weight > 0, "server {text:?}: a weight of 0");
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("server {text:?}: resolving {host}"))?
        .next()
        .with_context(|| format!("server {text:?}: {host} has no address"))?;
    let name = match name {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ if port == 11211 => host.to_owned(),
        _ => format!("{host}:{port}"),
    };
    Ok(ServerSpec { addr, weight, name })
}

impl RouteConfig {
    pub(crate) fn from_toml(text: &str) -> Result<RouteConfig> {
        let c: RouteConfig = toml::from_str(text).context("parsing the route configuration")?;
        c.validate()?;
        Ok(c)
    }

    pub(crate) fn load(path: Option<&Path>) -> Result<RouteConfig> {
        match path {
            None => RouteConfig::from_toml(EXAMPLE).context("the embedded route.toml"),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                RouteConfig::from_toml(&text).with_context(|| format!("in {}", p.display()))
            }
        }
    }

    fn validate(&self) -> Result<()> {
        ensure!(!self.pools.is_empty(), "no [pools.<name>]");
        for (name, p) in &self.pools {
            ensure!(!p.servers.is_empty(), "pool {name:?} has no servers");
            ensure!(p.timeout_ms > 0, "pool {name:?}: timeout_ms must be > 0");
            ensure!(
                p.tko_timeouts > 0,
                "pool {name:?}: tko_timeouts must be > 0"
            );
            ensure!(
                p.gutter.is_empty() || (p.gutter != *name && self.pools.contains_key(&p.gutter)),
                "pool {name:?}: gutter {:?} is not another pool",
                p.gutter
            );
            ensure!(p.gutter_ttl > 0, "pool {name:?}: gutter_ttl must be > 0");
            ensure!(
                p.probe_ms > 0 && p.probe_max_ms >= p.probe_ms,
                "pool {name:?}: want 0 < probe_ms <= probe_max_ms"
            );
            if p.kind == PoolKind::Hash && KeyHash::from_name(&p.hash).is_none() {
                bail!(
                    "pool {name:?}: hash {:?} is none of {:?}",
                    p.hash,
                    KeyHash::NAMES
                );
            }
            ensure!(
                p.hash_tag.is_empty() || p.hash_tag.len() == 2,
                "pool {name:?}: hash_tag is two characters, like \"{{}}\""
            );
            ensure!(
                p.kind == PoolKind::Hash || !p.map.is_empty(),
                "pool {name:?}: a buckets pool needs map = \"<bucket map file>\""
            );
        }
        ensure!(
            !self.routes.is_empty() || self.pools.len() == 1,
            "several pools and no [[route]]: say which keys go where"
        );
        for r in &self.routes {
            ensure!(
                self.pools.contains_key(&r.pool),
                "route {:?} names pool {:?}, which is not defined",
                r.prefix,
                r.pool
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_as_twemproxy_writes_them() {
        let s = parse_server("127.0.0.1:11211:2").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((s.weight, s.name.as_str()), (2, "127.0.0.1"));
        let s = parse_server("127.0.0.1:12000:1 cache-a").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((s.addr.port(), s.name.as_str()), (12000, "cache-a"));
        let s = parse_server("127.0.0.1:12001").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((s.weight, s.name.as_str()), (1, "127.0.0.1:12001"));
        let s = parse_server("[::1]:12002:1").unwrap_or_else(|e| panic!("{e:#}"));
        assert!(s.addr.is_ipv6());
        for bad in ["127.0.0.1", "127.0.0.1:x", "127.0.0.1:1:0", "[::1:1"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_loads_and_bad_ones_say_why() {
        let c = RouteConfig::load(None).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!c.pools.is_empty());
        let bad = |text: &str, why: &str| {
            let e = format!(
                "{:#}",
                RouteConfig::from_toml(text)
                    .err()
                    .unwrap_or_else(|| panic!("{text} loaded"))
            );
            assert!(e.contains(why), "{e}");
        };
        bad("[pools.a]\nkind = \"hash\"\nservers = []\n", "no servers");
        bad(
            "[pools.a]\nkind = \"hash\"\nhash = \"sha1\"\nservers = [\"127.0.0.1:1\"]\n",
            "hash \"sha1\"",
        );
        bad(
            "[pools.a]\nkind = \"hash\"\nservers = [\"127.0.0.1:1\"]\n[[route]]\nprefix = \"\"\npool = \"b\"\n",
            "not defined",
        );
        bad(
            "[pools.a]\nkind = \"buckets\"\nservers = [\"127.0.0.1:1\"]\n",
            "needs map",
        );
    }
}
