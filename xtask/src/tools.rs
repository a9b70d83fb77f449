//! Installs what xtask's commands need, so nothing depends on a hand-installed tool: rustup
//! components, cargo-fuzz and bpf-linker in the project-local `.tools/`, and the Debian packages
//! the integration tests and the XDP test bed drive.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::step;

mod bpf_linker;

pub(crate) use bpf_linker::path as bpf_linker_path;

/// Project-local install root for cargo-installed tools (ignored by git).
pub(crate) const TOOLS_ROOT: &str = ".tools";

/// The cargo-fuzz version `xtask test` installs; bump deliberately.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// What an apt package must provide for xtask to count it as installed.
#[derive(Debug, Clone, Copy)]
enum Provides {
    /// An executable on `PATH`.
    Binary(&'static str),
    /// A module the system python imports.
    PythonModule(&'static str),
}

/// A Debian package and the thing it provides that xtask checks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AptTool {
    package: &'static str,
    provides: Provides,
}

/// Packages for `tests/` and `bench`: memcached 1.6 (the reference server), libmemcached-tools
/// (`memccapable`, `memcaslap`), pymemcache for the system python, and nutcracker (twemproxy
/// 0.5, the router `kcache route` is placed and measured against).
pub(crate) const SERVER_TOOLS: [AptTool; 5] = [
    apt("memcached", Provides::Binary("memcached")),
    apt("libmemcached-tools", Provides::Binary("memccapable")),
    apt("libmemcached-tools", Provides::Binary("memcaslap")),
    apt("python3-pymemcache", Provides::PythonModule("pymemcache")),
    apt("nutcracker", Provides::Binary("nutcracker")),
];

/// Packages for the XDP test bed and for looking at XDP programs: `ip` (namespaces, veth, which
/// program is attached), `ping` (the test bed's own check), `bpftool` (programs, maps, pinned
/// links) and `ethtool` (`-S` shows the veth's `xdp_tx_errors`).
pub(crate) const NET_TOOLS: [AptTool; 4] = [
    apt("iproute2", Provides::Binary("ip")),
    apt("iputils-ping", Provides::Binary("ping")),
    apt("bpftool", Provides::Binary("bpftool")),
    apt("ethtool", Provides::Binary("ethtool")),
];

/// Pythons the tests try for pymemcache, as `tests/src/tools.rs` does (Debian's package lands in
/// the system python, which a pyenv or venv `python3` on PATH does not see).
const PYTHONS: [&str; 2] = ["python3", "/usr/bin/python3"];

const fn apt(package: &'static str, provides: Provides) -> AptTool {
    AptTool { package, provides }
}

/// Everything `xtask test` needs: rustfmt, clippy, the eBPF toolchain, cargo-fuzz and every apt
/// package above.
pub(crate) fn ensure() -> Result<()> {
    step::header("tools");
    let start = Instant::now();
    components(&["rustfmt", "clippy", "rust-src"])?;
    bpf_linker::ensure()?;
    cargo_fuzz()?;
    apt_packages(&SERVER_TOOLS)?;
    apt_packages(&NET_TOOLS)?;
    step::footer("tools", start.elapsed());
    Ok(())
}

/// What building the workspace needs beyond a stable toolchain: `rust-src` (for
/// `-Z build-std=core`) and bpf-linker, both used by the eBPF object cache-user embeds.
pub(crate) fn ensure_build() -> Result<()> {
    step::header("build tools");
    let start = Instant::now();
    components(&["rust-src"])?;
    bpf_linker::ensure()?;
    step::footer("build tools", start.elapsed());
    Ok(())
}

/// Installs the packages of `tools` whose binary or module is missing.
pub(crate) fn apt_packages(tools: &[AptTool]) -> Result<()> {
    let names = |tools: &[AptTool]| -> Vec<&str> { tools.iter().map(AptTool::name).collect() };
    let missing = absent(tools);
    if missing.is_empty() {
        println!("{}: installed", names(tools).join(", "));
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.sort_unstable();
    packages.dedup();
    println!(
        "missing {:?}: installing {packages:?} with apt-get",
        names(&missing)
    );
    apt_get(&["update"], &packages)?;
    let mut install = vec!["install", "-y"];
    install.extend(&packages);
    apt_get(&install, &packages)?;
    let missing = absent(tools);
    if !missing.is_empty() {
        bail!(
            "still missing {:?} after installing {packages:?}",
            names(&missing)
        );
    }
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

impl AptTool {
    /// The binary or module's name, as the messages show it.
    fn name(&self) -> &'static str {
        match self.provides {
            Provides::Binary(name) | Provides::PythonModule(name) => name,
        }
    }

    fn present(&self) -> bool {
        match self.provides {
            Provides::Binary(name) => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path).any(|d| d.join(name).is_file())
            }
            Provides::PythonModule(module) => PYTHONS.iter().any(|python| {
                Command::new(Path::new(python))
                    .args(["-c", &format!("import {module}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }),
        }
    }
}

fn absent(tools: &[AptTool]) -> Vec<AptTool> {
    tools.iter().filter(|t| !t.present()).copied().collect()
}

fn components(wanted: &[&str]) -> Result<()> {
    let listed = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output();
    let Ok(listed) = listed else {
        println!("rustup not found: relying on the toolchain's own {wanted:?}");
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&listed.stdout);
    for component in wanted {
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

/// Whether `bin --version` prints exactly `want` (a tool in `.tools/bin`); says which.
pub(crate) fn installed(bin: &Path, want: &str) -> bool {
    let have = Command::new(bin).arg("--version").output().ok();
    let have = have
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if have.as_deref() == Some(want) {
        println!("{want}: installed in {TOOLS_ROOT}/bin");
        return true;
    }
    println!(
        "installing {want} into {TOOLS_ROOT}/ (found: {})",
        have.as_deref().unwrap_or("none")
    );
    false
}

fn cargo_fuzz() -> Result<()> {
    let bin = PathBuf::from(TOOLS_ROOT).join("bin").join("cargo-fuzz");
    let want = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    if installed(&bin, &want) {
        return Ok(());
    }
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

fn apt_get(args: &[&str], packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status} (it needs root); install {packages:?} by hand");
    }
    Ok(())
}
