//! Ones' complement arithmetic (RFC 1071) shared by user space, which stores each HOT slot
//! part's sum, and the XDP program, which adds those sums into a UDP checksum.

/// Adds a part's ones' complement sum to a running 32-bit sum; a part that starts at an odd
/// offset of the packet contributes its sum byte-swapped. A carry out of bit 31 wraps around,
/// which keeps the sum exact in ones' complement (2^32 ≡ 1 mod 0xffff), so any number of parts
/// may be added.
#[inline(always)]
pub const fn combine(acc: u32, part_sum: u16, at_odd: bool) -> u32 {
    let part = if at_odd {
        part_sum.swap_bytes()
    } else {
        part_sum
    };
    let (sum, carry) = acc.overflowing_add(part as u32);
    sum + carry as u32
}

/// Folds a 32-bit running sum to 16 bits with end-around carry (not complemented).
#[inline(always)]
pub const fn fold(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}
