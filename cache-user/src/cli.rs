//! The command line: `kcache serve` with memcached's flags where they mean the same thing, and the
//! `bucket` and `version` tools.
//!
//! Every `serve` flag is optional so that a value from `--config` applies unless the flag is given;
//! the defaults shown in `--help` are those of the embedded `default.toml` (see [`crate::config`]).

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config;

/// kcache: a memcached-compatible cache.
#[derive(Debug, Parser)]
#[command(name = "kcache", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the cache server: memcached's text and meta protocol over TCP, and UDP with -U.
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(ServeArgs),
    /// Run the router: memcached clients in, each key sent to its server by pools and routes
    /// (ketama as twemproxy, or the bucket map), multigets split and merged in order.
    Route(crate::cluster::route::RouteArgs),
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
    /// Load a memcached server over TCP or UDP and report throughput and latency percentiles.
    #[command(after_help = crate::bench::BENCH_AFTER_HELP)]
    Bench(crate::bench::BenchArgs),
    /// Delete one hot key and let a herd of clients miss it at once, with or without leases;
    /// count the backend fills.
    #[command(after_help = crate::bench::herd::HERD_AFTER_HELP)]
    Herd(crate::bench::herd::HerdArgs),
    /// Draw SVG plots from `kcache bench` reports or rate sweeps, several series on one chart.
    #[command(after_help = crate::bench::plot::PLOT_AFTER_HELP)]
    Plot(crate::bench::plot::PlotArgs),
    /// Print the XDP program's counters (summed over CPUs) of a running `kcache serve --xdp`,
    /// read from its pinned COUNTERS map.
    XdpStats {
        /// Where bpffs is (the server's `bpffs` setting)
        #[arg(long, value_name = "PATH", default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// The server's XDP interface; optional when only one server runs XDP
        #[arg(long, value_name = "IFACE")]
        iface: Option<String>,
    },
    /// Attach the pass-through XDP program (`kcache_pass`) in native mode to an interface in a
    /// network namespace, pinned so it stays after this exits: the peer of a veth whose other end
    /// runs kcache's XDP needs one for native XDP_TX replies to arrive.
    XdpPass(XdpPassArgs),
}

/// `kcache xdp-pass` flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct XdpPassArgs {
    /// Network namespace, as named under /run/netns (`ip netns add NAME`)
    #[arg(long, value_name = "NAME")]
    pub(crate) netns: String,
    /// Interface inside that namespace
    #[arg(long, value_name = "IFACE")]
    pub(crate) iface: String,
    /// Where the link is pinned, in the host's bpffs [default: /sys/fs/bpf/kcache-pass-NAME-IFACE]
    #[arg(long, value_name = "PATH")]
    pub(crate) pin: Option<PathBuf>,
    /// Remove the pin (which detaches the program) instead of attaching
    #[arg(long)]
    pub(crate) detach: bool,
}

const SERVE_AFTER_HELP: &str = "\
Settings are taken from the built-in defaults, then the --config file, then the flags given.
Flags mean what they mean to memcached; memory is split evenly across threads, and each thread
needs at least twice max(-I, 1m) of it.";

/// `kcache serve` flags. `None` (or `false` for `--no-pin`) leaves the config file's value.
#[derive(Debug, Default, Clone, Args)]
pub(crate) struct ServeArgs {
    /// TCP port to listen on [default: 11211]
    #[arg(short = 'p', long, value_name = "PORT")]
    pub(crate) port: Option<u16>,

    /// UDP port to listen on; 0 turns UDP off [default: 0]
    #[arg(short = 'U', long, value_name = "PORT")]
    pub(crate) udp_port: Option<u16>,

    /// IP address to listen on, e.g. 0.0.0.0 or ::1 [default: 127.0.0.1]
    #[arg(short = 'l', long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,

    /// Item memory in megabytes, split evenly across threads (at least 8) [default: 64]
    #[arg(short = 'm', long, value_name = "MB")]
    pub(crate) memory_limit: Option<usize>,

    /// Most simultaneous connections; past it a new one gets SERVER_ERROR and is closed
    /// [default: 1024]
    #[arg(short = 'c', long, value_name = "N")]
    pub(crate) conn_limit: Option<usize>,

    /// Worker threads, each with its own ring, memory and share of the keys; 0 = one per core
    /// (at most 256, and fewer if -m cannot feed that many) [default: one per core]
    #[arg(short = 't', long, value_name = "N")]
    pub(crate) threads: Option<usize>,

    /// Largest item (key, value and header): bytes, or with a k or m suffix like 512k or 1m;
    /// from 1k to 1024m [default: 1m]
    #[arg(short = 'I', long, value_name = "SIZE", value_parser = config::item_max_arg)]
    pub(crate) max_item_size: Option<usize>,

    /// TOML config file (keys as in the built-in default.toml); flags override it
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `warn,kcache=debug`
    /// [default: info]
    #[arg(long, value_name = "FILTER")]
    pub(crate) log: Option<String>,

    /// Don't pin worker threads to cores
    #[arg(long)]
    pub(crate) no_pin: bool,

    /// Microseconds a worker polls for work before sleeping; 0 = never poll [default: 5]
    #[arg(long, value_name = "US")]
    pub(crate) poll_us: Option<u32>,

    /// Answer hot UDP gets in the XDP hook of this interface (needs -U) [default: off]
    #[arg(long, value_name = "IFACE")]
    pub(crate) xdp: Option<String>,

    /// How to attach the XDP program [default: auto]
    #[arg(long, value_name = "MODE")]
    pub(crate) xdp_mode: Option<config::XdpMode>,

    /// This node's id in the bucket map [default: 0]
    #[arg(long, value_name = "ID")]
    pub(crate) node_id: Option<u32>,

    /// Bucket map file (`epoch N`, then `node <id> <ranges>` lines); re-read on SIGHUP
    /// [default: none: this node owns every bucket]
    #[arg(long, value_name = "FILE")]
    pub(crate) bucket_map: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["kcache", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags() {
        // No flags: everything is left to the config file.
        let a = serve(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{a:?}"), format!("{:?}", ServeArgs::default()));
        // memcached's short flags.
        let a = serve(&[
            "-p", "1", "-U", "2", "-l", "::1", "-m", "9", "-c", "3", "-t", "4", "-I", "2m",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.port, a.udp_port, a.listen.as_deref(), a.memory_limit),
            (Some(1), Some(2), Some("::1"), Some(9))
        );
        assert_eq!(
            (a.conn_limit, a.threads, a.max_item_size),
            (Some(3), Some(4), Some(2 << 20))
        );
        // Long names.
        let a = serve(&[
            "--port=5",
            "--udp-port=6",
            "--memory-limit=10",
            "--conn-limit=7",
            "--threads=0",
            "--max-item-size=2048",
            "--config=/x.toml",
            "--log=debug",
            "--no-pin",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.port, a.udp_port, a.memory_limit),
            (Some(5), Some(6), Some(10))
        );
        assert_eq!(
            (a.conn_limit, a.threads, a.max_item_size),
            (Some(7), Some(0), Some(2048))
        );
        assert_eq!(a.config, Some(PathBuf::from("/x.toml")));
        assert_eq!((a.log.as_deref(), a.no_pin), (Some("debug"), true));
    }

    #[test]
    fn bad_flags() {
        for args in [
            // Below memcached's 1k floor.
            &["-I", "512"][..],
            // Above its 1024m ceiling.
            &["-I", "1025m"],
            // Not a size.
            &["-I", "1.5m"],
            // Ports are u16.
            &["-p", "70000"],
            // Negative counts.
            &["-t", "-1"],
        ] {
            assert!(serve(args).is_err(), "{args:?} accepted");
        }
    }
}
