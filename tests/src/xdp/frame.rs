//! Ethernet/IP/UDP frames for the XDP tests: build a request, take an answer apart and check its
//! checksums independently of the program.

/// Client and server of the test frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub const CLIENT_V4: [u8; 4] = [10, 0, 0, 2];
pub const SERVER_V4: [u8; 4] = [10, 0, 0, 1];
pub const CLIENT_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const SERVER_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const CLIENT_PORT: u16 = 40000;

/// How to wrap a payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    pub v6: bool,
    pub vlan: Option<u16>,
    /// IPv4 options words (0 = none).
    pub ip_options: u8,
    /// IPv4 fragment offset/flags field.
    pub frag: u16,
    /// IPv6 next header other than UDP (an extension header).
    pub v6_next: Option<u8>,
    /// Added to the UDP length field (a lie about the payload).
    pub udp_len_skew: i32,
    /// Bytes cut from the end of the frame.
    pub cut: usize,
    pub src_v4: Option<[u8; 4]>,
    /// Destinations other than `SERVER_V4` / `SERVER_V6`.
    pub dst_v4: Option<[u8; 4]>,
    pub dst_v6: Option<[u8; 16]>,
}

/// memcached's frame header + `line`.
pub fn payload(req_id: u16, line: &[u8]) -> Vec<u8> {
    let mut p = req_id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    p.extend_from_slice(line);
    p
}

/// A frame carrying `payload` from the client to the server's UDP `port`.
pub fn request(shape: Shape, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = SERVER_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    if let Some(tag) = shape.vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tag.to_be_bytes());
    }
    let udp_len = (8 + payload.len()) as i32 + shape.udp_len_skew;
    let mut udp = CLIENT_PORT.to_be_bytes().to_vec();
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    if shape.v6 {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        f.push(shape.v6_next.unwrap_or(17));
        f.push(64);
        let dst = shape.dst_v6.unwrap_or(SERVER_V6);
        f.extend_from_slice(&CLIENT_V6);
        f.extend_from_slice(&dst);
        let c = udp_checksum(&CLIENT_V6, &dst, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    } else {
        let src = shape.src_v4.unwrap_or(CLIENT_V4);
        let dst = shape.dst_v4.unwrap_or(SERVER_V4);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let ihl = 5 + shape.ip_options;
        let mut ip = vec![0x40 | ihl, 0];
        ip.extend_from_slice(&((ihl as usize * 4 + udp.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]);
        ip.extend_from_slice(&shape.frag.to_be_bytes());
        ip.extend_from_slice(&[64, 17, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.extend(std::iter::repeat_n(1u8, shape.ip_options as usize * 4));
        let c = !fold(sum(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let c = udp_checksum(&src, &dst, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&udp);
    f.truncate(f.len() - shape.cut);
    f
}

/// An answer, taken apart.
#[derive(Debug)]
pub struct Answer {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src_ip: Vec<u8>,
    pub dst_ip: Vec<u8>,
    pub src_port: u16,
    pub dst_port: u16,
    /// UDP payload (frame header included).
    pub payload: Vec<u8>,
    pub ip_checksum_ok: bool,
    pub udp_checksum_ok: bool,
    pub udp_checksum: u16,
}

/// Parses an answer frame, checking every length field against the frame.
pub fn answer(f: &[u8]) -> Result<Answer, String> {
    let be = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    let mut l3 = 14;
    let mut vlan = None;
    let mut proto = be(12);
    if proto == 0x8100 {
        vlan = Some(be(14));
        proto = be(16);
        l3 = 18;
    }
    let (src_ip, dst_ip, l4, ip_ok) = match proto {
        0x0800 => {
            let total = be(l3 + 2) as usize;
            if l3 + total != f.len() {
                return Err(format!("IPv4 total {total} but frame has {}", f.len() - l3));
            }
            let ok = fold(sum(&f[l3..l3 + 20], 0)) == 0xffff;
            (
                f[l3 + 12..l3 + 16].to_vec(),
                f[l3 + 16..l3 + 20].to_vec(),
                l3 + 20,
                ok,
            )
        }
        0x86dd => {
            let plen = be(l3 + 4) as usize;
            if l3 + 40 + plen != f.len() {
                return Err(format!(
                    "IPv6 payload {plen} but frame has {}",
                    f.len() - l3 - 40
                ));
            }
            (
                f[l3 + 8..l3 + 24].to_vec(),
                f[l3 + 24..l3 + 40].to_vec(),
                l3 + 40,
                true,
            )
        }
        p => return Err(format!("ethertype {p:#x}")),
    };
    let udp_len = be(l4 + 4) as usize;
    if l4 + udp_len != f.len() {
        return Err(format!(
            "UDP length {udp_len} but frame has {}",
            f.len() - l4
        ));
    }
    let udp = &f[l4..];
    let c = be(l4 + 6);
    let udp_ok = (c == 0 && proto == 0x0800) || udp_checksum(&src_ip, &dst_ip, udp) == 0;
    Ok(Answer {
        dst_mac: f[0..6].try_into().map_err(|_| "mac")?,
        src_mac: f[6..12].try_into().map_err(|_| "mac")?,
        vlan,
        src_ip,
        dst_ip,
        src_port: be(l4),
        dst_port: be(l4 + 2),
        payload: udp[8..].to_vec(),
        ip_checksum_ok: ip_ok,
        udp_checksum_ok: udp_ok,
        udp_checksum: c,
    })
}

/// The UDP checksum of `udp` (header and payload) between `src` and `dst`; over a datagram
/// whose checksum field is already filled in, a valid one gives 0.
pub fn udp_checksum(src: &[u8], dst: &[u8], udp: &[u8]) -> u16 {
    let mut acc = sum(src, 0);
    acc = sum(dst, acc);
    acc += 17 + udp.len() as u32;
    acc = sum(udp, acc);
    let c = !fold(acc);
    if c == 0 && !udp[6..8].iter().any(|&b| b != 0) {
        0xffff
    } else {
        c
    }
}

fn sum(bytes: &[u8], mut acc: u32) -> u32 {
    for pair in bytes.chunks(2) {
        let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        acc += w as u32;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}
