//! pymemcache, a real client, against a live server: `tests/py/test_pymemcache.py` (plain
//! `unittest`) covers every classic command, with and without `noreply`, binary and large values,
//! flags, expiry and stats. Its python needs pymemcache (Debian's python3-pymemcache).

use anyhow::{ensure, Result};
use kcache_tests::{tools, Config, Server, Target};

#[test]
fn pymemcache_unittests_pass() -> Result<()> {
    let target = Target::from_env();
    // The python checks limit_maxbytes against 64 MB.
    let server = Server::start(target, &Config::default().memory_mb(64))?;
    let (out, ran) = tools::pymemcache_suite(server.addr(), &target.to_string())?;
    ensure!(
        out.status.success() && ran.is_some_and(|n| n > 0),
        "{}: python -m unittest exited {} after {ran:?} tests\n--- stderr\n{}--- stdout\n{}\
         --- server log\n{}",
        target,
        out.status,
        out.stderr,
        out.stdout,
        server.log()
    );
    Ok(())
}
