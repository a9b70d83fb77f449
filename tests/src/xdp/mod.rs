//! The XDP program in a test: load the object, fill its maps, run packets through it with
//! `BPF_PROG_TEST_RUN` (no network needed), and read its counters.
//!
//! Needs root (CAP_BPF + CAP_PERFMON) and the object built by `cargo xtask ebpf`. Tests check
//! root first with `skip::unless_root` (a recorded skip outside CI, a failure in CI); loading
//! without root or without the object fails with a clear reason.

pub mod frame;

use std::{
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};
use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapData, PerCpuArray},
    programs::Xdp,
    Ebpf, EbpfLoader,
};
use cache_abi::{
    counter::COUNTERS_LEN, AllowKey, BucketEntry, HotSlot, LargeSlot, Listen, SmallSlot, XdpConfig,
    CFG_ALLOWLIST, HOT_WAYS, LAYOUT_VERSION, SLOT_LIVE, VBUCKETS,
};
use cache_core::{
    bucket::khash,
    hot::{encode, HotText},
};

/// Slots per table in tests: small tables keep loading fast.
pub const TEST_SLOTS: u32 = 1024;

/// XDP return codes.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// The object `cargo xtask ebpf` builds.
pub fn object_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KCACHE_XDP_OBJ") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/ebpf/bpfel-unknown-none/release/cache-ebpf")
}

/// Fails unless this process may load BPF programs.
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("XDP tests need root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN); run them as root");
    }
    Ok(())
}

/// The program, loaded with its maps.
pub struct Prog {
    pub ebpf: Ebpf,
    fd: i32,
    /// `kcache_pass`, the do-nothing program: the baseline of a cost measurement.
    pass_fd: i32,
    pub config: XdpConfig,
}

impl std::fmt::Debug for Prog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prog").field("fd", &self.fd).finish()
    }
}

/// What one test run returned.
#[derive(Debug)]
pub struct Run {
    pub action: u32,
    pub out: Vec<u8>,
    /// Average nanoseconds per run over `repeat` runs.
    pub ns: u32,
}

impl Prog {
    /// Loads the program, configures it for UDP `port`, node 0 owning every bucket at epoch 1,
    /// listening on the test frames' server addresses (`SERVER_V4`, `SERVER_V6`), and the
    /// allowlist holding only `allow` (empty = allowlist off).
    pub fn load(port: u16, allow: &[AllowKey]) -> Result<Prog> {
        require_root()?;
        let path = object_path();
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading the XDP object {} (build it with `cargo xtask ebpf`)",
                path.display()
            )
        })?;
        if bytes.is_empty() {
            bail!(
                "{} is empty: build it with `cargo xtask ebpf`",
                path.display()
            );
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("HOT_SMALL", TEST_SLOTS)
            .map_max_entries("HOT_LARGE", TEST_SLOTS)
            .load(&bytes)
            .context("loading the XDP object")?;
        let prog: &mut Xdp = ebpf
            .program_mut("kcache_xdp")
            .context("no kcache_xdp program")?
            .try_into()?;
        prog.load().context("verifier refused kcache_xdp")?;
        let fd = prog.fd()?.as_fd().as_raw_fd();
        let pass: &mut Xdp = ebpf
            .program_mut("kcache_pass")
            .context("no kcache_pass program")?
            .try_into()?;
        pass.load().context("verifier refused kcache_pass")?;
        let pass_fd = pass.fd()?.as_fd().as_raw_fd();
        let sets = TEST_SLOTS / HOT_WAYS;
        let config = XdpConfig {
            layout: LAYOUT_VERSION,
            node: 0,
            port,
            reply_cap: cache_abi::REPLY_CAP_DEFAULT,
            flags: if allow.is_empty() { 0 } else { CFG_ALLOWLIST },
            small_mask: sets - 1,
            large_mask: sets - 1,
            epoch: 1,
            _pad: 0,
        };
        let mut p = Prog {
            ebpf,
            fd,
            pass_fd,
            config,
        };
        p.set_config(config)?;
        // The server listens on the test frames' destination, IPv4 and IPv6.
        p.set_listen(&[cache_abi::mapped_v4(frame::SERVER_V4), frame::SERVER_V6])?;
        p.set_buckets(|_| BucketEntry { owner: 0, epoch: 1 })?;
        let mut trie: LpmTrie<&mut MapData, [u8; 16], u32> =
            LpmTrie::try_from(p.ebpf.map_mut("ALLOW").context("no ALLOW map")?)?;
        for a in allow {
            trie.insert(&Key::new(a.prefixlen, a.addr), 1, 0)?;
        }
        Ok(p)
    }

    pub fn set_config(&mut self, cfg: XdpConfig) -> Result<()> {
        let mut a: Array<&mut MapData, XdpConfig> =
            Array::try_from(self.ebpf.map_mut("CONFIG").context("no CONFIG map")?)?;
        a.set(0, cfg, 0)?;
        self.config = cfg;
        Ok(())
    }

    /// Fills `LISTEN` with `addrs` (16-byte forms, IPv4 mapped).
    pub fn set_listen(&mut self, addrs: &[[u8; 16]]) -> Result<()> {
        let l = Listen::new(addrs).context("too many listen addresses")?;
        let mut a: Array<&mut MapData, Listen> =
            Array::try_from(self.ebpf.map_mut("LISTEN").context("no LISTEN map")?)?;
        a.set(0, l, 0)?;
        Ok(())
    }

    pub fn set_buckets(&mut self, f: impl Fn(u32) -> BucketEntry) -> Result<()> {
        let mut a: Array<&mut MapData, BucketEntry> =
            Array::try_from(self.ebpf.map_mut("BUCKETS").context("no BUCKETS map")?)?;
        for vb in 0..VBUCKETS {
            a.set(vb, f(vb), 0)?;
        }
        Ok(())
    }

    /// Puts `key` in the HOT table its reply fits, in way `way` of its set.
    pub fn put(&mut self, key: &[u8], flags: u32, value: &[u8], cas: u64) -> Result<()> {
        self.put_with(key, flags, value, cas, |_| {})
    }

    /// [`Prog::put`], letting `edit` change the slot head (expiry, seq, epoch) before it lands.
    pub fn put_with(
        &mut self,
        key: &[u8],
        flags: u32,
        value: &[u8],
        cas: u64,
        edit: impl Fn(&mut HotSlot<0>),
    ) -> Result<()> {
        let mut text = HotText::new();
        if !encode(key, flags, value, cas, &mut text) {
            bail!("reply for {key:?} does not fit a slot");
        }
        let hash = khash(key);
        let mut head = HotSlot::<0>::zeroed();
        head.seq = 2;
        head.tag = cache_abi::hot_tag(hash);
        head.epoch = self.config.epoch;
        head.version = cas;
        head.flags = flags;
        head.key_len = key.len() as u8;
        head.state = SLOT_LIVE;
        head.hdr_len = text.hdr_len;
        head.cas_len = text.cas_len;
        head.tail_len = text.tail_len;
        head.sum_hdr = text.sum_hdr;
        head.sum_cas = text.sum_cas;
        head.sum_tail = text.sum_tail;
        edit(&mut head);
        let set = cache_abi::hot_set(hash, self.config.small_mask);
        if text.fits_small() {
            let mut slot = SmallSlot::zeroed();
            fill(&mut slot, &head, text.text());
            self.write_slot("HOT_SMALL", set, slot)
        } else {
            let mut slot = LargeSlot::zeroed();
            fill(&mut slot, &head, text.text());
            self.write_slot("HOT_LARGE", set, slot)
        }
    }

    fn write_slot<const N: usize>(&mut self, map: &str, set: u32, slot: HotSlot<N>) -> Result<()> {
        let mut a: Array<&mut MapData, HotSlot<N>> =
            Array::try_from(self.ebpf.map_mut(map).context("no HOT map")?)?;
        // First way that is empty or already holds this key.
        for way in 0..HOT_WAYS {
            let i = set * HOT_WAYS + way;
            let cur = a.get(&i, 0)?;
            if cur.state != SLOT_LIVE || cur.key() == slot.key() {
                a.set(i, slot, 0)?;
                return Ok(());
            }
        }
        bail!("set {set} of {map} is full")
    }

    /// Empties every slot of both tables.
    pub fn clear(&mut self) -> Result<()> {
        clear::<{ cache_abi::SMALL_TEXT }>(&mut self.ebpf, "HOT_SMALL")?;
        clear::<{ cache_abi::LARGE_TEXT }>(&mut self.ebpf, "HOT_LARGE")
    }

    /// Runs `packet` through the program `repeat` times (the output is the last run's).
    pub fn run(&self, packet: &[u8], repeat: u32) -> Result<Run> {
        self.run_fd(self.fd, packet, repeat)
    }

    /// [`Prog::run`] with the do-nothing `kcache_pass` program.
    pub fn run_pass(&self, packet: &[u8], repeat: u32) -> Result<Run> {
        self.run_fd(self.pass_fd, packet, repeat)
    }

    fn run_fd(&self, fd: i32, packet: &[u8], repeat: u32) -> Result<Run> {
        let mut out = vec![0u8; 4096];
        let mut attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: packet.len() as u32,
            data_size_out: out.len() as u32,
            data_in: packet.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat,
            ..TestRunAttr::default()
        };
        // SAFETY: BPF_PROG_TEST_RUN reads `data_size_in` bytes from `data_in` and writes at
        // most `data_size_out` bytes to `data_out`; both buffers outlive the call, and `attr`
        // is a zero-padded prefix of `union bpf_attr` of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>() as u32,
            )
        };
        if r != 0 {
            bail!("BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
        }
        out.truncate(attr.data_size_out as usize);
        Ok(Run {
            action: attr.retval,
            out,
            ns: attr.duration,
        })
    }

    /// The kernel's run-time statistics of the program (total time, runs); only counted while
    /// the fd of [`aya::sys::enable_stats`] is open.
    pub fn run_stats(&self, name: &str) -> Result<(std::time::Duration, u64)> {
        let prog: &Xdp = self
            .ebpf
            .program(name)
            .context("no such program")?
            .try_into()?;
        let info = prog.info()?;
        Ok((info.run_time(), info.run_count()))
    }

    /// Every counter summed over CPUs.
    pub fn counters(&self) -> Result<Vec<u64>> {
        let a: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("no COUNTERS map")?)?;
        (0..COUNTERS_LEN)
            .map(|i| Ok(a.get(&i, 0)?.iter().sum()))
            .collect()
    }
}

fn fill<const N: usize>(slot: &mut HotSlot<N>, head: &HotSlot<0>, text: &[u8]) {
    slot.seq = head.seq;
    slot.tag = head.tag;
    slot.epoch = head.epoch;
    slot.expires_ns = head.expires_ns;
    slot.version = head.version;
    slot.flags = head.flags;
    slot.key_len = head.key_len;
    slot.state = head.state;
    slot.hdr_len = head.hdr_len;
    slot.cas_len = head.cas_len;
    slot.tail_len = head.tail_len;
    slot.sum_hdr = head.sum_hdr;
    slot.sum_cas = head.sum_cas;
    slot.sum_tail = head.sum_tail;
    slot.text[..text.len()].copy_from_slice(text);
}

fn clear<const N: usize>(ebpf: &mut Ebpf, map: &str) -> Result<()> {
    let mut a: Array<&mut MapData, HotSlot<N>> =
        Array::try_from(ebpf.map_mut(map).context("no HOT map")?)?;
    for i in 0..a.len() {
        a.set(i, HotSlot::<N>::zeroed(), 0)?;
    }
    Ok(())
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}
