//! Header parsing: Ethernet (one 802.1Q/802.1ad tag), IPv4 without options or fragments, IPv6
//! without extension headers, UDP to the configured port; and whether the destination address
//! is one the server listens on ([`to_us`]). Every read goes through [`ptr_at`],
//! which the verifier can follow; anything unexpected is a pass reason.

use aya_ebpf::programs::XdpContext;
use cache_abi::{
    counter::{
        XDP_PASS_FRAGMENT, XDP_PASS_IP_OPTIONS, XDP_PASS_NOT_IP_UDP, XDP_PASS_NOT_PORT,
        XDP_PASS_TRUNCATED,
    },
    mapped_v4, Listen, LISTEN_MAX,
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

/// Where the interesting parts of a UDP datagram to our port are.
pub(crate) struct Frame {
    /// Offset of the IP header (14, or 18 with a VLAN tag).
    pub(crate) l3: usize,
    /// IPv6 (else IPv4).
    pub(crate) v6: bool,
    /// Offset of the UDP payload (the memcached frame header).
    pub(crate) payload: usize,
    /// Bytes of UDP payload, as the UDP header says (checked against the packet).
    pub(crate) payload_len: usize,
    /// Source address, IPv4 mapped into `::ffff:0:0/96`.
    pub(crate) src: [u8; 16],
    /// Destination address, likewise.
    pub(crate) dst: [u8; 16],
}

/// A pointer to a `T` at `off` bytes into the packet, if the packet is that long.
#[inline(always)]
pub(crate) fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Result<*const T, u32> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return Err(XDP_PASS_TRUNCATED);
    }
    Ok((start + off) as *const T)
}

#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Result<u16, u32> {
    let p: *const [u8; 2] = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked that both bytes lie inside the packet.
    Ok(u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn byte(ctx: &XdpContext, off: usize) -> Result<u8, u32> {
    let p: *const u8 = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked the byte lies inside the packet.
    Ok(unsafe { *p })
}

/// Parses the headers of a UDP datagram for `port`, or says why the packet is not one.
#[inline(always)]
pub(crate) fn parse(ctx: &XdpContext, port: u16) -> Result<Frame, u32> {
    let mut l3 = 14;
    let mut proto = be16(ctx, 12)?;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = be16(ctx, 16)?;
        l3 = 18;
    }
    let (src, dst): ([u8; 16], [u8; 16]);
    let (l4, ip_payload_end, v6) = match proto {
        ETH_P_IP => {
            let vihl = byte(ctx, l3)?;
            if vihl >> 4 != 4 {
                return Err(XDP_PASS_NOT_IP_UDP);
            }
            if vihl & 0x0f != 5 {
                return Err(XDP_PASS_IP_OPTIONS);
            }
            if be16(ctx, l3 + 6)? & 0x3fff != 0 {
                return Err(XDP_PASS_FRAGMENT);
            }
            if byte(ctx, l3 + 9)? != IPPROTO_UDP {
                return Err(XDP_PASS_NOT_IP_UDP);
            }
            let total = be16(ctx, l3 + 2)? as usize;
            let a: *const [[u8; 4]; 2] = ptr_at(ctx, l3 + 12)?;
            // SAFETY: ptr_at checked the eight bytes (source, then destination).
            let [s, d] = unsafe { *a };
            (src, dst) = (mapped_v4(s), mapped_v4(d));
            (l3 + 20, l3 + total, false)
        }
        ETH_P_IPV6 => {
            if byte(ctx, l3)? >> 4 != 6 {
                return Err(XDP_PASS_NOT_IP_UDP);
            }
            match byte(ctx, l3 + 6)? {
                IPPROTO_UDP => {}
                // Hop-by-hop, routing, fragment, destination options, AH, ESP, mobility, HIP,
                // shim6: extension headers go up.
                0 | 43 | 44 | 60 | 51 | 50 | 135 | 139 | 140 => return Err(XDP_PASS_IP_OPTIONS),
                _ => return Err(XDP_PASS_NOT_IP_UDP),
            }
            let payload = be16(ctx, l3 + 4)? as usize;
            let a: *const [[u8; 16]; 2] = ptr_at(ctx, l3 + 8)?;
            // SAFETY: ptr_at checked the 32 bytes (source, then destination).
            [src, dst] = unsafe { *a };
            (l3 + 40, l3 + 40 + payload, true)
        }
        _ => return Err(XDP_PASS_NOT_IP_UDP),
    };
    if be16(ctx, l4 + 2)? != port {
        return Err(XDP_PASS_NOT_PORT);
    }
    let udp_len = be16(ctx, l4 + 4)? as usize;
    // The UDP length must match the IP length exactly and the packet must hold it all (trailing
    // Ethernet padding is allowed).
    if udp_len < 8 || l4 + udp_len != ip_payload_end || ctx.data() + ip_payload_end > ctx.data_end()
    {
        return Err(XDP_PASS_TRUNCATED);
    }
    Ok(Frame {
        l3,
        v6,
        payload: l4 + 8,
        payload_len: udp_len - 8,
        src,
        dst,
    })
}

/// Whether `frame` is addressed to one of the server's addresses (`LISTEN`). An IPv6 packet
/// to an IPv4-mapped address matches nothing: mapped addresses never belong on the wire, and
/// the kernel would not deliver it to the socket whose IPv4 address it names.
#[inline(always)]
pub(crate) fn to_us(frame: &Frame, listen: &Listen) -> bool {
    let (hi, lo) = (word(&frame.dst, 0), word(&frame.dst, 8));
    let mapped = mapped_v4([0; 4]);
    if frame.v6 && hi == word(&mapped, 0) && (lo as u32) == (word(&mapped, 8) as u32) {
        return false;
    }
    let n = listen.len as usize;
    let mut i = 0;
    while i < LISTEN_MAX && i < n {
        let a = &listen.addrs[i];
        if word(a, 0) == hi && word(a, 8) == lo {
            return true;
        }
        i += 1;
    }
    false
}

/// Bytes `i..i + 8` of `a` as a native-endian word (compared, never interpreted).
#[inline(always)]
fn word(a: &[u8; 16], i: usize) -> u64 {
    u64::from_ne_bytes([
        a[i],
        a[i + 1],
        a[i + 2],
        a[i + 3],
        a[i + 4],
        a[i + 5],
        a[i + 6],
        a[i + 7],
    ])
}
