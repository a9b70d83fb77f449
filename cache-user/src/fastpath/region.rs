//! Shared memory the HOT tables live in: a BPF array mapped through its fd, or (in tests and
//! without a kernel) an anonymous mapping. Either way the same `Table` code runs over it.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
};

/// A `MAP_SHARED` read-write mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; every access to its contents
// goes through the seqlock protocol in `table.rs` (atomics for `seq`/`hits`, fenced volatile
// accesses for the rest), which is what makes concurrent use from several threads sound.
unsafe impl Send for Region {}
// SAFETY: as above: `&Region` only hands out the base pointer; `Table` synchronizes accesses.
unsafe impl Sync for Region {}

impl Region {
    /// `len` bytes of zeroed anonymous shared memory (rounded up to the page size).
    #[cfg(test)]
    pub(crate) fn anon(len: usize) -> io::Result<Region> {
        Self::map(None, len)
    }

    /// The first `len` bytes (rounded up to the page size) of the BPF map behind `fd`, which
    /// must have been created with `BPF_F_MMAPABLE`.
    pub(crate) fn map_fd(fd: BorrowedFd<'_>, len: usize) -> io::Result<Region> {
        Self::map(Some(fd), len)
    }

    fn map(fd: Option<BorrowedFd<'_>>, len: usize) -> io::Result<Region> {
        let len = round_to_page(len.max(1));
        let (flags, raw) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel (no address hint, so nothing existing is
        // replaced); `fd`, when given, is a live descriptor borrowed for the call.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Region { ptr, len })
    }

    /// The start of the mapping (page-aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made; nothing borrows it past `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `len` rounded up to a multiple of the page size.
pub(crate) fn round_to_page(len: usize) -> usize {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(page).unwrap_or(4096).max(1);
    len.div_ceil(page) * page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anon_is_zeroed_and_page_rounded() {
        let r = Region::anon(10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.len(), round_to_page(10));
        assert_eq!(r.base() as usize % 4096, 0);
        // SAFETY: the region is `len` bytes of mapped memory nobody else touches.
        let bytes = unsafe { std::slice::from_raw_parts(r.base(), r.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
}
