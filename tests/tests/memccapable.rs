//! libmemcached's `memccapable -a` (Debian's name for memcapable): its 27 text-protocol checks
//! against a live server, all of which must pass.
//!
//! Its output is one line per check, the name padded to 40 columns then `[pass]`, `[skip]` or
//! `[FAIL]`, and a last line `All tests passed` or `<n> of <m> tests failed`. It exits 0 only when
//! all passed. It flushes the server, so it gets a server of its own.

use std::{process::Command, time::Duration};

use anyhow::{ensure, Result};
use kcache_tests::{tools, Config, Server, Target};

/// The checks `memccapable -a` runs in libmemcached 1.1.4 (`ascii version` .. `ascii stat`).
const ASCII_CHECKS: usize = 27;

#[test]
fn memccapable_ascii_checks_all_pass() -> Result<()> {
    let tool = tools::require("memccapable")?;
    let server = Server::start(Target::from_env(), &Config::default())?;
    let port = server.addr().port().to_string();
    let out = tools::run_bounded(
        Command::new(tool).args(["-h", "127.0.0.1", "-p", &port, "-a", "-t", "5"]),
        Duration::from_secs(120),
    )?;
    let report = Report::parse(&out.stdout);
    let context = || {
        format!(
            "{}: memccapable exited {}\n--- stdout\n{}--- stderr\n{}--- server log\n{}",
            server.target(),
            out.status,
            out.stdout,
            out.stderr,
            server.log()
        )
    };
    ensure!(out.status.success(), "{}", context());
    ensure!(
        report.passed == ASCII_CHECKS && report.other.is_empty() && report.all_passed,
        "{report:?}\n{}",
        context()
    );
    Ok(())
}

/// What memccapable's output says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    passed: usize,
    /// Checks that did not pass (`[skip]`, `[FAIL]`), with their lines.
    other: Vec<String>,
    /// The closing `All tests passed` line was there.
    all_passed: bool,
}

impl Report {
    fn parse(stdout: &str) -> Report {
        let mut report = Report::default();
        for line in stdout.lines().map(str::trim_end) {
            if line.ends_with("[pass]") {
                report.passed += 1;
            } else if line.ends_with("[skip]") || line.ends_with("[FAIL]") {
                report.other.push(line.to_owned());
            } else if line == "All tests passed" {
                report.all_passed = true;
            }
        }
        report
    }
}

#[test]
fn report_lines_are_read_as_memccapable_prints_them() {
    let cases = [
        // Two passes and the closing line.
        (
            "ascii version                           [pass]\n\
             ascii quit                              [pass]\n\
             All tests passed\n",
            Report {
                passed: 2,
                other: vec![],
                all_passed: true,
            },
        ),
        // A failure and the failure count.
        (
            "ascii version                           [pass]\n\
             ascii stat                              [FAIL]\n\
             1 of 2 tests failed\n",
            Report {
                passed: 1,
                other: vec!["ascii stat                              [FAIL]".to_owned()],
                all_passed: false,
            },
        ),
    ];
    for (stdout, want) in cases {
        assert_eq!(Report::parse(stdout), want, "{stdout}");
    }
}
