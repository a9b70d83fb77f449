//! `kcache`: the kcache binary. For now, tools around the bucket map; the server arrives with the
//! server issue.

use std::{ffi::OsString, path::PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bucket;

/// kcache: a memcached-compatible cache.
#[derive(Debug, Parser)]
#[command(name = "kcache", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print each key's vbucket and hash; with --map, the owners from a bucket map file.
    Bucket {
        /// Bucket map in text form (`epoch N`, then `node <id> <ranges>` lines).
        #[arg(long)]
        map: Option<PathBuf>,
        /// Keys to locate.
        #[arg(required_unless_present = "map")]
        keys: Vec<OsString>,
    },
    /// Print the version and the XDP layout version.
    Version,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Bucket { map, keys } => bucket::run(&mut out, map.as_deref(), &keys),
        Cmd::Version => bucket::version(&mut out),
    }
}
