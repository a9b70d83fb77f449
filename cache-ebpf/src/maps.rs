//! The program's maps. Names are the contract with user space (cache-user's `fastpath`):
//! `CONFIG`, `LISTEN`, `BUCKETS`, `ALLOW`, `COUNTERS`, `HOT_SMALL`, `HOT_LARGE`, `HOT_GEN`;
//! `SCRATCH` is private.
//! The HOT tables' sizes here are defaults: the loader sets `max_entries` from the config.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray},
};
use cache_abi::{
    counter::COUNTERS_LEN, BucketEntry, LargeSlot, Listen, SmallSlot, XdpConfig, BUCKET_MAP_ENTRIES,
};

use crate::scratch::Scratch;

/// Slots of `HOT_SMALL` unless the loader says otherwise.
pub(crate) const HOT_SMALL_SLOTS: u32 = 1 << 18;
/// Slots of `HOT_LARGE` unless the loader says otherwise.
pub(crate) const HOT_LARGE_SLOTS: u32 = 1 << 13;
/// Most allowlist prefixes.
pub(crate) const ALLOW_MAX: u32 = 1024;

#[map]
pub(crate) static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

#[map]
pub(crate) static LISTEN: Array<Listen> = Array::with_max_entries(1, 0);

#[map]
pub(crate) static BUCKETS: Array<BucketEntry> = Array::with_max_entries(BUCKET_MAP_ENTRIES, 0);

#[map]
pub(crate) static ALLOW: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(ALLOW_MAX, 0);

#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

#[map]
pub(crate) static HOT_SMALL: Array<SmallSlot> =
    Array::with_max_entries(HOT_SMALL_SLOTS, BPF_F_MMAPABLE);

/// The `flush_all` count (cache-abi `hot`): user space bumps it through its mapping.
#[map]
pub(crate) static HOT_GEN: Array<u32> = Array::with_max_entries(1, BPF_F_MMAPABLE);

#[map]
pub(crate) static HOT_LARGE: Array<LargeSlot> =
    Array::with_max_entries(HOT_LARGE_SLOTS, BPF_F_MMAPABLE);

#[map]
pub(crate) static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The `epoch` a HOT slot must carry now to be served (cache-abi `hot::serving`), or `None` if
/// `HOT_GEN` cannot be read (then nothing is served).
#[inline(always)]
pub(crate) fn serving(cfg: &XdpConfig) -> Option<u32> {
    let p = HOT_GEN.get_ptr(0)?;
    // SAFETY: `p` points at the map's one live element; user space changes it with atomic
    // stores, and an aligned u32 load is never torn.
    let flushes = unsafe { core::ptr::read_volatile(p) };
    Some(cache_abi::serving(cfg.epoch, flushes))
}
