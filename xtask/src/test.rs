//! `cargo xtask test`: tools, fmt, the XDP object and its clippy pass, clippy, tests, fuzz smoke —
//! in that order, stopping at the first failure.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::Stdio,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{ebpf, fuzz, step, tools};

/// Test counts summed over every `test result:` line cargo test printed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

pub(crate) fn run(fuzz_seconds: u32) -> Result<()> {
    tools::ensure()?;
    step::cargo("fmt", &["fmt", "--all", "--", "--check"])?;
    step::cargo(
        "fmt fuzz crate",
        &[
            "fmt",
            "--all",
            "--manifest-path",
            fuzz::MANIFEST,
            "--",
            "--check",
        ],
    )?;
    step::cargo(
        "fmt eBPF crate",
        &[
            "fmt",
            "--all",
            "--manifest-path",
            ebpf::MANIFEST,
            "--",
            "--check",
        ],
    )?;
    // Before anything compiles cache-user (clippy runs its build script too), so it embeds this
    // object.
    ebpf::build()?;
    ebpf::clippy()?;
    step::cargo(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let kcache = step::build_kcache(false)?;
    let counts = cargo_test(&kcache)?;
    if fuzz_seconds == 0 {
        println!("\n== fuzz: skipped (--fuzz-seconds 0) ==");
    } else {
        fuzz::smoke(fuzz_seconds)?;
    }
    // The last line sums up, in the plain form CI reads.
    println!(
        "\nxtask: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    Ok(())
}

/// Runs `cargo test --workspace` against `kcache` (the integration tests read `KCACHE_BIN`, so
/// they test this build and build nothing themselves), echoing its output line by line and
/// summing its results.
fn cargo_test(kcache: &Path) -> Result<Counts> {
    step::header("test");
    let start = Instant::now();
    let mut cmd = step::cargo_cmd(&["test", "--workspace"]);
    cmd.env("KCACHE_BIN", kcache);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let mut counts = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(c) = parse_result(&line) {
            counts.passed += c.passed;
            counts.failed += c.failed;
            counts.ignored += c.ignored;
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("step `test` failed: {cmd:?} exited with {status}");
    }
    step::footer("test", start.elapsed());
    Ok(counts)
}

/// Reads `test result: ok. 3 passed; 0 failed; 1 ignored; ...`.
fn parse_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut counts = Counts::default();
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse() else { continue };
        match what {
            "passed" => counts.passed = n,
            "failed" => counts.failed = n,
            "ignored" => counts.ignored = n,
            _ => {}
        }
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines() {
        let cases = [
            // A passing binary.
            (
                "test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s",
                Some(Counts { passed: 7, failed: 0, ignored: 1 }),
            ),
            // A failing one.
            (
                "test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out",
                Some(Counts { passed: 2, failed: 3, ignored: 0 }),
            ),
            // Other lines are not results.
            ("test bucket::tests::hash_is_fixed ... ok", None),
            ("running 7 tests", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_result(line), want, "{line}");
        }
    }
}
