//! The memory-budget keys of [`Config`]: what one client may make the server hold.

use anyhow::{ensure, Result};

use super::{Config, GIB, KIB, MIB};

/// A connection must be able to hold a reply of a few small items ...
const CONN_REPLY_MAX_MIN: usize = 64 * KIB;
/// ... and a pool or a UDP reply is capped for sanity.
const SIZE_MAX: usize = 4 * GIB;
const POOL_MB_MAX: usize = 1 << 20;
/// A UDP reply cap below one datagram's payload would refuse even small replies.
const UDP_REPLY_MAX_MIN: usize = 1400;
const STALL_SECS_MAX: u32 = 86_400;

impl Config {
    pub(super) fn check_budget(&self) -> Result<()> {
        ensure!(
            (CONN_REPLY_MAX_MIN..=SIZE_MAX).contains(&self.conn_reply_max),
            "conn_reply_max {} is outside {} KiB..={} GiB",
            self.conn_reply_max,
            CONN_REPLY_MAX_MIN / KIB,
            SIZE_MAX / GIB
        );
        ensure!(
            (UDP_REPLY_MAX_MIN..=SIZE_MAX).contains(&self.udp_reply_max),
            "udp_reply_max {} is outside {UDP_REPLY_MAX_MIN}..={} GiB",
            self.udp_reply_max,
            SIZE_MAX / GIB
        );
        for (key, mb) in [
            ("reply_pool_mb", self.reply_pool_mb),
            ("input_pool_mb", self.input_pool_mb),
        ] {
            ensure!(
                (1..=POOL_MB_MAX).contains(&mb),
                "{key} {mb} is outside 1..={POOL_MB_MAX}"
            );
        }
        ensure!(
            self.reply_stall_secs <= STALL_SECS_MAX,
            "reply_stall_secs {} is more than {STALL_SECS_MAX}",
            self.reply_stall_secs
        );
        Ok(())
    }

    /// The fixed overhead the budgets allow beyond `-m`, besides code and the per-shard buffers:
    /// both pools (each at least two of the largest replies per thread) and every connection
    /// slot's own allowance. Documented in the README's Memory section.
    pub(crate) fn budget_bytes(&self) -> usize {
        let threads = self.threads_resolved();
        let largest = self.conn_reply_max.max(self.item_max + KIB);
        let pool = |mb: usize| (mb * MIB).max(2 * largest * threads);
        pool(self.reply_pool_mb) + pool(self.input_pool_mb) + self.max_connections * 48 * KIB
    }
}
