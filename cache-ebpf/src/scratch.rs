//! Per-CPU working memory: the BPF stack has 512 bytes, a request and its answer need more.
//!
//! ```text
//!  0                      2056                     6152           6288
//!  +----------------------+------------------------+--------------+
//!  | req [u8; 2056]       | out [u8; 4096]         | hdr [u8;136] |
//!  +----------------------+------------------------+--------------+
//! ```
//!
//! `req` holds the request after the frame header; every read is at `offset & REQ_MASK` and
//! 8 bytes long, hence the 8 bytes of slack. `out` receives the answer (frame header, values,
//! `END`); writes go to `offset & OUT_MASK` with lengths `& OUT_MASK`, which the verifier can
//! prove stay inside 4096 bytes. `hdr` is the rewritten Ethernet/IP/UDP header (read and written at `offset & HDR_MASK`).

/// Mask for offsets into `req`.
pub const REQ_MASK: usize = 2047;
/// Mask for offsets and lengths into `out`.
pub const OUT_MASK: usize = 2047;
/// Longest request (after the frame header) the program reads.
pub const REQ_MAX: usize = REQ_MASK + 1;
/// Mask for offsets into `hdr`; the longest header kept (Ethernet + 802.1Q + IPv6 + UDP) is
/// 66 bytes, and 2-byte accesses at `offset & HDR_MASK` stay inside 136.
pub const HDR_MASK: usize = 127;

#[repr(C)]
pub struct Scratch {
    pub req: [u8; REQ_MAX + 8],
    pub out: [u8; 2 * (OUT_MASK + 1)],
    pub hdr: [u8; HDR_MASK + 9],
}
