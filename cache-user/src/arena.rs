//! One shard's item memory: an anonymous mapping on huge pages when the machine has them, locked
//! into RAM so a cache hit never waits on swap.
//!
//! Order of attempts, each logged in one line per arena:
//! 1. `MAP_HUGETLB` (explicit huge pages, length rounded up to 2 MiB). Fails with ENOMEM when
//!    `vm.nr_hugepages` has too few free pages (0 on a stock machine).
//! 2. A plain mapping with `madvise(MADV_HUGEPAGE)`, which transparent huge pages honour unless
//!    `/sys/kernel/mm/transparent_hugepage/enabled` is `never`.
//! 3. Either way `mlock`, which also faults every page in. Without CAP_IPC_LOCK it is bounded by
//!    RLIMIT_MEMLOCK: on EPERM/ENOMEM the limit is raised (to unlimited, else to the hard limit)
//!    and the lock retried; if that fails too the arena stays unlocked and the log says why.
//!
//! memmap2's `map_anon`, `advise` and `lock` are safe wrappers, so this module has no `unsafe`.

use std::io;

use anyhow::{ensure, Context, Result};
use memmap2::{Advice, MmapMut, MmapOptions};
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Size of the explicit huge pages asked for (the x86-64 and arm64 default).
const HUGE_PAGE: usize = 2 << 20;
const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// A shard's arena. `mem.len()` is at least the size asked for (with explicit huge pages, rounded
/// up to 2 MiB).
#[derive(Debug)]
pub(crate) struct Arena {
    pub(crate) mem: MmapMut,
    pub(crate) huge: HugePages,
    /// `mlock` succeeded: the whole arena is resident and never swapped.
    pub(crate) locked: bool,
}

/// Which huge pages back the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HugePages {
    /// `MAP_HUGETLB`: reserved huge pages from `vm.nr_hugepages`.
    Explicit,
    /// `madvise(MADV_HUGEPAGE)` accepted: transparent huge pages where the kernel can find them.
    Transparent,
    /// Base pages only.
    None,
}

/// Maps, advises and locks `bytes` of item memory, and logs how it went.
pub(crate) fn allocate(bytes: usize) -> Result<Arena> {
    ensure!(bytes > 0, "an arena needs at least one byte");
    let (mem, huge, how) = map(bytes)?;
    let (locked, lock_how) = match lock(&mem) {
        Ok(how) => (true, how),
        Err(why) => (false, why),
    };
    tracing::info!(
        bytes = mem.len(),
        huge_pages = ?huge,
        locked,
        "arena mapped: {how}; {lock_how}"
    );
    Ok(Arena { mem, huge, locked })
}

/// The mapping and a sentence on how it was made.
fn map(bytes: usize) -> Result<(MmapMut, HugePages, String)> {
    let explicit_err = match bytes.checked_next_multiple_of(HUGE_PAGE) {
        Some(rounded) => match MmapOptions::new().len(rounded).huge(None).map_anon() {
            Ok(mem) => return Ok((mem, HugePages::Explicit, "MAP_HUGETLB".into())),
            Err(e) => e,
        },
        None => io::Error::from(io::ErrorKind::InvalidInput),
    };
    let mem = MmapOptions::new()
        .len(bytes)
        .map_anon()
        .with_context(|| format!("mapping {bytes} bytes of item memory"))?;
    let thp = std::fs::read_to_string(THP_ENABLED).map_or_else(
        |_| "unknown".into(),
        |s| {
            // The active mode is the bracketed one: "always [madvise] never".
            s.split_whitespace()
                .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
                .unwrap_or("unknown")
                .to_owned()
        },
    );
    let (huge, how) = match mem.advise(Advice::HugePage) {
        Ok(()) => (
            HugePages::Transparent,
            format!(
                "MAP_HUGETLB failed ({explicit_err}; see vm.nr_hugepages), MADV_HUGEPAGE \
                 accepted (transparent_hugepage={thp})"
            ),
        ),
        Err(e) => (
            HugePages::None,
            format!("MAP_HUGETLB failed ({explicit_err}), MADV_HUGEPAGE refused ({e}); base pages"),
        ),
    };
    Ok((mem, huge, how))
}

/// Locks `mem`, raising RLIMIT_MEMLOCK once if that is what stands in the way. `Ok` and `Err`
/// both carry a sentence for the log.
fn lock(mem: &MmapMut) -> Result<String, String> {
    let first = match mem.lock() {
        Ok(()) => return Ok("mlocked".into()),
        Err(e) => e,
    };
    let limited = matches!(first.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOMEM));
    if !limited {
        return Err(format!("mlock failed ({first}); running unlocked"));
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map_err(|e| format!("mlock failed ({first}), getrlimit failed ({e}); running unlocked"))?;
    let raised = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY)
        .map(|()| "unlimited".to_owned())
        .or_else(|e| {
            if soft < hard {
                setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).map(|()| format!("{hard} bytes"))
            } else {
                Err(e)
            }
        });
    let raised = match raised {
        Ok(to) => to,
        Err(e) => {
            return Err(format!(
                "mlock failed ({first}) under RLIMIT_MEMLOCK {soft} bytes, which could not be \
                 raised ({e}); running unlocked (raise it with `ulimit -l` or LimitMEMLOCK=)"
            ))
        }
    };
    match mem.lock() {
        Ok(()) => Ok(format!(
            "mlocked after raising RLIMIT_MEMLOCK from {soft} bytes to {raised}"
        )),
        Err(e) => Err(format!(
            "mlock failed ({first}), and again after raising RLIMIT_MEMLOCK to {raised} ({e}); \
             running unlocked"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_mib_is_writable() {
        let len = 8 << 20;
        let mut a = allocate(len).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(a.mem.len() >= len);
        if a.huge == HugePages::Explicit {
            assert_eq!(a.mem.len() % HUGE_PAGE, 0);
        } else {
            assert_eq!(a.mem.len(), len);
        }
        // Anonymous memory starts zeroed; every page takes a write and reads it back.
        assert!(a.mem.iter().step_by(4096).all(|&b| b == 0));
        for (i, b) in a.mem.iter_mut().enumerate().step_by(4096) {
            *b = (i / 4096) as u8;
        }
        let last = a.mem.len() - 1;
        a.mem[last] = 0xAB;
        for (i, b) in a.mem.iter().enumerate().step_by(4096) {
            assert_eq!(*b, (i / 4096) as u8);
        }
        assert_eq!(a.mem[last], 0xAB);
        // Whatever the machine gave, the arena says which.
        eprintln!("arena: huge pages {:?}, locked {}", a.huge, a.locked);
    }

    #[test]
    fn odd_sizes() {
        // Not a multiple of any page size: still usable, at least as long as asked.
        let a = allocate(12_345).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(a.mem.len() >= 12_345);
        // Nothing to map.
        assert!(allocate(0).is_err());
    }
}
