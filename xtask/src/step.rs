//! Running commands as named steps: a `== step ==` header, the command's own output, and an error
//! naming the step and the command when it fails.

use std::{
    ffi::OsString,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::ebpf;

/// The cargo that runs xtask, so nested builds use the same toolchain.
pub(crate) fn cargo_bin() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// What an outer `cargo` (or a developer's shell) may have set that would leak into a nested build
/// for another target or another workspace: rustflags for the host, wrappers such as clippy-driver
/// or sccache, and a target directory that would mix the two builds.
const OUTER_BUILD_ENV: [&str; 11] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
];

/// A `cargo` command with `args`. Once the XDP object is built, every cargo run after it gets its
/// path in `KCACHE_XDP_OBJ`, so cache-user's build script embeds that very object.
pub(crate) fn cargo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo_bin());
    cmd.args(args);
    if let Some(object) = ebpf::object() {
        cmd.env(ebpf::OBJECT_ENV, object);
    }
    cmd
}

/// A `cargo` command with `args` and none of [`OUTER_BUILD_ENV`], for builds that set their own
/// flags (the eBPF crate, `cargo install bpf-linker`).
pub(crate) fn isolated_cargo_cmd(args: &[&str]) -> Command {
    let mut cmd = cargo_cmd(args);
    for var in OUTER_BUILD_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Prints the step header.
pub(crate) fn header(name: &str) {
    println!("\n== {name} ==");
}

/// Prints how long a step took.
pub(crate) fn footer(name: &str, took: Duration) {
    println!("-- {name}: ok in {:.1} s", took.as_secs_f64());
}

/// Runs `cmd` as step `name`, failing with context if it does not exit 0.
pub(crate) fn run(name: &str, cmd: &mut Command) -> Result<()> {
    header(name);
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("step `{name}`: starting {cmd:?}"))?;
    if !status.success() {
        bail!("step `{name}` failed: {cmd:?} exited with {status}");
    }
    footer(name, start.elapsed());
    Ok(())
}

/// Runs `cargo <args>` as step `name`.
pub(crate) fn cargo(name: &str, args: &[&str]) -> Result<()> {
    run(name, &mut cargo_cmd(args))
}

/// Builds the `kcache` binary (release or debug, with the XDP object embedded: callers build
/// that first) and returns its path.
pub(crate) fn build_kcache(release: bool) -> Result<std::path::PathBuf> {
    let mut args = vec!["build"];
    if release {
        args.push("--release");
    }
    args.extend(["-p", "cache-user", "--bin", "kcache"]);
    let what = if release {
        "build kcache (release)"
    } else {
        "build kcache"
    };
    cargo(what, &args)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| "target".into(), std::path::PathBuf::from);
    let bin = std::env::current_dir()
        .context("reading the current directory")?
        .join(target)
        .join(if release { "release" } else { "debug" })
        .join("kcache");
    anyhow::ensure!(bin.is_file(), "{} missing after the build", bin.display());
    Ok(bin)
}
