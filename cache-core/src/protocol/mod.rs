//! memcached's text protocols: classic commands, meta commands, mcrouter's lease commands and the
//! UDP frame header. Requests borrow from the input buffer; replies are written by [`encode`].
//!
//! [`Parser::parse`] takes whatever bytes have arrived and returns one request with the number of
//! bytes it used, or [`ParseError::Incomplete`] when the request is not all there yet, or
//! [`ParseError::Invalid`] carrying memcached's exact error reply. It never panics, on any input.
//!
//! `consumed` (in [`Parsed`] and [`Invalid`]) may be larger than the input: the caller must then
//! discard that many bytes of the stream, including bytes not received yet. That is memcached's
//! "swallow", used after a storage command whose value is refused before it arrives, so the data
//! block is never read as commands.

mod classic;
pub mod encode;
mod lease;
pub mod meta;
mod owned;
pub mod reply;
pub mod token;
pub mod udp;

pub use meta::{MetaFlags, MetaMode};
pub use owned::Owned;

use crate::store::item::HEADER_LEN;

/// memcached's key length limit.
pub const KEY_MAX: usize = 250;

/// Limits applied while parsing. Defaults match memcached 1.6.
#[derive(Debug, Clone)]
pub struct Parser {
    max_key: usize,
    item_max: usize,
    max_line: usize,
    max_get_line: usize,
    strict_keys: bool,
    /// Refuse a storage command whose data block has not all arrived (see
    /// [`Parser::parse_no_room`]).
    no_room: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            max_key: KEY_MAX,
            item_max: 1024 * 1024,
            max_line: 2048,
            max_get_line: 256 * 1024,
            strict_keys: false,
            no_room: false,
        }
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Largest key in bytes (memcached: 250).
    pub fn max_key(mut self, n: usize) -> Parser {
        self.max_key = n.min(KEY_MAX);
        self
    }

    /// Largest item (header + key + value) in bytes, memcached's `-I` (default 1 MiB).
    pub fn item_max(mut self, n: usize) -> Parser {
        self.item_max = n;
        self
    }

    /// Longest command line accepted without its newline (memcached: 2048).
    pub fn max_line(mut self, n: usize) -> Parser {
        self.max_line = n;
        self
    }

    /// Longest `get`/`gets` line (memcached: unbounded; default 256 KiB).
    pub fn max_get_line(mut self, n: usize) -> Parser {
        self.max_get_line = n;
        self
    }

    /// Refuse keys containing control characters (memcached's documented rule, which its text
    /// parser does not enforce). Default off, as memcached: libmemcached's own `memcaslap`
    /// sends keys with control bytes.
    pub fn strict_keys(mut self, on: bool) -> Parser {
        self.strict_keys = on;
        self
    }

    pub fn item_max_bytes(&self) -> usize {
        self.item_max
    }

    /// Whether `key` is acceptable: not empty, short enough, and (if strict) free of control
    /// characters and spaces.
    pub fn key_ok(&self, key: &[u8]) -> bool {
        !key.is_empty()
            && key.len() <= self.max_key
            && (!self.strict_keys || key.iter().all(|&b| b > b' ' && b != 0x7f))
    }

    /// Whether a value of `vlen` bytes under `key_len` fits in one item.
    pub fn fits(&self, key_len: usize, vlen: usize) -> bool {
        HEADER_LEN + key_len + vlen <= self.item_max
    }

    /// Parses one request from the front of `buf`.
    pub fn parse<'a>(&self, buf: &'a [u8]) -> Result<Parsed<'a>, ParseError> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            return Err(self.no_newline(buf));
        };
        let mut end = nl;
        if end > 0 && buf[end - 1] == b'\r' {
            end -= 1;
        }
        let line = Line {
            text: &buf[..end],
            len: nl + 1,
            buf,
        };
        // Too long even with its newline: refused the same way whether or not the newline
        // arrived in the same read (memcached decides by read boundaries; we do not).
        if nl > self.max_line && !(is_multi_read(buf) && nl <= self.max_get_line) {
            return Err(line_too_long(line.len));
        }
        // The common case first: a plain `get`/`gets` needs no tokenizing.
        if let Some(parsed) = classic::fast_get(self, line) {
            return parsed;
        }
        classic::dispatch(self, line)
    }

    /// [`Parser::parse`] for a caller with no room to buffer the rest of a data block: a
    /// storage command whose block has not all arrived is answered as [`Request::Refused`] with
    /// [`Refuse::NoMemory`] (memcached's reply when it cannot allocate the item), `consumed`
    /// covering the whole block, so the caller swallows what is still to come. Anything else
    /// parses as with [`Parser::parse`].
    pub fn parse_no_room<'a>(&self, buf: &'a [u8]) -> Result<Parsed<'a>, ParseError> {
        let p = Parser {
            no_room: true,
            ..self.clone()
        };
        p.parse(buf)
    }

    /// The whole length (line, data block and its `\r\n`) of the storage command at the front
    /// of `buf` whose line is complete but whose block is not; `None` for anything else.
    pub fn pending_block(&self, buf: &[u8]) -> Option<usize> {
        match self.parse_no_room(buf) {
            Ok(Parsed {
                request:
                    Request::Refused {
                        why: Refuse::NoMemory,
                        ..
                    },
                consumed,
            }) => Some(consumed),
            _ => None,
        }
    }

    fn no_newline(&self, buf: &[u8]) -> ParseError {
        if buf.len() <= self.max_line {
            return ParseError::Incomplete;
        }
        // memcached lets only multigets grow past the limit.
        let trimmed = {
            let lead = buf.iter().take_while(|&&b| b == b' ').count();
            &buf[lead..]
        };
        if is_multi_read(trimmed) && buf.len() <= self.max_get_line {
            return ParseError::Incomplete;
        }
        line_too_long(buf.len())
    }
}

/// Multi-key reads may exceed `max_line` (up to `max_get_line`): memcached lets `get`/`gets`
/// grow; kcache extends that to every multi-key read.
fn is_multi_read(line: &[u8]) -> bool {
    [
        &b"get "[..],
        b"gets ",
        b"gat ",
        b"gats ",
        b"bget ",
        b"lease-get ",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

fn line_too_long(consumed: usize) -> ParseError {
    ParseError::Invalid(Invalid {
        reply: Some(ErrorReply::Client("line too long")),
        consumed,
        close: true,
    })
}

/// One command line: its text without `\r\n`, its length with it, and the whole input.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    text: &'a [u8],
    len: usize,
    buf: &'a [u8],
}

impl<'a> Line<'a> {
    /// The data block of `vlen` bytes after this storage line, or the finished answer when there
    /// is no value to store: the item can never fit (`Refused`; the block is swallowed), the
    /// block is not all here yet (`Refused` too in [`Parser::parse_no_room`]'s mode), or it
    /// does not end in `\r\n` (memcached's `bad data chunk`,
    /// after which it still skips line + block). `reply` is false when `noreply` silences
    /// errors; `drop_existing` says whether a refused write drops the key's current item.
    #[expect(
        clippy::result_large_err,
        reason = "the error is the parser's own result, returned as is by the caller"
    )]
    fn block(
        &self,
        p: &Parser,
        key: &'a [u8],
        vlen: usize,
        drop_existing: bool,
        reply: bool,
    ) -> Result<&'a [u8], Result<Parsed<'a>, ParseError>> {
        let need = self.len + vlen + 2;
        let refuse = |why| {
            Err(Ok(Parsed {
                request: Request::Refused {
                    key,
                    drop_existing,
                    reply,
                    why,
                },
                consumed: need,
            }))
        };
        if !p.fits(key.len(), vlen) {
            return refuse(Refuse::TooLarge);
        }
        if self.buf.len() < need {
            if p.no_room {
                return refuse(Refuse::NoMemory);
            }
            return Err(Err(ParseError::Incomplete));
        }
        let block = &self.buf[self.len..need];
        if &block[vlen..] != b"\r\n" {
            return Err(Err(ParseError::Invalid(Invalid {
                reply: reply.then_some(ErrorReply::Client("bad data chunk")),
                consumed: need,
                close: false,
            })));
        }
        Ok(&block[..vlen])
    }
}

/// A parsed request and the bytes it used (see the module docs on `consumed`).
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    pub request: Request<'a>,
    pub consumed: usize,
}

/// Why nothing was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not a whole request yet: read more and call again with the same bytes plus more.
    Incomplete,
    /// memcached would answer with an error (or nothing): see [`Invalid`].
    Invalid(Invalid),
}

/// A bad request: what to answer, what to skip, and whether to hang up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    /// The reply, or `None` when memcached stays silent (`noreply`, or an HTTP request).
    pub reply: Option<ErrorReply>,
    /// Bytes to discard (may exceed the input; see the module docs).
    pub consumed: usize,
    /// Close the connection after the reply.
    pub close: bool,
}

/// memcached's three kinds of error line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// `ERROR`: unknown command or wrong number of tokens.
    Error,
    /// `CLIENT_ERROR <why>`.
    Client(&'static str),
    /// `SERVER_ERROR <why>`.
    Server(&'static str),
}

impl ErrorReply {
    /// Appends the reply line with its `\r\n`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            ErrorReply::Error => out.extend_from_slice(b"ERROR"),
            ErrorReply::Client(why) => {
                out.extend_from_slice(b"CLIENT_ERROR ");
                out.extend_from_slice(why.as_bytes());
            }
            ErrorReply::Server(why) => {
                out.extend_from_slice(b"SERVER_ERROR ");
                out.extend_from_slice(why.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// A logical request, independent of how it was encoded.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Get(Get<'a>),
    Store(Store<'a>),
    Arith(Arith<'a>),
    Delete(Delete<'a>),
    Touch(Touch<'a>),
    /// `flush_all [delay] [noreply]`; `delay` <= 0 flushes now.
    FlushAll {
        delay: i32,
        noreply: bool,
    },
    /// `stats [args...]`: the server answers (it sees every shard). Holds the arguments' text.
    Stats(&'a [u8]),
    Version,
    Verbosity {
        noreply: bool,
    },
    Quit,
    /// `shutdown`: refused as by a memcached started without `-A`.
    Shutdown,
    /// `slabs reassign <src> <dst>` or `slabs automove <n>`.
    Slabs(Slabs),
    MetaGet(Meta<'a>),
    MetaSet(MetaSet<'a>),
    MetaDelete(Meta<'a>),
    MetaArith(Meta<'a>),
    MetaNoop,
    /// `me <key> [b]`.
    MetaDebug {
        key: &'a [u8],
        base64: bool,
    },
    LeaseGet(Keys<'a>),
    LeaseSet(LeaseSet<'a>),
    /// A storage command whose value is refused before it is read (`why`); its data block is
    /// swallowed. memcached also drops the key's current item for plain `set` and for every
    /// `ms`, so no stale copy stays.
    Refused {
        key: &'a [u8],
        drop_existing: bool,
        reply: bool,
        why: Refuse,
    },
}

/// Why a storage command's value is refused unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    /// The item can never fit (`-I`): `SERVER_ERROR object too large for cache`.
    TooLarge,
    /// No memory to receive it now: `SERVER_ERROR out of memory storing object`.
    NoMemory,
}

impl Refuse {
    /// memcached's reply text.
    pub fn reply(self) -> ErrorReply {
        match self {
            Refuse::TooLarge => ErrorReply::Server("object too large for cache"),
            Refuse::NoMemory => ErrorReply::Server("out of memory storing object"),
        }
    }
}

/// `get`, `gets`, `gat`, `gats`.
#[derive(Debug, Clone, Copy)]
pub struct Get<'a> {
    pub cas: bool,
    /// `gat`/`gats`: the new exptime.
    pub touch: Option<i32>,
    pub keys: Keys<'a>,
}

/// The keys of a multi-key command, validated, iterated without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    text: &'a [u8],
}

impl<'a> Keys<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Keys<'a> {
        Keys { text }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.text.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }

    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// The keys as sent, separated by spaces.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }
}

/// The six classic storage commands, which are also the store's write modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCmd {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

impl StoreCmd {
    /// The command's name on the wire.
    pub fn name(self) -> &'static [u8] {
        match self {
            StoreCmd::Set => b"set",
            StoreCmd::Add => b"add",
            StoreCmd::Replace => b"replace",
            StoreCmd::Append => b"append",
            StoreCmd::Prepend => b"prepend",
            StoreCmd::Cas => b"cas",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Store<'a> {
    pub cmd: StoreCmd,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i32,
    /// Only for `cas`.
    pub cas: u64,
    pub value: &'a [u8],
    pub noreply: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Arith<'a> {
    pub incr: bool,
    pub key: &'a [u8],
    pub delta: u64,
    pub noreply: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Delete<'a> {
    pub key: &'a [u8],
    pub noreply: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Touch<'a> {
    pub key: &'a [u8],
    pub exptime: i32,
    pub noreply: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slabs {
    Reassign { src: i32, dst: i32 },
    Automove(u32),
}

/// `mg`, `md`, `ma`: a key (base64 if `flags.base64`) and flags.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub key: &'a [u8],
    pub flags: MetaFlags<'a>,
}

/// `ms`: key, flags and the data block.
#[derive(Debug, Clone, Copy)]
pub struct MetaSet<'a> {
    pub key: &'a [u8],
    pub flags: MetaFlags<'a>,
    pub value: &'a [u8],
}

/// mcrouter's `lease-set <key> <token> <flags> <exptime> <bytes> [noreply]`.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSet<'a> {
    pub key: &'a [u8],
    pub token: u64,
    pub flags: u32,
    pub exptime: i32,
    pub value: &'a [u8],
    pub noreply: bool,
}

#[cfg(test)]
mod tests;
