//! Turns the request packet into the answer: headers swapped and resized, checksums set, the
//! answer from scratch written in. Called only once every key hit, so a failure before the
//! first write leaves the request intact for user space.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};
use cache_abi::counter::{XDP_PASS_NO_ROOM, XDP_PASS_TRUNCATED};

use crate::{
    packet::Frame,
    scratch::{Scratch, HDR_MASK, OUT_MASK},
    slot::{combine, fold},
};

const TTL: u8 = 64;

#[inline(always)]
fn get16(s: &Scratch, at: usize) -> u16 {
    u16::from_be_bytes([s.hdr[at & HDR_MASK], s.hdr[(at + 1) & HDR_MASK]])
}

#[inline(always)]
fn put16(s: &mut Scratch, at: usize, v: u16) {
    let b = v.to_be_bytes();
    s.hdr[at & HDR_MASK] = b[0];
    s.hdr[(at + 1) & HDR_MASK] = b[1];
}

/// Swaps `len` bytes at `a` and `b` in the header copy.
#[inline(always)]
fn swap(s: &mut Scratch, a: usize, b: usize, len: usize) {
    let mut i = 0;
    while i < len {
        s.hdr.swap((a + i) & HDR_MASK, (b + i) & HDR_MASK);
        i += 1;
    }
}

/// Ones' complement sum of `words` 16-bit words of the header copy from `at`.
#[inline(always)]
fn sum_words(s: &Scratch, at: usize, words: usize, mut acc: u32) -> u32 {
    let mut i = 0;
    while i < words {
        acc = combine(acc, get16(s, at + 2 * i), false);
        i += 1;
    }
    acc
}

/// Rewrites the packet into the answer of `out_len` bytes whose payload sum is `sum`.
#[inline(always)]
pub fn send(
    ctx: &XdpContext,
    frame: &Frame,
    s: &mut Scratch,
    out_len: usize,
    sum: u32,
) -> Result<(), u32> {
    let hdr_len = frame.payload;
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
    let l3 = frame.l3;
    let l4 = hdr_len - 8;
    let udp_len = (8 + out_len) as u16;
    swap(s, 0, 6, 6);
    let mut csum = sum;
    if frame.v6 {
        put16(s, l3 + 4, udp_len);
        s.hdr[(l3 + 7) & HDR_MASK] = TTL;
        swap(s, l3 + 8, l3 + 24, 16);
        csum = sum_words(s, l3 + 8, 16, csum);
    } else {
        put16(s, l3 + 2, 20 + udp_len);
        s.hdr[(l3 + 8) & HDR_MASK] = TTL;
        swap(s, l3 + 12, l3 + 16, 4);
        put16(s, l3 + 10, 0);
        let ip = !fold(sum_words(s, l3, 10, 0));
        put16(s, l3 + 10, ip);
        csum = sum_words(s, l3 + 12, 4, csum);
    }
    // Pseudo-header protocol and length, then the UDP header itself (checksum field zero).
    swap(s, l4, l4 + 2, 2);
    put16(s, l4 + 4, udp_len);
    put16(s, l4 + 6, 0);
    csum = combine(csum, 17, false);
    csum = combine(csum, udp_len, false);
    csum = sum_words(s, l4, 4, csum);
    let mut c = !fold(csum);
    if c == 0 {
        c = 0xffff;
    }
    put16(s, l4 + 6, c);
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
