//! Leases: one filler per miss, no stale sets, no thundering herd.
//!
//! Facebook's memcache hands a 64-bit lease token to the first client that misses a key; only a
//! set carrying that token may fill it, and a delete voids the token, so a fill computed before
//! an invalidation is refused. Other clients missing during the lease period are told to wait
//! instead of all hitting the database. kcache expresses this through memcached's meta flags,
//! exactly as memcached 1.6 does, and maps mcrouter's `lease-get`/`lease-set` onto the same
//! mechanism:
//!
//! | step | meta form | mcrouter form |
//! |------|-----------|---------------|
//! | miss, first caller | `mg k c N<ttl>` → `EN`-less `HD/VA 0 … c<token> W`: a 0-byte placeholder item is created with TTL `<ttl>` (the lease period) and its CAS is the token | `lease-get k` → `LVALUE k <token> 0 0` |
//! | miss, others in the period | `… Z` (someone else won) | `NOT_FOUND_HOT` |
//! | fill | `ms k <n> C<token>`: stored only if the CAS still matches | `lease-set k <token> …` → `STORED`, else `NOT_STORED` |
//! | delete / newer write | removes or replaces the placeholder: the token no longer matches, the late fill gets `NF`/`EX` | same, `NOT_STORED` |
//! | invalidate but keep serving | `md k I T<ttl>`: item marked stale, CAS bumped; next `mg` → `X W` (recache token), later ones `Z X` | `lease-get` → `LVALUE` with the stale value for the winner, `NOT_FOUND_HOT` for the rest |
//! | early recache | `mg k R<ttl>`: once less than `<ttl>` remains, one caller gets `W` | — |
//!
//! The token is the item's CAS, so a lease costs no memory beyond the placeholder item, and the
//! version rules ([`crate::version`]) apply to lease fills too.

use crate::store::item::{ITEM_STALE, ITEM_TOKEN_SENT};

/// What an `mg` reply says about recaching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    /// `W`: this caller won the right to recache.
    pub won: bool,
    /// `Z`: another caller already holds the token.
    pub held: bool,
    /// `X`: the item is stale.
    pub stale: bool,
}

/// memcached's `mg` decision, given the item's flags before this request.
///
/// - `created`: the item was just made by `N` (a lease placeholder).
/// - `recache_at`: `R<ttl>` as an absolute time; a win if the item expires before it.
pub fn decide(iflag: u16, created: bool, exptime: u32, recache_at: Option<u32>) -> Grant {
    let held = iflag & ITEM_TOKEN_SENT != 0;
    let stale = iflag & ITEM_STALE != 0;
    let mut won = created;
    if let Some(at) = recache_at {
        if !held && !created && exptime != 0 && exptime < at {
            won = true;
        }
    }
    // A stale item hands out exactly one recache token.
    if stale && !held {
        won = true;
    }
    Grant { won, held, stale }
}

/// Appends the `Z`, `X`, `W` return flags in memcached's order.
pub fn write_flags(out: &mut Vec<u8>, g: Grant) {
    if g.held {
        out.extend_from_slice(b" Z");
    }
    if g.stale {
        out.extend_from_slice(b" X");
    }
    if g.won {
        out.extend_from_slice(b" W");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_match_memcached() {
        let none = 0;
        let held = ITEM_TOKEN_SENT;
        let stale = ITEM_STALE;
        // (flags, created, exptime, recache_at, expected " Z X W" suffix)
        let cases: &[(u16, bool, u32, Option<u32>, &str)] = &[
            // plain hit: nothing
            (none, false, 0, None, ""),
            // placeholder just created by N: win
            (none, true, 130, None, " W"),
            // placeholder already handed out: Z
            (held, false, 130, None, " Z"),
            // marked stale, no token yet: X W
            (stale, false, 130, None, " X W"),
            // stale and token handed out: Z X
            (stale | held, false, 130, None, " Z X"),
            // R: expires before the recache point, first caller wins
            (none, false, 105, Some(110), " W"),
            // R: plenty of TTL left
            (none, false, 200, Some(110), ""),
            // R: no TTL at all never triggers
            (none, false, 0, Some(110), ""),
            // R after someone won: Z only
            (held, false, 105, Some(110), " Z"),
        ];
        for &(f, created, exp, r, want) in cases {
            let mut out = Vec::new();
            write_flags(&mut out, decide(f, created, exp, r));
            assert_eq!(
                String::from_utf8_lossy(&out),
                want,
                "flags {f:#x} created {created}"
            );
        }
    }
}
