//! memcached's UDP frame header: 8 bytes in network order before every datagram's payload.
//!
//! ```text
//!  0        2        4        6        8
//!  +--------+--------+--------+--------+-------------
//!  | req id | seq    | total  | 0      | payload ...
//!  +--------+--------+--------+--------+-------------
//! ```
//!
//! A request must fit one datagram (`total == 1`); memcached silently drops any other, and so do
//! we. A reply is cut into datagrams of at most [`MAX_DATAGRAM`] bytes, header included, numbered
//! `0..total`.

/// Frame header length.
pub const HEADER_LEN: usize = 8;
/// Largest reply datagram, header included (memcached's `UDP_MAX_PAYLOAD_SIZE`).
pub const MAX_DATAGRAM: usize = 1400;
/// Reply bytes per datagram.
pub const DATA_PER_DATAGRAM: usize = MAX_DATAGRAM - HEADER_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub request_id: u16,
    pub seq: u16,
    pub total: u16,
    pub reserved: u16,
}

/// Why a datagram is dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    #[error("datagram shorter than the frame header")]
    Short,
    #[error("multi-datagram requests are not supported")]
    MultiDatagram,
    #[error("reply needs more than 65535 datagrams")]
    ReplyTooLarge,
}

impl FrameHeader {
    pub fn decode(b: &[u8]) -> Result<FrameHeader, UdpError> {
        if b.len() < HEADER_LEN {
            return Err(UdpError::Short);
        }
        let at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        Ok(FrameHeader {
            request_id: at(0),
            seq: at(2),
            total: at(4),
            reserved: at(6),
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&self.request_id.to_be_bytes());
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..6].copy_from_slice(&self.total.to_be_bytes());
        out[6..8].copy_from_slice(&self.reserved.to_be_bytes());
        out
    }
}

/// Splits a request datagram into its header and payload; refuses what memcached drops.
pub fn decode_request(datagram: &[u8]) -> Result<(FrameHeader, &[u8]), UdpError> {
    let h = FrameHeader::decode(datagram)?;
    // memcached looks only at `total`; more than one datagram is unsupported.
    if h.total != 1 {
        return Err(UdpError::MultiDatagram);
    }
    Ok((h, &datagram[HEADER_LEN..]))
}

/// Number of datagrams a reply of `len` bytes needs (at least one, even for an empty reply).
pub fn datagrams_for(len: usize) -> Result<u16, UdpError> {
    let n = len.div_ceil(DATA_PER_DATAGRAM).max(1);
    u16::try_from(n).map_err(|_| UdpError::ReplyTooLarge)
}

/// Cuts `reply` into framed datagrams for `request_id`, handing each to `emit`.
pub fn split_reply(
    request_id: u16,
    reply: &[u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<u16, UdpError> {
    let total = datagrams_for(reply.len())?;
    let mut buf = [0u8; MAX_DATAGRAM];
    for seq in 0..total {
        let start = seq as usize * DATA_PER_DATAGRAM;
        let end = (start + DATA_PER_DATAGRAM).min(reply.len());
        let h = FrameHeader {
            request_id,
            seq,
            total,
            reserved: 0,
        };
        buf[..HEADER_LEN].copy_from_slice(&h.encode());
        let body = &reply[start.min(end)..end];
        buf[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
        emit(&buf[..HEADER_LEN + body.len()]);
    }
    Ok(total)
}

#[cfg(test)]
#[expect(clippy::type_complexity, reason = "table-driven test rows")]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_in_network_order() {
        let h = FrameHeader {
            request_id: 0x1234,
            seq: 1,
            total: 3,
            reserved: 0,
        };
        let b = h.encode();
        assert_eq!(b, [0x12, 0x34, 0, 1, 0, 3, 0, 0]);
        assert_eq!(FrameHeader::decode(&b), Ok(h));
    }

    #[test]
    fn requests_are_checked() {
        // (datagram, expected)
        let cases: &[(&[u8], Result<&[u8], UdpError>)] = &[
            // single datagram: accepted
            (
                b"\x00\x01\x00\x00\x00\x01\x00\x00get a\r\n",
                Ok(b"get a\r\n"),
            ),
            // too short for a header
            (b"\x00\x01\x00", Err(UdpError::Short)),
            // total of two: dropped, as memcached does
            (
                b"\x00\x01\x00\x00\x00\x02\x00\x00get a\r\n",
                Err(UdpError::MultiDatagram),
            ),
            // total of zero: dropped too
            (
                b"\x00\x01\x00\x00\x00\x00\x00\x00get a\r\n",
                Err(UdpError::MultiDatagram),
            ),
        ];
        for (d, want) in cases {
            assert_eq!(decode_request(d).map(|(_, p)| p), *want);
        }
    }

    #[test]
    fn replies_split_at_1400_bytes() {
        // (reply length, datagram count, last datagram size)
        let cases = [
            (0, 1, 8),
            (10, 1, 18),
            (1392, 1, 1400),
            (1393, 2, 9),
            (3000, 3, 224),
        ];
        for (len, count, last) in cases {
            let reply: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut grams: Vec<Vec<u8>> = Vec::new();
            let total = split_reply(7, &reply, |d| grams.push(d.to_vec())).unwrap_or(0);
            assert_eq!(total as usize, count, "len {len}");
            assert_eq!(grams.len(), count);
            assert_eq!(grams.last().map(Vec::len), Some(last), "len {len}");
            let mut joined = Vec::new();
            for (i, g) in grams.iter().enumerate() {
                assert!(g.len() <= MAX_DATAGRAM);
                let h = FrameHeader::decode(g).unwrap_or(FrameHeader {
                    request_id: 0,
                    seq: 0,
                    total: 0,
                    reserved: 9,
                });
                assert_eq!(
                    h,
                    FrameHeader {
                        request_id: 7,
                        seq: i as u16,
                        total: count as u16,
                        reserved: 0
                    }
                );
                joined.extend_from_slice(&g[HEADER_LEN..]);
            }
            assert_eq!(joined, reply);
        }
    }

    #[test]
    fn oversized_replies_are_refused() {
        assert_eq!(
            datagrams_for(DATA_PER_DATAGRAM * 65_536),
            Err(UdpError::ReplyTooLarge)
        );
    }
}
