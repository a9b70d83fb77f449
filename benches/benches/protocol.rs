//! Parsing single requests and encoding a reply, without a store: the protocol's own cost per
//! request. Inputs are the shapes a real client sends: 16-byte keys, a 10-key multiget, a 100-byte
//! value, a meta get asking for value, CAS, flags and TTL.

use std::hint::black_box;

use cache_core::protocol::{encode, Parser, Request};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kcache_benches::{key, VALUE};

fn parse(c: &mut Criterion) {
    let parser = Parser::new();
    let k = key(42);
    let k = std::str::from_utf8(&k).unwrap_or_default();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));

    let get = format!("get {k}\r\n").into_bytes();
    g.bench_function("get/key16", |b| {
        b.iter(|| parser.parse(black_box(&get)).map(|p| p.consumed))
    });

    let keys: Vec<String> = (0..10)
        .map(|i| String::from_utf8_lossy(&key(i * 7919)).into())
        .collect();
    let multiget = format!("get {}\r\n", keys.join(" ")).into_bytes();
    g.bench_function("multiget/10x16", |b| {
        b.iter(|| {
            // The executor walks every key, so the walk is part of the cost.
            let Ok(p) = parser.parse(black_box(&multiget)) else {
                return 0;
            };
            let Request::Get(get) = p.request else {
                return 0;
            };
            get.keys.iter().map(|k| black_box(k).len()).sum::<usize>()
        })
    });

    let mut set = format!("set {k} 0 0 100\r\n").into_bytes();
    set.extend((0..100u8).map(|i| b'a' + i % 26));
    set.extend_from_slice(b"\r\n");
    g.bench_function("set/value100", |b| {
        b.iter(|| parser.parse(black_box(&set)).map(|p| p.consumed))
    });

    let mg = format!("mg {k} v c f t\r\n").into_bytes();
    g.bench_function("mg/key16", |b| {
        b.iter(|| parser.parse(black_box(&mg)).map(|p| p.consumed))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let k = key(42);
    let mut out = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("value/32", |b| {
        b.iter(|| {
            out.clear();
            encode::value(
                &mut out,
                black_box(&k),
                black_box(0),
                black_box(VALUE),
                None,
            );
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
