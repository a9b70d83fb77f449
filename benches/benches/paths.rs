//! Every other per-request path the server runs, each parsed, executed and answered through the
//! engine's request pipeline (one connection on a one-shard core) against a 100k-item store (the `cargo xtask bench` working set): a meta get, a
//! 24-key multiget, an mcrouter lease-get that hits, a `set` with and without `noreply`, a `delete`
//! and re-set, and the UDP frame work around a request (decode, split a reply into datagrams).
//! Also the key → virtual bucket hash every routed request pays. Filling the store is not timed;
//! each bench checks its last reply so a wrong path cannot look fast.

use std::{hint::black_box, time::Duration};

use cache_core::{bucket, protocol::udp, store::StoreConfig};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use kcache_benches::{filled_store, key, shuffled, Line, VALUE};

/// The working set of `cargo xtask bench`.
const ITEMS: usize = 100_000;
const ARENA: usize = 64 << 20;

/// Benches `name` over `requests` in turn, then checks the reply to the last one sent.
fn bench_requests(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    line: &mut Line,
    name: &str,
    requests: &[Vec<u8>],
    check: impl Fn(&[u8], &[u8]) -> bool,
) {
    let mut out = Vec::new();
    let mut last = &requests[0][..];
    let mut reqs = requests.iter().cycle();
    g.bench_function(name, |b| {
        b.iter(|| {
            last = reqs.next().map_or(&[][..], |r| &r[..]);
            black_box(line.request(black_box(last)).len())
        })
    });
    if last != &requests[0][..] {
        out = line.request(last).to_vec();
    }
    // Only when the bench ran (a filter may skip it).
    if !out.is_empty() || last != &requests[0][..] {
        assert!(
            check(last, &out),
            "{name}: reply {:?} to {:?}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(last)
        );
    }
}

fn paths(c: &mut Criterion) {
    let cfg = StoreConfig {
        index_capacity: 1 << 18,
        ..StoreConfig::default()
    };
    let mut line = match filled_store(ITEMS, ARENA, cfg) {
        Ok(s) => Line::new(s),
        Err(e) => panic!("filling the bench store: {e}"),
    };
    let order = shuffled(ITEMS);
    let keys: Vec<String> = order
        .iter()
        .map(|&i| String::from_utf8_lossy(&key(i)).into_owned())
        .collect();
    let each = |f: &dyn Fn(&str) -> String| -> Vec<Vec<u8>> {
        keys.iter().map(|k| f(k).into_bytes()).collect()
    };

    let mut g = c.benchmark_group("paths");
    g.throughput(Throughput::Elements(1));
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    let mg = each(&|k| format!("mg {k} v c f t\r\n"));
    bench_requests(&mut g, &mut line, "mg_hit", &mg, |_, out| {
        out.starts_with(b"VA 32 ") && out.ends_with(b"\r\n")
    });

    let multiget: Vec<Vec<u8>> = keys
        .chunks(24)
        .filter(|c| c.len() == 24)
        .map(|c| format!("get {}\r\n", c.join(" ")).into_bytes())
        .collect();
    bench_requests(&mut g, &mut line, "multiget24_hit", &multiget, |_, out| {
        out.split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"VALUE "))
            .count()
            == 24
            && out.ends_with(b"END\r\n")
    });

    let lease = each(&|k| format!("lease-get {k}\r\n"));
    bench_requests(&mut g, &mut line, "lease_get_hit", &lease, |_, out| {
        out.starts_with(b"VALUE ") && out.ends_with(b"END\r\n")
    });

    let value = String::from_utf8_lossy(VALUE).into_owned();
    let set = each(&|k| format!("set {k} 0 0 32\r\n{value}\r\n"));
    bench_requests(&mut g, &mut line, "set", &set, |_, out| {
        out == b"STORED\r\n"
    });
    let set_noreply = each(&|k| format!("set {k} 0 0 32 noreply\r\n{value}\r\n"));
    bench_requests(&mut g, &mut line, "set_noreply", &set_noreply, |_, out| {
        out.is_empty()
    });

    // A delete must find something, so each request deletes a key and stores it back.
    let delete_set = each(&|k| format!("delete {k}\r\nset {k} 0 0 32\r\n{value}\r\n"));
    bench_requests(
        &mut g,
        &mut line,
        "delete_and_set",
        &delete_set,
        |_, out| out == b"DELETED\r\nSTORED\r\n",
    );
    g.finish();

    let s = line.store().stats();
    assert_eq!(
        (s.curr_items, s.evictions),
        (ITEMS as u64, 0),
        "working set changed"
    );

    frames(c, &keys);
}

/// UDP framing around a request, and the routing hash.
fn frames(c: &mut Criterion, keys: &[String]) {
    let mut g = c.benchmark_group("udp");
    g.throughput(Throughput::Elements(1));
    let datagram = [
        &[0x12, 0x34, 0, 0, 0, 1, 0, 0][..],
        b"get key:000000000042\r\n",
    ]
    .concat();
    g.bench_function("decode_request", |b| {
        b.iter(|| udp::decode_request(black_box(&datagram)).map(|(h, p)| (h.request_id, p.len())))
    });
    for len in [64usize, 5000] {
        let reply = vec![b'x'; len];
        g.bench_function(format!("split_reply/{len}"), |b| {
            b.iter(|| {
                let mut sent = 0;
                let n = udp::split_reply(7, black_box(&reply), |d| sent += black_box(d).len());
                (n, sent)
            })
        });
        let mut sent = 0;
        assert_eq!(
            udp::split_reply(7, &reply, |d| sent += d.len() - 8),
            Ok(udp::datagrams_for(len).unwrap_or(0))
        );
        assert_eq!(sent, len);
    }
    g.finish();

    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    let mut ks = keys.iter().cycle();
    g.bench_function("vbucket/key16", |b| {
        b.iter(|| {
            let k = ks.next().map_or(&[][..], |k| k.as_bytes());
            bucket::vbucket(black_box(k))
        })
    });
    g.finish();
}

criterion_group!(benches, paths);
criterion_main!(benches);
