//! Fuzz target for a client stream run against a store: `Session::feed` must not panic on any
//! bytes, must never claim more input than it was given, and must stop only where the parser
//! needs more bytes (or the connection closes).
//!
//! One small store lives across inputs, as a server's does across connections, so later inputs
//! meet the items, leases, tombstones and evictions earlier ones left. A crash that needs that
//! state may not reproduce from its input alone: rerun with `-runs=` over the corpus to find it.
#![no_main]

use std::cell::RefCell;

use cache_core::{
    exec::Session,
    protocol::{ParseError, Parser},
    store::{Store, StoreConfig},
};
use libfuzzer_sys::fuzz_target;

const NOW: u32 = 1_700_000_000;
const ITEM_MAX: usize = 64 * 1024;

thread_local! {
    static STORE: RefCell<Option<Store<Vec<u8>>>> = RefCell::new(
        Store::new(
            vec![0u8; 4 * 1024 * 1024],
            StoreConfig { page_size: 64 * 1024, item_max: ITEM_MAX, ..StoreConfig::default() },
        )
        .ok(),
    );
}

fuzz_target!(|data: &[u8]| {
    let parser = Parser::new().item_max(ITEM_MAX);
    STORE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let Some(store) = cell.as_mut() else {
            panic!("the fuzz store could not be created");
        };
        // The first byte picks the clock, so expiry and TTLs are reached without waiting.
        let now = NOW + u32::from(data.first().copied().unwrap_or(0) % 8) * 600;
        let mut out = Vec::new();
        let mut session = Session::new();
        let fed = session.feed(&parser, store, data, now, &mut out, &mut |_, _, out| {
            out.extend_from_slice(b"END\r\n");
        });
        assert!(
            fed.consumed <= data.len(),
            "consumed {} of {}",
            fed.consumed,
            data.len()
        );
        if !fed.close && fed.consumed < data.len() {
            let rest = parser.parse(&data[fed.consumed..]);
            assert_eq!(
                rest.err(),
                Some(ParseError::Incomplete),
                "feed stopped before a whole request"
            );
        }
    });
});
