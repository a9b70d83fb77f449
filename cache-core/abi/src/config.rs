//! The XDP program's settings (`CONFIG`, a one-entry BPF array) and the source allowlist key.
//!
//! ```text
//!  XdpConfig
//!  0        4        8       10          12      16           20           24       28      32
//!  +--------+--------+-------+-----------+-------+------------+------------+--------+-------+
//!  | layout | node   | port  | reply_cap | flags | small_mask | large_mask | epoch  | _pad  |
//!  | u32    | u32    | u16   | u16       | u32   | u32        | u32        | u32    | u32   |
//!  +--------+--------+-------+-----------+-------+------------+------------+--------+-------+
//!
//!  AllowKey (BPF LPM trie key)
//!  0           4                 20
//!  +-----------+-----------------+
//!  | prefixlen | addr [u8; 16]   |   IPv4 a.b.c.d/n is ::ffff:a.b.c.d/(96 + n)
//!  +-----------+-----------------+
//! ```
//!
//! The program answers nothing until user space writes a config whose `layout` equals
//! [`crate::LAYOUT_VERSION`] (a zeroed entry has layout 0).

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
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12] = addr[0];
        a[13] = addr[1];
        a[14] = addr[2];
        a[15] = addr[3];
        let len = if len > 32 { 32 } else { len };
        Self {
            prefixlen: 96 + len,
            addr: a,
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
    }

    #[test]
    fn mapped_v4() {
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
