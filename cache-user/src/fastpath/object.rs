//! The XDP object, embedded at build time: cache-user/build.rs copies what `cargo xtask ebpf`
//! built (an empty file when it was not built).

use anyhow::{bail, Result};

static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kcache_xdp.o"));

/// The object's bytes.
pub(crate) fn bytes() -> Result<&'static [u8]> {
    if EMBEDDED.is_empty() {
        bail!("built without the XDP program; run cargo xtask ebpf");
    }
    Ok(EMBEDDED)
}
