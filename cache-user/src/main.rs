//! `kcache`: the kcache binary. `kcache serve` runs the cache; `bucket` and `version` are tools
//! around the bucket map.

use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::{
    cli::{Cli, Command},
    config::Config,
};

mod arena;
mod bench;
mod bucket;
mod cli;
mod cluster;
mod config;
mod engine;
mod fastpath;
mod stats;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let cfg = Config::load(&args)?;
            init_logs(&cfg.log)?;
            tracing::info!(
                version = cache_core::exec::VERSION,
                config = ?args.config,
                port = cfg.port,
                udp_port = cfg.udp_port,
                listen = %cfg.listen,
                memory_mb = cfg.memory_mb,
                max_connections = cfg.max_connections,
                threads = cfg.threads_resolved(),
                item_max = cfg.item_max,
                pin_threads = cfg.pin_threads,
                growth_factor = cfg.growth_factor,
                tombstone_secs = cfg.tombstone_secs,
                lease_secs = cfg.lease_secs,
                xdp = %cfg.xdp,
                "kcache starting"
            );
            engine::serve(cfg)
        }
        Command::Route(args) => {
            if args.example {
                print!("{}", cluster::route::config::EXAMPLE);
                return Ok(());
            }
            let cfg = cluster::route::load(&args)?;
            init_logs(&cfg.log)?;
            cluster::route::run(&cfg)
        }
        Command::Bucket { map, keys } => {
            bucket::run(&mut std::io::stdout().lock(), map.as_deref(), &keys)
        }
        Command::Version => bucket::version(&mut std::io::stdout().lock()),
        Command::Bench(args) => bench::run(&args),
        Command::Herd(args) => bench::herd::run(&args),
        Command::Plot(args) => bench::plot::run(&args),
        Command::XdpStats { bpffs, iface } => {
            fastpath::counters::print(&bpffs, iface.as_deref(), &mut std::io::stdout().lock())
        }
        Command::XdpPass(args) => fastpath::pass::run(&args),
    }
}

/// Structured logs to stderr, filtered by `filter` (already checked by [`Config::validate`]);
/// colours only on a terminal, so log files and journald get plain text.
fn init_logs(filter: &str) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(filter)?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow!("starting the logger: {e}"))
}
