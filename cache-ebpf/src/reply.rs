//! Turns the request packet into the answer: headers swapped, lengths and checksums set, the
//! answer from scratch written in. Called only once every key hit, so a failure before the
//! first write leaves the request intact for user space.
//!
//! Two ways to make room. Usually the frame's tail can grow (or must shrink): then the headers
//! stay where they are and are rewritten in place in the packet, and one helper call writes the
//! payload. On a native veth the tail has almost no room (FACTS.md), so the frame grows at the
//! head instead: the headers are copied out, rewritten, and written back at the new start.

use aya_ebpf::{
    helpers::generated::{
        bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use cache_abi::{
    counter::{XDP_PASS_NO_ROOM, XDP_PASS_TRUNCATED},
    csum::{combine, fold},
};

use crate::scratch::{Scratch, HDR_MASK, OUT_MASK};

const TTL: u8 = 64;

/// Headers at `p` with the IP header at the constant offset `L3`: every access has a constant
/// offset, so LLVM uses wide moves and the verifier checks them against one bound.
struct Hdr<const L3: usize>(*mut u8);

impl<const L3: usize> Hdr<L3> {
    #[inline(always)]
    fn get16(&self, at: usize) -> u16 {
        // SAFETY: `answer`'s caller guarantees `l4 + 8` bytes at `p`; `at + 2` stays below it.
        unsafe { u16::from_be_bytes([*self.0.add(at), *self.0.add(at + 1)]) }
    }

    #[inline(always)]
    fn put16(&mut self, at: usize, v: u16) {
        let b = v.to_be_bytes();
        // SAFETY: as in `get16`.
        unsafe {
            *self.0.add(at) = b[0];
            *self.0.add(at + 1) = b[1];
        }
    }

    #[inline(always)]
    fn put8(&mut self, at: usize, v: u8) {
        // SAFETY: as in `get16`.
        unsafe { *self.0.add(at) = v };
    }

    /// Swaps the `N` bytes at `a` with the `N` at `b` (disjoint).
    #[inline(always)]
    fn swap<const N: usize>(&mut self, a: usize, b: usize) {
        // SAFETY: as in `get16`; the ranges do not overlap.
        unsafe {
            let (pa, pb) = (self.0.add(a) as *mut [u8; N], self.0.add(b) as *mut [u8; N]);
            let x = core::ptr::read_unaligned(pa);
            core::ptr::write_unaligned(pa, core::ptr::read_unaligned(pb));
            core::ptr::write_unaligned(pb, x);
        }
    }

    /// Ones' complement sum of `words` 16-bit words from `at`.
    #[inline(always)]
    fn sum(&self, at: usize, words: usize, mut acc: u32) -> u32 {
        let mut i = 0;
        while i < words {
            acc = combine(acc, self.get16(at + 2 * i), false);
            i += 1;
        }
        acc
    }

    /// Bytes of Ethernet + IP + UDP header.
    const fn len(v6: bool) -> usize {
        L3 + if v6 { 40 } else { 20 } + 8
    }

    /// Turns the request's headers into the answer's for a payload of `out_len` bytes whose
    /// ones' complement sum is `sum`.
    ///
    /// # Safety
    /// `Self::len(V6)` bytes at the pointer must be writable.
    #[inline(always)]
    unsafe fn answer<const V6: bool>(&mut self, out_len: usize, sum: u32) {
        let l4 = Self::len(V6) - 8;
        let udp_len = (8 + out_len) as u16;
        self.swap::<6>(0, 6);
        let mut csum = sum;
        if V6 {
            self.put16(L3 + 4, udp_len);
            self.put8(L3 + 7, TTL);
            self.swap::<16>(L3 + 8, L3 + 24);
            csum = self.sum(L3 + 8, 16, csum);
        } else {
            self.put16(L3 + 2, 20 + udp_len);
            self.put8(L3 + 8, TTL);
            self.swap::<4>(L3 + 12, L3 + 16);
            self.put16(L3 + 10, 0);
            let ip = !fold(self.sum(L3, 10, 0));
            self.put16(L3 + 10, ip);
            csum = self.sum(L3 + 12, 4, csum);
        }
        // Pseudo-header protocol and length, then the UDP header (checksum field zero).
        self.swap::<2>(l4, l4 + 2);
        self.put16(l4 + 4, udp_len);
        self.put16(l4 + 6, 0);
        csum = combine(csum, 17, false);
        csum = combine(csum, udp_len, false);
        csum = self.sum(l4, 4, csum);
        let c = match !fold(csum) {
            0 => 0xffff,
            c => c,
        };
        self.put16(l4 + 6, c);
    }
}

/// Rewrites the headers of one shape in place in the packet (bounds-checked here).
#[inline(always)]
fn in_place<const L3: usize, const V6: bool>(
    ctx: &XdpContext,
    out_len: usize,
    sum: u32,
) -> Result<(), u32> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + Hdr::<L3>::len(V6) > end {
        return Err(XDP_PASS_NO_ROOM);
    }
    // SAFETY: the packet holds the header's bytes (checked just above).
    unsafe { Hdr::<L3>(start as *mut u8).answer::<V6>(out_len, sum) };
    Ok(())
}

/// Rewrites the packet into the answer of `out_len` bytes whose payload sum is `sum`.
#[inline(always)]
pub(crate) fn send(ctx: &XdpContext, s: &mut Scratch, out_len: usize, sum: u32) -> Result<(), u32> {
    // The shape comes back from memory, not from `frame`: see `Walk::vlan`.
    let (vlan, v6) = (s.walk.vlan != 0, s.walk.v6 != 0);
    let hdr_len = 14 + 4 * vlan as usize + if v6 { 40 } else { 20 } + 8;
    if hdr_len > 66 || out_len > OUT_MASK {
        return Err(XDP_PASS_TRUNCATED);
    }
    let delta = (hdr_len + out_len) as isize - (ctx.data_end() - ctx.data()) as isize;
    // SAFETY: resizing the packet; every packet pointer below is derived from ctx afterwards.
    let tail_ok = delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } == 0;
    if tail_ok {
        match (vlan, v6) {
            (false, false) => in_place::<14, false>(ctx, out_len, sum)?,
            (false, true) => in_place::<14, true>(ctx, out_len, sum)?,
            (true, false) => in_place::<18, false>(ctx, out_len, sum)?,
            (true, true) => in_place::<18, true>(ctx, out_len, sum)?,
        }
    } else {
        if delta < 0 {
            return Err(XDP_PASS_NO_ROOM);
        }
        grow_at_head(ctx, s, hdr_len, delta, vlan, v6, out_len, sum)?;
    }
    // SAFETY: the source range is inside `out` (<= 2047 of 4096); the helper checks the packet.
    let r = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            (hdr_len & HDR_MASK) as u32,
            s.out.as_mut_ptr().cast(),
            (out_len & OUT_MASK) as u32,
        )
    };
    if r != 0 {
        // The packet was already resized: it can no longer go up as it came.
        return Err(XDP_PASS_NO_ROOM);
    }
    Ok(())
}

/// The head-growth path: headers copied to scratch, rewritten, written at the new start.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "one call site, all plain values")]
fn grow_at_head(
    ctx: &XdpContext,
    s: &mut Scratch,
    hdr_len: usize,
    delta: isize,
    vlan: bool,
    v6: bool,
    out_len: usize,
    sum: u32,
) -> Result<(), u32> {
    // SAFETY: `hdr` holds 136 bytes and `hdr_len` is at most 66.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            0,
            s.hdr.as_mut_ptr().cast(),
            (hdr_len & HDR_MASK) as u32,
        )
    };
    if r != 0 {
        return Err(XDP_PASS_TRUNCATED);
    }
    let h = s.hdr.as_mut_ptr();
    // SAFETY: `hdr` has 136 bytes, more than any header (66).
    unsafe {
        match (vlan, v6) {
            (false, false) => Hdr::<14>(h).answer::<false>(out_len, sum),
            (false, true) => Hdr::<14>(h).answer::<true>(out_len, sum),
            (true, false) => Hdr::<18>(h).answer::<false>(out_len, sum),
            (true, true) => Hdr::<18>(h).answer::<true>(out_len, sum),
        }
    }
    // SAFETY: as above; nothing in the packet is touched before the head moves.
    unsafe {
        if bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) != 0 {
            return Err(XDP_PASS_NO_ROOM);
        }
        if bpf_xdp_store_bytes(ctx.ctx, 0, h.cast(), (hdr_len & HDR_MASK) as u32) != 0 {
            return Err(XDP_PASS_NO_ROOM);
        }
    }
    Ok(())
}
