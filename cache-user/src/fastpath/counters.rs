//! The XDP program's per-CPU counters (`COUNTERS`, indexed by `cache_abi::counter`), summed over
//! CPUs: for `stats` while the server runs with XDP, and for `kcache xdp-stats`, which reads the
//! pinned map of a running server.
//!
//! `stats` also folds XDP's answers into memcached's own get counters ([`Answered`]): a get XDP
//! answers never reaches the engine, so without them `cmd_get` and `get_hits` would leave out
//! most of a hot server's reads and every exporter's hit ratio would be wrong.

use std::{
    io::Write,
    path::Path,
    sync::{Mutex, PoisonError},
};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use cache_core::abi::counter::{COUNTERS_LEN, COUNTER_NAMES, XDP_HIT_KEYS};

use super::bpffs;

/// A handle on a `COUNTERS` map.
pub(crate) struct Counters {
    map: PerCpuArray<MapData, u64>,
    /// How the serving program is attached (1 native, 0 generic); `None` when read from pins.
    native: Option<bool>,
    /// The sums at the last `stats reset`, subtracted from every read: the program's per-CPU
    /// counters are never written from user space.
    zero: Mutex<Vec<u64>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

impl Counters {
    /// The loaded program's map (taken out of its `Ebpf`).
    pub(crate) fn from_map(map: Map) -> Result<Counters> {
        let map = PerCpuArray::try_from(map).context("COUNTERS is not a per-CPU array of u64")?;
        Ok(Counters {
            map,
            native: None,
            zero: Mutex::new(Vec::new()),
        })
    }

    /// These counters, reporting `xdp_native` (whether the program runs in the driver).
    pub(crate) fn attached(self, native: bool) -> Counters {
        Counters {
            native: Some(native),
            ..self
        }
    }

    /// A running server's map, pinned at `path`.
    pub(crate) fn from_pin(path: &Path) -> Result<Counters> {
        let data =
            MapData::from_pin(path).with_context(|| format!("opening {}", path.display()))?;
        Self::from_map(Map::PerCpuArray(data))
    }

    /// Every counter's name and its sum over CPUs, in index order. A counter the map cannot
    /// give reads 0 (the program's object is older than this binary).
    pub(crate) fn read(&self) -> Vec<(&'static str, u64)> {
        let zero = self.zero.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = self
            .sums()
            .into_iter()
            .enumerate()
            .map(|(i, sum)| {
                let base = zero.get(i).copied().unwrap_or(0);
                (COUNTER_NAMES[i], sum.wrapping_sub(base))
            })
            .collect();
        if let Some(native) = self.native {
            v.push(("xdp_native", u64::from(native)));
        }
        v
    }
}

impl Counters {
    fn sums(&self) -> Vec<u64> {
        (0..COUNTERS_LEN)
            .map(|i| {
                self.map.get(&i, 0).map_or(0, |per_cpu| {
                    per_cpu.iter().fold(0u64, |a, &v| a.wrapping_add(v))
                })
            })
            .collect()
    }

    /// `stats reset`: from now on reads count from here.
    pub(crate) fn reset(&self) {
        let now = self.sums();
        *self.zero.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }
}

/// What XDP answered, in memcached's terms, from a [`Counters::read`] list (empty without XDP).
///
/// memcached counts `cmd_get` and `get_hits` per key, and XDP answers a request only when every
/// one of its keys hit (a miss anywhere sends the whole request up, where the engine counts all
/// its keys), so each key XDP answered (`xdp_hit_keys`) is one get and one hit, and none is a
/// miss. `xdp_hit` (requests) stays a field of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Answered {
    /// Keys answered: gets, all of them hits.
    pub(crate) keys: u64,
}

impl Answered {
    pub(crate) fn from_read(read: &[(&str, u64)]) -> Answered {
        let name = COUNTER_NAMES[XDP_HIT_KEYS as usize];
        Answered {
            keys: read.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v),
        }
    }
}

/// `kcache xdp-stats`: the counters of the server running XDP on `iface` (or, when `iface` is
/// `None`, on the one interface that has pins under `<bpffs>/kcache/`).
pub(crate) fn print(bpffs: &Path, iface: Option<&str>, out: &mut impl Write) -> Result<()> {
    let iface = match iface {
        Some(i) => i.to_owned(),
        None => only_iface(bpffs)?,
    };
    let path = bpffs::pin_dir(bpffs, &iface).join("COUNTERS");
    let c = Counters::from_pin(&path).with_context(|| {
        format!("is a kcache server with XDP on {iface} running (kcache serve --xdp {iface})?")
    })?;
    for (name, v) in c.read() {
        writeln!(out, "{name} {v}")?;
    }
    Ok(())
}

fn only_iface(bpffs: &Path) -> Result<String> {
    let dir = bpffs.join("kcache");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("no XDP server's pins in {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no XDP server's pins in {}", dir.display()),
        many => anyhow::bail!(
            "several interfaces have XDP servers ({}): pick one with --iface",
            many.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_counts_keys_not_requests() {
        // (counters as read, keys answered)
        let cases: [(&[(&str, u64)], u64); 3] = [
            // Without XDP nothing was answered there.
            (&[], 0),
            // Three requests of 1, 2 and 24 keys: 27 gets, 27 hits.
            (&[("xdp_hit", 3), ("xdp_miss", 5), ("xdp_hit_keys", 27)], 27),
            // xdp_miss and the passes are the engine's to count, not XDP's.
            (
                &[("xdp_miss", 9), ("xdp_pass_race", 2), ("xdp_hit_keys", 0)],
                0,
            ),
        ];
        for (read, keys) in cases {
            assert_eq!(Answered::from_read(read).keys, keys, "{read:?}");
        }
    }
}
