//! HOT table lookups and seqlock-checked copies (layout and protocol: cache-abi's `hot`).
//!
//! # The reader's order
//!
//! A copy is good only if every read of the slot happened after the first read of `seq` and
//! before the second. Nothing here leaves that to the optimiser:
//!
//! - every load of a slot field, the key bytes included, is a volatile read ([`field`],
//!   [`same_key`]), and the compiler keeps volatile accesses in program order among themselves,
//!   so none moves before the first `seq` read or after the second;
//! - the copies are helper calls (`bpf_probe_read_kernel`), made only once checks on values read
//!   after the first `seq` passed, and the second `seq` read is made only once every copy has
//!   returned 0 ([`copy_parts`]): a volatile read is never executed on a path the program does
//!   not take, so it cannot be moved ahead of the calls whose results decide that path.
//!
//! `core::sync::atomic::compiler_fence` would say the same more briefly, but LLVM's BPF backend
//! cannot lower it ("Cannot select: AtomicFence"), and inline `asm!` is unstable for BPF.
//!
//! That makes the program's order the order of its loads. On x86-64 it is also the order the
//! CPU performs them in (the JIT keeps the order, and TSO never reorders a load with another
//! load), so a reader whose second read still sees `seq` saw none of a writer's claim, write
//! and publish. A weakly ordered CPU could still reorder the loads in hardware. BPF has no load
//! barrier, and this program uses no acquire loads (BPF has them only from kernel 6.15, built
//! with `-mcpu=v4`, and the helper copies could not be such loads), so user space refuses
//! `--xdp` on such CPUs (cache-user `fastpath::ordering`).

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{helpers::generated::bpf_probe_read_kernel, maps::Array};
use cache_abi::{csum::combine, HotSlot, HOT_WAYS, SLOT_HEAD, SLOT_LIVE, TEXT_KEY_AT};

use crate::scratch::{Scratch, OUT_MASK, REQ_MASK};

/// One hit in this many (per CPU) is added to a slot's `hits`, as this many.
const HIT_SAMPLE: u64 = 8;

/// What one key added to the answer.
pub(crate) struct Copied {
    /// Bytes appended to `out`.
    pub(crate) len: usize,
    /// Ones' complement sum of those bytes as placed (see cache-abi `hot`).
    pub(crate) sum: u32,
}

/// Why a key was not copied.
pub(crate) enum Miss {
    /// Not in this table (or expired, or another epoch, or mid-write when first read).
    Absent,
    /// The reply would pass `cap`.
    TooBig,
    /// The slot changed while it was being copied (or a copy failed).
    Race,
}

/// A volatile read of one slot field (see the module docs for why every slot read is one).
///
/// # Safety
/// `p` must be aligned and point at a readable `T` of a live slot.
#[inline(always)]
unsafe fn field<T: Copy>(p: *const T) -> T {
    // SAFETY: the caller guarantees an aligned, readable `T`.
    unsafe { read_volatile(p) }
}

/// Looks `key` up in `table` and, on a live match, appends its reply (with ` <cas>` when `cas`)
/// to `s.out` at `at`, at most `cap` bytes in all, and checks the slot did not change meanwhile.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
pub(crate) fn copy<const N: usize>(
    table: &Array<HotSlot<N>>,
    set_mask: u32,
    s: &mut Scratch,
    hash: u64,
    cas: bool,
    at: usize,
    cap: usize,
    now: &mut u64,
    epoch: u32,
) -> Result<Copied, Miss> {
    let set = (hash as u32) & set_mask;
    let tag = (hash >> 32) as u32;
    let mut way = 0;
    while way < HOT_WAYS {
        let Some(p) = table.get_ptr(set * HOT_WAYS + way) else {
            return Err(Miss::Absent);
        };
        way += 1;
        // SAFETY: `p` points at a live array element (array elements are never freed); the
        // fields are aligned plain integers (so for every `field` read below), and a torn read
        // is caught by the seq check.
        let seq = unsafe { field(addr_of!((*p).seq)) };
        // SAFETY: as above.
        let (state, slot_tag, klen) = unsafe {
            (
                field(addr_of!((*p).state)),
                field(addr_of!((*p).tag)),
                field(addr_of!((*p).key_len)),
            )
        };
        if seq & 1 == 1 || state != SLOT_LIVE || slot_tag != tag || klen as usize != s.key_len() {
            continue;
        }
        // SAFETY: as above.
        if unsafe { !same_key(p, s) } {
            continue;
        }
        // SAFETY: as above.
        let (slot_epoch, expires) = unsafe {
            (
                field(addr_of!((*p).epoch)),
                field(addr_of!((*p).expires_ns)),
            )
        };
        if slot_epoch != epoch {
            return Err(Miss::Absent);
        }
        if expires != 0 {
            if *now == 0 {
                // SAFETY: a helper without arguments.
                *now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_ns() };
            }
            if *now >= expires {
                return Err(Miss::Absent);
            }
        }
        // SAFETY: as above.
        let copied = unsafe { copy_parts(p, s, cas, at, cap) }?;
        // Reached only once every copy returned (see the module docs).
        // SAFETY: as above.
        if unsafe { field(addr_of!((*p).seq)) } != seq {
            return Err(Miss::Race);
        }
        // A popularity hint, not an exact count, sampled: one hit in HIT_SAMPLE (counted per
        // CPU) adds HIT_SAMPLE. A write on every hit would bounce the slot's first cache line,
        // which every CPU answering the key reads, between those CPUs. CPUs sampling the same
        // slot at once may also lose an add (no atomics for bpfel in stable Rust); both only
        // make a hot slot look slightly cooler. `hits` is outside the seqlock, never served.
        s.walk.tick = s.walk.tick.wrapping_add(1);
        if s.walk.tick.is_multiple_of(HIT_SAMPLE) {
            // SAFETY: as above; `hits` is a plain u32 of a live slot.
            unsafe {
                let h = addr_of!((*p).hits) as *mut u32;
                core::ptr::write_volatile(h, read_volatile(h).wrapping_add(HIT_SAMPLE as u32));
            }
        }
        return Ok(copied);
    }
    Err(Miss::Absent)
}

/// Whether the slot's key equals the request's, compared 8 bytes at a time.
///
/// The slot side is read as aligned 8-byte words, volatile like every slot read: the key starts
/// at `text[6]`, so key bytes `8i..8i + 8` are the top two bytes of text word `i` and the low
/// six of word `i + 1`. (A volatile read must be aligned; `text` is, at offset 56.)
///
/// # Safety
/// `p` must point at a live slot.
#[inline(always)]
unsafe fn same_key<const N: usize>(p: *const HotSlot<N>, s: &Scratch) -> bool {
    const { assert!(TEXT_KEY_AT == 6 && SLOT_HEAD.is_multiple_of(8) && N.is_multiple_of(8)) };
    let (at, len) = (s.key_at(), s.key_len());
    // SAFETY: only the field's address is taken.
    let words = unsafe { addr_of!((*p).text) }.cast::<u64>();
    // SAFETY: text word 0 is inside every slot (N >= 8, asserted above).
    let mut low = unsafe { field(words) };
    let mut i = 0;
    while i < 32 {
        let off = i * 8;
        if off >= len {
            return true;
        }
        // The slot holds at least 14 bytes after its key (` f b` and two CRLFs), so reading the
        // word past the last key byte stays inside `text` for any slot that matched so far.
        // With N a multiple of 8, this bound also keeps word `i + 1` inside `text`.
        if TEXT_KEY_AT + off + 8 > N {
            return false;
        }
        let rem = len - off;
        let mask = if rem >= 8 {
            u64::MAX
        } else {
            (1u64 << (rem * 8)) - 1
        };
        // SAFETY: `(at + off) & REQ_MASK` + 8 is inside `req` (8 bytes of slack); word `i + 1`
        // ends at text offset 8i + 16 <= N (checked just above, N a multiple of 8).
        let (a, high) = unsafe {
            (
                core::ptr::read_unaligned(s.req.as_ptr().add((at + off) & REQ_MASK).cast::<u64>()),
                field(words.add(i + 1)),
            )
        };
        let b = (low >> 48) | (high << 16);
        if (a ^ b) & mask != 0 {
            return false;
        }
        low = high;
        i += 1;
    }
    true
}

/// Appends `hdr` [+ `cas`] + `tail` of slot `p` to `s.out` at `at`. Returns only once every
/// copy has finished, and `Miss::Race` if one failed (the request then goes up whole).
///
/// # Safety
/// `p` must point at a live slot.
#[inline(always)]
unsafe fn copy_parts<const N: usize>(
    p: *const HotSlot<N>,
    s: &mut Scratch,
    cas: bool,
    at: usize,
    cap: usize,
) -> Result<Copied, Miss> {
    // SAFETY: aligned integer fields of a live slot.
    let (hdr, cas_len, tail, sh, sc, st) = unsafe {
        (
            field(addr_of!((*p).hdr_len)) as usize,
            field(addr_of!((*p).cas_len)) as usize,
            field(addr_of!((*p).tail_len)) as usize,
            field(addr_of!((*p).sum_hdr)),
            field(addr_of!((*p).sum_cas)),
            field(addr_of!((*p).sum_tail)),
        )
    };
    let mid = if cas { cas_len } else { 0 };
    let len = hdr + mid + tail;
    // Each length is bounded on its own (not only their sum): the verifier tracks registers,
    // not relations, and must see every copy stay inside `out`.
    if hdr > N || cas_len > N || tail > N || hdr + cas_len + tail > N {
        return Err(Miss::Absent);
    }
    if at + len > cap {
        return Err(Miss::TooBig);
    }
    // SAFETY: only the field's address is taken.
    let text = unsafe { addr_of!((*p).text) }.cast::<u8>();
    let mut sum = 0u32;
    let mut o = at;
    // SAFETY: every source range lies in `text` (checked against N above); every destination
    // is `out + (o & OUT_MASK)` with a length `& OUT_MASK`, inside the 4096-byte `out`.
    let failed = unsafe {
        let mut failed = read_into(s, o, hdr, text);
        sum = combine(sum, sh, o & 1 == 1);
        o += hdr;
        if cas {
            failed |= read_into(s, o, cas_len, text.add(hdr));
            sum = combine(sum, sc, o & 1 == 1);
            o += cas_len;
        }
        failed |= read_into(s, o, tail, text.add(hdr + cas_len));
        sum = combine(sum, st, o & 1 == 1);
        failed
    };
    // The helper cannot fail on a live map value, but if it did `out` would hold zeros; and
    // branching on every result is what keeps the caller's second `seq` read after the copies.
    if failed != 0 {
        return Err(Miss::Race);
    }
    Ok(Copied { len, sum })
}

/// Copies `len` bytes from `src` to `out[at..]` with the kernel's memcpy helper; returns the
/// helper's result (0, or a negative error after zeroing the destination).
///
/// # Safety
/// `src..src + len` must be readable kernel memory.
#[inline(always)]
unsafe fn read_into(s: &mut Scratch, at: usize, len: usize, src: *const u8) -> i64 {
    let dst = s.out.as_mut_ptr().wrapping_add(at & OUT_MASK);
    // SAFETY: the caller vouches for the source; the destination range is inside `out`.
    unsafe { bpf_probe_read_kernel(dst.cast(), (len & OUT_MASK) as u32, src.cast()) }
}
