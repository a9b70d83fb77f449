//! The UDP and XDP keys of [`Config`]: the allowlist, the HOT table sizes, the attach mode.

use std::path::Path;

use anyhow::{ensure, Result};

use super::Config;

/// Room for a frame header and a short reply ...
const UDP_REPLY_CAP_MIN: u16 = 64;
/// ... up to memcached's largest UDP payload.
const UDP_REPLY_CAP_MAX: u16 = 1400;
/// 1 GiB of 256-byte small slots ...
const SMALL_SLOTS_MAX: u32 = 1 << 22;
/// ... and 1.4 GiB of 1440-byte large ones.
const LARGE_SLOTS_MAX: u32 = 1 << 20;

/// How `kcache_xdp` is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum XdpMode {
    /// Native (driver) mode, else generic (SKB) mode with a log line saying so.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic (SKB) mode only.
    Generic,
}

impl Config {
    /// The UDP allowlist and the XDP keys.
    pub(super) fn check_udp(&self) -> Result<()> {
        for e in &self.udp_allow {
            crate::fastpath::allow::Prefix::parse(e)
                .map_err(|m| anyhow::anyhow!("udp_allow: {m}"))?;
        }
        ensure!(
            (UDP_REPLY_CAP_MIN..=UDP_REPLY_CAP_MAX).contains(&self.udp_reply_cap),
            "udp_reply_cap {} is outside {UDP_REPLY_CAP_MIN}..={UDP_REPLY_CAP_MAX}",
            self.udp_reply_cap
        );
        ensure!(
            self.node_id != cache_core::abi::NODE_NONE,
            "node_id {} is reserved (it means \"no node\")",
            self.node_id
        );
        for (key, v, max) in [
            ("xdp_small_slots", self.xdp_small_slots, SMALL_SLOTS_MAX),
            ("xdp_large_slots", self.xdp_large_slots, LARGE_SLOTS_MAX),
        ] {
            let ways = cache_core::abi::HOT_WAYS;
            ensure!(
                v.is_power_of_two() && (ways..=max).contains(&v),
                "{key} {v} must be a power of two from {ways} (one 4-way set) to {max}"
            );
        }
        if self.xdp.is_empty() {
            return Ok(());
        }
        ensure!(
            self.udp_port != 0,
            "xdp (--xdp) {:?} needs UDP: XDP answers UDP gets on udp_port, which is 0 (off); \
             set udp_port (-U) too",
            self.xdp
        );
        ensure!(
            self.xdp.len() < libc::IFNAMSIZ && !self.xdp.contains(['/', ' ', '\0']),
            "xdp (--xdp) {:?} is not an interface name",
            self.xdp
        );
        ensure!(
            Path::new(&self.bpffs).is_absolute(),
            "bpffs {:?} must be an absolute path",
            self.bpffs
        );
        Ok(())
    }
}
