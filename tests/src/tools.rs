//! External tools the tests drive. A missing tool fails the test with the command that installs
//! it: a test that quietly skipped would pass on a machine that never ran it.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// How to get every tool the suite uses (Debian names; `cargo xtask test` runs this for you).
pub const INSTALL_HINT: &str = "install with `apt-get install -y memcached libmemcached-tools \
                                python3-pymemcache nutcracker`, or run `cargo xtask test`, which does it";

/// The environment variable naming a python interpreter with pymemcache, if the default ones
/// lack it.
pub const PYTHON_ENV: &str = "KCACHE_PYTHON";

/// The path of `name` on `PATH`, or an error saying how to install it.
pub fn require(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .with_context(|| format!("`{name}` is not on PATH: {INSTALL_HINT}"))
}

/// A python that can `import pymemcache`: `$KCACHE_PYTHON`, else `python3` on `PATH`, else the
/// system `/usr/bin/python3` (where Debian's python3-pymemcache lands, which a pyenv or venv
/// `python3` earlier on `PATH` does not see).
pub fn python_with_pymemcache() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        candidates.push(p.into());
    }
    candidates.extend(require("python3").ok());
    candidates.push("/usr/bin/python3".into());
    for python in &candidates {
        let ok = Command::new(python)
            .args(["-c", "import pymemcache"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(python.clone());
        }
    }
    bail!("no python with pymemcache among {candidates:?} (or set {PYTHON_ENV}): {INSTALL_HINT}")
}

/// What a bounded run of a command left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// pymemcache's unittest suite (`tests/py/test_pymemcache.py`) against the server at `addr`,
/// told it is a `target` (`kcache`, `memcached`, `route`): what it printed, and the count of its
/// `Ran N tests` line on stderr (unittest reports there, then `OK` or `FAILED (...)`).
pub fn pymemcache_suite(addr: std::net::SocketAddr, target: &str) -> Result<(Output, Option<u32>)> {
    let python = python_with_pymemcache()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("py");
    let out = run_bounded(
        Command::new(&python)
            .args(["-m", "unittest", "-v", "test_pymemcache"])
            .current_dir(&dir)
            .env("KCACHE_TEST_ADDR", addr.to_string())
            .env(crate::target::TARGET_ENV, target)
            // No stray bytecode in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
    )?;
    let ran = out.stderr.lines().find_map(|l| {
        l.strip_prefix("Ran ")?
            .split_whitespace()
            .next()?
            .parse::<u32>()
            .ok()
    });
    Ok((out, ran))
}

/// Runs `cmd` to completion, killing it and failing if it is still running after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the child")? {
            break Some(status);
        }
        if start.elapsed() > limit {
            // Killing can only fail if it already exited, which the next wait reports.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "{cmd:?} still running after {limit:?}, killed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the capture; what was read is still worth showing.
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
