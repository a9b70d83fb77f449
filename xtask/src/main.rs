//! `cargo xtask <cmd>`: the project's automation, so a developer runs exactly what CI runs.

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod ebpf;
mod fuzz;
mod step;
mod test;
mod testbed;
mod tools;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Everything CI runs: tools, fmt, clippy, tests, fuzz smoke.
    Test {
        /// Seconds each fuzz target runs; 0 skips the fuzz smoke.
        #[arg(long, default_value_t = 30)]
        fuzz_seconds: u32,
    },
    /// Builds the workspace in release (with the XDP object) and runs the server.
    Run,
    /// Formats the workspace, the fuzz crate and the eBPF crate.
    Fmt,
    /// Builds the XDP object (cache-ebpf, release) that cache-user embeds, installing
    /// rust-src and bpf-linker first if they are missing.
    Ebpf {
        /// Also runs the eBPF crate's clippy pass, as `xtask test` does.
        #[arg(long)]
        clippy: bool,
    },
    /// Creates (`up`) or removes (`down`) the XDP test bed: namespaces kc-srv/kc-cli joined by
    /// the veth pair kc-srv0/kc-cli0 (10.77.0.1-2/24, fd77::1-2/64). Needs root.
    Testbed {
        #[arg(value_enum)]
        action: testbed::Action,
    },
    /// kcache and memcached side by side: medians of throughput, latency and CPU per scenario.
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // xtask/ sits in the workspace root; every path below is relative to that root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    std::env::set_current_dir(root).with_context(|| format!("entering {}", root.display()))?;
    match cli.cmd {
        Cmd::Test { fuzz_seconds } => test::run(fuzz_seconds),
        Cmd::Run => run(),
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Ebpf { clippy } => {
            tools::ensure_build()?;
            ebpf::build()?;
            if clippy {
                ebpf::clippy()?;
            }
            Ok(())
        }
        Cmd::Testbed { action } => testbed::run(action),
        Cmd::Fmt => {
            step::cargo("fmt", &["fmt", "--all"])?;
            step::cargo(
                "fmt fuzz crate",
                &["fmt", "--all", "--manifest-path", fuzz::MANIFEST],
            )?;
            step::cargo(
                "fmt eBPF crate",
                &["fmt", "--all", "--manifest-path", ebpf::MANIFEST],
            )
        }
    }
}

/// Builds everything in release and runs the server on its embedded default configuration
/// (127.0.0.1:11211 TCP, UDP off) in the foreground until Ctrl-C.
fn run() -> Result<()> {
    tools::ensure_build()?;
    ebpf::build()?;
    step::cargo("build release", &["build", "--workspace", "--release"])?;
    println!(
        "\nkcache is starting on 127.0.0.1:11211 (TCP; UDP off). From another terminal:\n\
         \x20 exec 3<>/dev/tcp/127.0.0.1/11211; printf 'set greeting 0 0 5\\r\\nhello\\r\\nget greeting\\r\\n' >&3; timeout 1 cat <&3\n\
         \x20 memccapable -h 127.0.0.1 -p 11211 -a\n\
         \x20 /usr/bin/python3 -c \"from pymemcache.client.base import Client; c = Client(('127.0.0.1', 11211)); \
         c.set('k', 'v'); print(c.get('k'))\"\n\
         Stop it with Ctrl-C. `target/release/kcache serve --help` lists memcached's flags.\n"
    );
    let status = std::process::Command::new("target/release/kcache")
        .arg("serve")
        .status()
        .context("starting target/release/kcache")?;
    anyhow::ensure!(status.success(), "kcache exited with {status}");
    Ok(())
}
