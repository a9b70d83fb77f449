//! A tiny client for tests: one store, one session, byte requests in, reply text out.

use cache_core::{
    exec::Session,
    protocol::Parser,
    store::{Store, StoreConfig},
};

pub(crate) struct Harness {
    pub(crate) store: Store<Vec<u8>>,
    pub(crate) now: u32,
    parser: Parser,
    session: Session,
}

impl Harness {
    pub(crate) fn new(arena: usize, cfg: StoreConfig) -> Harness {
        let Ok(store) = Store::new(vec![0u8; arena], cfg) else {
            panic!("store")
        };
        Harness {
            store,
            now: 1_700_000_000,
            parser: Parser::new(),
            session: Session::new(),
        }
    }

    pub(crate) fn small() -> Harness {
        Harness::new(16 << 20, StoreConfig::default())
    }

    /// Sends `req` (with `\r\n` already in it) and returns the reply as text.
    pub(crate) fn send(&mut self, req: &str) -> String {
        let mut out = Vec::new();
        let fed = self.session.feed(
            &self.parser,
            &mut self.store,
            req.as_bytes(),
            self.now,
            &mut out,
            &mut |_, _, _| {},
        );
        assert_eq!(
            fed.consumed,
            req.len(),
            "request not fully consumed: {req:?}"
        );
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends each (request, expected reply) pair in order.
    pub(crate) fn script(&mut self, steps: &[(&str, &str)]) {
        for (i, (req, want)) in steps.iter().enumerate() {
            assert_eq!(self.send(req), *want, "step {i}: {req:?}");
        }
    }
}
