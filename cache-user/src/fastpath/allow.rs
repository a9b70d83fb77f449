//! The UDP source allowlist (invariant 4: no replies to sources outside it, so the server is no
//! amplifier). The same list fills the XDP program's `ALLOW` LPM trie and is checked by the
//! user-space UDP path on every datagram, XDP or not.
//!
//! Default entries: `127.0.0.0/8`, `::1/128`, and the subnet of every address of the XDP
//! interface (without XDP: of every interface), as `getifaddrs` reports them; then each
//! `udp_allow` entry. IPv4 prefixes are kept as IPv4-mapped IPv6 ones, as `AllowKey` stores them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};
use cache_core::abi::AllowKey;

/// One prefix, IPv6 (IPv4 mapped into `::ffff:0:0/96`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Prefix {
    addr: u128,
    len: u8,
}

impl Prefix {
    /// `a.b.c.d/n`, `a.b.c.d`, `v6/n` or `v6`; host bits are cleared.
    pub(crate) fn parse(s: &str) -> Result<Prefix, String> {
        let bad =
            || format!("{s:?} is not an address or CIDR prefix (like 10.0.0.0/8 or fd00::/8)");
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(format!(
                "{s:?}: prefix length {len} is longer than the address"
            ));
        }
        Ok(Prefix::new(ip, len))
    }

    /// `ip/len` (`len` counted in `ip`'s own family, clamped).
    pub(crate) fn new(ip: IpAddr, len: u8) -> Prefix {
        let (addr, len) = match ip {
            IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 96 + len.min(32)),
            IpAddr::V6(v6) => (u128::from(v6), len.min(128)),
        };
        Prefix {
            addr: addr & mask(len),
            len,
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        (canonical(ip) & mask(self.len)) == self.addr
    }

    /// The LPM trie key.
    pub(crate) fn key(&self) -> AllowKey {
        AllowKey::v6(self.addr.to_be_bytes(), u32::from(self.len))
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v6 = Ipv6Addr::from(self.addr);
        match (v6.to_ipv4_mapped(), self.len >= 96) {
            (Some(v4), true) => write!(f, "{v4}/{}", self.len - 96),
            _ => write!(f, "{v6}/{}", self.len),
        }
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

/// An address as the trie sees it: IPv4 (and IPv4-mapped IPv6) as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The sources UDP requests are answered for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Allowlist {
    prefixes: Vec<Prefix>,
}

impl Allowlist {
    /// The defaults (loopback, and the subnets of `iface`'s addresses, or of every interface's
    /// when `iface` is `None`) plus `extra` (CIDR strings, already validated by the config).
    pub(crate) fn build(extra: &[String], iface: Option<&str>) -> Result<Allowlist> {
        let mut prefixes = vec![
            Prefix::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
            Prefix::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        ];
        let addrs = nix::ifaddrs::getifaddrs().context("listing interface addresses")?;
        for a in addrs {
            if iface.is_some_and(|name| name != a.interface_name) {
                continue;
            }
            if let Some(p) = subnet(&a) {
                prefixes.push(p);
            }
        }
        for e in extra {
            prefixes.push(Prefix::parse(e).map_err(anyhow::Error::msg)?);
        }
        let mut seen = Vec::with_capacity(prefixes.len());
        prefixes.retain(|p| {
            let new = !seen.contains(p);
            seen.push(*p);
            new
        });
        Ok(Allowlist { prefixes })
    }

    pub(crate) fn prefixes(&self) -> &[Prefix] {
        &self.prefixes
    }

    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip))
    }

    /// The source of a received datagram, as `recvmsg` left it; unknown families are refused.
    pub(crate) fn allows_sockaddr(&self, addr: &libc::sockaddr_storage, len: usize) -> bool {
        sockaddr_ip(addr, len).is_some_and(|ip| self.allows(ip))
    }
}

/// The subnet of an interface address (address and netmask both present and of one family).
fn subnet(a: &nix::ifaddrs::InterfaceAddress) -> Option<Prefix> {
    let (addr, mask) = (a.address.as_ref()?, a.netmask.as_ref()?);
    if let (Some(ip), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
        let len = u32::from(m.ip()).count_ones() as u8;
        return Some(Prefix::new(IpAddr::V4(ip.ip()), len));
    }
    if let (Some(ip), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
        let len = u128::from(m.ip()).count_ones() as u8;
        return Some(Prefix::new(IpAddr::V6(ip.ip()), len));
    }
    None
}

/// The IP address in a `sockaddr_storage` of `len` bytes.
pub(crate) fn sockaddr_ip(addr: &libc::sockaddr_storage, len: usize) -> Option<IpAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says it is a sockaddr_in and `len` covers one; the storage is
            // aligned for every sockaddr type.
            let sin =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_and_match() {
        // (prefix, address, inside)
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            // Host bits are dropped.
            ("10.9.9.9/8", "10.0.0.1", true),
            // A bare address is a host route.
            ("192.168.1.5", "192.168.1.5", true),
            ("192.168.1.5", "192.168.1.6", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            // IPv4 prefixes match IPv4-mapped IPv6 sources (a dual-stack socket's view).
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::/0", "2001:db8::1", true),
        ];
        for (prefix, ip, inside) in cases {
            let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p(prefix).contains(ip), inside, "{prefix} {ip}");
        }
    }

    #[test]
    fn bad_prefixes() {
        for s in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(Prefix::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn keys_and_display() {
        let k = p("10.1.0.0/16").key();
        assert_eq!(k, AllowKey::v4([10, 1, 0, 0], 16));
        assert_eq!(p("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(p("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(p("fd00::/8").key().prefixlen, 8);
    }

    #[test]
    fn defaults_hold_loopback() {
        let a = Allowlist::build(&["192.0.2.0/24".into()], Some("lo"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        for (ip, ok) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("192.0.2.7", true),
            ("198.51.100.1", false),
        ] {
            assert_eq!(
                a.allows(ip.parse().unwrap_or_else(|e| panic!("{e}"))),
                ok,
                "{ip}"
            );
        }
        // Through a sockaddr as recvmsg fills it.
        for (sa, ok) in [
            ("127.0.0.1:5", true),
            ("[::1]:5", true),
            ("198.51.100.1:5", false),
        ] {
            let sa: SocketAddr = sa.parse().unwrap_or_else(|e| panic!("{e}"));
            let s = nix::sys::socket::SockaddrStorage::from(sa);
            // SAFETY: SockaddrStorage wraps a sockaddr_storage-sized union of sockaddrs.
            let raw = unsafe { *(std::ptr::addr_of!(s).cast::<libc::sockaddr_storage>()) };
            assert_eq!(
                a.allows_sockaddr(&raw, nix::sys::socket::SockaddrLike::len(&s) as usize),
                ok,
                "{sa}"
            );
        }
        // No duplicates.
        let n = a.prefixes().len();
        let mut d = a.prefixes().to_vec();
        d.dedup();
        assert_eq!(d.len(), n);
    }
}
