//! bpffs: making sure it is mounted, and the directory the XDP maps are pinned in while the
//! server runs (`<bpffs>/kcache/<iface>/<MAP>`), so `kcache xdp-stats` and tools like `bpftool`
//! can find them. Pins are removed when the server stops; stale ones (a server that was killed)
//! are removed before new ones are made.

use std::{
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

/// `statfs(2)`'s `f_type` of bpffs.
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// Whether `path` is on a bpffs.
pub(crate) fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| u64::try_from(s.filesystem_type().0) == Ok(BPF_FS_MAGIC))
}

/// Mounts bpffs at `path` unless one is there already.
pub(crate) fn ensure_mounted(path: &Path) -> Result<()> {
    if is_bpffs(path) {
        return Ok(());
    }
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let target = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", path.display()))?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; data is NULL.
    let r = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        bail!(
            "{} is not bpffs and mounting one there failed: {e}",
            path.display()
        );
    }
    tracing::info!(path = %path.display(), "mounted bpffs");
    Ok(())
}

/// `<bpffs>/kcache/<iface>`.
pub(crate) fn pin_dir(bpffs: &Path, iface: &str) -> PathBuf {
    bpffs.join("kcache").join(iface)
}

/// The pins of one running server; dropping it removes them and the directories it made.
#[derive(Debug)]
pub(crate) struct Pins {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Pins {
    /// The pin directory for `iface`, emptied of stale pins.
    pub(crate) fn fresh(bpffs: &Path, iface: &str) -> Result<Pins> {
        ensure_mounted(bpffs)?;
        let dir = pin_dir(bpffs, iface);
        if dir.exists() {
            for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let p = e?.path();
                tracing::info!(pin = %p.display(), "removing a stale pin");
                fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Pins {
            dir,
            files: Vec::new(),
        })
    }

    /// Where map `name` is pinned; the caller pins it there and then calls [`Pins::made`].
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn made(&mut self, path: PathBuf) {
        self.files.push(path);
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes every pin and the directories, if empty; the first error is returned.
    pub(crate) fn remove(&mut self) -> Result<()> {
        let mut first = None;
        for f in self.files.drain(..) {
            if let Err(e) = fs::remove_file(&f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    first.get_or_insert(anyhow::anyhow!("removing {}: {e}", f.display()));
                }
            }
        }
        // Leave directories another server still uses (their remove_dir fails: not empty).
        let _ = fs::remove_dir(&self.dir);
        if let Some(parent) = self.dir.parent() {
            let _ = fs::remove_dir(parent);
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!("unpinning XDP maps: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_is_not_bpffs() {
        assert!(!is_bpffs(&std::env::temp_dir()));
        assert_eq!(
            pin_dir(Path::new("/sys/fs/bpf"), "eth0"),
            Path::new("/sys/fs/bpf/kcache/eth0")
        );
    }
}
