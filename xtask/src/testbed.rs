//! `cargo xtask testbed up|down`: the XDP test bed, two network namespaces joined by a veth pair.
//!
//! | side   | netns    | veth      | IPv4           | IPv6          |
//! |--------|----------|-----------|----------------|---------------|
//! | server | `kc-srv` | `kc-srv0` | `10.77.0.1/24` | `fd77::1/64`  |
//! | client | `kc-cli` | `kc-cli0` | `10.77.0.2/24` | `fd77::2/64`  |
//!
//! Tests hardcode these names; [`SERVER`] and [`CLIENT`] are the one place xtask keeps them. `lo`
//! is up in both namespaces and the IPv6 addresses skip duplicate address detection (`nodad`),
//! so they are usable at once.
//!
//! A native `XDP_TX` on a veth is only delivered if the peer veth runs a native XDP program too
//! (otherwise the kernel counts `xdp_tx_errors` and drops the reply), so `up` attaches kcache's
//! `XDP_PASS` program to `kc-cli0` with `kcache xdp-pass`, which pins the link under
//! `/sys/fs/bpf` so it outlives the process. Nothing else is tuned: with that program in place
//! the veth needs no offload changes. The server's own XDP program is the server's business.
//!
//! Everything is done with `ip` (no netlink library), and [`up`]/[`down`] are callable from other
//! xtask commands.

use std::{
    path::Path,
    process::{Command, Output},
};

use anyhow::{bail, ensure, Context, Result};
use clap::ValueEnum;

use crate::{ebpf, step, tools};

/// One end of the veth pair.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
    /// The network namespace it lives in.
    pub(crate) netns: &'static str,
    /// The veth's name inside that namespace.
    pub(crate) iface: &'static str,
    pub(crate) ipv4: &'static str,
    pub(crate) ipv6: &'static str,
}

/// Where the server runs, and its XDP program attaches.
pub(crate) const SERVER: End = End {
    netns: "kc-srv",
    iface: "kc-srv0",
    ipv4: "10.77.0.1",
    ipv6: "fd77::1",
};
/// Where clients run; its veth carries the `XDP_PASS` program.
pub(crate) const CLIENT: End = End {
    netns: "kc-cli",
    iface: "kc-cli0",
    ipv4: "10.77.0.2",
    ipv6: "fd77::2",
};
pub(crate) const IPV4_PREFIX: u8 = 24;
pub(crate) const IPV6_PREFIX: u8 = 64;

/// Where pinned BPF objects live; `kcache xdp-pass` pins its link here.
const BPFFS: &str = "/sys/fs/bpf";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Action {
    /// Creates the test bed (replacing a stale one).
    Up,
    /// Removes it, if it is there.
    Down,
}

/// `cargo xtask testbed <action>`; `up` first builds the release kcache it attaches with.
pub(crate) fn run(action: Action) -> Result<()> {
    tools::apt_packages(&tools::NET_TOOLS)?;
    match action {
        Action::Up => {
            tools::ensure_build()?;
            ebpf::build()?;
            let kcache = step::build_kcache(true)?;
            up(&kcache)
        }
        Action::Down => down(),
    }
}

/// Creates the test bed, tearing down any stale one first, and attaches the `XDP_PASS` program
/// to the client's veth with `kcache` (a binary with the XDP object embedded). On failure of
/// that last step the namespaces stay up and the error says why.
pub(crate) fn up(kcache: &Path) -> Result<()> {
    step::header("testbed up");
    down_quietly()?;
    for end in [SERVER, CLIENT] {
        ip(&["netns", "add", end.netns])?;
    }
    // Created straight into the namespaces, so a same-named device on the host cannot clash.
    #[rustfmt::skip]
    let veth = [
        "link", "add", SERVER.iface, "netns", SERVER.netns, "type", "veth",
        "peer", "name", CLIENT.iface, "netns", CLIENT.netns,
    ];
    ip(&veth)?;
    for end in [SERVER, CLIENT] {
        let v4 = format!("{}/{IPV4_PREFIX}", end.ipv4);
        let v6 = format!("{}/{IPV6_PREFIX}", end.ipv6);
        ip(&["-n", end.netns, "link", "set", "lo", "up"])?;
        ip(&["-n", end.netns, "addr", "add", &v4, "dev", end.iface])?;
        ip(&[
            "-n", end.netns, "addr", "add", &v6, "dev", end.iface, "nodad",
        ])?;
        ip(&["-n", end.netns, "link", "set", end.iface, "up"])?;
    }
    ping()?;
    mount_bpffs()?;
    attach_pass(kcache)?;
    println!(
        "test bed up: {} {}/{} (netns {}) <-> {} {}/{} (netns {})",
        SERVER.iface,
        SERVER.ipv4,
        SERVER.ipv6,
        SERVER.netns,
        CLIENT.iface,
        CLIENT.ipv4,
        CLIENT.ipv6,
        CLIENT.netns
    );
    Ok(())
}

/// Removes both namespaces (which destroys the veth pair and detaches its XDP programs); fine if
/// they are not there.
pub(crate) fn down() -> Result<()> {
    step::header("testbed down");
    if !down_quietly()? {
        println!("no test bed namespaces: nothing to do");
    }
    Ok(())
}

/// Deletes whichever namespace exists; says whether there was any.
fn down_quietly() -> Result<bool> {
    let listed = output(Command::new("ip").args(["netns", "list"]))?;
    // `ip netns list` prints `name` or `name (id: N)`, one a line.
    let present: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut any = false;
    // The pass program's link pin (kcache xdp-pass's default path): with the namespace gone the
    // link is dead, but the pin file would stay in the host's bpffs.
    let pin = format!("/sys/fs/bpf/kcache-pass-{}-{}", CLIENT.netns, CLIENT.iface);
    if std::path::Path::new(&pin).exists() {
        std::fs::remove_file(&pin).with_context(|| format!("removing {pin}"))?;
        println!("removed {pin}");
        any = true;
    }
    for end in [SERVER, CLIENT] {
        if present.contains(&end.netns) {
            ip(&["netns", "del", end.netns])?;
            any = true;
        }
    }
    Ok(any)
}

/// Mounts bpffs at `/sys/fs/bpf` if nothing is mounted there (systemd usually does; containers
/// and minimal images often do not), so the pass program's link can be pinned.
fn mount_bpffs() -> Result<()> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mounted = mounts.lines().any(|l| {
        let mut fields = l.split_whitespace().skip(1);
        fields.next() == Some(BPFFS) && fields.next() == Some("bpf")
    });
    if mounted {
        return Ok(());
    }
    echo_run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}

/// Runs `kcache xdp-pass` for the client's veth, then checks with `ip` that a program is there.
fn attach_pass(kcache: &Path) -> Result<()> {
    let mut cmd = Command::new(kcache);
    cmd.args(["xdp-pass", "--netns", CLIENT.netns, "--iface", CLIENT.iface]);
    println!("+ {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", kcache.display()))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    if !out.status.success() {
        bail!(
            "attaching the XDP_PASS program to {} failed ({}: {}). The namespaces are up, but \
             XDP_TX replies from {} will be dropped until the peer has a native XDP program. \
             Does this kcache have the `xdp-pass` subcommand yet?",
            CLIENT.iface,
            out.status,
            reason(&stderr),
            SERVER.iface
        );
    }
    // `ip link show` flags the device `xdp` for a native program (`xdpgeneric` for generic) and
    // names it on a `prog/xdp id N name ...` line.
    let show = ["-n", CLIENT.netns, "link", "show", CLIENT.iface];
    let link = output(Command::new("ip").args(show))?;
    let native = link.lines().next().is_some_and(|l| l.contains(" xdp "));
    let program = link
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("prog/xdp"));
    let Some(program) = program.filter(|_| native) else {
        bail!(
            "`kcache xdp-pass` succeeded but `ip link show` finds no native XDP program on \
             {}:\n{link}",
            CLIENT.iface
        );
    };
    println!("{} (native): {program}", CLIENT.iface);
    Ok(())
}

/// The line of `stderr` that says what went wrong: clap and anyhow start it with `error`/`Error`,
/// and a usage hint follows it.
fn reason(stderr: &str) -> &str {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.to_ascii_lowercase().starts_with("error"))
        .or_else(|| lines().next_back())
        .unwrap_or("no message")
}

/// Pings the server's addresses from the client's namespace, so a broken veth shows up here and
/// not as a test timing out.
fn ping() -> Result<()> {
    for (family, address) in [("-4", SERVER.ipv4), ("-6", SERVER.ipv6)] {
        #[rustfmt::skip]
        let args = [
            "netns", "exec", CLIENT.netns, "ping", family, "-q", "-c", "1", "-w", "3", address,
        ];
        let out = output(Command::new("ip").args(args))
            .with_context(|| format!("{} cannot reach {address}", CLIENT.netns))?;
        println!("{}", out.lines().rev().nth(1).unwrap_or_default());
    }
    Ok(())
}

/// `ip <args>`, echoed.
fn ip(args: &[&str]) -> Result<()> {
    echo_run(Command::new("ip").args(args))
}

/// Runs `cmd`, echoing it first, and fails if it does not exit 0.
fn echo_run(cmd: &mut Command) -> Result<()> {
    println!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        status.success(),
        "{cmd:?} exited with {status} (the test bed needs root)"
    );
    Ok(())
}

/// The stdout of `cmd`, which must exit 0.
fn output(cmd: &mut Command) -> Result<String> {
    let out: Output = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_reason() {
        let cases = [
            // clap's unknown subcommand: the error line, not the usage hint after it.
            (
                "error: unrecognized subcommand 'xdp-pass'\n\nUsage: kcache <COMMAND>\n\n\
                 For more information, try '--help'.\n",
                "error: unrecognized subcommand 'xdp-pass'",
            ),
            // anyhow's form from main.
            (
                "Error: attaching XDP: EPERM\n",
                "Error: attaching XDP: EPERM",
            ),
            // No error line: the last thing said.
            ("loading\nkilled\n", "killed"),
            // Nothing at all.
            ("", "no message"),
        ];
        for (stderr, want) in cases {
            assert_eq!(reason(stderr), want, "{stderr}");
        }
    }
}
