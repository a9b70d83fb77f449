//! Installs what `xtask test` needs, so nothing depends on a hand-installed tool: rustup
//! components, and cargo-fuzz in the project-local `.tools/`.

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use crate::step;

/// Project-local install root for cargo-installed tools (ignored by git).
pub(crate) const TOOLS_ROOT: &str = ".tools";

/// The cargo-fuzz version `xtask test` installs; bump deliberately.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Ensures rustfmt, clippy and cargo-fuzz are present.
pub(crate) fn ensure() -> Result<()> {
    step::header("tools");
    let start = Instant::now();
    components()?;
    cargo_fuzz()?;
    step::footer("tools", start.elapsed());
    Ok(())
}

/// `PATH` with `.tools/bin` in front, for commands that need the local tools.
pub(crate) fn path_with_tools() -> Result<std::ffi::OsString> {
    let bin = std::env::current_dir()
        .context("reading the current directory")?
        .join(TOOLS_ROOT)
        .join("bin");
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).context("building PATH with .tools/bin")
}

fn components() -> Result<()> {
    let listed = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output();
    let Ok(listed) = listed else {
        println!("rustup not found: relying on the toolchain's own rustfmt and clippy");
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&listed.stdout);
    for component in ["rustfmt", "clippy"] {
        if installed.lines().any(|l| l.starts_with(component)) {
            println!("{component}: installed");
            continue;
        }
        let status = Command::new("rustup")
            .args(["component", "add", component])
            .status()
            .with_context(|| format!("running rustup component add {component}"))?;
        if !status.success() {
            bail!("rustup component add {component} exited with {status}");
        }
    }
    Ok(())
}

fn cargo_fuzz() -> Result<()> {
    let bin = PathBuf::from(TOOLS_ROOT).join("bin").join("cargo-fuzz");
    let want = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let have = Command::new(&bin).arg("--version").output().ok();
    let have = have.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if have.as_deref() == Some(want.as_str()) {
        println!("{want}: installed in {TOOLS_ROOT}/bin");
        return Ok(());
    }
    println!(
        "installing {want} into {TOOLS_ROOT}/ (found: {})",
        have.as_deref().unwrap_or("none")
    );
    let start = Instant::now();
    let mut cmd = step::cargo_cmd(&[
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]);
    cmd.args(["--root", TOOLS_ROOT]);
    let status = cmd.status().context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    println!("installed {want} in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
