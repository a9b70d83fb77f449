//! The gutter (the memcache paper's "Gutter"): while a server is down (TKO), the keys it holds
//! are served by a small pool of otherwise idle servers instead of being rehashed onto the
//! remaining primaries — so no primary ever holds a copy that goes stale when the dead server
//! returns. Gets go to the key's gutter server (a miss there is filled by the client as usual),
//! sets go there with their TTL capped (`gutter_ttl`, 10 s by default) so whatever the gutter
//! holds is short-lived, and deletes and other changes go there too, so the gutter never serves
//! a value deleted while the server was down.
//!
//! This file rewrites a store request's TTL; `forward.rs` picks the gutter server.

use cache_core::protocol::{Request, StoreCmd};

/// memcached reads an exptime above this many seconds as a Unix time.
const RELATIVE_MAX: i64 = 60 * 60 * 24 * 30;

/// The exptime a write to the gutter gets: `exptime` (memcached's meaning, `now` Unix seconds)
/// capped at `cap` seconds from now. 0 (never expires) becomes `cap`; a negative one (expire
/// now) stays.
pub(crate) fn capped_ttl(exptime: i64, cap: i32, now: u32) -> i64 {
    let cap = i64::from(cap.max(1));
    match exptime {
        e if e < 0 => e,
        0 => cap,
        e if e > RELATIVE_MAX => (e - i64::from(now)).clamp(-1, cap),
        e => e.min(cap),
    }
}

/// `req` as sent to the gutter: a store with its TTL capped (rebuilt), else `None` (send it as
/// it arrived).
pub(crate) fn rewrite(req: &Request<'_>, cap: i32, now: u32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match req {
        Request::Store(s) => {
            let ttl = capped_ttl(i64::from(s.exptime), cap, now);
            out.extend_from_slice(s.cmd.name());
            out.push(b' ');
            out.extend_from_slice(s.key);
            let mut line = format!(" {} {ttl} {}", s.flags, s.value.len());
            if s.cmd == StoreCmd::Cas {
                line.push_str(&format!(" {}", s.cas));
            }
            if s.noreply {
                line.push_str(" noreply");
            }
            out.extend_from_slice(line.as_bytes());
        }
        Request::MetaSet(m) => {
            let ttl = capped_ttl(i64::from(m.flags.ttl.unwrap_or(0)), cap, now);
            out.extend_from_slice(b"ms ");
            out.extend_from_slice(m.key);
            out.extend_from_slice(format!(" {}", m.value.len()).as_bytes());
            for t in m.flags.tokens().filter(|t| t[0] != b'T') {
                out.push(b' ');
                out.extend_from_slice(t);
            }
            out.extend_from_slice(format!(" T{ttl}").as_bytes());
        }
        _ => return None,
    }
    let value = match req {
        Request::Store(s) => s.value,
        Request::MetaSet(m) => m.value,
        _ => return None,
    };
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use cache_core::protocol::Parser;

    use super::*;

    #[test]
    fn ttls_are_capped() {
        let now = 1_800_000_000;
        assert_eq!(capped_ttl(0, 10, now), 10);
        assert_eq!(capped_ttl(5, 10, now), 5);
        assert_eq!(capped_ttl(3600, 10, now), 10);
        assert_eq!(capped_ttl(-1, 10, now), -1);
        assert_eq!(capped_ttl(i64::from(now) + 4, 10, now), 4);
        assert_eq!(capped_ttl(i64::from(now) + 99, 10, now), 10);
        // An absolute time already past expires at once.
        assert_eq!(capped_ttl(i64::from(now) - 5, 10, now), -1);
    }

    #[test]
    fn stores_are_rebuilt_with_the_cap() {
        let p = Parser::new();
        let cases: &[(&[u8], &[u8])] = &[
            (b"set k 3 0 2\r\nhi\r\n", b"set k 3 10 2\r\nhi\r\n"),
            (
                b"add k 0 3600 1 noreply\r\nx\r\n",
                b"add k 0 10 1 noreply\r\nx\r\n",
            ),
            (b"cas k 1 5 1 77\r\nx\r\n", b"cas k 1 5 1 77\r\nx\r\n"),
            (b"ms k 2 T0 F5 q\r\nhi\r\n", b"ms k 2 F5 q T10\r\nhi\r\n"),
            (b"ms k 2 c\r\nhi\r\n", b"ms k 2 c T10\r\nhi\r\n"),
        ];
        for &(text, want) in cases {
            let r = p.parse(text).unwrap_or_else(|e| panic!("{e:?}"));
            let got = rewrite(&r.request, 10, 1_800_000_000);
            assert_eq!(got.as_deref(), Some(want), "{}", text.escape_ascii());
        }
        let r = p.parse(b"delete k\r\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(rewrite(&r.request, 10, 0), None);
    }
}
