//! Indexes into the XDP program's per-CPU counter array (`u64` per slot, [`COUNTERS_LEN`] slots).
//!
//! ```text
//!  index:  0    1     2 .. 15              16                 17         18
//!         +----+-----+--------------------+------------------+----------+----------+
//!         |hit |miss | pass reasons       | drop not allowed | hit keys | not dest |
//!         +----+-----+--------------------+------------------+----------+----------+
//! ```
//!
//! (`not dest` is a pass reason added after `hit keys`; indexes never move, so the order is
//! history, not grouping. [`COUNTERS_LEN`] = 19.)
//!
//! Every packet the program sees bumps exactly one counter, so their sum is the packet count and
//! each pass names the first reason the program found. (Besides these, [`XDP_HIT_KEYS`] counts
//! the keys answered, so a 24-key hit adds 1 to `hit` and 24 to it.)

/// Answered from the HOT table with `XDP_TX`.
pub const XDP_HIT: u32 = 0;
/// A well-formed get for owned buckets, passed up because a key was absent, expired or mid-write.
pub const XDP_MISS: u32 = 1;
/// Not IPv4/IPv6 carrying UDP (ARP, TCP, ICMP, ...).
pub const XDP_PASS_NOT_IP_UDP: u32 = 2;
/// UDP, but not to the memcached port.
pub const XDP_PASS_NOT_PORT: u32 = 3;
/// Memcached UDP frame header missing or malformed.
pub const XDP_PASS_BAD_FRAME: u32 = 4;
/// Frame header says the request spans more than one datagram.
pub const XDP_PASS_MULTI_DATAGRAM: u32 = 5;
/// Not a `get`/`gets` (sets, deletes, meta commands and the rest belong to user space).
pub const XDP_PASS_NOT_GET: u32 = 6;
/// A multi-get with more keys than the program walks ([`crate::XDP_KEYS_MAX`]).
pub const XDP_PASS_TOO_MANY_KEYS: u32 = 7;
/// A key's vbucket is not owned by this node at the current epoch (user space refuses it).
pub const XDP_PASS_BUCKET_NOT_OWNED: u32 = 8;
/// The answer would not fit one datagram under the configured cap.
pub const XDP_PASS_REPLY_TOO_BIG: u32 = 9;
/// Packet shorter than its headers claim, or the request line has no `\n` or has bytes after it.
pub const XDP_PASS_TRUNCATED: u32 = 10;
/// IPv4 header with options, or an IPv6 extension header.
pub const XDP_PASS_IP_OPTIONS: u32 = 11;
/// IPv4 fragment.
pub const XDP_PASS_FRAGMENT: u32 = 12;
/// An empty key, or one longer than memcached's 250 bytes.
pub const XDP_PASS_BAD_KEY: u32 = 13;
/// A slot changed while XDP copied it (seqlock re-check failed); the request went up intact.
pub const XDP_PASS_RACE: u32 = 14;
/// The packet could not be grown or shrunk to the reply's size.
pub const XDP_PASS_NO_ROOM: u32 = 15;
/// Source outside the UDP allowlist: dropped, never answered (no amplification).
pub const XDP_DROP_NOT_ALLOWED: u32 = 16;
/// Keys answered by XDP (outside the one-counter-per-packet rule).
pub const XDP_HIT_KEYS: u32 = 17;
/// UDP to the port, but to a destination address the server does not listen on
/// (`XdpConfig::dst`): the kernel's to deliver or not.
pub const XDP_PASS_NOT_DEST: u32 = 18;
/// Number of counters (the per-CPU array's `max_entries`).
pub const COUNTERS_LEN: u32 = 19;

/// Counter names for stats output, indexed by counter.
pub const COUNTER_NAMES: [&str; COUNTERS_LEN as usize] = [
    "xdp_hit",
    "xdp_miss",
    "xdp_pass_not_ip_udp",
    "xdp_pass_not_port",
    "xdp_pass_bad_frame",
    "xdp_pass_multi_datagram",
    "xdp_pass_not_get",
    "xdp_pass_too_many_keys",
    "xdp_pass_bucket_not_owned",
    "xdp_pass_reply_too_big",
    "xdp_pass_truncated",
    "xdp_pass_ip_options",
    "xdp_pass_fragment",
    "xdp_pass_bad_key",
    "xdp_pass_race",
    "xdp_pass_no_room",
    "xdp_drop_not_allowed",
    "xdp_hit_keys",
    "xdp_pass_not_dest",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_named() {
        // Each constant sits at its name's index; the last one is COUNTERS_LEN - 1.
        let table = [
            (XDP_HIT, "xdp_hit"),
            (XDP_MISS, "xdp_miss"),
            (XDP_PASS_NOT_IP_UDP, "xdp_pass_not_ip_udp"),
            (XDP_PASS_NOT_PORT, "xdp_pass_not_port"),
            (XDP_PASS_BAD_FRAME, "xdp_pass_bad_frame"),
            (XDP_PASS_MULTI_DATAGRAM, "xdp_pass_multi_datagram"),
            (XDP_PASS_NOT_GET, "xdp_pass_not_get"),
            (XDP_PASS_TOO_MANY_KEYS, "xdp_pass_too_many_keys"),
            (XDP_PASS_BUCKET_NOT_OWNED, "xdp_pass_bucket_not_owned"),
            (XDP_PASS_REPLY_TOO_BIG, "xdp_pass_reply_too_big"),
            (XDP_PASS_TRUNCATED, "xdp_pass_truncated"),
            (XDP_PASS_IP_OPTIONS, "xdp_pass_ip_options"),
            (XDP_PASS_FRAGMENT, "xdp_pass_fragment"),
            (XDP_PASS_BAD_KEY, "xdp_pass_bad_key"),
            (XDP_PASS_RACE, "xdp_pass_race"),
            (XDP_PASS_NO_ROOM, "xdp_pass_no_room"),
            (XDP_DROP_NOT_ALLOWED, "xdp_drop_not_allowed"),
            (XDP_HIT_KEYS, "xdp_hit_keys"),
            (XDP_PASS_NOT_DEST, "xdp_pass_not_dest"),
        ];
        assert_eq!(table.len(), COUNTERS_LEN as usize);
        for (i, (index, name)) in table.into_iter().enumerate() {
            assert_eq!(index as usize, i, "{name}");
            assert_eq!(COUNTER_NAMES[i], name);
        }
    }
}
