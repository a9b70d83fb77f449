//! Turns the request packet into the answer: headers swapped and resized, checksums set, the
//! answer from scratch written in. Called only once every key hit, so a failure before the
//! first write leaves the request intact for user space.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};
use cache_abi::counter::{XDP_PASS_NO_ROOM, XDP_PASS_TRUNCATED};

use crate::{
    scratch::{Scratch, HDR_MASK, OUT_MASK},
    slot::{combine, fold},
};

const TTL: u8 = 64;

/// The header copy with the IP header at the constant offset `L3`: every access below has a
/// constant offset, so LLVM uses wide moves and the verifier needs no masks.
struct Hdr<'a, const L3: usize>(&'a mut [u8; HDR_MASK + 9]);

impl<const L3: usize> Hdr<'_, L3> {
    #[inline(always)]
    fn get16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.0[at], self.0[at + 1]])
    }

    #[inline(always)]
    fn put16(&mut self, at: usize, v: u16) {
        self.0[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Swaps the `N` bytes at `a` with the `N` at `b`.
    #[inline(always)]
    fn swap<const N: usize>(&mut self, a: usize, b: usize) {
        let mut x = [0u8; N];
        let mut y = [0u8; N];
        x.copy_from_slice(&self.0[a..a + N]);
        y.copy_from_slice(&self.0[b..b + N]);
        self.0[a..a + N].copy_from_slice(&y);
        self.0[b..b + N].copy_from_slice(&x);
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

    /// Turns the request's headers into the answer's for a payload of `out_len` bytes whose
    /// ones' complement sum is `sum`; returns the header length.
    #[inline(always)]
    fn answer<const V6: bool>(&mut self, out_len: usize, sum: u32) -> usize {
        let l4 = L3 + if V6 { 40 } else { 20 };
        let udp_len = (8 + out_len) as u16;
        self.swap::<6>(0, 6);
        let mut csum = sum;
        if V6 {
            self.put16(L3 + 4, udp_len);
            self.0[L3 + 7] = TTL;
            self.swap::<16>(L3 + 8, L3 + 24);
            csum = self.sum(L3 + 8, 16, csum);
        } else {
            self.put16(L3 + 2, 20 + udp_len);
            self.0[L3 + 8] = TTL;
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
        l4 + 8
    }
}

/// Rewrites the packet into the answer of `out_len` bytes whose payload sum is `sum`.
#[inline(always)]
pub fn send(
    ctx: &XdpContext,
    s: &mut Scratch,
    out_len: usize,
    sum: u32,
) -> Result<(), u32> {
    // The shape comes back from memory, not from `frame`: see `Walk::vlan`.
    let (vlan, v6) = (s.walk.vlan != 0, s.walk.v6 != 0);
    let hdr_len = 14 + 4 * vlan as usize + if v6 { 40 } else { 20 } + 8;
    if hdr_len > 66 || out_len > OUT_MASK {
        return Err(XDP_PASS_TRUNCATED);
    }
    // SAFETY: `hdr` holds 136 bytes and `hdr_len` is at most 66.
    let r = unsafe {
        bpf_xdp_load_bytes(ctx.ctx, 0, s.hdr.as_mut_ptr().cast(), (hdr_len & HDR_MASK) as u32)
    };
    if r != 0 {
        return Err(XDP_PASS_TRUNCATED);
    }
    let hdr_len = match (vlan, v6) {
        (false, false) => Hdr::<14>(&mut s.hdr).answer::<false>(out_len, sum),
        (false, true) => Hdr::<14>(&mut s.hdr).answer::<true>(out_len, sum),
        (true, false) => Hdr::<18>(&mut s.hdr).answer::<false>(out_len, sum),
        (true, true) => Hdr::<18>(&mut s.hdr).answer::<true>(out_len, sum),
    };
    resize(ctx, (hdr_len + out_len) as isize)?;
    // SAFETY: source ranges are inside `hdr` (<= 66 of 136) and `out` (<= 2047 of 4096); the
    // helper checks the packet side.
    unsafe {
        if bpf_xdp_store_bytes(ctx.ctx, 0, s.hdr.as_mut_ptr().cast(), (hdr_len & HDR_MASK) as u32)
            != 0
            || bpf_xdp_store_bytes(
                ctx.ctx,
                (hdr_len & HDR_MASK) as u32,
                s.out.as_mut_ptr().cast(),
                (out_len & OUT_MASK) as u32,
            ) != 0
        {
            // The packet was already resized: it can no longer go up as it came.
            return Err(XDP_PASS_NO_ROOM);
        }
    }
    Ok(())
}

/// Makes the frame `target` bytes long: grows at the tail, else at the head (native veth has
/// almost no tailroom but 256 bytes of headroom), shrinks at the tail.
#[inline(always)]
fn resize(ctx: &XdpContext, target: isize) -> Result<(), u32> {
    let delta = target - (ctx.data_end() - ctx.data()) as isize;
    if delta == 0 {
        return Ok(());
    }
    // SAFETY: adjusting the packet; all packet pointers are re-derived from ctx afterwards.
    unsafe {
        if delta < 0 || bpf_xdp_adjust_tail(ctx.ctx, delta as i32) != 0 {
            if delta < 0 {
                if bpf_xdp_adjust_tail(ctx.ctx, delta as i32) != 0 {
                    return Err(XDP_PASS_NO_ROOM);
                }
            } else if bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) != 0 {
                return Err(XDP_PASS_NO_ROOM);
            }
        }
    }
    Ok(())
}
