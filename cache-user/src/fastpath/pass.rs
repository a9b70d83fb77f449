//! `kcache xdp-pass`: attaches `kcache_pass` (XDP_PASS for everything) in native mode to an
//! interface inside a network namespace and pins the link in the host's bpffs, so it outlives
//! this process. Native `XDP_TX` on a veth only delivers if the peer veth also runs a native XDP
//! program (FACTS.md); the test bed's client end gets this one.
//!
//! The namespace is entered with `setns(CLONE_NEWNET)` on this thread only, not with
//! `ip netns exec`, which also remounts `/sys` (and so hides the host's bpffs).

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use aya::{
    programs::{links::FdLink, Xdp, XdpMode},
    EbpfLoader,
};
use cache_core::abi::HOT_WAYS;

use super::{bpffs, object};
use crate::cli::XdpPassArgs;

/// The default pin: `/sys/fs/bpf/kcache-pass-<netns>-<iface>`.
pub(crate) fn default_pin(netns: &str, iface: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/kcache-pass-{netns}-{iface}"))
}

pub(crate) fn run(a: &XdpPassArgs) -> Result<()> {
    let pin = a
        .pin
        .clone()
        .unwrap_or_else(|| default_pin(&a.netns, &a.iface));
    if a.detach {
        std::fs::remove_file(&pin)
            .with_context(|| format!("removing the pinned link {}", pin.display()))?;
        println!(
            "detached kcache_pass from {} in {} ({} removed)",
            a.iface,
            a.netns,
            pin.display()
        );
        return Ok(());
    }
    let dir = pin.parent().unwrap_or(Path::new("/"));
    bpffs::ensure_mounted(dir)?;
    if pin.exists() {
        // An earlier attach's link: removing its pin detaches it.
        std::fs::remove_file(&pin).with_context(|| format!("removing {}", pin.display()))?;
    }
    let ns_path = Path::new("/run/netns").join(&a.netns);
    let ns = File::open(&ns_path)
        .with_context(|| format!("opening {} (ip netns add {}?)", ns_path.display(), a.netns))?;
    // SAFETY: setns(2) on a namespace fd we hold open; it changes only this (single) thread's
    // network namespace and touches no memory.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!("entering network namespace {}: {e}", a.netns);
    }
    let bytes = object::bytes()?;
    // The tables are unused by this program: keep them one set each.
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("HOT_SMALL", HOT_WAYS)
        .map_max_entries("HOT_LARGE", HOT_WAYS)
        .load(bytes)
        .context("loading the XDP object")?;
    let prog: &mut Xdp = ebpf
        .program_mut("kcache_pass")
        .context("the XDP object has no program kcache_pass")?
        .try_into()?;
    prog.load().context("loading kcache_pass")?;
    let id = prog.attach(&a.iface, XdpMode::Driver).with_context(|| {
        format!(
            "attaching kcache_pass to {} in {} (native)",
            a.iface, a.netns
        )
    })?;
    let link = prog.take_link(id)?;
    let Ok(fd_link) = FdLink::try_from(link) else {
        bail!(
            "the kernel attached kcache_pass by netlink, which cannot be pinned (needs bpf_link)"
        );
    };
    fd_link
        .pin(&pin)
        .with_context(|| format!("pinning the link at {}", pin.display()))?;
    println!(
        "attached kcache_pass to {} in {} (native), pinned at {}",
        a.iface,
        a.netns,
        pin.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pin_names_both() {
        assert_eq!(
            default_pin("kc-client", "veth1"),
            Path::new("/sys/fs/bpf/kcache-pass-kc-client-veth1")
        );
    }
}
