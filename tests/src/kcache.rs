//! The kcache binary under test.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};

use crate::tools;

/// The environment variable naming the kcache binary to test (then nothing is built).
pub const BIN_ENV: &str = "KCACHE_BIN";

/// The kcache binary: `$KCACHE_BIN`, else `target/debug/kcache` built by
/// `cargo build -p cache-user --bin kcache` once per test process (a no-op when it is fresh, so
/// the tests never run a stale server).
pub fn bin() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(BIN_ENV) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("{BIN_ENV}={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate has no parent directory")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "cache-user", "--bin", "kcache"])
        .current_dir(root);
    let out = tools::run_bounded(&mut cmd, Duration::from_secs(20 * 60))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}); set {BIN_ENV} to test another binary:\n{}",
            out.status,
            out.stderr
        );
    }
    let bin = target_dir.join("debug").join("kcache");
    if !bin.is_file() {
        bail!("{} missing after {cmd:?}", bin.display());
    }
    Ok(bin)
}
