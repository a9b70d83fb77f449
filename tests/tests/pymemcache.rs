//! pymemcache, a real client, against a live server: `tests/py/test_pymemcache.py` (plain
//! `unittest`) covers every classic command, with and without `noreply`, binary and large values,
//! flags, expiry and stats. Its python needs pymemcache (Debian's python3-pymemcache).

use std::{path::Path, process::Command, time::Duration};

use anyhow::{ensure, Result};
use kcache_tests::{target::TARGET_ENV, tools, Config, Server, Target};

#[test]
fn pymemcache_unittests_pass() -> Result<()> {
    let python = tools::python_with_pymemcache()?;
    let target = Target::from_env();
    // The python checks limit_maxbytes against 64 MB.
    let server = Server::start(target, &Config::default().memory_mb(64))?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("py");
    let out = tools::run_bounded(
        Command::new(&python)
            .args(["-m", "unittest", "-v", "test_pymemcache"])
            .current_dir(&dir)
            .env("KCACHE_TEST_ADDR", server.addr().to_string())
            .env(TARGET_ENV, target.to_string())
            // No stray bytecode in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
    )?;
    // unittest reports on stderr: a `Ran N tests` line, then `OK` or `FAILED (...)`.
    let ran = out.stderr.lines().find_map(|l| {
        l.strip_prefix("Ran ")?
            .split_whitespace()
            .next()?
            .parse::<u32>()
            .ok()
    });
    ensure!(
        out.status.success() && ran.is_some_and(|n| n > 0),
        "{}: {} -m unittest exited {} after {ran:?} tests\n--- stderr\n{}--- stdout\n{}\
         --- server log\n{}",
        target,
        python.display(),
        out.status,
        out.stderr,
        out.stdout,
        server.log()
    );
    Ok(())
}
