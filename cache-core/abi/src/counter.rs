//! Indexes into the XDP program's per-CPU counter array (`u64` per slot, [`COUNTERS_LEN`] slots).
//!
//! ```text
//!  index:  0    1     2 .. 12              13                  14 = COUNTERS_LEN
//!         +----+-----+--------------------+-------------------+
//!         |hit |miss | pass reasons       | drop not allowed  |
//!         +----+-----+--------------------+-------------------+
//! ```
//!
//! Every packet the program sees bumps exactly one counter, so their sum is the packet count and
//! each pass names the first reason the program found.

/// Answered from the HOT map with `XDP_TX`.
pub const XDP_HIT: u32 = 0;
/// A well-formed get for owned buckets, passed up because a key was absent, expired or mid-write.
pub const XDP_MISS: u32 = 1;
/// Not IPv4/UDP.
pub const XDP_PASS_NOT_UDP: u32 = 2;
/// UDP, but not to the memcached port.
pub const XDP_PASS_NOT_PORT: u32 = 3;
/// Memcached UDP frame header missing or malformed.
pub const XDP_PASS_BAD_FRAME: u32 = 4;
/// Frame header says the request spans more than one datagram.
pub const XDP_PASS_MULTI_DATAGRAM: u32 = 5;
/// Not a `get` (sets, deletes, meta commands and the rest belong to user space).
pub const XDP_PASS_NOT_GET: u32 = 6;
/// A multi-get with more keys than the program walks.
pub const XDP_PASS_TOO_MANY_KEYS: u32 = 7;
/// A key's vbucket is not owned by this node (user space sends the refusal).
pub const XDP_PASS_BUCKET_NOT_OWNED: u32 = 8;
/// The answer would not fit one datagram.
pub const XDP_PASS_REPLY_TOO_BIG: u32 = 9;
/// Packet shorter than its headers claim, or the request line has no `\r\n`.
pub const XDP_PASS_TRUNCATED: u32 = 10;
/// IPv4 header with options.
pub const XDP_PASS_IP_OPTIONS: u32 = 11;
/// IPv4 fragment.
pub const XDP_PASS_FRAGMENT: u32 = 12;
/// Source outside the UDP allowlist: dropped, never answered (no amplification).
pub const XDP_DROP_NOT_ALLOWED: u32 = 13;
/// Number of counters (the per-CPU array's `max_entries`).
pub const COUNTERS_LEN: u32 = 14;

/// Counter names for stats output, indexed by counter.
pub const COUNTER_NAMES: [&str; COUNTERS_LEN as usize] = [
    "xdp_hit",
    "xdp_miss",
    "xdp_pass_not_udp",
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
    "xdp_drop_not_allowed",
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
            (XDP_PASS_NOT_UDP, "xdp_pass_not_udp"),
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
            (XDP_DROP_NOT_ALLOWED, "xdp_drop_not_allowed"),
        ];
        assert_eq!(table.len(), COUNTERS_LEN as usize);
        for (i, (index, name)) in table.into_iter().enumerate() {
            assert_eq!(index as usize, i, "{name}");
            assert_eq!(COUNTER_NAMES[i], name);
        }
    }
}
