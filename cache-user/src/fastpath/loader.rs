//! Loading `kcache_xdp`: sizes the HOT tables, checks the object's layouts against this binary's,
//! fills `CONFIG`, `LISTEN` (the destination addresses, `dest.rs`), `BUCKETS` and `ALLOW`, maps
//! the HOT tables, attaches the program (native, else generic) and pins the maps. [`Fastpath`] undoes all of it on [`Fastpath::stop`] or drop.

use std::{os::fd::AsFd, path::PathBuf, sync::Arc};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{lpm_trie, Array, LpmTrie, Map, MapData},
    programs::{xdp::XdpLinkId, Xdp, XdpMode as AyaMode},
    Ebpf, EbpfLoader,
};
use cache_core::{
    abi::{
        counter::COUNTERS_LEN, AllowKey, BucketEntry, LargeSlot, Listen, SmallSlot, XdpConfig,
        BUCKET_MAP_ENTRIES, CFG_ALLOWLIST, LAYOUT_VERSION,
    },
    bucket::BucketMap,
};

use super::{
    allow::Allowlist, bpffs::Pins, counters::Counters, dest::Destinations, object, ordering,
    region::Region, HotTables,
};
use crate::config::{Config, XdpMode};

/// The maps, as this binary expects them: name, key size, value size (and, for fixed-size
/// maps, entries). An object that disagrees was built against another `cache-abi`.
const MAPS: [(&str, usize, usize, Option<u32>); 8] = [
    ("CONFIG", 4, size_of::<XdpConfig>(), Some(1)),
    ("LISTEN", 4, size_of::<Listen>(), Some(1)),
    (
        "BUCKETS",
        4,
        size_of::<BucketEntry>(),
        Some(BUCKET_MAP_ENTRIES),
    ),
    ("ALLOW", size_of::<AllowKey>(), 4, None),
    ("COUNTERS", 4, 8, Some(COUNTERS_LEN)),
    ("HOT_SMALL", 4, size_of::<SmallSlot>(), None),
    ("HOT_LARGE", 4, size_of::<LargeSlot>(), None),
    ("HOT_GEN", 4, size_of::<u32>(), Some(1)),
];

/// What the loader needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) iface: String,
    pub(crate) mode: XdpMode,
    pub(crate) bpffs: PathBuf,
    pub(crate) small_slots: u32,
    pub(crate) large_slots: u32,
    pub(crate) reply_cap: u16,
    pub(crate) node: u32,
    pub(crate) port: u16,
    /// The listen address (`-l`): XDP answers only packets to it (`dest.rs`).
    pub(crate) listen: String,
    pub(crate) allow: Allowlist,
    /// The bucket map `BUCKETS` and the epochs start from.
    pub(crate) map: BucketMap,
}

impl Settings {
    pub(crate) fn new(cfg: &Config, allow: Allowlist, map: BucketMap) -> Settings {
        Settings {
            iface: cfg.xdp.clone(),
            mode: cfg.xdp_mode,
            bpffs: PathBuf::from(&cfg.bpffs),
            small_slots: cfg.xdp_small_slots,
            large_slots: cfg.xdp_large_slots,
            reply_cap: cfg.udp_reply_cap,
            node: cfg.node_id,
            port: cfg.udp_port,
            listen: cfg.listen.clone(),
            allow,
            map,
        }
    }
}

/// The loaded, attached program and what it shares with user space.
#[derive(Debug)]
pub(crate) struct Fastpath {
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
    iface: String,
    config: XdpConfig,
    tables: Arc<HotTables>,
    counters: Arc<Counters>,
    pins: Pins,
}

impl Fastpath {
    /// Loads, fills, attaches and pins; see the module docs.
    pub(crate) fn start(s: &Settings) -> Result<Fastpath> {
        ordering::check_this_machine()?;
        let bytes = object::bytes()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("HOT_SMALL", s.small_slots)
            .map_max_entries("HOT_LARGE", s.large_slots)
            .load(bytes)
            .context("loading the XDP object's maps (needs root, or CAP_BPF and CAP_NET_ADMIN)")?;
        check_layouts(&ebpf)?;
        let tables = Arc::new(map_tables(&ebpf, s)?);
        let (small_mask, large_mask) = tables.masks();
        let dst = Destinations::build(&s.listen, &s.iface)
            .context("finding the addresses XDP answers for")?;
        if dst.addrs().is_empty() {
            tracing::warn!(
                iface = %s.iface,
                listen = %s.listen,
                "no packet arriving on the XDP interface can be for the listen address: XDP will \
                 answer nothing"
            );
        }
        let config = XdpConfig {
            layout: LAYOUT_VERSION,
            node: s.node,
            port: s.port,
            reply_cap: s.reply_cap,
            flags: CFG_ALLOWLIST,
            small_mask,
            large_mask,
            epoch: epoch32(&s.map)?,
            _pad: 0,
        };
        tables.set_epoch(config.epoch);
        fill_buckets(&mut ebpf, &s.map)?;
        fill_allow(&mut ebpf, &s.allow)?;
        write_listen(&mut ebpf, &dst.listen()?)?;
        write_config(&mut ebpf, &config)?;
        let (link, native) = attach(&mut ebpf, &s.iface, s.mode)?;
        // Pins only once the interface is ours: a second server on it fails above, before it
        // could remove the first one's pins.
        let mut pins = Pins::fresh(&s.bpffs, &s.iface)?;
        for (name, _, _, _) in MAPS {
            let map = ebpf.map(name).with_context(|| format!("no map {name}"))?;
            let path = pins.path(name);
            map.pin(&path)
                .with_context(|| format!("pinning {name} at {}", path.display()))?;
            pins.made(path);
        }
        let counters = ebpf.take_map("COUNTERS").context("no map COUNTERS")?;
        let counters = Arc::new(Counters::from_map(counters)?.attached(native));
        tracing::info!(
            iface = %s.iface,
            small_slots = s.small_slots,
            large_slots = s.large_slots,
            allow = %s.allow.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            dst = %dst.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            pins = %pins.dir().display(),
            "XDP fast path on"
        );
        Ok(Fastpath {
            ebpf,
            link: Some(link),
            iface: s.iface.clone(),
            config,
            tables,
            counters,
            pins,
        })
    }

    pub(crate) fn tables(&self) -> &Arc<HotTables> {
        &self.tables
    }

    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Moves XDP to `map`: first the epoch (from then on nothing of the old epoch is served),
    /// then every `BUCKETS` entry (each servable again once it carries the new epoch), so every
    /// step, and a failure between any two, only passes more gets up (`engine/reload.rs`).
    pub(crate) fn apply_map(&mut self, map: &BucketMap) -> Result<()> {
        self.set_epoch(epoch32(map)?)?;
        fill_buckets(&mut self.ebpf, map)
    }

    /// Moves the program and new fills to `epoch`: slots of other epochs stop being served.
    pub(crate) fn set_epoch(&mut self, epoch: u32) -> Result<()> {
        self.config.epoch = epoch;
        let config = self.config;
        write_config(&mut self.ebpf, &config)?;
        self.tables.set_epoch(epoch);
        Ok(())
    }

    /// Detaches the program and removes the pins, reporting the first failure.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.detach()?;
        self.pins.remove()
    }

    fn detach(&mut self) -> Result<()> {
        let Some(link) = self.link.take() else {
            return Ok(());
        };
        let prog: &mut Xdp = self
            .ebpf
            .program_mut("kcache_xdp")
            .context("no program kcache_xdp")?
            .try_into()?;
        prog.detach(link)
            .with_context(|| format!("detaching XDP from {}", self.iface))?;
        tracing::info!(iface = %self.iface, "XDP program detached");
        Ok(())
    }
}

impl Drop for Fastpath {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            tracing::warn!("{e:#}");
        }
        // `pins` removes itself.
    }
}

fn map_data<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a MapData> {
    match ebpf.map(name) {
        Some(Map::Array(d) | Map::PerCpuArray(d) | Map::LpmTrie(d)) => Ok(d),
        Some(_) => bail!("map {name} has an unexpected type"),
        None => bail!("the XDP object has no map {name}"),
    }
}

/// Refuses an object built against another layout (see `MAPS`).
fn check_layouts(ebpf: &Ebpf) -> Result<()> {
    for (name, key, value, entries) in MAPS {
        let info = map_data(ebpf, name)?
            .info()
            .with_context(|| format!("reading map {name}'s info"))?;
        let got = (info.key_size() as usize, info.value_size() as usize);
        if got != (key, value) || entries.is_some_and(|n| n != info.max_entries()) {
            bail!(
                "the XDP object's {name} map (key {} B, value {} B, {} entries) does not match this \
                 binary's layout v{LAYOUT_VERSION} (key {key} B, value {value} B{}); rebuild it \
                 with cargo xtask ebpf",
                got.0,
                got.1,
                info.max_entries(),
                entries.map_or(String::new(), |n| format!(", {n} entries")),
            );
        }
    }
    Ok(())
}

fn map_tables(ebpf: &Ebpf, s: &Settings) -> Result<HotTables> {
    let mut regions = Vec::new();
    for (name, slots, size) in [
        ("HOT_SMALL", s.small_slots, size_of::<SmallSlot>()),
        ("HOT_LARGE", s.large_slots, size_of::<LargeSlot>()),
    ] {
        let d = map_data(ebpf, name)?;
        let got = d.info()?.max_entries();
        if got != slots {
            bail!("map {name} has {got} entries, {slots} were asked for");
        }
        let r = Region::map_fd(d.fd().as_fd(), slots as usize * size)
            .with_context(|| format!("mapping {name} (is it BPF_F_MMAPABLE?)"))?;
        regions.push(r);
    }
    let large = regions
        .pop()
        .ok_or_else(|| anyhow!("HOT_LARGE not mapped"))?;
    let small = regions
        .pop()
        .ok_or_else(|| anyhow!("HOT_SMALL not mapped"))?;
    let flushes = Region::map_fd(map_data(ebpf, "HOT_GEN")?.fd().as_fd(), size_of::<u32>())
        .context("mapping HOT_GEN (is it BPF_F_MMAPABLE?)")?;
    HotTables::over(small, s.small_slots, large, s.large_slots, flushes).map_err(anyhow::Error::msg)
}

fn write_config(ebpf: &mut Ebpf, c: &XdpConfig) -> Result<()> {
    let mut m: Array<_, XdpConfig> =
        Array::try_from(ebpf.map_mut("CONFIG").context("no map CONFIG")?)?;
    m.set(0, c, 0).context("writing CONFIG")
}

fn write_listen(ebpf: &mut Ebpf, l: &Listen) -> Result<()> {
    let mut m: Array<_, Listen> =
        Array::try_from(ebpf.map_mut("LISTEN").context("no map LISTEN")?)?;
    m.set(0, l, 0).context("writing LISTEN")
}

/// The map's epoch as XDP carries it (32 bits; `Ownership::load` refuses larger ones).
fn epoch32(map: &BucketMap) -> Result<u32> {
    u32::try_from(map.epoch())
        .with_context(|| format!("bucket map epoch {} does not fit 32 bits", map.epoch()))
}

/// Every vbucket's owner in `map`, at `map`'s epoch.
fn fill_buckets(ebpf: &mut Ebpf, map: &BucketMap) -> Result<()> {
    let mut entries = vec![BucketEntry::NONE; BUCKET_MAP_ENTRIES as usize];
    map.fill_abi(&mut entries)
        .context("encoding the bucket map for BUCKETS")?;
    let mut m: Array<_, BucketEntry> =
        Array::try_from(ebpf.map_mut("BUCKETS").context("no map BUCKETS")?)?;
    for (vb, e) in (0..BUCKET_MAP_ENTRIES).zip(entries) {
        m.set(vb, e, 0)
            .with_context(|| format!("writing BUCKETS[{vb}]"))?;
    }
    Ok(())
}

fn fill_allow(ebpf: &mut Ebpf, allow: &Allowlist) -> Result<()> {
    let mut m: LpmTrie<_, [u8; 16], u32> =
        LpmTrie::try_from(ebpf.map_mut("ALLOW").context("no map ALLOW")?)?;
    for p in allow.prefixes() {
        let k = p.key();
        m.insert(&lpm_trie::Key::new(k.prefixlen, k.addr), 1, 0)
            .with_context(|| format!("adding {p} to ALLOW"))?;
    }
    Ok(())
}

/// Attaches the program; says whether it runs in native (driver) mode.
fn attach(ebpf: &mut Ebpf, iface: &str, mode: XdpMode) -> Result<(XdpLinkId, bool)> {
    let prog: &mut Xdp = ebpf
        .program_mut("kcache_xdp")
        .context("the XDP object has no program kcache_xdp")?
        .try_into()?;
    prog.load().context("loading kcache_xdp into the kernel")?;
    let native = || prog_attach_hint(iface, "native");
    match mode {
        XdpMode::Native => Ok((
            prog.attach(iface, AyaMode::Driver).with_context(native)?,
            true,
        )),
        XdpMode::Generic => Ok((
            prog.attach(iface, AyaMode::Skb)
                .with_context(|| prog_attach_hint(iface, "generic"))?,
            false,
        )),
        XdpMode::Auto => match prog.attach(iface, AyaMode::Driver) {
            Ok(l) => {
                tracing::info!(iface, "XDP attached in native (driver) mode");
                Ok((l, true))
            }
            Err(e) => {
                tracing::info!(
                    iface,
                    "native XDP is not available ({e}); attaching in generic (SKB) mode"
                );
                let l = prog
                    .attach(iface, AyaMode::Skb)
                    .with_context(|| prog_attach_hint(iface, "generic"))?;
                Ok((l, false))
            }
        },
    }
}

fn prog_attach_hint(iface: &str, mode: &str) -> String {
    format!(
        "attaching kcache_xdp to {iface} in {mode} mode (does the interface exist, and has it \
         no other XDP program? `ip link show {iface}`)"
    )
}
