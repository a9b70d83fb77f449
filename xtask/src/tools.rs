//! Installs what `xtask test` needs, so nothing depends on a hand-installed tool: rustup
//! components, cargo-fuzz in the project-local `.tools/`, and the Debian packages the
//! integration tests drive.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::step;

/// Project-local install root for cargo-installed tools (ignored by git).
pub(crate) const TOOLS_ROOT: &str = ".tools";

/// The cargo-fuzz version `xtask test` installs; bump deliberately.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Debian packages for `tests/`: memcached 1.6 (the reference server), libmemcached-tools
/// (`memccapable`, `memcaslap`) and pymemcache for the system python.
const APT_PACKAGES: [&str; 3] = ["memcached", "libmemcached-tools", "python3-pymemcache"];
/// The binaries those packages provide that the tests run.
const APT_BINARIES: [&str; 3] = ["memcached", "memccapable", "memcaslap"];
/// Pythons the tests try for pymemcache, as `tests/src/tools.rs` does (Debian's package lands in
/// the system python, which a pyenv or venv `python3` on PATH does not see).
const PYTHONS: [&str; 2] = ["python3", "/usr/bin/python3"];

/// Ensures rustfmt, clippy, cargo-fuzz and the integration tests' packages are present.
pub(crate) fn ensure() -> Result<()> {
    step::header("tools");
    let start = Instant::now();
    components()?;
    cargo_fuzz()?;
    apt_packages()?;
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

fn apt_packages() -> Result<()> {
    let missing = missing_apt_tools();
    if missing.is_empty() {
        println!("memcached, memccapable, memcaslap, pymemcache: installed");
        return Ok(());
    }
    println!("missing {missing:?}: installing {APT_PACKAGES:?} with apt-get");
    apt_get(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(APT_PACKAGES);
    apt_get(&install)?;
    let missing = missing_apt_tools();
    if !missing.is_empty() {
        bail!("still missing {missing:?} after installing {APT_PACKAGES:?}");
    }
    Ok(())
}

/// The tools of `APT_BINARIES` not on `PATH`, and `pymemcache` if no python imports it.
fn missing_apt_tools() -> Vec<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |name: &str| std::env::split_paths(&path).any(|d| d.join(name).is_file());
    let mut missing: Vec<&str> = APT_BINARIES.into_iter().filter(|b| !on_path(b)).collect();
    let pymemcache = PYTHONS.iter().any(|python| {
        Command::new(Path::new(python))
            .args(["-c", "import pymemcache"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !pymemcache {
        missing.push("pymemcache");
    }
    missing
}

fn apt_get(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status} (it needs root); install {APT_PACKAGES:?} by hand");
    }
    Ok(())
}
