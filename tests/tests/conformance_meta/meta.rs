//! Meta protocol tables (memcached 1.6.18's replies).

use anyhow::Result;

use super::{run, Table};

#[test]
fn meta_get_and_set() -> Result<()> {
    const TABLE: &Table<'_> = &[
        // No-op.
        (b"mn\r\n", b"MN\r\n"),
        // A miss.
        (b"mg foo v\r\n", b"EN\r\n"),
        // A store takes CAS 1.
        (b"ms foo 3\r\nbar\r\n", b"HD\r\n"),
        (b"mg foo v\r\n", b"VA 3\r\nbar\r\n"),
        // A hit with no return flags.
        (b"mg foo\r\n", b"HD\r\n"),
        // Return flags come back in request order.
        (b"mg foo v c f s k\r\n", b"VA 3 c1 f0 s3 kfoo\r\nbar\r\n"),
        (b"mg foo k Oabc v\r\n", b"VA 3 kfoo Oabc\r\nbar\r\n"),
        // Client flags and TTL on store.
        (b"ms foo 2 F7 T0\r\nhi\r\n", b"HD\r\n"),
        (b"mg foo f v c\r\n", b"VA 2 f7 c2\r\nhi\r\n"),
        // Quiet mode: misses are silent, hits are not.
        (
            b"mg nope v q\r\nmg foo v q\r\nmn\r\n",
            b"VA 2\r\nhi\r\nMN\r\n",
        ),
        (b"mg nope v q k Ox\r\n", b""),
        // A quiet store is silent on success.
        (b"ms foo 3 q\r\nabc\r\n", b""),
        (b"mg foo s v\r\n", b"VA 3 s3\r\nabc\r\n"),
        // Binary data, CR LF inside.
        (b"ms bin 6\r\n\r\nEN\r\n\r\n", b"HD\r\n"),
        (b"mg bin v\r\n", b"VA 6\r\n\r\nEN\r\n\r\n"),
        // Zero-length value.
        (b"ms empty 0\r\n\r\n", b"HD\r\n"),
        (b"mg empty v s\r\n", b"VA 0 s0\r\n\r\n"),
        // base64 keys: Zm9v is "foo".
        (b"ms Zm9v 3 b\r\nxyz\r\n", b"HD\r\n"),
        (b"mg foo v\r\n", b"VA 3\r\nxyz\r\n"),
        (b"mg Zm9v b k v\r\n", b"VA 3 kZm9v b\r\nxyz\r\n"),
        // Touch on get.
        (b"mg foo T3600 v\r\n", b"VA 3\r\nxyz\r\n"),
        // A negative TTL stores an expired item.
        (b"ms gone 1 T-1\r\nx\r\n", b"HD\r\n"),
        (b"mg gone v\r\n", b"EN\r\n"),
    ];
    run(TABLE)
}

#[test]
fn meta_errors() -> Result<()> {
    let long_key = format!("mg {} v\r\n", "a".repeat(251));
    let huge = format!("ms foo 2000000 T0\r\n{}\r\n", "x".repeat(2_000_000));
    let table: &Table<'_> = &[
        // No key: too few tokens for any meta command.
        (b"mg\r\n", b"ERROR\r\n"),
        (b"mg \r\n", b"ERROR\r\n"),
        // Unknown flag.
        (b"mg foo v !\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        // Duplicate flag.
        (b"mg foo v v\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        // Key over 250 bytes.
        (
            long_key.as_bytes(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        // Bad base64.
        (b"mg !!!! b v\r\n", b"CLIENT_ERROR error decoding key\r\n"),
        // ms without a length.
        (b"ms foo\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        // Data longer than announced: the bytes past the count are read as a command.
        (
            b"ms foo 2\r\nabc\r\n",
            b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        ),
        // Non-numeric client flags: the data block is swallowed.
        (
            b"ms foo 1 Fx\r\na\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        // Over the item size limit (1 MB by default): the data is swallowed.
        (
            huge.as_bytes(),
            b"SERVER_ERROR object too large for cache\r\n",
        ),
        // Unknown meta command.
        (b"mz foo\r\n", b"ERROR\r\n"),
        // The connection is still in step.
        (b"mn\r\n", b"MN\r\n"),
    ];
    run(table)
}

#[test]
fn meta_set_modes_and_cas() -> Result<()> {
    const TABLE: &Table<'_> = &[
        // Append and prepend need an item. (With `N`, 1.6.18 still refuses; kcache follows
        // the newer protocol.txt and creates it: see `append_with_n_vivifies` below.)
        (b"ms k 1 MA\r\nx\r\n", b"NS\r\n"),
        (b"ms k 1 MP\r\nx\r\n", b"NS\r\n"),
        (b"ms k 1\r\nx\r\n", b"HD\r\n"),
        (b"ms k 1 MP\r\nz\r\n", b"HD\r\n"),
        (b"mg k v\r\n", b"VA 2\r\nzx\r\n"),
        // Add (E) refuses an existing item.
        (b"ms k 1 ME\r\ny\r\n", b"NS\r\n"),
        (b"ms new 1 ME\r\ny\r\n", b"HD\r\n"),
        // Replace (R) refuses a missing one.
        (b"ms none 1 MR\r\nr\r\n", b"NS\r\n"),
        (b"ms k 1 MR\r\nr\r\n", b"HD\r\n"),
        // Set (S), explicitly.
        (b"ms k 1 MS\r\ns\r\n", b"HD\r\n"),
        // An unknown mode.
        (
            b"ms k 1 MX\r\ns\r\n",
            b"CLIENT_ERROR invalid mode for ms M token\r\n",
        ),
        // Compare-and-swap: k holds CAS 5 now.
        (b"mg k c\r\n", b"HD c5\r\n"),
        (b"ms k 1 C4\r\nq\r\n", b"EX\r\n"),
        (b"ms k 1 C5\r\nq\r\n", b"HD\r\n"),
        (b"ms k 1 C5\r\nq\r\n", b"EX\r\n"),
        (b"ms nothere 1 C5\r\nq\r\n", b"NF\r\n"),
        (b"mg k v c\r\n", b"VA 1 c6\r\nq\r\n"),
        // Opaque and key echo on a store.
        (b"ms k 1 O99 k\r\nw\r\n", b"HD O99 kk\r\n"),
        // Quiet mode shows failures.
        (b"ms k 1 ME q\r\nw\r\n", b"NS\r\n"),
    ];
    run(TABLE)
}

#[test]
fn meta_delete() -> Result<()> {
    const TABLE: &Table<'_> = &[
        (b"md k\r\n", b"NF\r\n"),
        // Quiet mode hides HD only: a miss still says NF.
        (b"md k q\r\n", b"NF\r\n"),
        (b"ms k 1\r\na\r\n", b"HD\r\n"),
        (b"md k\r\n", b"HD\r\n"),
        (b"mg k v\r\n", b"EN\r\n"),
        // Quiet success is silent.
        (b"ms k 1\r\na\r\n", b"HD\r\n"),
        (b"md k q\r\n", b""),
        (b"mg k v\r\n", b"EN\r\n"),
        // Delete with a CAS compare: k takes CAS 3.
        (b"ms k 1\r\na\r\n", b"HD\r\n"),
        (b"md k C2\r\n", b"EX\r\n"),
        (b"md k C3\r\n", b"HD\r\n"),
        // Opaque and key echo on a miss.
        (b"md k Oxy k\r\n", b"NF Oxy kk\r\n"),
    ];
    run(TABLE)
}

#[test]
fn meta_arithmetic() -> Result<()> {
    const TABLE: &Table<'_> = &[
        (b"ma n\r\n", b"NF\r\n"),
        (b"ma n q\r\n", b"NF\r\n"),
        // Vivify with an initial value (CAS 1).
        (b"ma n N0 J10 v\r\n", b"VA 2\r\n10\r\n"),
        (b"ma n v\r\n", b"VA 2\r\n11\r\n"),
        (b"ma n MD D5 v\r\n", b"VA 1\r\n6\r\n"),
        (b"ma n M- D100 v\r\n", b"VA 1\r\n0\r\n"),
        (b"ma n M+ D7 v c\r\n", b"VA 1 c5\r\n7\r\n"),
        (b"ma n MI\r\n", b"HD\r\n"),
        (b"ma n q\r\n", b""),
        // Decrements rewrite in place: "11" became "6 " and stays two bytes wide.
        (b"mg n v\r\n", b"VA 2\r\n9 \r\n"),
        // Wrap at 2^64.
        (b"ma n D18446744073709551615 v\r\n", b"VA 1\r\n8\r\n"),
        (b"mg n v\r\n", b"VA 2\r\n8 \r\n"),
        // Not a number.
        (b"ms s 3\r\nabc\r\n", b"HD\r\n"),
        (
            b"ma s\r\n",
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        // ma words every flag error the same way.
        (
            b"ma n Dx\r\n",
            b"CLIENT_ERROR invalid or duplicate flag\r\n",
        ),
        (
            b"ma n MX\r\n",
            b"CLIENT_ERROR invalid mode for ma M token\r\n",
        ),
    ];
    run(TABLE)
}

/// memcached 1.6's lease exchange, as FACTS.md records it: a miss with `N` vivifies an empty item
/// and hands the caller the win (`W`); later callers see `Z` (someone is filling). `md I` marks
/// an item stale (`X`) instead of removing it and the next reader wins the refill.
#[test]
fn meta_lease_exchange() -> Result<()> {
    const TABLE: &Table<'_> = &[
        // The first miss wins and gets an empty placeholder (CAS 1, no TTL to report yet).
        (b"mg foo v c t N30\r\n", b"VA 0 c1 t-1 W\r\n\r\n"),
        // A second caller is told a fill is under way. (No `t`: the clock may have ticked.)
        (b"mg foo v c N30\r\n", b"VA 0 c1 Z\r\n\r\n"),
        // The winner fills.
        (b"ms foo 3 T30\r\nbar\r\n", b"HD\r\n"),
        (b"mg foo v c\r\n", b"VA 3 c2\r\nbar\r\n"),
        // Invalidate: the item stays, stale, with a new CAS.
        (b"md foo I T30\r\n", b"HD\r\n"),
        (b"mg foo v c\r\n", b"VA 3 c3 X W\r\nbar\r\n"),
        (b"mg foo v c\r\n", b"VA 3 c3 Z X\r\nbar\r\n"),
        // The refill replaces the stale item.
        (b"ms foo 3 T30\r\nnew\r\n", b"HD\r\n"),
        (b"mg foo v c\r\n", b"VA 3 c4\r\nnew\r\n"),
    ];
    run(TABLE)
}

/// kcache-only: newer memcached's `N<ttl>` on `ms` in append mode creates the item on a miss
/// (memcached 1.6.18 predates it and answers `NS`).
#[test]
fn append_with_n_vivifies() -> Result<()> {
    let target = kcache_tests::Target::from_env();
    if target.skips_kcache_only("ms append with N (newer protocol.txt)") {
        return Ok(());
    }
    const TABLE: &Table<'_> = &[
        (b"ms k 1 MA N0\r\nx\r\n", b"HD\r\n"),
        (b"ms k 1 MA N0\r\ny\r\n", b"HD\r\n"),
        (b"mg k v t\r\n", b"VA 2 t-1\r\nxy\r\n"),
    ];
    run(TABLE)
}

/// `me <key> b` finds a base64 key whichever shard holds it (two threads, so some of these keys
/// live on the other one).
#[test]
fn meta_debug_base64_key_on_any_shard() -> Result<()> {
    let server = kcache_tests::Server::start(
        kcache_tests::Target::from_env(),
        &kcache_tests::Config::default().threads(2),
    )?;
    let mut conn = server.connect()?;
    // base64 of "k0".."k7"
    for key in [
        "azA=", "azE=", "azI=", "azM=", "azQ=", "azU=", "azY=", "azc=",
    ] {
        anyhow::ensure!(conn.call(format!("ms {key} 1 b\r\nx\r\n").as_bytes())? == b"HD\r\n");
        let reply = conn.call(format!("me {key} b\r\n").as_bytes())?;
        anyhow::ensure!(
            reply.starts_with(format!("ME {key} exp=-1 ").as_bytes()),
            "me {key} b: {}",
            kcache_tests::show(&reply, 200)
        );
    }
    Ok(())
}
