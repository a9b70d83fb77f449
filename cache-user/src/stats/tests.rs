//! Exact-bytes tests of every `stats` group for one fixed input.

use super::*;

fn process() -> Process {
    Process {
        pid: 42,
        started: 1_000,
        threads: 2,
        max_connections: 1024,
        curr_connections: 3,
        total_connections: 9,
        rejected_connections: 1,
        tcp_port: 11211,
        udp_port: 0,
        listen: "127.0.0.1".into(),
        limit_maxbytes: 64 << 20,
        item_max: 1 << 20,
        growth_factor: 1.08,
        evictions_on: true,
        bytes_read: 100,
        bytes_written: 200,
        udp_refused: 0,
        bucket_epoch: 1,
        buckets_owned: 16384,
        bucket_refused: 3,
        bucket_refused_noreply: 1,
        engine: Engine {
            listen_disabled_num: 4,
            conns_stall_closed: 5,
            udp_replies_dropped: 6,
            event_loop_max_us: 7,
            reply_pool_lent: 8,
            input_pool_lent: 9,
        },
        xdp: Vec::new(),
    }
}

#[test]
fn xdp_counters_follow_kcache_s_own() {
    // With XDP on, its counters come last, before END, in the order given.
    let p = Process {
        xdp: vec![("xdp_hit", 7), ("xdp_hot_slots", 2)],
        ..process()
    };
    let mut out = Vec::new();
    write(b"", &p, &counters(), &classes(), 1_000, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.ends_with("STAT xdp_hit 7\r\nSTAT xdp_hot_slots 2\r\nEND\r\n"),
        "{text}"
    );
    // Without it, none.
    let mut out = Vec::new();
    write(b"", &process(), &counters(), &classes(), 1_000, &mut out);
    assert!(!String::from_utf8_lossy(&out).contains("xdp_"));
}

#[test]
fn xdp_answers_count_as_gets_and_hits() {
    // The engine saw 1 get (2 hits, 3 misses: the fixture's distinct values); XDP answered 40
    // keys in 7 requests. memcached counts per key, so cmd_get and get_hits gain 40 each,
    // get_misses nothing (XDP answers no miss), and xdp_hit still says 7 requests.
    let p = Process {
        xdp: vec![("xdp_hit", 7), ("xdp_miss", 5), ("xdp_hit_keys", 40)],
        ..process()
    };
    let mut out = Vec::new();
    write(b"", &p, &counters(), &classes(), 1_000, &mut out);
    let text = String::from_utf8_lossy(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    // (field, value: engine's plus XDP's where XDP answered)
    for (name, want) in [
        ("cmd_get", 1 + 40),
        ("get_hits", 2 + 40),
        ("get_misses", 3),
        ("xdp_hit", 7),
        ("xdp_miss", 5),
        ("xdp_hit_keys", 40),
    ] {
        assert_eq!(field(name), want.to_string(), "{name}");
    }
    // Without XDP the engine's counts are printed as they are (general_exact has the bytes).
    let mut out = Vec::new();
    write(b"", &process(), &counters(), &classes(), 1_000, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("STAT cmd_get 1\r\n") && text.contains("STAT get_hits 2\r\n"),
        "{text}"
    );
}

/// Every counter distinct, so a swapped field shows.
fn counters() -> Stats {
    Stats {
        cmd_get: 1,
        get_hits: 2,
        get_misses: 3,
        get_expired: 4,
        get_flushed: 5,
        cmd_set: 6,
        cmd_touch: 7,
        touch_hits: 8,
        touch_misses: 9,
        cmd_flush: 10,
        delete_hits: 11,
        delete_misses: 12,
        incr_hits: 13,
        incr_misses: 14,
        decr_hits: 15,
        decr_misses: 16,
        cas_hits: 17,
        cas_misses: 18,
        cas_badval: 19,
        store_too_large: 20,
        store_no_memory: 21,
        evictions: 22,
        evicted_unfetched: 23,
        reclaimed: 24,
        slab_reassign_evictions: 25,
        curr_items: 26,
        total_items: 27,
        bytes: 28,
        tombstones: 29,
        lease_grants: 30,
        lease_hot_misses: 31,
        stale_fills_refused: 32,
        hash_bytes: 33,
    }
}

/// Three classes: the first holds items, the second owns an emptied page, the last (the
/// one-page class, 1 MiB) is untouched.
fn classes() -> Vec<ClassStats> {
    vec![
        ClassStats {
            chunk_size: 96,
            chunks_per_page: 10922,
            pages: 2,
            used_chunks: 5,
            free_chunks: 21839,
            evictions: 7,
            reclaimed: 1,
            pages_moved_out: 1,
        },
        ClassStats {
            chunk_size: 2320,
            chunks_per_page: 451,
            pages: 1,
            used_chunks: 0,
            free_chunks: 451,
            evictions: 0,
            reclaimed: 0,
            pages_moved_out: 2,
        },
        ClassStats {
            chunk_size: 1 << 20,
            chunks_per_page: 1,
            ..ClassStats::default()
        },
    ]
}

fn reply(args: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let known = write(args, &process(), &counters(), &classes(), 1_010, &mut out);
    known.then(|| String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn groups() {
    for (args, want) in [
        // Plain `stats`, also with stray spaces.
        (&b""[..], Some(Group::General)),
        (b"  ", Some(Group::General)),
        (b"settings", Some(Group::Settings)),
        // Extra words are ignored, as by memcached.
        (b"items extra", Some(Group::Items)),
        (b"slabs 1", Some(Group::Slabs)),
        (b"  slabs", Some(Group::Slabs)),
        (b"sizes", Some(Group::Sizes)),
        (b"reset", Some(Group::Reset)),
        // Case matters.
        (b"ITEMS", None),
        // Groups kcache does not answer.
        (b"detail on", None),
        (b"conns", None),
        (b"cachedump 1 1", None),
        (b"settingsx", None),
    ] {
        assert_eq!(group(args), want, "{:?}", String::from_utf8_lossy(args));
    }
    // Unknown groups write nothing.
    let mut out = Vec::new();
    assert!(!write(
        b"bogus",
        &process(),
        &counters(),
        &classes(),
        0,
        &mut out
    ));
    assert!(out.is_empty());
}

#[test]
fn general_exact() {
    let mut out = Vec::new();
    let cpu = Cpu {
        user: (1, 2345),
        system: (0, 999_999),
    };
    general(&process(), &counters(), &classes(), 1_010, cpu, &mut out);
    let want = format!(
        "STAT pid 42\r\n\
         STAT uptime 10\r\n\
         STAT time 1010\r\n\
         STAT version {}\r\n\
         STAT pointer_size 64\r\n\
         STAT rusage_user 1.002345\r\n\
         STAT rusage_system 0.999999\r\n\
         STAT max_connections 1024\r\n\
         STAT curr_connections 3\r\n\
         STAT total_connections 9\r\n\
         STAT rejected_connections 1\r\n\
         STAT connection_structures 3\r\n\
         STAT cmd_get 1\r\n\
         STAT cmd_set 6\r\n\
         STAT cmd_flush 10\r\n\
         STAT cmd_touch 7\r\n\
         STAT get_hits 2\r\n\
         STAT get_misses 3\r\n\
         STAT get_expired 4\r\n\
         STAT get_flushed 5\r\n\
         STAT delete_misses 12\r\n\
         STAT delete_hits 11\r\n\
         STAT incr_misses 14\r\n\
         STAT incr_hits 13\r\n\
         STAT decr_misses 16\r\n\
         STAT decr_hits 15\r\n\
         STAT cas_misses 18\r\n\
         STAT cas_hits 17\r\n\
         STAT cas_badval 19\r\n\
         STAT touch_hits 8\r\n\
         STAT touch_misses 9\r\n\
         STAT store_too_large 20\r\n\
         STAT store_no_memory 21\r\n\
         STAT auth_cmds 0\r\n\
         STAT auth_errors 0\r\n\
         STAT bytes_read 100\r\n\
         STAT bytes_written 200\r\n\
         STAT limit_maxbytes 67108864\r\n\
         STAT accepting_conns 1\r\n\
         STAT listen_disabled_num 4\r\n\
         STAT time_in_listen_disabled_us 0\r\n\
         STAT threads 2\r\n\
         STAT conn_yields 0\r\n\
         STAT hash_bytes 33\r\n\
         STAT slabs_moved 3\r\n\
         STAT bytes 28\r\n\
         STAT curr_items 26\r\n\
         STAT total_items 27\r\n\
         STAT evicted_unfetched 23\r\n\
         STAT evictions 22\r\n\
         STAT reclaimed 24\r\n\
         STAT tombstones 29\r\n\
         STAT lease_grants 30\r\n\
         STAT lease_hot_misses 31\r\n\
         STAT stale_fills_refused 32\r\n\
         STAT slab_reassign_evictions 25\r\n\
         STAT udp_refused 0\r\n\
         STAT bucket_epoch 1\r\n\
         STAT buckets_owned 16384\r\n\
         STAT bucket_refused 3\r\n\
         STAT bucket_refused_noreply 1\r\n\
         STAT conns_stall_closed 5\r\n\
         STAT udp_replies_dropped 6\r\n\
         STAT event_loop_max_us 7\r\n\
         STAT reply_pool_lent 8\r\n\
         STAT input_pool_lent 9\r\n\
         END\r\n",
        cache_core::exec::VERSION
    );
    assert_eq!(String::from_utf8_lossy(&out), want);
    assert!(cache_core::exec::VERSION.starts_with("1.6.18-kcache-"));
}

#[test]
fn general_through_write() {
    // The real rusage, in memcached's `%ld.%06ld` form.
    let got = reply(b"").unwrap_or_default();
    let line = got
        .lines()
        .find(|l| l.starts_with("STAT rusage_user "))
        .unwrap_or_else(|| panic!("{got}"));
    let (secs, micros) = line["STAT rusage_user ".len()..]
        .split_once('.')
        .unwrap_or_else(|| panic!("{line}"));
    assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{line}");
    // Before `started` (a clock step back), uptime is 0, not a wrap.
    let mut out = Vec::new();
    let p = Process {
        started: 2_000,
        ..process()
    };
    write(b"", &p, &counters(), &classes(), 1_000, &mut out);
    assert!(String::from_utf8_lossy(&out).contains("STAT uptime 0\r\n"));
}

#[test]
fn settings_exact() {
    let want = "STAT maxbytes 67108864\r\n\
                STAT maxconns 1024\r\n\
                STAT tcpport 11211\r\n\
                STAT udpport 0\r\n\
                STAT inter 127.0.0.1\r\n\
                STAT evictions on\r\n\
                STAT domain_socket NULL\r\n\
                STAT growth_factor 1.08\r\n\
                STAT chunk_size 96\r\n\
                STAT num_threads 2\r\n\
                STAT num_threads_per_udp 2\r\n\
                STAT detail_enabled no\r\n\
                STAT cas_enabled yes\r\n\
                STAT binding_protocol ascii\r\n\
                STAT auth_enabled_sasl no\r\n\
                STAT auth_enabled_ascii no\r\n\
                STAT item_size_max 1048576\r\n\
                STAT maxconns_fast yes\r\n\
                STAT slab_reassign yes\r\n\
                STAT lru_crawler no\r\n\
                STAT flush_enabled yes\r\n\
                STAT dump_enabled no\r\n\
                STAT lru_maintainer_thread no\r\n\
                STAT lru_segmented no\r\n\
                STAT temp_lru no\r\n\
                STAT ssl_enabled no\r\n\
                END\r\n";
    assert_eq!(reply(b"settings").as_deref(), Some(want));
    // Evictions off, and memcached's two-decimal factor.
    let mut out = Vec::new();
    let p = Process {
        evictions_on: false,
        growth_factor: 1.25,
        ..process()
    };
    write(b"settings", &p, &counters(), &[], 0, &mut out);
    let got = String::from_utf8_lossy(&out);
    assert!(got.contains("STAT evictions off\r\n"), "{got}");
    assert!(got.contains("STAT growth_factor 1.25\r\n"), "{got}");
    // No classes, no chunk_size.
    assert!(!got.contains("chunk_size"), "{got}");
}

#[test]
fn items_exact() {
    // Only the class holding items, numbered from 1.
    let want = "STAT items:1:number 5\r\n\
                STAT items:1:evicted 7\r\n\
                STAT items:1:reclaimed 1\r\n\
                END\r\n";
    assert_eq!(reply(b"items").as_deref(), Some(want));
    // Nothing stored: just END, as memcached.
    let mut out = Vec::new();
    write(b"items", &process(), &counters(), &[], 0, &mut out);
    assert_eq!(out, b"END\r\n");
}

#[test]
fn slabs_exact() {
    // The classes owning pages; malloced is pages times the page (the last class's chunk).
    let want = "STAT 1:chunk_size 96\r\n\
                STAT 1:chunks_per_page 10922\r\n\
                STAT 1:total_pages 2\r\n\
                STAT 1:total_chunks 21844\r\n\
                STAT 1:used_chunks 5\r\n\
                STAT 1:free_chunks 21839\r\n\
                STAT 2:chunk_size 2320\r\n\
                STAT 2:chunks_per_page 451\r\n\
                STAT 2:total_pages 1\r\n\
                STAT 2:total_chunks 451\r\n\
                STAT 2:used_chunks 0\r\n\
                STAT 2:free_chunks 451\r\n\
                STAT active_slabs 2\r\n\
                STAT total_malloced 3145728\r\n\
                END\r\n";
    assert_eq!(reply(b"slabs").as_deref(), Some(want));
    // Nothing allocated: memcached's empty form.
    let mut out = Vec::new();
    write(b"slabs", &process(), &counters(), &[], 0, &mut out);
    assert_eq!(
        out,
        b"STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n"
    );
}

#[test]
fn sizes_and_reset() {
    assert_eq!(
        reply(b"sizes").as_deref(),
        Some("STAT sizes_status disabled\r\nEND\r\n")
    );
    assert_eq!(reply(b"reset").as_deref(), Some("RESET\r\n"));
}
