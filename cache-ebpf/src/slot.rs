//! HOT table lookups and seqlock-checked copies (layout and protocol: cache-abi's `hot`).

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{helpers::generated::bpf_probe_read_kernel, maps::Array};
use cache_abi::{csum::combine, HotSlot, HOT_WAYS, SLOT_LIVE, TEXT_KEY_AT};

use crate::scratch::{Scratch, OUT_MASK, REQ_MASK};

/// One hit in this many (per CPU) is added to a slot's `hits`, as this many.
const HIT_SAMPLE: u64 = 8;

/// What one key added to the answer.
pub struct Copied {
    /// Bytes appended to `out`.
    pub len: usize,
    /// Ones' complement sum of those bytes as placed (see cache-abi `hot`).
    pub sum: u32,
}

/// Why a key was not copied.
pub enum Miss {
    /// Not in this table (or expired, or another epoch, or mid-write when first read).
    Absent,
    /// The reply would pass `cap`.
    TooBig,
    /// The slot changed while it was being copied.
    Race,
}

/// 8 bytes at `p`, little-endian, without alignment.
#[inline(always)]
unsafe fn load8(p: *const u8) -> u64 {
    // SAFETY: the caller guarantees 8 readable bytes at `p`.
    unsafe { core::ptr::read_unaligned(p as *const u64) }
}

/// Looks `key` up in `table` and, on a live match, appends its reply (with ` <cas>` when `cas`)
/// to `s.out` at `at`, at most `cap` bytes in all, and checks the slot did not change meanwhile.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
pub fn copy<const N: usize>(
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
        // SAFETY: `p` points at a live array element (array elements are never freed).
        let seq = unsafe { read_volatile(addr_of!((*p).seq)) };
        // SAFETY: as above; the fields are plain integers, a torn read is caught by the seq check.
        let (state, slot_tag, klen) = unsafe { ((*p).state, (*p).tag, (*p).key_len) };
        if seq & 1 == 1 || state != SLOT_LIVE || slot_tag != tag || klen as usize != s.key_len() {
            continue;
        }
        // SAFETY: as above.
        if unsafe { !same_key(p, s) } {
            continue;
        }
        // SAFETY: as above.
        let (epoch_ok, expires) = unsafe { ((*p).epoch == epoch, (*p).expires_ns) };
        if !epoch_ok {
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
        // SAFETY: as above; the helper calls inside copy_parts keep this read after the copies.
        if unsafe { read_volatile(addr_of!((*p).seq)) } != seq {
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
/// # Safety
/// `p` must point at a live slot.
#[inline(always)]
unsafe fn same_key<const N: usize>(p: *const HotSlot<N>, s: &Scratch) -> bool {
    let (at, len) = (s.key_at(), s.key_len());
    let mut i = 0;
    while i < 32 {
        let off = i * 8;
        if off >= len {
            return true;
        }
        // The slot holds at least 14 bytes after its key (` f b` and two CRLFs), so reading 8
        // bytes past the last key byte stays inside `text` for any slot that matched so far.
        if TEXT_KEY_AT + off + 8 > N {
            return false;
        }
        let rem = len - off;
        let mask = if rem >= 8 {
            u64::MAX
        } else {
            (1u64 << (rem * 8)) - 1
        };
        // SAFETY: `(at + off) & REQ_MASK` + 8 is inside `req` (8 bytes of slack); the text
        // offset was bounded just above.
        let (a, b) = unsafe {
            (
                load8(s.req.as_ptr().add((at + off) & REQ_MASK)),
                load8(addr_of!((*p).text).cast::<u8>().add(TEXT_KEY_AT + off)),
            )
        };
        if (a ^ b) & mask != 0 {
            return false;
        }
        i += 1;
    }
    true
}

/// Appends `hdr` [+ `cas`] + `tail` of slot `p` to `s.out` at `at`.
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
    // SAFETY: plain integer fields of a live slot.
    let (hdr, cas_len, tail, sh, sc, st) = unsafe {
        (
            (*p).hdr_len as usize,
            (*p).cas_len as usize,
            (*p).tail_len as usize,
            (*p).sum_hdr,
            (*p).sum_cas,
            (*p).sum_tail,
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
    let text = addr_of!((*p).text).cast::<u8>();
    let mut sum = 0u32;
    let mut o = at;
    // SAFETY: every source range lies in `text` (checked against N above); every destination
    // is `out + (o & OUT_MASK)` with a length `& OUT_MASK`, inside the 4096-byte `out`.
    unsafe {
        read_into(s, o, hdr, text);
        sum = combine(sum, sh, o & 1 == 1);
        o += hdr;
        if cas {
            read_into(s, o, cas_len, text.add(hdr));
            sum = combine(sum, sc, o & 1 == 1);
            o += cas_len;
        }
        read_into(s, o, tail, text.add(hdr + cas_len));
        sum = combine(sum, st, o & 1 == 1);
    }
    Ok(Copied { len, sum })
}

/// Copies `len` bytes from `src` to `out[at..]` with the kernel's memcpy helper.
///
/// # Safety
/// `src..src + len` must be readable kernel memory.
#[inline(always)]
unsafe fn read_into(s: &mut Scratch, at: usize, len: usize, src: *const u8) {
    let dst = s.out.as_mut_ptr().wrapping_add(at & OUT_MASK);
    // SAFETY: the caller vouches for the source; the destination range is inside `out`.
    unsafe {
        bpf_probe_read_kernel(dst.cast(), (len & OUT_MASK) as u32, src.cast());
    }
}
