//! The requests the model test sends, as data, and their wire encoding.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreCmd {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// One meta flag token, kept in request order (replies follow it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flag {
    /// A bare return flag: `v c f t s k q`.
    Ret(u8),
    /// `O<opaque>`.
    Opaque(String),
    /// `T<ttl>`.
    Ttl(i32),
    /// `F<flags>`.
    ClientFlags(u32),
    /// `C<cas>`.
    Cas(u64),
    /// `M<mode>`.
    Mode(u8),
    /// `D<delta>`.
    Delta(u64),
}

impl Flag {
    pub(crate) fn has(flags: &[Flag], c: u8) -> bool {
        flags.contains(&Flag::Ret(c))
    }

    pub(crate) fn ttl(flags: &[Flag]) -> Option<i32> {
        flags.iter().find_map(|f| match f {
            Flag::Ttl(t) => Some(*t),
            _ => None,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let text = match self {
            Flag::Ret(c) => return out.push(*c),
            Flag::Opaque(o) => format!("O{o}"),
            Flag::Ttl(t) => format!("T{t}"),
            Flag::ClientFlags(f) => format!("F{f}"),
            Flag::Cas(c) => format!("C{c}"),
            Flag::Mode(m) => format!("M{}", char::from(*m)),
            Flag::Delta(d) => format!("D{d}"),
        };
        out.extend_from_slice(text.as_bytes());
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Store {
        cmd: StoreCmd,
        key: Vec<u8>,
        flags: u32,
        exptime: i32,
        /// Only for `cas`.
        cas: u64,
        value: Vec<u8>,
        noreply: bool,
    },
    Get {
        cas: bool,
        touch: Option<i32>,
        keys: Vec<Vec<u8>>,
    },
    Arith {
        incr: bool,
        key: Vec<u8>,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: Vec<u8>,
        exptime: i32,
        noreply: bool,
    },
    Delete {
        key: Vec<u8>,
        noreply: bool,
    },
    Flush {
        delay: Option<i32>,
        noreply: bool,
    },
    MetaGet {
        key: Vec<u8>,
        flags: Vec<Flag>,
    },
    MetaSet {
        key: Vec<u8>,
        value: Vec<u8>,
        flags: Vec<Flag>,
    },
    MetaDelete {
        key: Vec<u8>,
        flags: Vec<Flag>,
    },
    MetaArith {
        key: Vec<u8>,
        flags: Vec<Flag>,
    },
}

impl Op {
    /// The key of a request that may allocate (and so evict its own key's old item after
    /// having looked it up).
    pub(crate) fn written_key(&self) -> Option<&[u8]> {
        match self {
            Op::Store { key, .. }
            | Op::Arith { key, .. }
            | Op::MetaSet { key, .. }
            | Op::MetaArith { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Every key the request names.
    pub(crate) fn keys(&self) -> Vec<&[u8]> {
        match self {
            Op::Get { keys, .. } => keys.iter().map(|k| &k[..]).collect(),
            Op::Flush { .. } => Vec::new(),
            Op::Store { key, .. }
            | Op::Arith { key, .. }
            | Op::Touch { key, .. }
            | Op::Delete { key, .. }
            | Op::MetaGet { key, .. }
            | Op::MetaSet { key, .. }
            | Op::MetaDelete { key, .. }
            | Op::MetaArith { key, .. } => vec![key],
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let line = |out: &mut Vec<u8>, words: &[&[u8]]| {
            out.extend_from_slice(&words.join(&b' '));
        };
        let noreply_word = |n: bool| if n { &b" noreply"[..] } else { b"" };
        match self {
            Op::Store {
                cmd,
                key,
                flags,
                exptime,
                cas,
                value,
                noreply,
            } => {
                let name: &[u8] = match cmd {
                    StoreCmd::Set => b"set",
                    StoreCmd::Add => b"add",
                    StoreCmd::Replace => b"replace",
                    StoreCmd::Append => b"append",
                    StoreCmd::Prepend => b"prepend",
                    StoreCmd::Cas => b"cas",
                };
                let nums = format!("{flags} {exptime} {}", value.len());
                line(&mut out, &[name, key, nums.as_bytes()]);
                if *cmd == StoreCmd::Cas {
                    out.extend_from_slice(format!(" {cas}").as_bytes());
                }
                out.extend_from_slice(noreply_word(*noreply));
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(value);
            }
            Op::Get { cas, touch, keys } => {
                let name = match (cas, touch) {
                    (false, None) => "get".to_string(),
                    (true, None) => "gets".to_string(),
                    (false, Some(t)) => format!("gat {t}"),
                    (true, Some(t)) => format!("gats {t}"),
                };
                let mut words: Vec<&[u8]> = vec![name.as_bytes()];
                words.extend(keys.iter().map(|k| &k[..]));
                line(&mut out, &words);
            }
            Op::Arith {
                incr,
                key,
                delta,
                noreply,
            } => {
                let name: &[u8] = if *incr { b"incr" } else { b"decr" };
                line(&mut out, &[name, key, delta.to_string().as_bytes()]);
                out.extend_from_slice(noreply_word(*noreply));
            }
            Op::Touch {
                key,
                exptime,
                noreply,
            } => {
                line(&mut out, &[b"touch", key, exptime.to_string().as_bytes()]);
                out.extend_from_slice(noreply_word(*noreply));
            }
            Op::Delete { key, noreply } => {
                line(&mut out, &[b"delete", key]);
                out.extend_from_slice(noreply_word(*noreply));
            }
            Op::Flush { delay, noreply } => {
                out.extend_from_slice(b"flush_all");
                if let Some(d) = delay {
                    out.extend_from_slice(format!(" {d}").as_bytes());
                }
                out.extend_from_slice(noreply_word(*noreply));
            }
            Op::MetaGet { key, flags } => meta(&mut out, b"mg", key, None, flags),
            Op::MetaSet { key, value, flags } => {
                meta(&mut out, b"ms", key, Some(value.len()), flags);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(value);
            }
            Op::MetaDelete { key, flags } => meta(&mut out, b"md", key, None, flags),
            Op::MetaArith { key, flags } => meta(&mut out, b"ma", key, None, flags),
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn meta(out: &mut Vec<u8>, cmd: &[u8], key: &[u8], len: Option<usize>, flags: &[Flag]) {
    out.extend_from_slice(cmd);
    out.push(b' ');
    out.extend_from_slice(key);
    if let Some(len) = len {
        out.extend_from_slice(format!(" {len}").as_bytes());
    }
    for f in flags {
        out.push(b' ');
        f.encode(out);
    }
}
