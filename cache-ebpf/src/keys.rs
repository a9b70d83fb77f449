//! The request line: `get|gets <key>*\r\n` after the frame header, and the answer for it.

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use cache_abi::{
    counter::*,
    csum::{combine, fold},
    XdpConfig, FRAME_HEADER_LEN, HOT_KEY_MAX, XDP_KEYS_MAX,
};

use crate::{
    maps::{self, BUCKETS, CONFIG, HOT_LARGE, HOT_SMALL, SCRATCH},
    packet::{ptr_at, Frame},
    scratch::{Scratch, Walk, OUT_MASK, REQ_MASK},
    slot::{self, Miss},
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const SPACES: u64 = 0x2020_2020_2020_2020;
const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
/// `END\r\n` and its ones' complement sum from an even offset (0x454e + 0x440d + 0x0a00).
const END: &[u8; 5] = b"END\r\n";
const END_SUM: u16 = 0x935b;
/// Largest UDP payload in a 1500-byte MTU: IPv4 (1500 - 20 - 8) and IPv6 (1500 - 40 - 8).
const MTU_PAYLOAD_V4: usize = 1472;
const MTU_PAYLOAD_V6: usize = 1452;

/// Builds the answer in `s.out`: returns its length, its ones' complement sum and the keys.
#[inline(always)]
pub(crate) fn answer(
    ctx: &XdpContext,
    frame: &Frame,
    cfg: &XdpConfig,
    s: &mut Scratch,
) -> Result<(usize, u32, usize), u32> {
    if frame.payload_len < FRAME_HEADER_LEN {
        return Err(XDP_PASS_BAD_FRAME);
    }
    let fh: *const [u8; 8] = ptr_at(ctx, frame.payload)?;
    // SAFETY: ptr_at checked the eight bytes.
    let fh = unsafe { *fh };
    if fh[2] != 0 || fh[3] != 0 || fh[4] != 0 || fh[5] != 1 {
        return Err(XDP_PASS_MULTI_DATAGRAM);
    }
    let req_len = frame.payload_len - FRAME_HEADER_LEN;
    if req_len < 6 {
        return Err(XDP_PASS_NOT_GET);
    }
    if req_len > REQ_MASK {
        return Err(XDP_PASS_TOO_MANY_KEYS);
    }
    // SAFETY: the destination holds REQ_MASK + 9 bytes and the length is at most REQ_MASK.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            (frame.payload + FRAME_HEADER_LEN) as u32,
            s.req.as_mut_ptr().cast(),
            (req_len & REQ_MASK) as u32,
        )
    };
    if r != 0 {
        return Err(XDP_PASS_TRUNCATED);
    }
    let at = |i: usize| s.req[i & REQ_MASK];
    if at(req_len - 1) != b'\n' {
        return Err(XDP_PASS_TRUNCATED);
    }
    let mut line = req_len - 1;
    if at(line - 1) == b'\r' {
        line -= 1;
    }
    let (pos, cas) = if at(0) == b'g' && at(1) == b'e' && at(2) == b't' && at(3) == b' ' {
        (4, false)
    } else if at(0) == b'g' && at(1) == b'e' && at(2) == b't' && at(3) == b's' && at(4) == b' ' {
        (5, true)
    } else {
        return Err(XDP_PASS_NOT_GET);
    };
    let mtu = if frame.v6 {
        MTU_PAYLOAD_V6
    } else {
        MTU_PAYLOAD_V4
    };
    s.walk.start(Walk {
        pos: pos as u64,
        line: line as u64,
        cas: cas as u64,
        cap: ((cfg.reply_cap as usize).min(mtu) - END.len()) as u64,
        o: FRAME_HEADER_LEN as u64,
        sum: 0,
        now: 0,
        n: 0,
        err: 0,
        key_at: 0,
        key_len: 0,
        vlan: (frame.l3 == 18) as u64,
        v6: frame.v6 as u64,
        tick: 0,
    });
    // The keys are walked by bpf_loop so the verifier checks one key's work once, not once per
    // possible key (plain loops over 24 keys x 2 tables x 4 ways exceed its 1M-instruction budget).
    // SAFETY: `step` matches bpf_loop's callback signature and ignores its context argument.
    unsafe {
        bpf_loop(
            (XDP_KEYS_MAX + 1) as u32,
            step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let w = &s.walk;
    if w.err != 0 {
        return Err((w.err - 1) as u32);
    }
    let (mut o, mut sum, n) = (w.o as usize, w.sum as u32, w.n as usize);
    if o > OUT_MASK - END.len() {
        return Err(XDP_PASS_REPLY_TOO_BIG);
    }
    if n == 0 {
        return Err(XDP_PASS_NOT_GET);
    }
    let mut i = 0;
    while i < END.len() {
        s.out[(o + i) & OUT_MASK] = END[i];
        i += 1;
    }
    sum = combine(sum, END_SUM, o & 1 == 1);
    o += END.len();
    // Frame header: the request id, sequence 0, one datagram, reserved 0.
    s.out[0] = fh[0];
    s.out[1] = fh[1];
    s.out[2] = 0;
    s.out[3] = 0;
    s.out[4] = 0;
    s.out[5] = 1;
    s.out[6] = 0;
    s.out[7] = 0;
    sum = combine(sum, u16::from_be_bytes([fh[0], fh[1]]), false);
    sum = combine(sum, 1, false);
    Ok((o, sum, n))
}

/// One bpf_loop iteration: the next key (0 = go on, 1 = stop).
extern "C" fn step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(s), Some(cfg)) = (SCRATCH.get_ptr_mut(0), CONFIG.get(0)) else {
        return 1;
    };
    // SAFETY: this CPU's scratch, as in `run`.
    let s = unsafe { &mut *s };
    match next_key(s, cfg) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(reason) => {
            s.walk.err = reason as u64 + 1;
            1
        }
    }
}

/// Answers the key at `w.pos`: `Ok(false)` once the line is done (after its last key, or
/// with nothing left but spaces).
#[inline(always)]
fn next_key(s: &mut Scratch, cfg: &XdpConfig) -> Result<bool, u32> {
    let line = s.walk.line as usize;
    let mut pos = s.walk.pos as usize;
    let mut sp = 0;
    while sp < 8 && pos < line && s.req[pos & REQ_MASK] == b' ' {
        pos += 1;
        sp += 1;
    }
    if pos >= line {
        return Ok(false);
    }
    if s.req[pos & REQ_MASK] == b' ' {
        return Err(XDP_PASS_BAD_KEY);
    }
    if s.walk.n as usize >= XDP_KEYS_MAX {
        return Err(XDP_PASS_TOO_MANY_KEYS);
    }
    let len = key_len(s, pos, line)?;
    // The key goes to memory and every loop below reads it back: the exact length (and so
    // which byte ended the key) must not follow the rest of the step in a register.
    s.walk.key_at = pos as u64;
    s.walk.key_len = len as u64;
    let hash = khash(s);
    match BUCKETS.get((hash >> 50) as u32) {
        Some(b) if b.owner == cfg.node && b.epoch == cfg.epoch => {}
        _ => return Err(XDP_PASS_BUCKET_NOT_OWNED),
    }
    // Read for every key, after its bucket check: a flush bumps it before its `OK` (cache-abi
    // `hot`), so a key read after that never matches a slot filled before.
    let serving = maps::serving(cfg).ok_or(XDP_MISS)?;
    let (cas, o, cap) = (s.walk.cas != 0, s.walk.o as usize, s.walk.cap as usize);
    let mut now = s.walk.now;
    let got = match slot::copy(
        &HOT_SMALL,
        cfg.small_mask,
        s,
        hash,
        cas,
        o,
        cap,
        &mut now,
        serving,
    ) {
        Err(Miss::Absent) => slot::copy(
            &HOT_LARGE,
            cfg.large_mask,
            s,
            hash,
            cas,
            o,
            cap,
            &mut now,
            serving,
        ),
        other => other,
    };
    s.walk.now = now;
    match got {
        Ok(c) => {
            s.walk.o = (o + c.len) as u64;
            s.walk.sum = combine(s.walk.sum as u32, fold(c.sum), false) as u64;
        }
        Err(Miss::Absent) => return Err(XDP_MISS),
        Err(Miss::TooBig) => return Err(XDP_PASS_REPLY_TOO_BIG),
        Err(Miss::Race) => return Err(XDP_PASS_RACE),
    }
    let pos = s.key_at() + s.key_len();
    s.walk.pos = pos as u64;
    s.walk.n += 1;
    // The usual last key ends the line: stop here rather than spend a step finding that out.
    Ok(pos < s.walk.line as usize)
}

/// Index (0..8) of the lowest byte whose high bit is set in `m` (a zero-byte mask). Branchless:
/// a branch per byte would hand the verifier eight paths per 8-byte step of the key scan.
#[inline(always)]
fn first_byte(m: u64) -> usize {
    // The lowest set bit is 1 << (8k + 7); shifted to 1 << 8k it moves 0x0001..07 left by k
    // bytes, bringing byte 7 - k (which holds k) to the top.
    let low = (m & m.wrapping_neg()) >> 7;
    (low.wrapping_mul(0x0001_0203_0405_0607) >> 56) as usize
}

/// The zero bytes of `x` (exact up to the first one, which is all we use).
#[inline(always)]
fn zeros(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

#[inline(always)]
fn load8(s: &Scratch, at: usize) -> u64 {
    // SAFETY: `at & REQ_MASK` + 8 <= REQ_MASK + 9, the size of `req`.
    unsafe { core::ptr::read_unaligned(s.req.as_ptr().add(at & REQ_MASK) as *const u64) }
}

/// Length of the key at `pos` (up to the next space or the end of the line), 8 bytes a step.
#[inline(always)]
fn key_len(s: &Scratch, pos: usize, line: usize) -> Result<usize, u32> {
    let mut i = 0;
    while i < 32 {
        let off = pos + i * 8;
        if off >= line {
            break;
        }
        let w = load8(s, off);
        let valid = line - off;
        let mut m = zeros(w ^ SPACES) | zeros(w ^ NEWLINES);
        if valid < 8 {
            m &= (1u64 << (valid * 8)) - 1;
        }
        if m != 0 {
            let len = i * 8 + first_byte(m);
            if s.req[(pos + len) & REQ_MASK] == b'\n' {
                // A second line in one datagram: user space's business.
                return Err(XDP_PASS_TRUNCATED);
            }
            return check_len(len);
        }
        i += 1;
    }
    check_len(line - pos)
}

#[inline(always)]
fn check_len(len: usize) -> Result<usize, u32> {
    if len == 0 || len > HOT_KEY_MAX {
        Err(XDP_PASS_BAD_KEY)
    } else {
        Ok(len)
    }
}

/// kcache hash v1 (cache-core's `bucket::khash`) of the current key.
#[inline(always)]
fn khash(s: &Scratch) -> u64 {
    let (pos, len) = (s.key_at(), s.key_len());
    const SEED: u64 = 0x243F_6A88_85A3_08D3;
    const P: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = SEED ^ (len as u64).wrapping_mul(P);
    let mut i = 0;
    while i < 32 {
        let off = i * 8;
        if off >= len {
            break;
        }
        let rem = len - off;
        let mut w = load8(s, pos + off);
        if rem < 8 {
            w &= (1u64 << (rem * 8)) - 1;
        }
        h = (h ^ w).wrapping_mul(P).rotate_left(29);
        i += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
