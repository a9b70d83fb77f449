//! The XDP object: embedded at build time (cache-user/build.rs copies what `cargo xtask ebpf`
//! built; an empty file when it was not built), or read from `$KCACHE_XDP_OBJECT` at run time
//! (testing another build without relinking).

use std::borrow::Cow;

use anyhow::{bail, Context, Result};

static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kcache_xdp.o"));

/// Environment variable naming an object file to load instead of the embedded one.
pub(crate) const OBJECT_ENV: &str = "KCACHE_XDP_OBJECT";

/// The object's bytes.
pub(crate) fn bytes() -> Result<Cow<'static, [u8]>> {
    if let Some(path) = std::env::var_os(OBJECT_ENV) {
        let b = std::fs::read(&path)
            .with_context(|| format!("reading ${OBJECT_ENV} ({})", path.to_string_lossy()))?;
        return Ok(Cow::Owned(b));
    }
    if EMBEDDED.is_empty() {
        bail!("built without the XDP program; run cargo xtask ebpf");
    }
    Ok(Cow::Borrowed(EMBEDDED))
}
