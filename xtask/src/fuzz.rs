//! Fuzz smoke: every cargo-fuzz target in `cache-core/fuzz`, briefly, with its dictionary.
//!
//! cargo-fuzz passes nightly-only flags (`-Z sanitizer`) to rustc; this machine has only a stable
//! toolchain, and `RUSTC_BOOTSTRAP=1` is the documented way to let stable accept them.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::{step, tools};

/// The fuzz crate (its own workspace, outside the main one).
pub(crate) const FUZZ_DIR: &str = "cache-core/fuzz";
/// Its manifest.
pub(crate) const MANIFEST: &str = "cache-core/fuzz/Cargo.toml";

/// Runs every target for `seconds` each.
pub(crate) fn smoke(seconds: u32) -> Result<()> {
    let targets = list()?;
    if targets.is_empty() {
        bail!("`cargo fuzz list` found no targets in {FUZZ_DIR}");
    }
    for target in targets {
        let mut cmd = fuzz_cmd()?;
        cmd.args([
            "run",
            &target,
            "--fuzz-dir",
            FUZZ_DIR,
            "--",
            &format!("-max_total_time={seconds}"),
        ]);
        let dict = format!("{FUZZ_DIR}/{target}.dict");
        if Path::new(&dict).exists() {
            cmd.arg(format!("-dict={dict}"));
        }
        step::run(&format!("fuzz {target} ({seconds} s)"), &mut cmd)?;
    }
    Ok(())
}

fn list() -> Result<Vec<String>> {
    let out = fuzz_cmd()?
        .args(["list", "--fuzz-dir", FUZZ_DIR])
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// `cargo fuzz` with `.tools/bin` on `PATH` and stable unlocked for cargo-fuzz's flags.
fn fuzz_cmd() -> Result<Command> {
    let mut cmd = step::cargo_cmd(&["fuzz"]);
    cmd.env("PATH", tools::path_with_tools()?)
        .env("RUSTC_BOOTSTRAP", "1");
    Ok(cmd)
}
