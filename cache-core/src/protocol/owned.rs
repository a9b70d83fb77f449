//! Requests that own their bytes: how a parsed request travels to the shard that stores its key.
//!
//! A [`Request`] borrows from the input buffer. [`Owned`] copies the request's own bytes (its
//! line and data block, once) and remembers where each borrowed field sat in them, so the
//! receiving shard gets the same [`Request`] back with [`Owned::request`] — no parsing again.

use super::{Keys, Meta, MetaSet, Request};

/// The most byte fields any request has (`ms`: key, flags, value).
const MAX_FIELDS: usize = 3;

/// Where one borrowed field sits in [`Owned`]'s bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    at: u32,
    len: u32,
}

/// A parsed request together with the bytes its fields point into.
#[derive(Debug, Clone)]
pub struct Owned {
    bytes: Box<[u8]>,
    /// The request with every byte field empty; [`Owned::request`] fills them from `spans`.
    shape: Request<'static>,
    spans: [Span; MAX_FIELDS],
}

impl Owned {
    /// Copies `req`, whose fields borrow from `base` (the bytes it was parsed from: its line and
    /// data block). A field outside `base` (none is, for requests from [`super::Parser`]) is
    /// copied after it, so the result is right whatever the caller passes.
    pub fn new(req: &Request<'_>, base: &[u8]) -> Owned {
        let mut bytes = base.to_vec();
        let mut spans = [Span::default(); MAX_FIELDS];
        let mut n = 0;
        let start = base.as_ptr() as usize;
        let shape = req.map_fields(&mut |field: &[u8]| {
            let at = (field.as_ptr() as usize).wrapping_sub(start);
            let inside = at <= base.len() && field.len() <= base.len() - at;
            let at = if field.is_empty() || inside {
                at.min(base.len())
            } else {
                bytes.extend_from_slice(field);
                bytes.len() - field.len()
            };
            if let Some(s) = spans.get_mut(n) {
                *s = Span {
                    at: at as u32,
                    len: field.len() as u32,
                };
            }
            n += 1;
            &[]
        });
        debug_assert!(n <= MAX_FIELDS, "a request with {n} byte fields");
        Owned {
            bytes: bytes.into_boxed_slice(),
            shape,
            spans,
        }
    }

    /// The request, borrowing from these bytes.
    pub fn request(&self) -> Request<'_> {
        let mut n = 0;
        let bytes = &self.bytes;
        let spans = &self.spans;
        self.shape.map_fields(&mut |_| {
            let s = spans.get(n).copied().unwrap_or_default();
            n += 1;
            let (at, len) = (s.at as usize, s.len as usize);
            bytes.get(at..at + len).unwrap_or_default()
        })
    }

    /// The request as it arrived: its line and data block (what a router sends on).
    pub fn raw(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes held (what a budget counts).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl<'a> Request<'a> {
    /// The same request with every borrowed byte field replaced by `f(field)`, fields visited in
    /// a fixed order (key, flags, value).
    pub fn map_fields<'b>(&self, f: &mut dyn FnMut(&'a [u8]) -> &'b [u8]) -> Request<'b> {
        let meta = |m: &Meta<'a>, f: &mut dyn FnMut(&'a [u8]) -> &'b [u8]| {
            let key = f(m.key);
            Meta {
                key,
                flags: m.flags.with_raw(f(m.flags.raw)),
            }
        };
        match *self {
            Request::Get(g) => Request::Get(super::Get {
                keys: Keys::new(f(g.keys.text())),
                ..g
            }),
            Request::Store(s) => {
                let key = f(s.key);
                Request::Store(super::Store {
                    key,
                    value: f(s.value),
                    ..s
                })
            }
            Request::Arith(a) => Request::Arith(super::Arith { key: f(a.key), ..a }),
            Request::Delete(d) => Request::Delete(super::Delete { key: f(d.key), ..d }),
            Request::Touch(t) => Request::Touch(super::Touch { key: f(t.key), ..t }),
            Request::FlushAll { delay, noreply } => Request::FlushAll { delay, noreply },
            Request::Stats(args) => Request::Stats(f(args)),
            Request::Version => Request::Version,
            Request::Verbosity { noreply } => Request::Verbosity { noreply },
            Request::Quit => Request::Quit,
            Request::Shutdown => Request::Shutdown,
            Request::Slabs(s) => Request::Slabs(s),
            Request::MetaGet(m) => Request::MetaGet(meta(&m, f)),
            Request::MetaSet(m) => {
                let key = f(m.key);
                let flags = m.flags.with_raw(f(m.flags.raw));
                Request::MetaSet(MetaSet {
                    key,
                    flags,
                    value: f(m.value),
                })
            }
            Request::MetaDelete(m) => Request::MetaDelete(meta(&m, f)),
            Request::MetaArith(m) => Request::MetaArith(meta(&m, f)),
            Request::MetaNoop => Request::MetaNoop,
            Request::MetaDebug { key, base64 } => Request::MetaDebug {
                key: f(key),
                base64,
            },
            Request::LeaseGet(k) => Request::LeaseGet(Keys::new(f(k.text()))),
            Request::LeaseSet(l) => {
                let key = f(l.key);
                Request::LeaseSet(super::LeaseSet {
                    key,
                    value: f(l.value),
                    ..l
                })
            }
            Request::Refused {
                key,
                drop_existing,
                reply,
                why,
            } => Request::Refused {
                key: f(key),
                drop_existing,
                reply,
                why,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Parser;

    /// Every kind of request survives the trip: the same fields, read from the copy.
    #[test]
    fn requests_come_back_the_same() {
        let p = Parser::new();
        let inputs: &[&[u8]] = &[
            b"get a bb ccc\r\n",
            b"gats 10 k1 k2\r\n",
            b"set key 5 0 3 noreply\r\nabc\r\n",
            b"cas key 1 2 3 99\r\nxyz\r\n",
            b"incr n 7\r\n",
            b"delete gone\r\n",
            b"touch t 30\r\n",
            b"stats slabs\r\n",
            b"mg key v c t O123 k\r\n",
            b"ms key 2 T30 F7 I\r\nhi\r\n",
            b"md key q I T5\r\n",
            b"ma n MD D3\r\n",
            b"me key\r\n",
            b"lease-get a b\r\n",
            b"lease-set key 42 0 0 2\r\nok\r\n",
            b"flush_all 10\r\n",
            b"mn\r\n",
        ];
        for &input in inputs {
            let parsed = p
                .parse(input)
                .unwrap_or_else(|e| panic!("{}: {e:?}", input.escape_ascii()));
            let owned = Owned::new(&parsed.request, &input[..parsed.consumed]);
            // Debug shows every field, borrowed bytes included.
            let want = format!("{:?}", parsed.request);
            assert_eq!(format!("{:?}", owned.request()), want);
            // And the copy owns its bytes: the original buffer can go.
            let moved = std::thread::spawn(move || format!("{:?}", owned.request()))
                .join()
                .unwrap_or_default();
            assert_eq!(moved, want, "{}", input.escape_ascii());
        }
    }

    /// A field that does not point into the base is still carried.
    #[test]
    fn a_field_outside_the_base_is_copied() {
        let p = Parser::new();
        let parsed = p
            .parse(b"delete elsewhere\r\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let owned = Owned::new(&parsed.request, b"unrelated");
        match owned.request() {
            Request::Delete(d) => assert_eq!(d.key, b"elsewhere"),
            other => panic!("{other:?}"),
        }
    }
}
