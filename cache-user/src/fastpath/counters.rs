//! The XDP program's per-CPU counters (`COUNTERS`, indexed by `cache_abi::counter`), summed over
//! CPUs: for `stats` while the server runs with XDP, and for `kcache xdp-stats`, which reads the
//! pinned map of a running server.

use std::{io::Write, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use cache_core::abi::counter::{COUNTERS_LEN, COUNTER_NAMES};

use super::bpffs;

/// A handle on a `COUNTERS` map.
pub(crate) struct Counters {
    map: PerCpuArray<MapData, u64>,
    /// How the serving program is attached (1 native, 0 generic); `None` when read from pins.
    native: Option<bool>,
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
        Ok(Counters { map, native: None })
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
        let mut v: Vec<_> = (0..COUNTERS_LEN)
            .map(|i| {
                let sum = self.map.get(&i, 0).map_or(0, |per_cpu| {
                    per_cpu.iter().fold(0u64, |a, &v| a.wrapping_add(v))
                });
                (COUNTER_NAMES[i as usize], sum)
            })
            .collect();
        if let Some(native) = self.native {
            v.push(("xdp_native", u64::from(native)));
        }
        v
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
