//! bpf-linker in `.tools/bin`, built against rustc's own libLLVM.
//!
//! bpf-linker must use the LLVM that rustc uses (its bitcode is what it links). Debian has no
//! LLVM of that version, but the rustup sysroot ships rustc's `libLLVM-<major>-rust-*.so`, so
//! bpf-linker is built with `no-llvm-linking` and linked against that library by hand, with an
//! rpath so it finds it at run time. Both the `llvm-<major>` feature and the library's name are
//! read from the toolchain, so a rustc upgrade needs only a reinstall (delete `.tools/bin/
//! bpf-linker`), unless the new LLVM is newer than bpf-linker supports.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use super::TOOLS_ROOT;
use crate::step;

/// The bpf-linker version installed; bump deliberately (and check its `llvm-N` features).
const VERSION: &str = "0.13.0";

/// bpf-linker's path, relative to the workspace root.
pub(crate) fn path() -> PathBuf {
    PathBuf::from(TOOLS_ROOT).join("bin").join("bpf-linker")
}

/// Installs bpf-linker unless the wanted version is there and runs (a rustc upgrade that
/// removed the libLLVM it was linked to makes `--version` fail, which reinstalls it).
pub(super) fn ensure() -> Result<()> {
    let want = format!("bpf-linker {VERSION}");
    if super::installed(&path(), &want) {
        return Ok(());
    }
    let start = Instant::now();
    let sysroot = rustc(&["--print", "sysroot"])?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let verbose = rustc(&["-vV"])?;
    let major = llvm_major(&verbose).context("rustc -vV names no LLVM version")?;
    let llvm = libllvm(&lib)?;
    println!(
        "linking against {}/lib{llvm}.so (LLVM {major})",
        lib.display()
    );
    let features = format!("llvm-{major},no-llvm-linking");
    let mut cmd = step::isolated_cargo_cmd(&[
        "install",
        "bpf-linker",
        "--locked",
        "--version",
        VERSION,
        "--no-default-features",
        "--features",
        &features,
        "--root",
        TOOLS_ROOT,
    ]);
    let lib = lib.display();
    cmd.env(
        "RUSTFLAGS",
        format!("-C link-arg=-L{lib} -C link-arg=-l{llvm} -C link-arg=-Wl,-rpath,{lib}"),
    );
    let status = cmd.status().context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    println!("installed {want} in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The toolchain's rustc output for `args`.
fn rustc(args: &[&str]) -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(args)
        .output()
        .with_context(|| format!("running rustc {args:?}"))?;
    if !out.status.success() {
        bail!(
            "rustc {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The major version of `LLVM version: 22.1.2` in `rustc -vV`'s output.
fn llvm_major(verbose_version: &str) -> Option<&str> {
    let version = verbose_version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))?
        .trim();
    let major = version.split('.').next()?;
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit())).then_some(major)
}

/// The `-l` name of the one `libLLVM-*.so` in the sysroot's `lib`.
fn libllvm(lib: &Path) -> Result<String> {
    let entries = std::fs::read_dir(lib).with_context(|| format!("listing {}", lib.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", lib.display()))?;
        if let Some(name) = link_name(&entry.file_name().to_string_lossy()) {
            names.push(name.to_owned());
        }
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no libLLVM-*.so in {}", lib.display()),
        many => bail!("several libLLVM-*.so in {}: {many:?}", lib.display()),
    }
}

/// `LLVM-22-rust-1.95.0-stable` for `libLLVM-22-rust-1.95.0-stable.so`; the versioned
/// `libLLVM.so.22.1-rust-...` beside it is not a `-l` name.
fn link_name(file: &str) -> Option<&str> {
    file.strip_prefix("lib")?
        .strip_suffix(".so")
        .filter(|n| n.starts_with("LLVM-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major() {
        let cases = [
            // rustc 1.95's output.
            (
                "rustc 1.95.0 (59807616e 2026-04-14)\nhost: x86_64-unknown-linux-gnu\n\
                 release: 1.95.0\nLLVM version: 22.1.2\n",
                Some("22"),
            ),
            // No LLVM line (a non-LLVM backend).
            ("rustc 1.95.0\nrelease: 1.95.0\n", None),
            // A malformed version.
            ("LLVM version: x.1\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(llvm_major(text), want, "{text}");
        }
    }

    #[test]
    fn names_libllvm() {
        let cases = [
            // The dynamic library rustup ships.
            (
                "libLLVM-22-rust-1.95.0-stable.so",
                Some("LLVM-22-rust-1.95.0-stable"),
            ),
            // Its versioned twin is not linkable by `-l`.
            ("libLLVM.so.22.1-rust-1.95.0-stable", None),
            // Other libraries in the sysroot.
            ("librustc_driver-6108105cd7e839cf.so", None),
        ];
        for (file, want) in cases {
            assert_eq!(link_name(file), want, "{file}");
        }
    }
}
