//! Runs the built `kcache` binary and checks what it prints.

use std::process::{Command, Output};

use cache_core::bucket::{khash, vbucket};

fn kcache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kcache"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running kcache {args:?}: {e}"))
}

fn stdout(args: &[&str]) -> String {
    let out = kcache(args);
    assert!(
        out.status.success(),
        "kcache {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch file that removes itself.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("kcache-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        Self(path)
    }

    fn path(&self) -> &str {
        self.0
            .to_str()
            .unwrap_or_else(|| panic!("non-UTF-8 temp path"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn bucket_prints_vbucket_and_hash() {
    let got = stdout(&["bucket", "foo", "user:1234:profile"]);
    let want: String = ["foo", "user:1234:profile"]
        .iter()
        .map(|k| {
            format!(
                "{k} vbucket={} hash={:016x}\n",
                vbucket(k.as_bytes()),
                khash(k.as_bytes())
            )
        })
        .collect();
    assert_eq!(got, want);
    // Pinned, so a change to the hash shows up here too.
    assert!(
        got.starts_with("foo vbucket=12183 hash=be5ce6e0e0000a58\n"),
        "{got}"
    );
}

#[test]
fn bucket_map_counts_and_owners() {
    let map = Scratch::new(
        "map",
        "# two nodes and a hole\nepoch 7\nnode 1 0-8191\nnode 2 8192-16000\nnode 3\n",
    );
    // Without keys: the per-node counts.
    let got = stdout(&["bucket", "--map", map.path()]);
    assert_eq!(
        got,
        "epoch 7\nnode 1 buckets=8192\nnode 2 buckets=7809\nnode 3 buckets=0\nunowned buckets=383\n"
    );
    // With keys: the counts, then each key's owner (foo is in bucket 12183, node 2's).
    let got = stdout(&["bucket", "--map", map.path(), "foo"]);
    assert!(
        got.ends_with("foo vbucket=12183 hash=be5ce6e0e0000a58 owner=2\n"),
        "{got}"
    );
}

#[test]
fn bucket_map_errors_name_the_file_and_line() {
    let bad = Scratch::new("bad", "epoch 1\nnode 1 0-99999\n");
    let out = kcache(&["bucket", "--map", bad.path()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("decoding bucket map"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    // A missing file is an error too, not an empty map.
    let out = kcache(&["bucket", "--map", "/nonexistent/kcache-map"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading bucket map"));
}

#[test]
fn bucket_without_keys_or_map_is_a_usage_error() {
    let out = kcache(&["bucket"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_names_the_layout() {
    assert_eq!(
        stdout(&["version"]),
        format!("kcache {} (xdp layout 3)\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn serve_help_mentions_every_flag() {
    let help = stdout(&["serve", "--help"]);
    for flag in [
        "-p, --port <PORT>",
        "-U, --udp-port <PORT>",
        "-l, --listen <ADDR>",
        "-m, --memory-limit <MB>",
        "-c, --conn-limit <N>",
        "-t, --threads <N>",
        "-I, --max-item-size <SIZE>",
        "--config <FILE>",
        "--log <FILTER>",
        "--no-pin",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    // The defaults are stated, memcached's among them.
    for default in [
        "[default: 11211]",
        "[default: 0]",
        "[default: 127.0.0.1]",
        "[default: 64]",
        "[default: 1024]",
        "[default: one per core]",
        "[default: 1m]",
        "[default: info]",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
}

#[test]
fn serve_refuses_bad_item_sizes() {
    for (arg, why) in [
        // Below and above memcached's bounds.
        ("--max-item-size=512", "below the 1k minimum"),
        ("--max-item-size=1023", "below the 1k minimum"),
        ("--max-item-size=1025m", "above the 1024m maximum"),
        ("--max-item-size=2g", "above the 1024m maximum"),
        // Not sizes at all.
        ("--max-item-size=1.5m", "is not a size"),
        ("--max-item-size=abc", "is not a size"),
        ("--max-item-size=-1", "is not a size"),
        ("--max-item-size=", "empty size"),
        // The short form says the same.
        ("-I512", "below the 1k minimum"),
    ] {
        let out = kcache(&["serve", arg]);
        let err = String::from_utf8_lossy(&out.stderr);
        // A usage error, naming the flag and the reason; the server never starts.
        assert_eq!(out.status.code(), Some(2), "{arg}: {err}");
        assert!(err.contains("--max-item-size"), "{arg}: {err}");
        assert!(err.contains(why), "{arg}: {err}");
    }
}

#[test]
fn serve_refuses_bad_config_naming_the_key() {
    let bad = Scratch::new("bad.toml", "port = 11311\nmemroy_mb = 128\n");
    let out = kcache(&["serve", "--config", bad.path()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `memroy_mb`"), "{err}");
    assert!(err.contains(bad.path()), "{err}");
    assert!(err.contains("line 2"), "{err}");
    // A known key with a bad value is named too.
    let bad = Scratch::new("bad-size.toml", "item_max = \"1.5m\"\n");
    let err =
        String::from_utf8_lossy(&kcache(&["serve", "--config", bad.path()]).stderr).into_owned();
    assert!(
        err.contains("item_max") && err.contains("is not a size"),
        "{err}"
    );
    // So is a value the bounds refuse, after flags are applied.
    let small = Scratch::new("small.toml", "memory_mb = 64\nthreads = 64\n");
    let err =
        String::from_utf8_lossy(&kcache(&["serve", "--config", small.path()]).stderr).into_owned();
    assert!(err.contains("use -m 128 or more, -t 32 or fewer"), "{err}");
}
