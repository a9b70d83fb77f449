//! Server settings: the embedded `default.toml`, then the `--config` file, then the flags.
//!
//! [`Config::default`] and the embedded file hold the same values (a test checks it), so a key the
//! file leaves out keeps the built-in value. Bounds, and why:
//!
//! | key             | range                   | why                                              |
//! |-----------------|-------------------------|--------------------------------------------------|
//! | port            | 1..=65535               | 0 would be a random port nobody can find         |
//! | listen          | an IP address           | the engine binds `listen:port` with SO_REUSEPORT |
//! | memory_mb       | 8..=1048576 (1 TiB)     | memcached's smallest useful size; a sanity cap   |
//! | max_connections | 1..=1048576             | a sanity cap (file descriptors run out first)    |
//! | threads         | 0..=256 (0 = per core)  | a shard per thread; more is waste on any box     |
//! | item_max        | 1 KiB..=1 GiB           | memcached's own `-I` limits                      |
//! | tombstone_secs  | 1..=86400               | 0 would drop version floors at once              |
//! | lease_secs      | 1..=86400               | 0 would void every lease at once                 |
//! | growth_factor   | (1, 4)                  | the slab classes' own limits                     |
//! | xdp             | "" or an interface name | XDP needs UDP on (`udp_port`), for its port      |
//! | xdp_*_slots     | powers of two, >= 4     | 4-way sets; the sets' mask is `slots / 4 - 1`    |
//! | udp_allow       | CIDR prefixes           | the UDP source allowlist (invariant 4)           |
//! | udp_reply_cap   | 64..=1400               | memcached's largest UDP reply payload is 1400    |
//! | node_id         | 0..u32::MAX             | `u32::MAX` means "no node" in the bucket map     |
//! | bucket_map      | "" or a readable path   | read (and checked) at start and on SIGHUP        |
//! | conn_reply_max  | 64 KiB..=4 GiB          | one client's replies held; fits one item anyway  |
//! | *_pool_mb       | 1..=1048576             | what the shards lend clients beyond allowances   |
//! | udp_reply_max   | 1400..=4 GiB            | a UDP reply is capped before it is made          |
//! | reply_stall_secs| 0..=86400 (0 = never)   | close non-readers holding pool memory others want|
//!
//! Memory is split evenly across threads, and one shard's arena must hold two of its pages (a page
//! is `max(item_max, 1 MiB)`, so the largest class can always get one while another class holds
//! one) and can address at most 32 GiB (item ids are `u32` offsets / 8).

use std::{fmt, net::IpAddr, num::NonZeroUsize, path::Path};

use anyhow::{bail, ensure, Context, Result};
use serde::{de, Deserializer};
use tracing_subscriber::EnvFilter;

use crate::cli::ServeArgs;

/// The built-in configuration, documented key by key.
pub(crate) const DEFAULT_TOML: &str = include_str!("default.toml");

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// memcached refuses `-I` below 1k ...
pub(crate) const ITEM_MAX_MIN: usize = KIB;
/// ... and above 1024m.
pub(crate) const ITEM_MAX_MAX: usize = GIB;
const MEMORY_MB_MIN: usize = 8;
const MEMORY_MB_MAX: usize = 1 << 20;
const CONNECTIONS_MAX: usize = 1 << 20;
pub(crate) const THREADS_MAX: usize = 256;
/// A shard's arena is addressed by `u32` item ids counting 8-byte words.
const SHARD_BYTES_MAX: usize = 32 * GIB;
const SECS_MAX: u32 = 86_400;
/// A worker polls at most this long (1 ms) before sleeping.
const POLL_US_MAX: u32 = 1000;

/// Everything `kcache serve` runs with. Keys of the TOML file are the field names.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) port: u16,
    /// 0 = UDP off.
    pub(crate) udp_port: u16,
    pub(crate) listen: String,
    pub(crate) memory_mb: usize,
    pub(crate) max_connections: usize,
    /// 0 = one per core; see [`Config::threads_resolved`].
    pub(crate) threads: usize,
    /// Bytes; the file may say `"1m"` as well as `1048576`.
    #[serde(deserialize_with = "size")]
    pub(crate) item_max: usize,
    pub(crate) pin_threads: bool,
    pub(crate) log: String,
    pub(crate) tombstone_secs: u32,
    pub(crate) lease_secs: u32,
    pub(crate) growth_factor: f64,
    pub(crate) strict_keys: bool,
    /// Microseconds a worker keeps polling for work before it sleeps; 0 = sleep at once.
    pub(crate) poll_us: u32,
    /// Interface whose XDP hook answers hot UDP gets; empty = no XDP.
    pub(crate) xdp: String,
    pub(crate) xdp_mode: XdpMode,
    /// Where bpffs is (or is mounted); maps are pinned under `<bpffs>/kcache/<xdp>/`.
    pub(crate) bpffs: String,
    pub(crate) xdp_small_slots: u32,
    pub(crate) xdp_large_slots: u32,
    /// Extra CIDR prefixes UDP requests are answered for (see `fastpath::allow`).
    pub(crate) udp_allow: Vec<String>,
    /// Largest UDP payload, frame header included, the XDP program may send.
    pub(crate) udp_reply_cap: u16,
    /// This node's id in the bucket map.
    pub(crate) node_id: u32,
    /// Bucket map file in `BucketMap`'s text form; empty = this node owns every bucket at epoch 1.
    pub(crate) bucket_map: String,
    /// Reply bytes one connection may hold (raised to fit one whole item).
    #[serde(deserialize_with = "size")]
    pub(crate) conn_reply_max: usize,
    /// Bytes the shards lend connections beyond their own allowance, for replies and for
    /// requests still arriving, split over the threads.
    pub(crate) reply_pool_mb: usize,
    pub(crate) input_pool_mb: usize,
    /// Largest reply to one UDP datagram.
    #[serde(deserialize_with = "size")]
    pub(crate) udp_reply_max: usize,
    /// A client holding borrowed reply bytes that reads nothing this long while others wait is
    /// closed; 0 = never.
    pub(crate) reply_stall_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 11211,
            udp_port: 0,
            listen: "127.0.0.1".into(),
            memory_mb: 64,
            max_connections: 1024,
            threads: 0,
            item_max: MIB,
            pin_threads: true,
            log: "info".into(),
            tombstone_secs: 10,
            lease_secs: 10,
            growth_factor: 1.08,
            strict_keys: false,
            poll_us: 5,
            xdp: String::new(),
            xdp_mode: XdpMode::Auto,
            bpffs: "/sys/fs/bpf".into(),
            xdp_small_slots: 262_144,
            xdp_large_slots: 8192,
            udp_allow: Vec::new(),
            udp_reply_cap: 1400,
            node_id: 0,
            bucket_map: String::new(),
            conn_reply_max: MIB,
            reply_pool_mb: 16,
            input_pool_mb: 16,
            udp_reply_max: MIB,
            reply_stall_secs: 10,
        }
    }
}

impl Config {
    /// The embedded default, overlaid with the `--config` file, overlaid with the flags given;
    /// then checked.
    pub(crate) fn load(args: &ServeArgs) -> Result<Config> {
        let mut cfg = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::from_toml(DEFAULT_TOML).context("the built-in default.toml")?,
        };
        cfg.apply(args);
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config file's settings on top of the defaults (not yet validated).
    pub(crate) fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("in config file {}", path.display()))
    }

    /// TOML text's settings on top of the defaults (not yet validated).
    pub(crate) fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Overrides with every flag that was given.
    pub(crate) fn apply(&mut self, a: &ServeArgs) {
        fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
            if let Some(v) = flag {
                *field = v.clone();
            }
        }
        set(&mut self.port, &a.port);
        set(&mut self.udp_port, &a.udp_port);
        set(&mut self.listen, &a.listen);
        set(&mut self.memory_mb, &a.memory_limit);
        set(&mut self.max_connections, &a.conn_limit);
        set(&mut self.threads, &a.threads);
        set(&mut self.item_max, &a.max_item_size);
        set(&mut self.log, &a.log);
        set(&mut self.poll_us, &a.poll_us);
        set(&mut self.xdp, &a.xdp);
        set(&mut self.xdp_mode, &a.xdp_mode);
        set(&mut self.node_id, &a.node_id);
        set(&mut self.bucket_map, &a.bucket_map);
        if a.no_pin {
            self.pin_threads = false;
        }
    }

    /// Worker thread count: `threads`, or for 0 one per core, at most [`THREADS_MAX`] and at most
    /// as many as `memory_mb` can give a shard's minimum (so the default config starts anywhere).
    pub(crate) fn threads_resolved(&self) -> usize {
        if self.threads != 0 {
            return self.threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let fed = self.memory_bytes() / self.shard_min_bytes();
        cores.min(THREADS_MAX).min(fed).max(1)
    }

    /// Checks every bound in the module docs; the error names the key, the flag and a way out.
    pub(crate) fn validate(&self) -> Result<()> {
        ensure!(
            self.port != 0,
            "port (-p) 0 is not allowed: pick the TCP port clients will use"
        );
        if self.listen.parse::<IpAddr>().is_err() {
            bail!(
                "listen (-l) {:?} is not an IP address (like 127.0.0.1, 0.0.0.0 or ::1)",
                self.listen
            );
        }
        ensure!(
            (MEMORY_MB_MIN..=MEMORY_MB_MAX).contains(&self.memory_mb),
            "memory_mb (-m) {} is outside {MEMORY_MB_MIN}..={MEMORY_MB_MAX}",
            self.memory_mb
        );
        ensure!(
            (1..=CONNECTIONS_MAX).contains(&self.max_connections),
            "max_connections (-c) {} is outside 1..={CONNECTIONS_MAX}",
            self.max_connections
        );
        ensure!(
            self.threads <= THREADS_MAX,
            "threads (-t) {} is more than {THREADS_MAX}",
            self.threads
        );
        check_item_max(self.item_max).map_err(anyhow::Error::msg)?;
        // Written as a negated range so NaN is refused too.
        if !(self.growth_factor > 1.0 && self.growth_factor < 4.0) {
            bail!(
                "growth_factor {} must be above 1 and below 4",
                self.growth_factor
            );
        }
        for (key, v) in [
            ("tombstone_secs", self.tombstone_secs),
            ("lease_secs", self.lease_secs),
        ] {
            ensure!(
                (1..=SECS_MAX).contains(&v),
                "{key} {v} is outside 1..={SECS_MAX}"
            );
        }
        ensure!(
            self.poll_us <= POLL_US_MAX,
            "poll_us (--poll-us) {} is more than {POLL_US_MAX}",
            self.poll_us
        );
        if let Err(e) = EnvFilter::try_new(&self.log) {
            bail!("log (--log) {:?} is not a tracing filter: {e}", self.log);
        }
        self.check_udp()?;
        self.check_budget()?;
        self.check_shards()
    }

    /// Each thread's share of memory must hold two pages and stay addressable.
    fn check_shards(&self) -> Result<()> {
        let threads = self.threads_resolved();
        let share = self.memory_bytes() / threads;
        let need = self.shard_min_bytes();
        if share < need {
            let mb_needed = (need * threads).div_ceil(MIB);
            let fed = self.memory_bytes() / need;
            let fewer = if fed == 0 {
                String::new()
            } else {
                format!(", -t {fed} or fewer threads")
            };
            bail!(
                "-m {} MiB over {threads} threads leaves {} KiB per thread, but each needs at \
                 least {} KiB (twice max(-I, 1m), so a page can always move to the class that \
                 needs it); use -m {mb_needed} or more{fewer}, or a smaller -I",
                self.memory_mb,
                share / KIB,
                need / KIB,
            );
        }
        ensure!(
            share <= SHARD_BYTES_MAX,
            "-m {} MiB over {threads} threads gives each {} GiB, more than the {} GiB one shard \
             can address; use -t {} or more",
            self.memory_mb,
            share / GIB,
            SHARD_BYTES_MAX / GIB,
            self.memory_bytes().div_ceil(SHARD_BYTES_MAX),
        );
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        self.memory_mb.saturating_mul(MIB)
    }

    /// Two of a shard's pages (a page is `max(item_max, 1 MiB)`, as the engine sets it up).
    fn shard_min_bytes(&self) -> usize {
        self.item_max.max(MIB).saturating_mul(2)
    }
}

/// Why a size like `-I`'s did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SizeError {
    #[error("empty size: expected bytes, or a number with a k or m suffix like 512k or 1m")]
    Empty,
    #[error(
        "{0:?} is not a size: expected bytes, or a number with a k or m suffix like 512k or 1m"
    )]
    Syntax(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses memcached's `-I` syntax: decimal bytes, optionally with a `k`/`K` (KiB), `m`/`M` (MiB)
/// or `g`/`G` (GiB) suffix. Nothing else is accepted: no spaces, signs or fractions.
pub(crate) fn parse_size(s: &str) -> Result<usize, SizeError> {
    let (digits, unit) = match s.as_bytes().last() {
        None => return Err(SizeError::Empty),
        Some(b'k' | b'K') => (&s[..s.len() - 1], KIB),
        Some(b'm' | b'M') => (&s[..s.len() - 1], MIB),
        Some(b'g' | b'G') => (&s[..s.len() - 1], GIB),
        Some(_) => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SizeError::Syntax(s.into()));
    }
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| SizeError::Overflow(s.into()))
}

/// `-I`'s value parser: the syntax, then memcached's bounds, so a bad value fails in clap with
/// the flag named.
pub(crate) fn item_max_arg(s: &str) -> Result<usize, String> {
    let n = parse_size(s).map_err(|e| e.to_string())?;
    check_item_max(n)?;
    Ok(n)
}

fn check_item_max(n: usize) -> Result<(), String> {
    if n < ITEM_MAX_MIN {
        return Err(format!(
            "item size {n} bytes is below the 1k minimum (memcached refuses it too)"
        ));
    }
    if n > ITEM_MAX_MAX {
        return Err(format!(
            "item size {n} bytes is above the 1024m maximum (memcached refuses it too)"
        ));
    }
    Ok(())
}

/// `item_max` from a file: an integer (bytes) or a string in [`parse_size`] syntax.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    struct Size;

    impl de::Visitor<'_> for Size {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size: bytes as an integer, or a string like \"512k\" or \"1m\"")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            parse_size(v).map_err(E::custom)
        }
    }

    d.deserialize_any(Size)
}

mod budget;
mod udp;

pub(crate) use udp::XdpMode;

#[cfg(test)]
mod tests;
