//! One client's byte stream: parse as many requests as have arrived, run them, remember how much
//! of a swallowed data block is still to come. The engine keeps one per connection.

use super::{execute, Action};
use crate::{
    protocol::{ParseError, Parser, Request},
    store::Store,
};

/// What [`Session::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input used (the rest is an incomplete request: keep it and append).
    pub consumed: usize,
    /// Close the connection after sending `out`.
    pub close: bool,
}

/// Answers `stats` (the server sees every shard and the process).
pub type StatsFn<'f, B> = dyn FnMut(&Request<'_>, &Store<B>, &mut Vec<u8>) + 'f;

/// Per-connection protocol state.
#[derive(Debug, Default, Clone)]
pub struct Session {
    /// Bytes of a refused data block still to discard.
    swallow: usize,
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// Runs every whole request at the front of `input` against `store`, appending replies to
    /// `out`. `stats` answers `stats` requests (it sees the whole server).
    pub fn feed<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        parser: &Parser,
        store: &mut Store<B>,
        input: &[u8],
        now: u32,
        out: &mut Vec<u8>,
        stats: &mut StatsFn<'_, B>,
    ) -> Fed {
        let mut at = 0;
        loop {
            if self.swallow > 0 {
                let n = self.swallow.min(input.len() - at);
                self.swallow -= n;
                at += n;
                if self.swallow > 0 {
                    return Fed {
                        consumed: at,
                        close: false,
                    };
                }
            }
            if at == input.len() {
                return Fed {
                    consumed: at,
                    close: false,
                };
            }
            match parser.parse(&input[at..]) {
                Ok(p) => {
                    let action = execute(store, &p.request, now, out);
                    self.advance(&mut at, p.consumed, input.len());
                    match action {
                        Action::Done => {}
                        Action::Close => {
                            return Fed {
                                consumed: at,
                                close: true,
                            }
                        }
                        Action::Stats => stats(&p.request, store, out),
                    }
                }
                Err(ParseError::Incomplete) => {
                    return Fed {
                        consumed: at,
                        close: false,
                    }
                }
                Err(ParseError::Invalid(bad)) => {
                    if let Some(reply) = bad.reply {
                        reply.write(out);
                    }
                    self.advance(&mut at, bad.consumed, input.len());
                    if bad.close {
                        return Fed {
                            consumed: at,
                            close: true,
                        };
                    }
                }
            }
        }
    }

    fn advance(&mut self, at: &mut usize, consumed: usize, len: usize) {
        let avail = len - *at;
        if consumed > avail {
            self.swallow = consumed - avail;
            *at = len;
        } else {
            *at += consumed;
        }
    }
}
