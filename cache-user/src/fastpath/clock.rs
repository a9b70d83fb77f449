//! Item expiry on XDP's clock. Items expire at a Unix second (`exptime`); XDP compares a slot's
//! `expires_ns` with `bpf_ktime_get_ns()`, CLOCK_MONOTONIC. The conversion reads both clocks once
//! and stops the slot [`MARGIN_NS`] early, so XDP never serves an item the store would already
//! call expired (the two clocks drift apart slowly; a step of the wall clock is not followed).

use std::time::Duration;

/// How much earlier than the item a slot stops being served.
pub(crate) const MARGIN_NS: u64 = 10_000_000;

fn read(clock: libc::clockid_t) -> u64 {
    // SAFETY: an all-zero timespec is valid, and clock_gettime writes only into it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a live timespec; the clock ids used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
    .as_nanos() as u64
}

/// CLOCK_MONOTONIC now, in nanoseconds (what `bpf_ktime_get_ns` returns).
pub(crate) fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME now, in nanoseconds since the Unix epoch.
pub(crate) fn realtime_ns() -> u64 {
    read(libc::CLOCK_REALTIME)
}

/// `expires_ns` for an item with `exptime` (Unix seconds, 0 = never): 0 for never, `None` if
/// the item is already within the margin of its end.
pub(crate) fn expires_ns(exptime: u32) -> Option<u64> {
    convert(exptime, realtime_ns(), monotonic_ns())
}

/// [`expires_ns`] with both clocks given.
fn convert(exptime: u32, real_ns: u64, mono_ns: u64) -> Option<u64> {
    if exptime == 0 {
        return Some(0);
    }
    let end = u64::from(exptime) * 1_000_000_000;
    let left = end.checked_sub(real_ns)?.checked_sub(MARGIN_NS)?;
    // Never 0, which would mean "never expires".
    Some(mono_ns.saturating_add(left).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion() {
        let s = 1_000_000_000;
        // (exptime, realtime ns, monotonic ns, expected)
        let cases = [
            // No expiry stays 0.
            (0, 5 * s, 7, Some(0)),
            // 10 s ahead on the wall clock is 10 s ahead on the monotonic one, less the margin.
            (15, 5 * s, 100, Some(100 + 10 * s - MARGIN_NS)),
            // Within the margin or past: not servable.
            (5, 5 * s - MARGIN_NS / 2, 100, None),
            (4, 5 * s, 100, None),
        ];
        for (exptime, real, mono, want) in cases {
            assert_eq!(convert(exptime, real, mono), want, "exptime {exptime}");
        }
    }

    #[test]
    fn clocks_move() {
        let a = monotonic_ns();
        assert!(monotonic_ns() >= a);
        // Sometime after 2020.
        assert!(realtime_ns() > 1_600_000_000 * 1_000_000_000);
    }
}
