//! Tests that do not apply here are reported as skipped, never as passed.
//!
//! libtest has no "skipped" outcome: a test that returns early passes. So a test that does not
//! apply calls [`record`] (or a check built on it: [`unless_root`],
//! [`crate::Target::skips_kcache_only`]) and returns at once. `record` says so on stderr, past
//! libtest's capture, so a plain `cargo test` shows it; and when `KCACHE_SKIP_DIR` is set
//! (`cargo xtask test` sets it) it leaves one file there per skip, which xtask reads after the run
//! to move that test from "passed" to "skipped" and to list it with its reason.
//!
//! The file: `<dir>/<binary>-<pid>-<n>.skip`, one line `<test name>\t<binary>\t<reason>\n`, the
//! test name being libtest's (the name of the thread it runs the test on), the binary the test
//! executable's file name. xtask fails the run if a record names no passing test.
//!
//! What counts as a skip is a deliberate choice about where the suite runs, never a broken
//! machine: a kcache-only feature when the target is memcached, and root outside CI. In CI (`CI`
//! set) the suite runs as root, so a test needing root fails there instead; a missing tool fails
//! everywhere (`tools::require`).

use std::{
    io::Write,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use anyhow::{bail, Context, Result};

/// The directory `cargo xtask test` passes for skip records.
pub const SKIP_DIR_ENV: &str = "KCACHE_SKIP_DIR";
/// Set (to anything but empty, `0` or `false`) on CI runners.
pub const CI_ENV: &str = "CI";

/// Records that the running test does not apply here, for `reason`; the caller returns at once.
/// Panics if the record cannot be written: a skip xtask cannot see would count as a pass.
pub fn record(reason: &str) {
    let test = test_name();
    let binary = binary_name();
    let reason = one_line(reason);
    // Past libtest's output capture (which only takes `print!`/`eprint!`), so a plain `cargo
    // test` shows the skip too; one write, so it is not cut into by other tests' lines. A failed
    // write to stderr is not worth failing the test.
    let line = format!("skipped {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let Some(dir) = std::env::var_os(SKIP_DIR_ENV) else {
        return;
    };
    if let Err(e) = write_record(PathBuf::from(dir), &test, &binary, &reason) {
        panic!("{SKIP_DIR_ENV}: recording the skip of {test}: {e:#}");
    }
}

/// Whether a test that needs root must stop here: `Ok(false)` as root; as anyone else, outside
/// CI, a recorded skip (`Ok(true)`: return at once); in CI an error, as CI runs the suite as
/// root and a test that cannot run there must fail.
pub fn unless_root(what: &str) -> Result<bool> {
    if nix::unistd::geteuid().is_root() {
        return Ok(false);
    }
    if in_ci() {
        bail!(
            "{what} needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN), and {CI_ENV} is set: \
             CI must run the suite as root"
        );
    }
    record(&format!("{what} needs root; not root and not in CI"));
    Ok(true)
}

/// Whether this is a CI run (`CI` set, and not to `0`, `false` or nothing).
pub fn in_ci() -> bool {
    std::env::var(CI_ENV).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// libtest runs each test on a thread named after it.
fn test_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "<not a test's thread>".to_owned(),
    }
}

fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "<unknown>".to_owned())
}

/// The reason with tabs and line breaks turned into spaces, so a record stays one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn write_record(dir: PathBuf, test: &str, binary: &str, reason: &str) -> Result<()> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let stem = format!("{binary}-{}-{n}", std::process::id());
    // Written whole, then renamed: a reader never sees half a record.
    let tmp = dir.join(format!("{stem}.tmp"));
    std::fs::write(&tmp, format!("{test}\t{binary}\t{reason}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    let done = dir.join(format!("{stem}.skip"));
    std::fs::rename(&tmp, &done).with_context(|| format!("renaming to {}", done.display()))
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "a failed file operation is the test failing"
)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_line_named_after_the_test() {
        let dir = std::env::temp_dir().join(format!("kcache-skip-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_record(
            dir.clone(),
            &test_name(),
            "bin-1",
            &one_line("why\tnot\nhere"),
        )
        .unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let name = files[0].file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with("bin-1-") && name.ends_with(".skip"),
            "{name}"
        );
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        // libtest names the thread after the test, module path included.
        assert_eq!(
            text,
            "skip::tests::a_record_is_one_line_named_after_the_test\tbin-1\twhy not here\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
