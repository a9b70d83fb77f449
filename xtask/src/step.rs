//! Running commands as named steps: a `== step ==` header, the command's own output, and an error
//! naming the step and the command when it fails.

use std::{
    ffi::OsString,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// The cargo that runs xtask, so nested builds use the same toolchain.
pub(crate) fn cargo_bin() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A `cargo` command with `args`.
pub(crate) fn cargo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo_bin());
    cmd.args(args);
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
