//! Per-CPU working memory: the BPF stack has 512 bytes, a request and its answer need more.
//!
//! ```text
//!  0                      2056                     6152           6288        6400
//!  +----------------------+------------------------+--------------+-----------+
//!  | req [u8; 2056]       | out [u8; 4096]         | hdr [u8;136] | walk(112) |
//!  +----------------------+------------------------+--------------+-----------+
//! ```
//!
//! `req` holds the request after the frame header; every read is at `offset & REQ_MASK` and
//! 8 bytes long, hence the 8 bytes of slack. `out` receives the answer (frame header, values,
//! `END`); writes go to `offset & OUT_MASK` with lengths `& OUT_MASK`, which the verifier can
//! prove stay inside 4096 bytes. `hdr` is the rewritten Ethernet/IP/UDP header (read and written at `offset & HDR_MASK`).

/// Mask for offsets into `req`.
pub(crate) const REQ_MASK: usize = 2047;
/// Mask for offsets and lengths into `out`.
pub(crate) const OUT_MASK: usize = 2047;
/// Longest request (after the frame header) the program reads.
pub(crate) const REQ_MAX: usize = REQ_MASK + 1;
/// Mask for offsets into `hdr`; the longest header kept (Ethernet + 802.1Q + IPv6 + UDP) is
/// 66 bytes, and 2-byte accesses at `offset & HDR_MASK` stay inside 136.
pub(crate) const HDR_MASK: usize = 127;

#[repr(C)]
pub(crate) struct Scratch {
    pub(crate) req: [u8; REQ_MAX + 8],
    pub(crate) out: [u8; 2 * (OUT_MASK + 1)],
    pub(crate) hdr: [u8; HDR_MASK + 9],
    pub(crate) walk: Walk,
}

/// The key walk's state, carried from one `bpf_loop` step to the next.
///
/// It lives in map memory, not on the stack, on purpose: the verifier tracks stack slots
/// exactly but knows nothing of a map value's contents, so every step starts from the same
/// abstract state and the verifier's pruning can merge them (exact per-key positions and
/// lengths otherwise multiply the paths it walks past its 1M-instruction budget).
#[repr(C)]
pub(crate) struct Walk {
    pub(crate) pos: u64,
    pub(crate) line: u64,
    pub(crate) cas: u64,
    pub(crate) cap: u64,
    pub(crate) o: u64,
    pub(crate) sum: u64,
    pub(crate) now: u64,
    pub(crate) n: u64,
    /// 0, or the pass reason + 1 that ended the walk.
    pub(crate) err: u64,
    /// The key being answered: offset in `req` and length. Loops read these afresh (see
    /// [`Scratch::key_len`]) so the ranges a loop's exit test narrows die with the loop.
    pub(crate) key_at: u64,
    pub(crate) key_len: u64,
    /// The frame's shape, for the reply: 1 if it has a VLAN tag, 1 if IPv6. Kept here rather
    /// than in registers so the verifier checks the walk once, not once per shape.
    pub(crate) vlan: u64,
    pub(crate) v6: u64,
    /// Keys answered on this CPU, for sampling slot hit counts; never reset by `start`.
    pub(crate) tick: u64,
}

impl Walk {
    /// Sets every field to `w`'s, one store each. A plain struct assignment lets LLVM merge the
    /// run of zero fields into a `memset` call, which on BPF is a byte-at-a-time subprogram:
    /// measured at a third of a hit's cost before this.
    #[inline(always)]
    pub(crate) fn start(&mut self, w: Walk) {
        // SAFETY: plain u64 fields of this CPU's scratch.
        unsafe {
            core::ptr::write_volatile(&mut self.pos, w.pos);
            core::ptr::write_volatile(&mut self.line, w.line);
            core::ptr::write_volatile(&mut self.cas, w.cas);
            core::ptr::write_volatile(&mut self.cap, w.cap);
            core::ptr::write_volatile(&mut self.o, w.o);
            core::ptr::write_volatile(&mut self.sum, w.sum);
            core::ptr::write_volatile(&mut self.now, w.now);
            core::ptr::write_volatile(&mut self.n, w.n);
            core::ptr::write_volatile(&mut self.err, w.err);
            core::ptr::write_volatile(&mut self.key_at, w.key_at);
            core::ptr::write_volatile(&mut self.key_len, w.key_len);
            core::ptr::write_volatile(&mut self.vlan, w.vlan);
            core::ptr::write_volatile(&mut self.v6, w.v6);
        }
    }
}

impl Scratch {
    /// The current key's length, 1..=250, read from memory (not a register the verifier has
    /// been narrowing).
    #[inline(always)]
    pub(crate) fn key_len(&self) -> usize {
        // SAFETY: a plain u64 field of this CPU's scratch.
        let len = unsafe { core::ptr::read_volatile(&self.walk.key_len) } as usize;
        if len > cache_abi::HOT_KEY_MAX {
            cache_abi::HOT_KEY_MAX
        } else {
            len
        }
    }

    /// The current key's offset in `req`.
    #[inline(always)]
    pub(crate) fn key_at(&self) -> usize {
        // SAFETY: a plain u64 field of this CPU's scratch.
        unsafe { core::ptr::read_volatile(&self.walk.key_at) as usize }
    }
}
