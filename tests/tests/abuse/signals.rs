//! SIGTERM and SIGINT: a clean exit (status 0) within 5 s, with clients still connected.

use std::time::Duration;

use anyhow::{ensure, Result};
use kcache_tests::{Config, Server, Target};
use nix::sys::signal::Signal;

#[test]
fn sigterm_exits_cleanly() -> Result<()> {
    stops_on(Signal::SIGTERM)
}

#[test]
fn sigint_exits_cleanly() -> Result<()> {
    stops_on(Signal::SIGINT)
}

fn stops_on(signal: Signal) -> Result<()> {
    let mut server = Server::start(Target::from_env(), &Config::default())?;
    let _idle = server.connect()?;
    let mut busy = server.connect()?;
    busy.expect(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n")?;
    // Half a command in flight.
    busy.send(b"get")?;
    server.signal(signal)?;
    let status = server.wait_exit(Duration::from_secs(5))?;
    ensure!(
        status.code() == Some(0),
        "{} exited with {status} on {signal}; its log:\n{}",
        server.target(),
        server.log()
    );
    Ok(())
}
