//! The meta commands (`mg`, `ms`, `md`, `ma`) of the plain model, with memcached 1.6.18's reply
//! lines: return flags in request order, `O` and `k` echoed, `q` hiding the nominal reply.

use super::{realtime, Arith, Plain, NON_NUMERIC};
use crate::request::{Flag, StoreCmd};

impl Plain {
    pub(super) fn meta_get(&mut self, key: &[u8], flags: &[Flag], out: &mut Vec<u8>) {
        let now = self.now;
        let Some(it) = self.find(key) else {
            if !Flag::has(flags, b'q') {
                out.extend_from_slice(b"EN");
                echo(key, flags, out);
                out.extend_from_slice(b"\r\n");
            }
            return;
        };
        let v = Flag::has(flags, b'v');
        if v {
            out.extend_from_slice(format!("VA {}", it.value.len()).as_bytes());
        } else {
            out.extend_from_slice(b"HD");
        }
        for f in flags {
            match f {
                Flag::Ttl(t) => it.exptime = realtime(*t, now),
                Flag::Ret(b't') => ttl(it.exptime, now, out),
                Flag::Ret(b'c') => out.extend_from_slice(format!(" c{}", it.cas).as_bytes()),
                Flag::Ret(b'f') => out.extend_from_slice(format!(" f{}", it.flags).as_bytes()),
                Flag::Ret(b's') => {
                    out.extend_from_slice(format!(" s{}", it.value.len()).as_bytes())
                }
                Flag::Ret(b'k') | Flag::Opaque(_) => echo(key, std::slice::from_ref(f), out),
                _ => {}
            }
        }
        out.extend_from_slice(b"\r\n");
        if v {
            out.extend_from_slice(&it.value);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// `ms`: a `C` turns set and replace into cas; append and prepend keep the old flags and
    /// TTL. Returns whether the key was written.
    pub(super) fn meta_set(
        &mut self,
        key: &[u8],
        value: &[u8],
        flags: &[Flag],
        out: &mut Vec<u8>,
    ) -> bool {
        let cas = flags.iter().find_map(|f| match f {
            Flag::Cas(c) => Some(*c),
            _ => None,
        });
        let mode = flags.iter().find_map(|f| match f {
            Flag::Mode(m) => Some(*m),
            _ => None,
        });
        let mut cmd = match mode {
            Some(b'E') => StoreCmd::Add,
            Some(b'A') => StoreCmd::Append,
            Some(b'P') => StoreCmd::Prepend,
            Some(b'R') => StoreCmd::Replace,
            _ => StoreCmd::Set,
        };
        if cas.is_some() && matches!(cmd, StoreCmd::Set | StoreCmd::Replace) {
            cmd = StoreCmd::Cas;
        }
        let client_flags = flags.iter().find_map(|f| match f {
            Flag::ClientFlags(n) => Some(*n),
            _ => None,
        });
        let exptime = realtime(Flag::ttl(flags).unwrap_or(0), self.now);
        let reply = self.store(
            cmd,
            key,
            client_flags.unwrap_or(0),
            exptime,
            cas.unwrap_or(0),
            value,
        );
        let stored = reply == b"STORED\r\n";
        if stored && Flag::has(flags, b'q') {
            return true;
        }
        let code: &[u8] = match reply {
            b"STORED\r\n" => b"HD",
            b"NOT_STORED\r\n" => b"NS",
            b"EXISTS\r\n" => b"EX",
            _ => b"NF",
        };
        out.extend_from_slice(code);
        let new_cas = if stored { self.cas_counter(key) } else { 0 };
        for f in flags {
            match f {
                Flag::Ret(b'c') => out.extend_from_slice(format!(" c{new_cas}").as_bytes()),
                Flag::Ret(b'k') | Flag::Opaque(_) => echo(key, std::slice::from_ref(f), out),
                _ => {}
            }
        }
        out.extend_from_slice(b"\r\n");
        stored
    }

    pub(super) fn meta_delete(&mut self, key: &[u8], flags: &[Flag], out: &mut Vec<u8>) {
        let cas = flags.iter().find_map(|f| match f {
            Flag::Cas(c) => Some(*c),
            _ => None,
        });
        let code: &[u8] = match self.find(key) {
            None => b"NF",
            Some(it) if cas.is_some_and(|c| c != it.cas) => b"EX",
            Some(_) => {
                self.items.remove(key);
                if Flag::has(flags, b'q') {
                    return;
                }
                b"HD"
            }
        };
        out.extend_from_slice(code);
        echo(key, flags, out);
        out.extend_from_slice(b"\r\n");
    }

    /// `ma`: returns whether the key was written.
    pub(super) fn meta_arith(&mut self, key: &[u8], flags: &[Flag], out: &mut Vec<u8>) -> bool {
        let mut delta = 1;
        let mut incr = true;
        let mut cas = 0;
        for f in flags {
            match f {
                Flag::Delta(d) => delta = *d,
                Flag::Mode(m) => incr = !matches!(m, b'D' | b'-'),
                Flag::Cas(c) => cas = *c,
                _ => {}
            }
        }
        let digits = match self.arith(key, incr, delta, cas) {
            Arith::Value(d) => d,
            Arith::NonNumeric => {
                out.extend_from_slice(NON_NUMERIC);
                return false;
            }
            miss @ (Arith::NotFound | Arith::Exists) => {
                let exists = matches!(miss, Arith::Exists);
                out.extend_from_slice(if exists { b"EX" } else { b"NF" });
                echo(key, flags, out);
                out.extend_from_slice(b"\r\n");
                return false;
            }
        };
        let now = self.now;
        let Some(it) = self.items.get_mut(key) else {
            return true;
        };
        let mut line = Vec::new();
        let v = Flag::has(flags, b'v');
        if v {
            line.extend_from_slice(format!("VA {}", digits.len()).as_bytes());
        } else {
            line.extend_from_slice(b"HD");
        }
        let mut exptime = it.exptime;
        for f in flags {
            match f {
                Flag::Ret(b'c') => line.extend_from_slice(format!(" c{}", it.cas).as_bytes()),
                Flag::Ret(b't') => ttl(exptime, now, &mut line),
                Flag::Ttl(t) => exptime = realtime(*t, now),
                Flag::Ret(b'k') | Flag::Opaque(_) => echo(key, std::slice::from_ref(f), &mut line),
                _ => {}
            }
        }
        it.exptime = exptime;
        if Flag::has(flags, b'q') {
            return true;
        }
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
        if v {
            out.extend_from_slice(&digits);
            out.extend_from_slice(b"\r\n");
        }
        true
    }
}

/// ` t<remaining>` (unsigned, as memcached computes it) or ` t-1` for no expiry.
fn ttl(exptime: u32, now: u32, out: &mut Vec<u8>) {
    if exptime == 0 {
        out.extend_from_slice(b" t-1");
    } else {
        out.extend_from_slice(format!(" t{}", exptime.wrapping_sub(now)).as_bytes());
    }
}

/// The `O` and `k` return flags, in request order.
fn echo(key: &[u8], flags: &[Flag], out: &mut Vec<u8>) {
    for f in flags {
        match f {
            Flag::Opaque(o) => {
                out.extend_from_slice(b" O");
                out.extend_from_slice(o.as_bytes());
            }
            Flag::Ret(b'k') => {
                out.extend_from_slice(b" k");
                out.extend_from_slice(key);
            }
            _ => {}
        }
    }
}
