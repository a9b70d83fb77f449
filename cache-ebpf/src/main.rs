//! kcache's XDP program: answers memcached UDP `get`/`gets` for keys in the HOT tables with
//! `XDP_TX`, and passes everything else up to the io_uring engine unchanged.
//!
//! Per packet: parse the headers ([`packet`]); check the destination is an address the server
//! listens on (pass if not); check the source against the allowlist (drop if outside); check the memcached frame header (one datagram); copy the request line to per-CPU
//! scratch; for each key (at most `XDP_KEYS_MAX`): hash (kcache hash v1), check the bucket is
//! ours at the current epoch, find the key in a HOT table and copy its reply part under the
//! slot's seqlock ([`slot`]). Only when every key hit is the packet rewritten ([`reply`]), so a
//! pass always carries the original request. Each packet bumps exactly one counter.
#![no_std]
#![no_main]

mod keys;
mod maps;
mod packet;
mod reply;
mod scratch;
mod slot;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use cache_abi::{counter::*, CFG_ALLOWLIST, LAYOUT_VERSION};

use crate::maps::{ALLOW, CONFIG, COUNTERS, LISTEN, SCRATCH};

/// Not a counter: the program is not configured (no or foreign config), pass silently.
const UNCONFIGURED: u32 = u32::MAX;

#[xdp]
fn kcache_xdp(ctx: XdpContext) -> u32 {
    match run(&ctx) {
        Ok(keys) => {
            count(XDP_HIT, 1);
            count(XDP_HIT_KEYS, keys as u64);
            xdp_action::XDP_TX
        }
        Err(UNCONFIGURED) => xdp_action::XDP_PASS,
        Err(XDP_DROP_NOT_ALLOWED) => {
            count(XDP_DROP_NOT_ALLOWED, 1);
            xdp_action::XDP_DROP
        }
        Err(reason) => {
            count(reason, 1);
            xdp_action::XDP_PASS
        }
    }
}

/// Does nothing but pass: native `XDP_TX` on a veth delivers only if the peer runs an XDP
/// program, and this is the one the test bed attaches there.
#[xdp]
fn kcache_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count(index: u32, n: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot: only this CPU writes it, and never reentrantly.
        unsafe { *c += n };
    }
}

/// Answers the packet in place (returns the keys answered) or says why not.
#[inline(always)]
fn run(ctx: &XdpContext) -> Result<usize, u32> {
    let cfg = match CONFIG.get(0) {
        Some(c) if c.layout == LAYOUT_VERSION => *c,
        _ => return Err(UNCONFIGURED),
    };
    let frame = packet::parse(ctx, cfg.port)?;
    // Not ours to answer (nor to drop): whether anything gets it is the kernel's business.
    if !LISTEN.get(0).is_some_and(|l| packet::to_us(&frame, l)) {
        return Err(XDP_PASS_NOT_DEST);
    }
    if cfg.flags & CFG_ALLOWLIST != 0 {
        let k = aya_ebpf::maps::lpm_trie::Key::new(128, frame.src);
        if ALLOW.get(&k).is_none() {
            return Err(XDP_DROP_NOT_ALLOWED);
        }
    }
    let s = SCRATCH.get_ptr_mut(0).ok_or(UNCONFIGURED)?;
    // SAFETY: this CPU's scratch; XDP runs with preemption off, so nothing else touches it.
    let s = unsafe { &mut *s };
    let (out_len, sum, n) = keys::answer(ctx, &frame, &cfg, s)?;
    reply::send(ctx, s, out_len, sum)?;
    Ok(n)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
