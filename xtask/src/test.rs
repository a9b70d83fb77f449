//! `cargo xtask test`: tools, fmt, the XDP object and its clippy pass, clippy, tests, fuzz smoke —
//! in that order, stopping at the first failure.

mod tally;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use self::tally::{Summary, Tally, SKIP_DIR_ENV};
use crate::{ebpf, fuzz, step, tools};

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
    let summary = cargo_test(&kcache)?;
    if fuzz_seconds == 0 {
        println!("\n== fuzz: skipped (--fuzz-seconds 0) ==");
    } else {
        fuzz::smoke(fuzz_seconds)?;
    }
    // The skips with their reasons, then the last line, in the plain form CI reads.
    println!("\n{summary}");
    Ok(())
}

/// Runs `cargo test --workspace` against `kcache` (the integration tests read `KCACHE_BIN`, so
/// they test this build and build nothing themselves), echoing its output line by line and
/// tallying its results; tests that did not apply leave skip records in [`SKIP_DIR_ENV`]'s
/// directory, which move them from passed to skipped.
fn cargo_test(kcache: &Path) -> Result<Summary> {
    step::header("test");
    let start = Instant::now();
    let skips = skip_dir()?;
    match std::fs::remove_dir_all(&skips) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("clearing {}", skips.display()));
        }
        _ => {}
    }
    std::fs::create_dir_all(&skips).with_context(|| format!("creating {}", skips.display()))?;
    let mut cmd = step::cargo_cmd(&["test", "--workspace"]);
    cmd.env("KCACHE_BIN", kcache).env(SKIP_DIR_ENV, &skips);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let mut tally = Tally::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        tally.line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("step `test` failed: {cmd:?} exited with {status}");
    }
    let summary = tally.settle(tally::read_skips(&skips)?)?;
    step::footer("test", start.elapsed());
    Ok(summary)
}

/// Where the tests leave skip records: an absolute path (cargo runs each test binary in its
/// package's directory), in the target directory.
fn skip_dir() -> Result<PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    Ok(std::env::current_dir()
        .context("reading the current directory")?
        .join(target)
        .join("xtask-skips"))
}
