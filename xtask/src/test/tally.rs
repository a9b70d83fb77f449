//! Counting `cargo test`'s results honestly: cargo's `test result:` lines give passes, failures
//! and ignored tests, and a test that did not apply here (kcache-only against memcached, root
//! outside CI) leaves a skip record (`tests/src/skip.rs`), which moves it from passed to skipped.
//!
//! A record is a file `*.skip` in the directory named by [`SKIP_DIR_ENV`], holding one line
//! `<test name>\t<binary>\t<reason>`. It is matched to a `test <name> ... ok` line of the run;
//! one that matches none (a skip that did not pass, or recorded off the test's own thread) fails
//! the run rather than being guessed at.

use std::{collections::HashMap, fmt, path::Path};

use anyhow::{bail, Context, Result};

/// The environment variable naming the directory for skip records (as in `tests/src/skip.rs`).
pub(crate) const SKIP_DIR_ENV: &str = "KCACHE_SKIP_DIR";

/// Test counts summed over every `test result:` line cargo test printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) passed: u64,
    pub(super) failed: u64,
    pub(super) ignored: u64,
}

/// One test's skip, as the test recorded it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Skip {
    pub(super) test: String,
    pub(super) binary: String,
    pub(super) reason: String,
}

/// What the run's output said so far.
#[derive(Debug, Default)]
pub(super) struct Tally {
    counts: Counts,
    /// Each test name libtest reported `ok`, with how many times (binaries can share names).
    passed: HashMap<String, u32>,
}

/// The run's final figures: skipped is ignored tests plus recorded skips.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) passed: u64,
    pub(super) failed: u64,
    pub(super) skipped: u64,
    /// The recorded skips, sorted by test name.
    pub(super) skips: Vec<Skip>,
}

impl Tally {
    /// Takes one line of cargo test's standard output.
    pub(super) fn line(&mut self, line: &str) {
        if let Some(c) = parse_result(line) {
            self.counts.passed += c.passed;
            self.counts.failed += c.failed;
            self.counts.ignored += c.ignored;
        } else if let Some(name) = passed_test(line) {
            *self.passed.entry(name.to_owned()).or_default() += 1;
        }
    }

    /// Moves each recorded skip from passed to skipped. A test that recorded more than one skip
    /// counts once; a record with no passing test of its name is an error.
    pub(super) fn settle(mut self, mut skips: Vec<Skip>) -> Result<Summary> {
        skips.sort();
        skips.dedup_by(|a, b| a.test == b.test && a.binary == b.binary);
        let mut unmatched = Vec::new();
        for s in &skips {
            match self.passed.get_mut(&s.test) {
                Some(n) if *n > 0 => *n -= 1,
                _ => unmatched.push(format!("{} ({}): {}", s.test, s.binary, s.reason)),
            }
        }
        if !unmatched.is_empty() {
            bail!(
                "skip records that match no passing test (skipped tests must return at once, \
                 from the test's own thread):\n  {}",
                unmatched.join("\n  ")
            );
        }
        let moved = skips.len() as u64;
        if moved > self.counts.passed {
            bail!(
                "{moved} skips recorded but only {} tests passed",
                self.counts.passed
            );
        }
        Ok(Summary {
            passed: self.counts.passed - moved,
            failed: self.counts.failed,
            skipped: self.counts.ignored + moved,
            skips,
        })
    }
}

impl fmt::Display for Summary {
    /// The skip list (if any), then the one line CI reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.skips.is_empty() {
            writeln!(f, "skipped ({}):", self.skips.len())?;
            for s in &self.skips {
                writeln!(f, "  {}: {} [{}]", s.test, s.reason, s.binary)?;
            }
        }
        write!(
            f,
            "xtask: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Reads every `*.skip` record in `dir` (none if it does not exist).
pub(super) fn read_skips(dir: &Path) -> Result<Vec<Skip>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut skips = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "skip") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            skips.push(parse_skip(&text).with_context(|| path.display().to_string())?);
        }
    }
    Ok(skips)
}

fn parse_skip(text: &str) -> Result<Skip> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    let mut cols = line.splitn(3, '\t');
    match (cols.next(), cols.next(), cols.next()) {
        (Some(test), Some(binary), Some(reason)) if !test.is_empty() && !line.contains('\n') => {
            Ok(Skip {
                test: test.to_owned(),
                binary: binary.to_owned(),
                reason: reason.to_owned(),
            })
        }
        _ => bail!("not a skip record (test<TAB>binary<TAB>reason): {text:?}"),
    }
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

/// The name in libtest's `test <name> ... ok` (`<name> - should panic` for such tests).
fn passed_test(line: &str) -> Option<&str> {
    let name = line.strip_prefix("test ")?.strip_suffix(" ... ok")?;
    Some(name.strip_suffix(" - should panic").unwrap_or(name))
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "table-style cases: a failed step is the test failing"
)]
mod tests {
    use super::*;

    fn skip(test: &str, binary: &str) -> Skip {
        Skip {
            test: test.into(),
            binary: binary.into(),
            reason: "why".into(),
        }
    }

    fn tally(lines: &[&str]) -> Tally {
        let mut t = Tally::default();
        for l in lines {
            t.line(l);
        }
        t
    }

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

    #[test]
    fn reads_passing_test_names() {
        let cases = [
            // A plain pass, module path included.
            (
                "test lease::mcrouter_lease_get_and_set ... ok",
                Some("lease::mcrouter_lease_get_and_set"),
            ),
            // A should_panic test runs on a thread named without the suffix.
            (
                "test parse::rejects - should panic ... ok",
                Some("parse::rejects"),
            ),
            // A doc test.
            (
                "test src/lib.rs - show (line 5) ... ok",
                Some("src/lib.rs - show (line 5)"),
            ),
            // Failed and ignored tests did not pass.
            ("test buckets::refused ... FAILED", None),
            ("test slow ... ignored", None),
            ("test slow ... ignored, needs a day", None),
            // Neither are other lines.
            ("running 3 tests", None),
            ("test result: ok. 1 passed; 0 failed; 0 ignored", None),
        ];
        for (line, want) in cases {
            assert_eq!(passed_test(line), want, "{line}");
        }
    }

    #[test]
    fn skips_move_from_passed_to_skipped() {
        let t = tally(&[
            "running 3 tests",
            "test a ... ok",
            "test b ... ok",
            "test c ... ignored",
            "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out",
            "running 2 tests",
            "test d ... ok",
            "test e ... ok",
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
        ]);
        let s = t
            .settle(vec![skip("d", "bin2"), skip("b", "bin1")])
            .unwrap();
        // 4 passed, 2 of them skips; the ignored one counts as skipped too.
        assert_eq!((s.passed, s.failed, s.skipped), (2, 0, 3));
        // Listed by name, each with its reason and binary.
        assert_eq!(s.skips, [skip("b", "bin1"), skip("d", "bin2")]);
        assert_eq!(
            s.to_string(),
            "skipped (2):\n  b: why [bin1]\n  d: why [bin2]\nxtask: 2 passed, 0 failed, 3 skipped"
        );
    }

    #[test]
    fn no_skips_leaves_the_counts() {
        let t = tally(&[
            "test a ... ok",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        ]);
        let s = t.settle(Vec::new()).unwrap();
        assert_eq!(s.to_string(), "xtask: 1 passed, 2 failed, 0 skipped");
    }

    #[test]
    fn a_test_that_skipped_twice_counts_once() {
        let t = tally(&[
            "test a ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored",
        ]);
        let s = t.settle(vec![skip("a", "bin"), skip("a", "bin")]).unwrap();
        assert_eq!((s.passed, s.skipped, s.skips.len()), (0, 1, 1));
    }

    #[test]
    fn a_name_two_binaries_share_moves_one_pass() {
        // `tests::parses` passed in two binaries and skipped in one of them.
        let t = tally(&[
            "test tests::parses ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored",
            "test tests::parses ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored",
        ]);
        let s = t.settle(vec![skip("tests::parses", "b")]).unwrap();
        assert_eq!((s.passed, s.skipped), (1, 1));
    }

    #[test]
    fn a_skip_without_a_pass_fails_the_run() {
        let cases = [
            // The test failed after recording its skip.
            vec![
                "test a ... FAILED",
                "test result: FAILED. 0 passed; 1 failed; 0 ignored",
            ],
            // Recorded off the test's thread: the name matches no test.
            vec![
                "test b ... ok",
                "test result: ok. 1 passed; 0 failed; 0 ignored",
            ],
        ];
        for lines in cases {
            let err = tally(&lines).settle(vec![skip("a", "bin")]).unwrap_err();
            assert!(err.to_string().contains("a (bin): why"), "{err:#}");
        }
        // Two binaries sharing a name can still not skip it twice if it passed once.
        let t = tally(&[
            "test a ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored",
        ]);
        assert!(t.settle(vec![skip("a", "b1"), skip("a", "b2")]).is_err());
    }

    #[test]
    fn reads_records_from_the_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-skips-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A missing directory: no skips.
        assert_eq!(read_skips(&dir).unwrap(), []);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("buckets-1-0.skip"),
            "buckets::x\tbuckets-ab\tkcache-only\n",
        )
        .unwrap();
        // A record still being written (renamed when whole) is not read.
        std::fs::write(dir.join("buckets-1-1.tmp"), "half").unwrap();
        let got = read_skips(&dir).unwrap();
        assert_eq!(
            got,
            [Skip {
                test: "buckets::x".into(),
                binary: "buckets-ab".into(),
                reason: "kcache-only".into()
            }]
        );
        // A malformed record is an error naming its file.
        std::fs::write(dir.join("bad-1-2.skip"), "no tabs here\n").unwrap();
        let err = read_skips(&dir).unwrap_err();
        assert!(format!("{err:#}").contains("bad-1-2.skip"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
