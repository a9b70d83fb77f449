//! `aya::Pod` for every layout user space reads or writes through aya's map types.
//!
//! Only under the `user` feature: the eBPF side never needs aya, and this crate stays `no_std`
//! (the impls add no code, only a marker).

use crate::{AllowKey, BucketEntry, HotSlot, Listen, XdpConfig};

// SAFETY: `#[repr(C)]`, `Copy`, every byte is a field (padding is spelled out), and any bit
// pattern is a valid value: all fields are integers or integer arrays.
unsafe impl aya::Pod for XdpConfig {}
// SAFETY: as above: two `u32`s, no padding.
unsafe impl aya::Pod for BucketEntry {}
// SAFETY: as above: a `u32` and a `[u8; 16]`, no padding.
unsafe impl aya::Pod for AllowKey {}
// SAFETY: as above: a `u32`, an explicit `[u8; 12]` pad, then `[[u8; 16]; 16]`; 272 bytes, no
// padding (size asserted in `config.rs`).
unsafe impl aya::Pod for Listen {}
// SAFETY: as above: integer fields with explicit `_pad`, then `[u8; N]`; the size assertions in
// `hot.rs` pin the head to 56 bytes and both slot sizes to multiples of 8, so no tail padding.
unsafe impl<const N: usize> aya::Pod for HotSlot<N> {}
