//! The XDP object: `cache-ebpf` built for `bpfel-unknown-none` with the project-local bpf-linker,
//! and its clippy pass.
//!
//! `cache-ebpf` is a cargo workspace of its own (the host workspace excludes it), built in release
//! only: the debug profile is rejected by the verifier. Nothing here needs nightly: stable rustc
//! accepts `-Z build-std=core` under `RUSTC_BOOTSTRAP=1`, and `rust-src` plus bpf-linker come from
//! `tools::ensure_build`. After [`build`], every cargo command xtask starts carries the object's
//! path in [`OBJECT_ENV`], which `cache-user/build.rs` copies into its `OUT_DIR`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{ensure, Context, Result};

use crate::{step, tools};

/// The eBPF crate's directory.
pub(crate) const CRATE_DIR: &str = "cache-ebpf";
/// Its manifest, for `cargo fmt`.
pub(crate) const MANIFEST: &str = "cache-ebpf/Cargo.toml";
/// The environment variable `cache-user/build.rs` reads the object's path from.
pub(crate) const OBJECT_ENV: &str = "KCACHE_XDP_OBJ";
const TARGET: &str = "bpfel-unknown-none";
/// Kept apart from the host's `target/` profiles so the two builds never share artifacts;
/// `cache-user/build.rs` falls back to the object under it when `KCACHE_XDP_OBJ` is unset.
const TARGET_DIR: &str = "target/ebpf";
/// `--btf` makes bpf-linker emit BTF, which aya's loader needs for the maps; debuginfo is its
/// source. `allows-misaligned-mem-access` lets LLVM emit one 8-byte load where the program
/// reads keys 8 bytes at a time at any offset (x86-64 and the verifier allow it); without it
/// each such load becomes eight byte loads, slower and enough extra states to push the verifier
/// past its 1M-instruction budget. `target-cpu=v3` (32-bit ALU and jumps, kernel 5.12+) made a
/// hit ~6% cheaper (142 against 150 ns, three runs each, back to back).
const RUSTFLAGS: &str = "-C debuginfo=2 -C link-arg=--btf \
     -C target-feature=+allows-misaligned-mem-access -C target-cpu=v3";

/// The object's absolute path, once [`build`] has made it in this process.
static OBJECT: OnceLock<PathBuf> = OnceLock::new();

/// The object built by this xtask run, if any.
pub(crate) fn object() -> Option<&'static Path> {
    OBJECT.get().map(PathBuf::as_path)
}

/// Builds the XDP object and returns its absolute path; from here on, cargo commands started by
/// xtask export it in [`OBJECT_ENV`].
pub(crate) fn build() -> Result<PathBuf> {
    let root = std::env::current_dir().context("reading the current directory")?;
    step::run("build eBPF object (release)", &mut cargo(&root, "build")?)?;
    let object = root
        .join(TARGET_DIR)
        .join(TARGET)
        .join("release")
        .join("cache-ebpf");
    let size = std::fs::metadata(&object)
        .with_context(|| format!("{} missing after the build", object.display()))?
        .len();
    ensure!(size > 0, "{} is empty after the build", object.display());
    println!("XDP object: {} ({size} bytes)", object.display());
    // A second build in one run makes the same file, so an already-set path stays right.
    OBJECT.get_or_init(|| object.clone());
    Ok(object)
}

/// clippy on the eBPF crate with `-D warnings`, for its own target (the host workspace's clippy
/// pass never sees it), after checking its lint set is still the workspace's.
pub(crate) fn clippy() -> Result<()> {
    let root = std::env::current_dir().context("reading the current directory")?;
    check_lints(&root)?;
    let mut cmd = cargo(&root, "clippy")?;
    cmd.args(["--", "-D", "warnings"]);
    step::run("clippy eBPF crate", &mut cmd)
}

/// Fails unless the eBPF crate's `[lints]` table equals the host workspace's `[workspace.lints]`
/// (the crate is a workspace of its own, so it cannot say `lints.workspace = true`).
fn check_lints(root: &Path) -> Result<()> {
    let table = |path: &Path, keys: &[&str]| -> Result<toml::Value> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut v: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for k in keys {
            v = v
                .get(k)
                .cloned()
                .with_context(|| format!("{} has no [{}]", path.display(), keys.join(".")))?;
        }
        Ok(v)
    };
    let want = table(&root.join("Cargo.toml"), &["workspace", "lints"])?;
    let got = table(&root.join(MANIFEST), &["lints"])?;
    ensure!(
        want == got,
        "{MANIFEST}'s [lints] differ from Cargo.toml's [workspace.lints]: copy them over, level \
         for level\n  workspace: {want}\n  eBPF crate: {got}"
    );
    Ok(())
}

/// `cargo <sub>` in the eBPF crate for `bpfel-unknown-none`, with the host build's flags and
/// wrappers cleared and ours set.
fn cargo(root: &Path, sub: &str) -> Result<Command> {
    let linker = root.join(tools::bpf_linker_path());
    ensure!(
        linker.is_file(),
        "{} is missing: `cargo xtask ebpf` installs it",
        linker.display()
    );
    let mut cmd =
        step::isolated_cargo_cmd(&[sub, "--release", "--target", TARGET, "-Z", "build-std=core"]);
    cmd.arg("--target-dir")
        .arg(root.join(TARGET_DIR))
        .current_dir(root.join(CRATE_DIR))
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", linker)
        .env("RUSTFLAGS", RUSTFLAGS);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebpf_lints_are_the_workspace_s() {
        // The checked-in manifests agree.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if let Err(e) = check_lints(&root) {
            panic!("{e:#}");
        }
    }

    #[test]
    fn a_changed_level_is_caught() {
        let dir = std::env::temp_dir().join(format!("xtask-lints-{}", std::process::id()));
        let write = |ws: &str, ebpf: &str| -> Result<()> {
            std::fs::create_dir_all(dir.join(CRATE_DIR))?;
            std::fs::write(
                dir.join("Cargo.toml"),
                format!("[workspace.lints.clippy]\n{ws}\n"),
            )?;
            std::fs::write(dir.join(MANIFEST), format!("[lints.clippy]\n{ebpf}\n"))?;
            Ok(())
        };
        let deny = "undocumented_unsafe_blocks = \"deny\"";
        // (workspace, eBPF crate, agree)
        for (ws, ebpf, agree) in [
            (deny, deny, true),
            (deny, "undocumented_unsafe_blocks = \"warn\"", false),
            (deny, "", false),
        ] {
            write(ws, ebpf).unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(check_lints(&dir).is_ok(), agree, "{ws:?} vs {ebpf:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
