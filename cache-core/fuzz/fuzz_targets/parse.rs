//! Fuzz target for the request parser. Placeholder body: it hashes the input until the protocol
//! parser lands; the protocol owner replaces it with parse-and-check-invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cache_core::bucket::khash(data);
});
