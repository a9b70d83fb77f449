//! Puts the XDP object (cache-ebpf, built by `cargo xtask ebpf`) at `$OUT_DIR/kcache_xdp.o`, where
//! `include_bytes!` embeds it.
//!
//! The object is built by xtask rather than here: it needs another target, `-Z build-std`, a
//! project-local linker and a toolchain install that a build script should not do behind a
//! plain `cargo build`. So this script only copies it, from `$KCACHE_XDP_OBJ` (set by xtask to
//! the object it just built) or else from where `cargo xtask ebpf` leaves it. Without one, it
//! embeds an empty file and says so: the server then runs without its XDP fast path, and
//! everything else (tests of the core, clippy, docs) still builds.

use std::{env, fs, path::PathBuf};

/// Set by xtask to the object it built.
const OBJECT_ENV: &str = "KCACHE_XDP_OBJ";
/// Where `cargo xtask ebpf` leaves the object, relative to the workspace root.
const DEFAULT_OBJECT: &str = "target/ebpf/bpfel-unknown-none/release/cache-ebpf";

/// Errors are plain messages: `main` prints them as `Error: "..."`, which names the cause, where
/// an `io::Error`'s Debug form would not.
fn main() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed={OBJECT_ENV}");
    let out = PathBuf::from(env_var("OUT_DIR")?).join("kcache_xdp.o");
    let object = match env::var_os(OBJECT_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            // An explicit path that is not there is a mistake, not a reason to embed nothing.
            if !path.is_file() {
                return Err(format!("{OBJECT_ENV}={} is not a file", path.display()));
            }
            path
        }
        None => {
            let manifest = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
            let root = manifest
                .parent()
                .ok_or("cache-user has no parent directory")?;
            root.join(DEFAULT_OBJECT)
        }
    };
    // Watching a path that does not exist yet reruns this script on every build, so the object
    // is picked up by the first build after `cargo xtask ebpf`.
    println!("cargo:rerun-if-changed={}", object.display());
    if object.is_file() {
        fs::copy(&object, &out)
            .map_err(|e| format!("copying {} to {}: {e}", object.display(), out.display()))?;
    } else {
        println!("cargo:warning=built without the XDP program; run cargo xtask ebpf");
        fs::write(&out, []).map_err(|e| format!("writing {}: {e}", out.display()))?;
    }
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("reading ${name}: {e}"))
}
