//! The destination addresses XDP answers for (the `LISTEN` map, `cache_abi::Listen`): the addresses the server's
//! sockets would receive a datagram on, so XDP never answers a packet user space would not
//! have been given. Anything else goes up unchanged (`xdp_pass_not_dest`) for the kernel to
//! deliver to another socket, forward, or drop.
//!
//! - `-l` a specific address: that address alone.
//! - `-l 0.0.0.0`: every IPv4 address of the host. `-l ::`: every IPv6 address, and the IPv4
//!   ones too unless `net.ipv6.bindv6only` is set (a `::` socket is dual-stack by default).
//!   "The host", not just the XDP interface: Linux delivers a packet arriving on one interface
//!   for an address of another (the weak host model), so a server on a bridge port or behind
//!   an address on another interface is still asked on those. Two exceptions, both addresses
//!   the kernel would never deliver from the XDP interface: loopback addresses (unless the XDP
//!   interface is itself a loopback one) and IPv6 link-local addresses of other interfaces.
//!
//! Broadcast and multicast destinations are never in the set: a wildcard socket does receive
//! broadcasts, but the reply must come from a unicast address, which XDP's swap-in-place reply
//! cannot give, so they go up to the engine.
//!
//! The set is read once, at start (as the allowlist is). An address added later is answered by
//! the engine (its packets go up); one removed later is still answered by XDP until restart.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use cache_core::abi::{mapped_v4, Listen, LISTEN_MAX};

/// One interface address, as `getifaddrs` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IfAddr {
    pub(crate) iface: String,
    pub(crate) ip: IpAddr,
    /// The interface is a loopback one (`IFF_LOOPBACK`).
    pub(crate) loopback: bool,
}

/// The addresses XDP answers requests for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Destinations {
    addrs: Vec<IpAddr>,
}

impl Destinations {
    /// The set for a server listening on `listen`, XDP on `iface`, from this host's addresses.
    pub(crate) fn build(listen: &str, iface: &str) -> Result<Destinations> {
        let listen: IpAddr = listen
            .parse()
            .with_context(|| format!("listen address {listen:?}"))?;
        Destinations::from_host(listen, iface, &interface_addrs()?, bindv6only())
    }

    /// The set for `listen`, given the host's addresses and `net.ipv6.bindv6only`; see the
    /// module docs. Fails if it holds more than `LISTEN_MAX` addresses.
    pub(crate) fn from_host(
        listen: IpAddr,
        iface: &str,
        host: &[IfAddr],
        v6only: bool,
    ) -> Result<Destinations> {
        let xdp_on_loopback = host.iter().any(|a| a.iface == iface && a.loopback);
        // Whether a packet to `ip` arriving on the XDP interface could be delivered at all.
        let reachable = |ip: IpAddr, on: &str| {
            (!ip.is_loopback() || xdp_on_loopback) && (!is_link_local_v6(ip) || on == iface)
        };
        let mut addrs: Vec<IpAddr> = Vec::new();
        if listen.is_unspecified() {
            let (v4, v6) = match listen {
                IpAddr::V4(_) => (true, false),
                IpAddr::V6(_) => (!v6only, true),
            };
            for a in host {
                let ip = canonical(a.ip);
                let family = if ip.is_ipv4() { v4 } else { v6 };
                if family && reachable(ip, &a.iface) && !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
        } else if reachable(canonical(listen), iface) {
            addrs.push(canonical(listen));
        }
        if addrs.len() > LISTEN_MAX {
            bail!(
                "the server listens on {listen}, which here means {} addresses, more than the \
                 {LISTEN_MAX} the XDP program can match: give -l (listen) the one address clients \
                 use",
                addrs.len()
            );
        }
        Ok(Destinations { addrs })
    }

    pub(crate) fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// The set as the `LISTEN` map's value.
    pub(crate) fn listen(&self) -> Result<Listen> {
        let raw: Vec<[u8; 16]> = self.addrs.iter().map(|&ip| raw(ip)).collect();
        Listen::new(&raw)
            .with_context(|| format!("{} destination addresses do not fit LISTEN", raw.len()))
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 addresses they name (a `::ffff:a.b.c.d` listen
/// address receives the IPv4 packets to `a.b.c.d`).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_link_local_v6(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// The 16-byte form `Listen` holds (IPv4 mapped).
fn raw(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => mapped_v4(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Every unicast address of every interface (broadcast and multicast are never interface
/// addresses in `getifaddrs`' `address` field).
fn interface_addrs() -> Result<Vec<IfAddr>> {
    let mut out = Vec::new();
    for a in nix::ifaddrs::getifaddrs().context("listing interface addresses")? {
        let Some(addr) = a.address.as_ref() else {
            continue;
        };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        out.push(IfAddr {
            iface: a.interface_name.clone(),
            ip,
            loopback: a
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK),
        });
    }
    Ok(out)
}

/// `net.ipv6.bindv6only` (whether a `::` socket is IPv6-only); the kernel's default, off, when
/// it cannot be read.
fn bindv6only() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|s| s.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<IfAddr> {
        let a = |iface: &str, ip: &str, loopback: bool| IfAddr {
            iface: iface.into(),
            ip: ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")),
            loopback,
        };
        vec![
            a("lo", "127.0.0.1", true),
            a("lo", "::1", true),
            a("eth0", "10.0.0.1", false),
            a("eth0", "fd00::1", false),
            a("eth0", "fe80::1", false),
            a("br0", "192.168.1.1", false),
            a("br0", "fe80::2", false),
            a("br0", "2001:db8::1", false),
            // A second address listed twice (two labels of one interface).
            a("eth0", "10.0.0.1", false),
        ]
    }

    fn set(listen: &str, iface: &str, v6only: bool) -> Vec<String> {
        let listen: IpAddr = listen.parse().unwrap_or_else(|e| panic!("{listen}: {e}"));
        Destinations::from_host(listen, iface, &host(), v6only)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .addrs()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn which_addresses() {
        // (listen, XDP interface, bindv6only, addresses answered)
        let cases: [(&str, &str, bool, &[&str]); 9] = [
            // A specific address: that one only, wherever it lives.
            ("10.0.0.1", "eth0", false, &["10.0.0.1"]),
            ("192.168.1.1", "eth0", false, &["192.168.1.1"]),
            // Mapped IPv6 listens on the IPv4 address it names.
            ("::ffff:10.0.0.1", "eth0", false, &["10.0.0.1"]),
            // IPv4 wildcard: the host's IPv4 addresses but loopback (unreachable from eth0).
            ("0.0.0.0", "eth0", false, &["10.0.0.1", "192.168.1.1"]),
            // IPv6 wildcard, dual stack: both families; link-local only the XDP interface's.
            (
                "::",
                "eth0",
                false,
                &[
                    "10.0.0.1",
                    "fd00::1",
                    "fe80::1",
                    "192.168.1.1",
                    "2001:db8::1",
                ],
            ),
            // ... IPv6-only sockets (bindv6only = 1): IPv6 alone.
            ("::", "eth0", true, &["fd00::1", "fe80::1", "2001:db8::1"]),
            // XDP on loopback: its addresses count.
            (
                "0.0.0.0",
                "lo",
                false,
                &["127.0.0.1", "10.0.0.1", "192.168.1.1"],
            ),
            // A loopback listen address: answered on a loopback interface only.
            ("127.0.0.1", "eth0", false, &[]),
            ("127.0.0.1", "lo", false, &["127.0.0.1"]),
        ];
        for (listen, iface, v6only, want) in cases {
            assert_eq!(set(listen, iface, v6only), want, "{listen} on {iface}");
        }
    }

    #[test]
    fn too_many_addresses_are_refused() {
        let many: Vec<IfAddr> = (0..=LISTEN_MAX)
            .map(|i| IfAddr {
                iface: "eth0".into(),
                ip: IpAddr::V4([10, 0, 0, i as u8].into()),
                loopback: false,
            })
            .collect();
        let any: IpAddr = "0.0.0.0".parse().unwrap_or_else(|e| panic!("{e}"));
        let err = Destinations::from_host(any, "eth0", &many, false)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("give -l"), "{err}");
        // LISTEN_MAX of them fit, and land in the config in order, IPv4 mapped.
        let d = Destinations::from_host(any, "eth0", &many[..LISTEN_MAX], false)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let l = d.listen().unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(l.len as usize, LISTEN_MAX);
        assert_eq!(l.addrs[3], mapped_v4([10, 0, 0, 3]));
    }

    #[test]
    fn this_host() {
        // The real host's wildcard set: never a loopback address unless XDP is on `lo`.
        let d = Destinations::build("0.0.0.0", "lo").unwrap_or_else(|e| panic!("{e:#}"));
        assert!(d.addrs().contains(&IpAddr::V4([127, 0, 0, 1].into())));
        let d = Destinations::build("127.0.0.1", "no-such-if0").unwrap_or_else(|e| panic!("{e:#}"));
        assert!(d.addrs().is_empty());
        assert!(Destinations::build("localhost", "lo").is_err());
    }
}
