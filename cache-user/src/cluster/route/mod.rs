//! `kcache route`: a memcached-protocol router on the engine. Clients speak classic text and
//! meta to it; it runs each connection through the same pipeline a cache node does
//! (`cache_core::pipeline`), except that keys are placed by a route table ([`RouteTable`]: key
//! prefix → pool → server) instead of on local shards, so every keyed request and every
//! multiget's keys go out over the shard's backend connections ([`Forward`]) and come back in
//! the client's request order. One thread per core, each with its own listener (SO_REUSEPORT)
//! and its own pipelined connection to every server.
//!
//! The router answers `version`, `verbosity`, `mn`, `quit` and `stats` itself (its own
//! counters: `route_*`); `flush_all` goes to every server only when `flush_all = true`.

pub(crate) mod config;
pub(crate) mod forward;
mod gutter;
mod health;
mod spool;
mod stats;
mod table;

use std::{path::PathBuf, sync::Arc};

use anyhow::Result;
use clap::Args;

pub(crate) use self::{
    config::RouteConfig,
    forward::{Forward, RouteCounters},
    stats::write_stats,
    table::RouteTable,
};
use crate::config::Config;

/// `kcache route` flags; each overrides the configuration file's value.
#[derive(Debug, Clone, Args)]
pub(crate) struct RouteArgs {
    /// TOML configuration (pools, routes); without it the embedded example
    /// (`cache-user/src/cluster/route/route.toml`)
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// TCP port clients connect to
    #[arg(short = 'p', long)]
    pub(crate) port: Option<u16>,
    /// Address to listen on
    #[arg(short = 'l', long)]
    pub(crate) listen: Option<String>,
    /// Worker threads (0 = one per core)
    #[arg(short = 't', long)]
    pub(crate) threads: Option<usize>,
    /// Log filter (tracing's EnvFilter syntax)
    #[arg(long)]
    pub(crate) log: Option<String>,
    /// Print the embedded example configuration and exit
    #[arg(long)]
    pub(crate) example: bool,
}

/// The route configuration with the flags applied.
pub(crate) fn load(a: &RouteArgs) -> Result<RouteConfig> {
    let mut c = RouteConfig::load(a.config.as_deref())?;
    if let Some(p) = a.port {
        c.port = p;
    }
    if let Some(l) = &a.listen {
        c.listen.clone_from(l);
    }
    if let Some(t) = a.threads {
        c.threads = t;
    }
    if let Some(l) = &a.log {
        c.log.clone_from(l);
    }
    Ok(c)
}

/// The engine settings a router runs with: no UDP, no XDP, and a token store (a router keeps
/// no items; its shards' stores only answer the commands without a key).
pub(crate) fn engine_config(c: &RouteConfig) -> Config {
    let threads = if c.threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    } else {
        c.threads
    };
    Config {
        port: c.port,
        udp_port: 0,
        listen: c.listen.clone(),
        threads,
        memory_mb: 2 * threads,
        max_connections: c.max_connections,
        log: c.log.clone(),
        pin_threads: c.pin_threads,
        xdp: String::new(),
        bucket_map: String::new(),
        ..Config::default()
    }
}

/// Runs the router until SIGTERM or SIGINT.
pub(crate) fn run(c: &RouteConfig) -> Result<()> {
    let table = Arc::new(RouteTable::new(c)?);
    for p in &table.pools {
        tracing::info!(pool = %p.name, "pool");
    }
    tracing::info!(
        servers = table.dests.len(),
        pools = table.pools.len(),
        flush_all = c.flush_all,
        "kcache route starting"
    );
    crate::engine::run(engine_config(c), Some(table))
}
