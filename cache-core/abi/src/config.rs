//! The XDP program's settings (`CONFIG`, a one-entry BPF array), the addresses it answers for
//! (`LISTEN`, another) and the source allowlist key.
//!
//! ```text
//!  XdpConfig
//!  0        4        8       10          12      16           20           24       28      32
//!  +--------+--------+-------+-----------+-------+------------+------------+--------+-------+
//!  | layout | node   | port  | reply_cap | flags | small_mask | large_mask | epoch  | _pad  |
//!  | u32    | u32    | u16   | u16       | u32   | u32        | u32        | u32    | u32   |
//!  +--------+--------+-------+-----------+-------+------------+------------+--------+-------+
//!
//!  Listen
//!  0       4        16                                                            272
//!  +-------+--------+-------------------------------------------------------------+
//!  | len   | _pad   | addrs [[u8; 16]; LISTEN_MAX], IPv4 mapped as in AllowKey     |
//!  | u32   | [u8;12]|                                                             |
//!  +-------+--------+-------------------------------------------------------------+
//!
//!  AllowKey (BPF LPM trie key)
//!  0           4                 20
//!  +-----------+-----------------+
//!  | prefixlen | addr [u8; 16]   |   IPv4 a.b.c.d/n is ::ffff:a.b.c.d/(96 + n)
//!  +-----------+-----------------+
//! ```
//!
//! The program answers nothing until user space writes a config whose `layout` equals
//! [`crate::LAYOUT_VERSION`] (a zeroed entry has layout 0), and only requests addressed to one
//! of `LISTEN`'s first `len` addresses (anything else goes up: it is the kernel's to deliver,
//! or not, to a socket). The addresses are a map of their own rather than part of `XdpConfig`
//! because the program copies the config to its 512-byte stack, and 256 bytes of addresses
//! there left no room.

/// `XdpConfig::flags`: drop requests whose source is not in the allowlist.
pub const CFG_ALLOWLIST: u32 = 1;

/// Settings user space hands the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// [`crate::LAYOUT_VERSION`] of the user space that wrote this; anything else → pass all.
    pub layout: u32,
    /// This node's id in the bucket map.
    pub node: u32,
    /// The memcached UDP port, host byte order.
    pub port: u16,
    /// Largest UDP payload (frame header included) XDP may send; longer answers go up.
    pub reply_cap: u16,
    /// `CFG_*` bits.
    pub flags: u32,
    /// Sets of `HOT_SMALL` minus one (a power of two minus one).
    pub small_mask: u32,
    /// Sets of `HOT_LARGE` minus one.
    pub large_mask: u32,
    /// Epoch of the bucket map in force; slots and bucket entries of other epochs are not used.
    pub epoch: u32,
    /// Always zero.
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<XdpConfig>() == 32);

/// Most addresses [`Listen`] holds.
pub const LISTEN_MAX: usize = 16;

/// The destination addresses requests are answered for (the value of `LISTEN`, one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Entries of `addrs` in use (at most [`LISTEN_MAX`]; 0 = answer nothing).
    pub len: u32,
    /// Always zero (keeps `addrs` 8-byte aligned for the program's word compares).
    pub _pad: [u8; 12],
    /// IPv6 addresses, or IPv4 ones mapped into `::ffff:0:0/96` ([`mapped_v4`]): an IPv4
    /// packet to a.b.c.d matches `::ffff:a.b.c.d`; an IPv6 packet to a mapped address matches
    /// nothing. Entries past `len` are zero.
    pub addrs: [[u8; 16]; LISTEN_MAX],
}

const _: () = assert!(core::mem::size_of::<Listen>() == 16 + 16 * LISTEN_MAX);

impl Listen {
    /// No address: nothing is answered.
    pub const NONE: Listen = Listen {
        len: 0,
        _pad: [0; 12],
        addrs: [[0; 16]; LISTEN_MAX],
    };

    /// `addrs` (16-byte forms as in [`Listen::addrs`]), or `None` if there are more than
    /// [`LISTEN_MAX`].
    pub fn new(addrs: &[[u8; 16]]) -> Option<Listen> {
        if addrs.len() > LISTEN_MAX {
            return None;
        }
        let mut l = Listen::NONE;
        l.addrs[..addrs.len()].copy_from_slice(addrs);
        l.len = addrs.len() as u32;
        Some(l)
    }
}

/// An IPv4 address as [`Listen`] and [`AllowKey`] hold it (`::ffff:a.b.c.d`).
pub const fn mapped_v4(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// LPM trie key of the source allowlist.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowKey {
    /// Significant leading bits of `addr`.
    pub prefixlen: u32,
    /// IPv6 address, or an IPv4 address mapped into `::ffff:0:0/96`.
    pub addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<AllowKey>() == 20);

impl AllowKey {
    /// `a.b.c.d/len` as a mapped IPv6 prefix (`len` is clamped to 32).
    pub const fn v4(addr: [u8; 4], len: u32) -> Self {
        let len = if len > 32 { 32 } else { len };
        Self {
            prefixlen: 96 + len,
            addr: mapped_v4(addr),
        }
    }

    /// An IPv6 prefix (`len` is clamped to 128).
    pub const fn v6(addr: [u8; 16], len: u32) -> Self {
        Self {
            prefixlen: if len > 128 { 128 } else { len },
            addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn layout() {
        assert_eq!(offset_of!(XdpConfig, layout), 0);
        assert_eq!(offset_of!(XdpConfig, node), 4);
        assert_eq!(offset_of!(XdpConfig, port), 8);
        assert_eq!(offset_of!(XdpConfig, reply_cap), 10);
        assert_eq!(offset_of!(XdpConfig, flags), 12);
        assert_eq!(offset_of!(XdpConfig, small_mask), 16);
        assert_eq!(offset_of!(XdpConfig, large_mask), 20);
        assert_eq!(offset_of!(XdpConfig, epoch), 24);
        assert_eq!(offset_of!(AllowKey, addr), 4);
        assert_eq!(offset_of!(Listen, addrs), 16);
        assert_eq!(core::mem::size_of::<Listen>(), 272);
    }

    #[test]
    fn listen_addresses() {
        // Two addresses: the rest of the array stays zero.
        let v4 = mapped_v4([10, 0, 0, 1]);
        assert_eq!(&v4[10..], &[0xff, 0xff, 10, 0, 0, 1]);
        let l = Listen::new(&[v4, [1; 16]]).unwrap_or(Listen::NONE);
        assert_eq!((l.len, l.addrs[0], l.addrs[1]), (2, v4, [1; 16]));
        assert!(l.addrs[2..].iter().all(|a| *a == [0; 16]));
        // Exactly LISTEN_MAX fit; one more does not.
        assert_eq!(
            Listen::new(&[[2; 16]; LISTEN_MAX]).map(|l| l.len),
            Some(LISTEN_MAX as u32)
        );
        assert_eq!(Listen::new(&[[3; 16]; LISTEN_MAX + 1]), None);
        // None at all: nothing is answered.
        assert_eq!(Listen::new(&[]), Some(Listen::NONE));
    }

    #[test]
    fn allow_keys() {
        // 10.0.0.0/8 becomes ::ffff:10.0.0.0/104.
        let k = AllowKey::v4([10, 0, 0, 0], 8);
        assert_eq!(k.prefixlen, 104);
        assert_eq!(&k.addr[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&k.addr[12..], &[10, 0, 0, 0]);
        // Lengths past the address are clamped.
        assert_eq!(AllowKey::v4([1, 2, 3, 4], 99).prefixlen, 128);
        assert_eq!(AllowKey::v6([0; 16], 200).prefixlen, 128);
    }
}
