//! The pipeline driven by the in-memory host ([`crate::pipeline::sim`]): replies in order
//! across shards, and the memory a connection holds bounded whatever it sends or fails to read.

use crate::pipeline::{
    route::shard_of,
    sim::{Config, Sim},
    Limits,
};

const NOW: u32 = 1_700_000_000;

/// A key named `{prefix}{n}` that lives on shard `shard` of `shards` (computed, not assumed).
fn key_on(prefix: &str, shard: usize, shards: usize, n: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| shard_of(k.as_bytes(), shards) == shard)
        .nth(n)
        .unwrap_or_default()
}

fn sim(shards: usize) -> Sim {
    let cfg = Config {
        shards,
        ..Config::default()
    };
    Sim::new(&cfg, NOW).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `script` on a new connection of shard 0 and returns what the client read.
fn exchange(s: &mut Sim, script: &[u8]) -> Vec<u8> {
    let c = s.connect(0);
    s.send(c, script);
    s.run();
    s.take_read(c)
}

fn set(key: &str, value: &str) -> String {
    format!("set {key} 0 0 {}\r\n{value}\r\n", value.len())
}

#[test]
fn replies_are_the_same_on_one_shard_and_on_three() {
    // Keys on every shard; the reads mix them in an order that crosses shards both ways.
    let keys: Vec<String> = (0..3)
        .flat_map(|s| (0..2).map(move |n| key_on("k", s, 3, n)))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(shard_of(k.as_bytes(), 3), i / 2, "{k}");
    }
    let mut script = String::new();
    for (i, k) in keys.iter().enumerate() {
        script += &set(k, &format!("v{i}"));
    }
    let mixed = format!(
        "{} {} {} {} missing {}",
        keys[4], keys[0], keys[2], keys[5], keys[1]
    );
    script += &format!("get {mixed}\r\ngets {mixed}\r\n");
    script += &format!("delete {}\r\nincr {} 1\r\n", keys[2], keys[3]);
    script += &format!("mg {} v t\r\nmn\r\n", keys[4]);
    script += &format!("lease-get {} {}\r\n", keys[0], keys[3]);
    script += &format!("get {mixed}\r\nversion\r\n");
    let one = exchange(&mut sim(1), script.as_bytes());
    let three = exchange(&mut sim(3), script.as_bytes());
    // CAS values differ between the layouts (each shard counts its own), so compare without.
    let strip_cas = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(|l| match l.strip_prefix("VALUE ") {
                Some(rest) => rest.split(' ').take(3).collect::<Vec<_>>().join(" "),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip_cas(&one), strip_cas(&three));
    let text = String::from_utf8_lossy(&three);
    assert!(text.contains(&format!(
        "VALUE {} 0 2\r\nv4\r\nVALUE {} 0 2\r\nv0\r\n",
        keys[4], keys[0]
    )));
    assert_eq!(text.matches("END\r\n").count(), 4, "{text}");
}

#[test]
fn a_pipeline_mixing_shards_keeps_its_order() {
    let mut s = sim(2);
    let (a, b) = (key_on("a", 0, 2, 0), key_on("b", 1, 2, 0));
    let mut script = String::new();
    let mut want = String::new();
    for i in 0..200 {
        let k = if i % 3 == 0 { &a } else { &b };
        script += &set(k, &i.to_string());
        want += "STORED\r\n";
        script += &format!("get {k}\r\n");
        want += &format!("VALUE {k} 0 {}\r\n{i}\r\nEND\r\n", i.to_string().len());
        script += "mn\r\n";
        want += "MN\r\n";
    }
    let got = exchange(&mut s, script.as_bytes());
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[test]
fn a_giant_multiget_is_made_as_the_client_reads() {
    // One 1 MB value and `get` naming it 300 times: 300 MB of replies for a 600-byte request
    // (the live test sends 1500).
    let cfg = Config {
        shards: 2,
        arena: 8 << 20,
        window: 256 << 10,
        ..Config::default()
    };
    let mut s = Sim::new(&cfg, NOW).unwrap_or_else(|e| panic!("{e}"));
    let big = "x".repeat(1_000_000);
    // On the other shard from the connection, so every copy comes from there.
    let k = key_on("big", 1, 2, 0);
    let setter = s.connect(1);
    s.send(setter, set(&k, &big).as_bytes());
    s.run();
    assert_eq!(s.take_read(setter), b"STORED\r\n");
    let c = s.connect(0);
    s.set_reading(c, false);
    let line = format!("get{}\r\n", format!(" {k}").repeat(300));
    s.send(c, line.as_bytes());
    s.run();
    // Not reading: the connection holds at most its cap, the pool at most what it lent it.
    let cap = cfg.limits.reply_max;
    assert!(s.held(c) <= cap, "held {} > {cap}", s.held(c));
    assert!(s.core(0).replies.lent() <= cap);
    // Another client on the same shard is served meanwhile.
    let other = s.connect(0);
    s.send(other, b"set small 0 0 1\r\nx\r\nget small\r\n");
    s.run();
    assert_eq!(
        s.take_read(other),
        b"STORED\r\nVALUE small 0 1\r\nx\r\nEND\r\n"
    );
    // Reading, it gets every copy, whole and in order, then END.
    s.set_reading(c, true);
    let block = format!("VALUE {k} 0 1000000\r\n{big}\r\n");
    let mut read = Vec::new();
    loop {
        s.run();
        let more = s.take_read(c);
        if more.is_empty() {
            break;
        }
        read.extend_from_slice(&more);
        assert!(s.held(c) <= cap);
    }
    let mut got = 0;
    let mut rest = &read[..];
    while let Some(after) = rest.strip_prefix(block.as_bytes()) {
        rest = after;
        got += 1;
    }
    let tail = rest;
    assert_eq!(got, 300);
    assert_eq!(tail, b"END\r\n");
    assert_eq!((s.held(c), s.core(0).replies.lent()), (0, 0));
}

#[test]
fn clients_that_do_not_read_cannot_exhaust_the_shard() {
    // A small pool: four non-reading connections with 200 KB replies use it up.
    let cfg = Config {
        shards: 2,
        arena: 8 << 20,
        reply_pool: 600 << 10,
        window: 16 << 10,
        ..Config::default()
    };
    let mut s = Sim::new(&cfg, NOW).unwrap_or_else(|e| panic!("{e}"));
    let v = "y".repeat(200_000);
    let keys: Vec<String> = (0..2).map(|sh| key_on("v", sh, 2, 0)).collect();
    let c = s.connect(0);
    for k in &keys {
        s.send(c, set(k, &v).as_bytes());
    }
    s.run();
    assert_eq!(s.take_read(c), b"STORED\r\nSTORED\r\n");
    let hogs: Vec<usize> = (0..4)
        .map(|_| {
            let h = s.connect(0);
            s.set_reading(h, false);
            s.send(
                h,
                format!("get{}\r\n", format!(" {} {}", keys[0], keys[1]).repeat(50)).as_bytes(),
            );
            h
        })
        .collect();
    s.run();
    let lent = s.core(0).replies.lent();
    assert!(lent <= cfg.reply_pool, "pool lent {lent}");
    for &h in &hogs {
        assert!(s.held(h) <= cfg.limits.reply_max);
    }
    // Small replies need no pool: a fresh client is answered at once.
    let small = s.connect(0);
    s.send(
        small,
        format!("get {} nothing\r\nmn\r\n", keys[1]).as_bytes(),
    );
    s.send(small, b"set a 0 0 1\r\n1\r\nget a\r\n");
    s.run();
    let got = s.take_read(small);
    // The 200 KB value needs the pool the hogs hold: the read waits its turn...
    assert!(
        got.is_empty() || got.starts_with(b"VALUE"),
        "{}",
        String::from_utf8_lossy(&got[..got.len().min(100)])
    );
    // ...and when the hogs go, every reply arrives in order.
    for &h in &hogs {
        s.set_reading(h, true);
    }
    let mut got = got;
    for _ in 0..100 {
        s.run();
        got.extend(s.take_read(small));
        for &h in &hogs {
            s.take_read(h);
        }
    }
    let want = format!(
        "VALUE {} 0 200000\r\n{v}\r\nEND\r\nMN\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nEND\r\n",
        keys[1]
    );
    assert_eq!(String::from_utf8_lossy(&got), want);
    assert_eq!(s.core(0).replies.lent(), 0);
}

#[test]
fn values_that_cannot_get_memory_are_refused_like_memcached() {
    let cfg = Config {
        shards: 2,
        input_pool: 3 << 20,
        ..Config::default()
    };
    let mut s = Sim::new(&cfg, NOW).unwrap_or_else(|e| panic!("{e}"));
    // Ten clients each send the first half of a 1 MB value and stall.
    let half = vec![b'z'; 500_000];
    let stalled: Vec<usize> = (0..10)
        .map(|i| {
            let c = s.connect(0);
            s.send(c, format!("set p{i} 0 0 1000000\r\n").as_bytes());
            s.send(c, &half);
            c
        })
        .collect();
    s.run();
    // Two fit the 3 MB input pool (beyond each one's 16 KB); the rest were refused at once.
    let lent = s.core(0).input.lent();
    assert!(lent <= 3 << 20, "{lent}");
    let mut refused = 0;
    for &c in &stalled {
        let r = s.take_read(c);
        if r == b"SERVER_ERROR out of memory storing object\r\n" {
            refused += 1;
            // The rest of its block is swallowed, not read as commands.
            assert_eq!(s.unread_input(c), 0);
        } else {
            assert_eq!(r, b"", "{}", String::from_utf8_lossy(&r));
        }
    }
    assert_eq!(refused, 10 - (3 << 20) / (1_000_002 + 20 - (16 << 10)));
    // The refused ones go on: the rest of their value vanishes, the next command runs.
    let c = stalled[9];
    s.send(c, &half);
    s.send(c, b"\r\nget p9\r\n");
    s.run();
    assert_eq!(s.take_read(c), b"END\r\n");
    // A client finishing its value is stored and gives its input bytes back.
    let c = stalled[0];
    s.send(c, &half);
    s.send(c, b"\r\n");
    s.run();
    assert_eq!(s.take_read(c), b"STORED\r\n");
}

#[test]
fn a_datagram_reply_is_capped_before_it_is_made() {
    let cfg = Config {
        shards: 2,
        limits: Limits {
            datagram_max: 64 << 10,
            ..Limits::new(1 << 20, 1 << 20)
        },
        ..Config::default()
    };
    let mut s = Sim::new(&cfg, NOW).unwrap_or_else(|e| panic!("{e}"));
    let k = key_on("d", 1, 2, 0);
    let c = s.connect(0);
    s.send(c, set(&k, &"q".repeat(30_000)).as_bytes());
    s.run();
    assert_eq!(s.take_read(c), b"STORED\r\n");
    let d = s.connect_datagram(0);
    s.send(d, format!("get {k} {k} {k} {k}\r\n").as_bytes());
    s.run();
    assert_eq!(s.take_read(d), b"SERVER_ERROR reply too large for UDP\r\n");
    assert_eq!(s.core(0).replies.lent(), 0);
    // Two copies fit.
    let d = s.connect_datagram(0);
    s.send(d, format!("get {k} {k}\r\n").as_bytes());
    s.run();
    assert_eq!(s.take_read(d).len(), 2 * (30_018 + k.len()) + 5);
}

#[test]
fn flush_all_answers_once_every_shard_applied_it() {
    let mut s = sim(3);
    let keys: Vec<String> = (0..3).map(|sh| key_on("f", sh, 3, 0)).collect();
    let writer = s.connect(0);
    for k in &keys {
        s.send(writer, set(k, "old").as_bytes());
    }
    s.run();
    assert_eq!(s.take_read(writer), b"STORED\r\nSTORED\r\nSTORED\r\n");
    // The flush's OK, then a read on another connection of another shard: nothing old.
    s.send(writer, b"flush_all\r\n");
    s.run();
    assert_eq!(s.take_read(writer), b"OK\r\n");
    let reader = s.connect(2);
    s.send(
        reader,
        format!("get {} {} {}\r\n", keys[0], keys[1], keys[2]).as_bytes(),
    );
    s.run();
    assert_eq!(s.take_read(reader), b"END\r\n");
}

#[test]
fn big_values_on_another_shard_are_asked_for_again_with_room() {
    let mut s = sim(2);
    let k = key_on("r", 1, 2, 0);
    let v = "w".repeat(100_000);
    let script = format!("{}get {k}\r\nmg {k} v s\r\nget {k} {k}\r\n", set(&k, &v));
    let got = exchange(&mut s, script.as_bytes());
    let block = format!("VALUE {k} 0 100000\r\n{v}\r\n");
    let want = format!("STORED\r\n{block}END\r\nVA 100000 s100000\r\n{v}\r\n{block}{block}END\r\n");
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[test]
fn a_read_asked_again_still_sees_only_what_came_before_it() {
    // Values bigger than a first grant, on the other shard: each read is asked twice. A write of
    // the same key pipelined right after must not be seen by it; a read after the write must.
    let mut s = sim(2);
    let (k, l) = (key_on("h", 1, 2, 0), key_on("i", 1, 2, 1));
    let local = key_on("j", 0, 2, 0);
    let old = "o".repeat(50_000);
    let script = format!(
        "{}{}{}get {k}\r\n{}get {k}\r\nget {local} {l} {local}\r\n{}{}get {l} {local}\r\n",
        set(&k, &old),
        set(&l, &old),
        set(&local, &old),
        set(&k, "new"),
        set(&l, "new"),
        set(&local, "new"),
    );
    let got = exchange(&mut s, script.as_bytes());
    let block = |key: &str, v: &str| format!("VALUE {key} 0 {}\r\n{v}\r\n", v.len());
    let want = [
        "STORED\r\nSTORED\r\nSTORED\r\n".to_owned(),
        block(&k, &old) + "END\r\n",
        "STORED\r\n".to_owned(),
        block(&k, "new") + "END\r\n",
        block(&local, &old) + &block(&l, &old) + &block(&local, &old) + "END\r\n",
        "STORED\r\nSTORED\r\n".to_owned(),
        block(&l, "new") + &block(&local, "new") + "END\r\n",
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(&got), want);
}
