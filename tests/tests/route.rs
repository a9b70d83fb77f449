//! `kcache route` over live servers: three kcache nodes (or memcached 1.6 ones) behind one
//! router, driven by real clients (memccapable) and raw pipelined streams. Where a test says
//! keys live on different servers, it computes where each key lives (cache-core's ketama, the
//! same code the router runs) and checks it on the servers themselves.

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use anyhow::{ensure, Context, Result};
use cache_core::ketama::{Continuum, KeyHash, Node};
use kcache_tests::{show, tools, Config, Server, Target};

/// Three servers of `target` and a router in front of them (its configuration's path kept
/// alive with the router).
struct Cluster {
    nodes: Vec<Server>,
    router: Server,
    ring: Continuum,
    _config: TempFile,
    spool: TempFile,
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory path for a router's delete spool (made by the router, removed on drop).
fn spool_dir() -> Result<TempFile> {
    let f = temp_file("spool", "")?;
    std::fs::remove_file(&f.0)?;
    Ok(f)
}

fn temp_file(name: &str, text: &str) -> Result<TempFile> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    let path = std::env::temp_dir().join(format!("kcache-{pid}-{n}-{name}"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(TempFile(path))
}

/// The `servers` lines of a pool of `nodes`, twemproxy-style, and their ketama circle.
fn pool(nodes: &[Server]) -> (String, Continuum) {
    let names: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.addr().port()))
        .collect();
    let lines = names
        .iter()
        .map(|n| format!("\"{n}:1\""))
        .collect::<Vec<_>>()
        .join(", ");
    let ring = Continuum::new(
        &names
            .iter()
            .map(|n| Node {
                name: n.clone(),
                weight: 1,
            })
            .collect::<Vec<_>>(),
    );
    (lines, ring)
}

fn cluster(target: Target, flush_all: bool) -> Result<Cluster> {
    cluster_with(target, flush_all, "timeout_ms = 2000\n")
}

/// [`cluster`], with `pool` added to the pool's settings.
fn cluster_with(target: Target, flush_all: bool, pool_lines: &str) -> Result<Cluster> {
    let nodes = (0..3)
        .map(|_| Server::start(target, &node_config()))
        .collect::<Result<Vec<_>>>()?;
    let (servers, ring) = pool(&nodes);
    let spool = spool_dir()?;
    let text = format!(
        "flush_all = {flush_all}\nspool_dir = \"{}\"\n\n[pools.main]\nkind = \"hash\"\nhash = \"md5\"\n\
         servers = [{servers}]\n{pool_lines}",
        spool.0.display()
    );
    let config = temp_file(&format!("route-{target}.toml"), &text)?;
    let router = Server::start_router(&config.0, 2)?;
    Ok(Cluster {
        nodes,
        router,
        ring,
        _config: config,
        spool,
    })
}

fn node_config() -> Config {
    Config::default().threads(1).memory_mb(64)
}

/// A `stats` (or `stats <group>`) field of the router.
fn stat(r: &mut kcache_tests::Conn, group: &str, name: &str) -> Result<String> {
    let text =
        String::from_utf8_lossy(&r.call(format!("stats {group}\r\n").trim_start().as_bytes())?)
            .into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")).map(str::to_owned))
        .with_context(|| format!("no {name} in stats {group}:\n{text}"))
}

/// Runs `step` until it returns true, failing with `what()` after 5 s.
fn within_5s(what: impl Fn() -> String, mut step: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !step()? {
        ensure!(std::time::Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Sets `key` (on the server at `addr`, just killed) through the router until the router has
/// marked that server hard-TKO'd; every set meanwhile must fail.
fn until_knocked_out(r: &mut kcache_tests::Conn, key: &str, addr: &str, c: &Cluster) -> Result<()> {
    within_5s(
        || format!("{addr} never marked down\n{}", c.context()),
        || {
            let got = r.call(format!("set {key} 0 0 1\r\nb\r\n").as_bytes())?;
            ensure!(
                got.starts_with(b"SERVER_ERROR "),
                "set on a killed server: {}",
                show(&got, 200)
            );
            Ok(stat(r, "servers", addr)?.starts_with("hard_tko"))
        },
    )
}

impl Cluster {
    fn node_of(&self, key: &str) -> usize {
        self.ring.locate(KeyHash::Md5, key.as_bytes())
    }

    fn context(&self) -> String {
        format!("--- router log\n{}", self.router.log())
    }
}

#[test]
fn memccapable_passes_through_the_router_over_three_nodes() -> Result<()> {
    let tool = tools::require("memccapable")?;
    let c = cluster(Target::Kcache, true)?;
    let port = c.router.addr().port().to_string();
    let out = tools::run_bounded(
        Command::new(tool).args(["-h", "127.0.0.1", "-p", &port, "-a", "-t", "5"]),
        Duration::from_secs(120),
    )?;
    let passed = out.stdout.lines().filter(|l| l.ends_with("[pass]")).count();
    ensure!(
        out.status.success() && passed == 27 && out.stdout.contains("All tests passed"),
        "memccapable through the router: {passed} of 27 passed, exit {}\n{}{}\n{}",
        out.status,
        out.stdout,
        out.stderr,
        c.context()
    );
    Ok(())
}

#[test]
fn pymemcache_unittests_pass_through_the_router() -> Result<()> {
    let c = cluster(Target::Kcache, true)?;
    let (out, ran) = tools::pymemcache_suite(c.router.addr(), "route")?;
    // `OK (skipped=3)`: the two store-stats tests, and distinct CAS values of two keys (each
    // server counts its own: they may be equal).
    ensure!(
        out.status.success() && ran.is_some_and(|n| n > 2) && out.stderr.contains("OK (skipped=3)"),
        "pymemcache through the router: exit {} after {ran:?} tests\n--- stderr\n{}{}",
        out.status,
        out.stderr,
        c.context()
    );
    Ok(())
}

/// Sets `keys` through the router and checks that each landed on the node ketama names.
fn set_and_check_placement(c: &Cluster, keys: &[String]) -> Result<()> {
    let mut r = c.router.connect()?;
    for k in keys {
        let v = format!("v-{k}");
        r.expect(
            format!("set {k} 5 0 {}\r\n{v}\r\n", v.len()).as_bytes(),
            b"STORED\r\n",
        )
        .with_context(|| c.context())?;
    }
    for k in keys {
        let home = c.node_of(k);
        for (i, n) in c.nodes.iter().enumerate() {
            let got = n.connect()?.call(format!("get {k}\r\n").as_bytes())?;
            let has = got.starts_with(b"VALUE ");
            ensure!(
                has == (i == home),
                "{k}: ketama says node {home}, node {i} answered {}",
                show(&got, 200)
            );
        }
    }
    Ok(())
}

/// A multiget's expected reply: each key's block in request order, misses left out.
fn expected_multiget(keys: &[&str], present: &BTreeSet<&str>) -> Vec<u8> {
    let mut want = Vec::new();
    for k in keys {
        if present.contains(k) {
            let v = format!("v-{k}");
            want.extend_from_slice(format!("VALUE {k} 5 {}\r\n{v}\r\n", v.len()).as_bytes());
        }
    }
    want.extend_from_slice(b"END\r\n");
    want
}

fn multiget_in_order(target: Target) -> Result<()> {
    let c = cluster(target, false)?;
    let keys: Vec<String> = (0..60).map(|i| format!("feed:{i}")).collect();
    set_and_check_placement(&c, &keys)?;
    let homes: BTreeSet<usize> = keys.iter().map(|k| c.node_of(k)).collect();
    ensure!(
        homes.len() == 3,
        "the keys live on {homes:?}, not on all three nodes"
    );
    // Interleave the nodes' keys, misses and a repeated key.
    let mut ask: Vec<&str> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        ask.push(k);
        if i % 7 == 0 {
            ask.push("missing:x");
        }
        if i % 11 == 0 {
            ask.push(&keys[0]);
        }
    }
    let switches = ask
        .windows(2)
        .filter(|w| c.node_of(w[0]) != c.node_of(w[1]))
        .count();
    ensure!(
        switches > 20,
        "the asked keys change node only {switches} times"
    );
    let present: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let mut r = c.router.connect()?;
    let got = r.call(format!("get {}\r\n", ask.join(" ")).as_bytes())?;
    let want = expected_multiget(&ask, &present);
    ensure!(
        got == want,
        "multiget of {} keys over 3 nodes:\n got {}\nwant {}\n{}",
        ask.len(),
        show(&got, 600),
        show(&want, 600),
        c.context()
    );
    // More keys than one backend request carries (100 a server), pipelined twice.
    let many: Vec<&str> = (0..400).map(|i| keys[i % keys.len()].as_str()).collect();
    let line = format!("get {}\r\n", many.join(" "));
    r.send(format!("{line}{line}").as_bytes())?;
    let want = expected_multiget(&many, &present);
    for round in 0..2 {
        let got = r.read_reply(kcache_tests::reply::ReplyKind::Retrieval)?;
        ensure!(
            got == want,
            "round {round}: 400-key multiget differs: {}",
            show(&got, 300)
        );
    }
    Ok(())
}

#[test]
fn multigets_split_over_kcache_nodes_come_back_in_key_order() -> Result<()> {
    multiget_in_order(Target::Kcache)
}

#[test]
fn multigets_split_over_memcached_nodes_come_back_in_key_order() -> Result<()> {
    multiget_in_order(Target::Memcached)
}

#[test]
fn pipelined_noreply_and_quiet_mode_keep_their_order() -> Result<()> {
    let c = cluster(Target::Kcache, false)?;
    // Three keys on three different nodes (computed).
    let mut picked: Vec<String> = Vec::new();
    for i in 0.. {
        let k = format!("q{i}");
        if picked.iter().all(|p| c.node_of(p) != c.node_of(&k)) {
            picked.push(k);
        }
        if picked.len() == 3 {
            break;
        }
    }
    let (a, b, d) = (&picked[0], &picked[1], &picked[2]);
    let mut r = c.router.connect()?;
    let burst = format!(
        "set {a} 0 0 1 noreply\r\n1\r\n\
         ms {b} 1 q\r\n2\r\n\
         mg {a} v q\r\n\
         mg {d} v q\r\n\
         mg {b} v\r\n\
         delete {d} noreply\r\n\
         md {d} q\r\n\
         ma {a} q\r\n\
         get {a} {b} {d}\r\n\
         version\r\n"
    );
    let got = r.call_synced(burst.as_bytes())?;
    let version = c.router.connect()?.call(b"version\r\n")?;
    let want = [
        "VA 1\r\n1\r\n".to_owned(),
        "VA 1\r\n2\r\n".to_owned(),
        "NF\r\n".to_owned(),
        format!("VALUE {a} 0 1\r\n2\r\nVALUE {b} 0 1\r\n2\r\nEND\r\n"),
        String::from_utf8_lossy(&version).into_owned(),
    ]
    .concat();
    ensure!(
        got == want.as_bytes(),
        "pipelined through the router:\n got {}\nwant {}\n{}",
        show(&got, 600),
        show(want.as_bytes(), 600),
        c.context()
    );
    Ok(())
}

#[test]
fn a_dead_server_gets_errors_and_misses_and_the_rest_goes_on() -> Result<()> {
    let mut c = cluster(Target::Kcache, true)?;
    let keys: Vec<String> = (0..30).map(|i| format!("d{i}")).collect();
    let dead = c.node_of(&keys[0]);
    let on_dead = keys.iter().find(|k| c.node_of(k) == dead).cloned();
    let alive = keys.iter().find(|k| c.node_of(k) != dead).cloned();
    let (Some(on_dead), Some(alive)) = (on_dead, alive) else {
        anyhow::bail!("the 30 keys all live on one node");
    };
    let port = c.nodes[dead].addr().port();
    drop(c.nodes.remove(dead));
    // Held so no other test's server takes the port (the harness wants it free for UDP too).
    let _hold = std::net::UdpSocket::bind(("127.0.0.1", port))?;
    // The ring keeps its three servers: the dead one's keys are not moved to the others.
    let mut r = c.router.connect()?;
    let got = r.call(format!("set {on_dead} 0 0 1\r\nx\r\n").as_bytes())?;
    ensure!(
        got.starts_with(b"SERVER_ERROR "),
        "set on a dead server: {}",
        show(&got, 200)
    );
    r.expect(format!("get {on_dead}\r\n").as_bytes(), b"END\r\n")?;
    r.expect(
        format!("set {alive} 0 0 1\r\ny\r\n").as_bytes(),
        b"STORED\r\n",
    )?;
    r.expect(
        format!("get {on_dead} {alive}\r\n").as_bytes(),
        format!("VALUE {alive} 0 1\r\ny\r\nEND\r\n").as_bytes(),
    )?;
    let got = r.call(b"flush_all\r\n")?;
    ensure!(
        got.starts_with(b"SERVER_ERROR "),
        "flush_all with a server down: {}",
        show(&got, 200)
    );
    let stats = r.call(b"stats\r\n")?;
    let text = String::from_utf8_lossy(&stats);
    let count = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // The set, the get and the multiget's key failed: each sent and lost, or (once the server
    // is marked down) failed at once.
    ensure!(
        count("route_errors") >= 1
            && count("route_errors") + count("route_fast_fails") >= 3
            && count("route_get_errors") >= 1,
        "{text}"
    );
    Ok(())
}

#[test]
fn ketama_places_keys_as_twemproxy_does_with_fnv1a_64() -> Result<()> {
    same_placement_as_twemproxy("fnv1a_64", KeyHash::Fnv1a64)
}

#[test]
fn ketama_places_keys_as_twemproxy_does_with_md5() -> Result<()> {
    same_placement_as_twemproxy("md5", KeyHash::Md5)
}

/// Sets 100k keys through nutcracker (ketama, `hash`, a weighted and a named server among
/// three memcached) and checks on each memcached that it holds exactly the keys cache-core's
/// ketama gives it.
fn same_placement_as_twemproxy(hash_name: &str, hash: KeyHash) -> Result<()> {
    let nutcracker = tools::require("nutcracker")?;
    let nodes = (0..3)
        .map(|_| Server::start(Target::Memcached, &Config::default().memory_mb(64)))
        .collect::<Result<Vec<_>>>()?;
    // A weighted server and a named one: both change where points go.
    let specs = [
        (format!("127.0.0.1:{}:1", nodes[0].addr().port()), None, 1),
        (
            format!("127.0.0.1:{}:2", nodes[1].addr().port()),
            Some("beta"),
            2,
        ),
        (format!("127.0.0.1:{}:1", nodes[2].addr().port()), None, 1),
    ];
    let port = kcache_tests::server::free_port()?;
    let stats_port = kcache_tests::server::free_port()?;
    let mut yaml = format!(
        "alpha:\n  listen: 127.0.0.1:{port}\n  hash: {hash_name}\n  distribution: ketama\n  \
         timeout: 4000\n  servers:\n"
    );
    for (s, name, _) in &specs {
        yaml.push_str(&format!(
            "   - {s}{}\n",
            name.map(|n| format!(" {n}")).unwrap_or_default()
        ));
    }
    let config = temp_file(&format!("nutcracker-{hash_name}.yml"), &yaml)?;
    let args = [
        "-c".to_owned(),
        config.0.display().to_string(),
        "-s".to_owned(),
        stats_port.to_string(),
    ];
    let twem = Server::start_program(&nutcracker, &args, port)?;
    let ring = Continuum::new(
        &specs
            .iter()
            .map(|(s, name, w)| Node {
                name: name.map_or_else(
                    || s.rsplit_once(':').map_or(s.clone(), |(a, _)| a.to_owned()),
                    str::to_owned,
                ),
                weight: *w,
            })
            .collect::<Vec<_>>(),
    );
    const KEYS: usize = 100_000;
    const BATCH: usize = 500;
    let mut t = twem.connect()?;
    for start in (0..KEYS).step_by(BATCH) {
        let mut burst = Vec::new();
        for i in start..start + BATCH {
            burst.extend_from_slice(format!("set key:{i} 0 0 1\r\nx\r\n").as_bytes());
        }
        t.send(&burst)?;
        for i in start..start + BATCH {
            let line = t.read_line()?;
            ensure!(
                line == b"STORED\r\n",
                "key:{i} through nutcracker: {}",
                show(&line, 100)
            );
        }
    }
    // Where nutcracker put each key, read from the servers themselves.
    let mut wrong = Vec::new();
    let mut per_node = [0usize; 3];
    for (n, node) in nodes.iter().enumerate() {
        let mut conn = node.connect()?;
        for start in (0..KEYS).step_by(100) {
            let keys: Vec<String> = (start..start + 100).map(|i| format!("key:{i}")).collect();
            let got = conn.call(format!("get {}\r\n", keys.join(" ")).as_bytes())?;
            let here: BTreeSet<&str> = got
                .split(|&b| b == b'\n')
                .filter_map(|l| l.strip_prefix(b"VALUE "))
                .filter_map(|l| l.split(|&b| b == b' ').next())
                .filter_map(|k| std::str::from_utf8(k).ok())
                .collect();
            for k in &keys {
                let ours = ring.locate(hash, k.as_bytes()) == n;
                if here.contains(k.as_str()) {
                    per_node[n] += 1;
                }
                if ours != here.contains(k.as_str()) && wrong.len() < 10 {
                    wrong.push(format!(
                        "{k}: on node {n} {}, ketama {ours}",
                        here.contains(k.as_str())
                    ));
                }
            }
        }
    }
    ensure!(
        wrong.is_empty(),
        "{hash_name}: placement differs from nutcracker's: {wrong:?}"
    );
    ensure!(
        per_node.iter().sum::<usize>() == KEYS && per_node.iter().all(|&n| n > KEYS / 6),
        "keys per node {per_node:?}"
    );
    Ok(())
}

#[test]
fn a_killed_server_is_knocked_out_failed_fast_probed_and_back() -> Result<()> {
    let mut c = cluster_with(
        Target::Kcache,
        false,
        "timeout_ms = 500\ntko_timeouts = 3\nprobe_ms = 100\nprobe_max_ms = 200\n",
    )?;
    let key = "tko:0";
    let home = c.node_of(key);
    let port = c.nodes[home].addr().port();
    let addr = c.nodes[home].addr().to_string();
    let mut r = c.router.connect()?;
    r.expect(
        format!("set {key} 0 0 1\r\na\r\n").as_bytes(),
        b"STORED\r\n",
    )?;
    // kill -9 (Drop kills), then the next request finds the connection gone or refused.
    drop(std::mem::replace(
        &mut c.nodes[home],
        Server::start(Target::Kcache, &node_config())?,
    ));
    // Held so no other test's server takes the port (the harness wants it free for UDP too).
    let hold = std::net::UdpSocket::bind(("127.0.0.1", port))?;
    until_knocked_out(&mut r, key, &addr, &c)?;
    // Down: failed at once, no new connection tried, the key not moved to another server.
    let connects = stat(&mut r, "", "route_connects")?;
    let got = r.call(format!("set {key} 0 0 1\r\nc\r\n").as_bytes())?;
    ensure!(
        got == b"SERVER_ERROR unavailable\r\n",
        "while down: {}",
        show(&got, 200)
    );
    r.expect(format!("get {key}\r\n").as_bytes(), b"END\r\n")?;
    ensure!(
        stat(&mut r, "", "route_connects")? == connects,
        "a connection tried while down"
    );
    ensure!(stat(&mut r, "", "route_fast_fails")?.parse::<u64>()? >= 2);
    for (i, n) in c.nodes.iter().enumerate().filter(|&(i, _)| i != home) {
        let got = n.connect()?.call(format!("get {key}\r\n").as_bytes())?;
        ensure!(
            got == b"END\r\n",
            "{key} turned up on node {i}: {}",
            show(&got, 200)
        );
    }
    // Back on its port: a probe brings it back and the key is served there again.
    drop(hold);
    let back = Server::start_on(Target::Kcache, &node_config(), port)?;
    within_5s(
        || format!("{addr} not back 5 s after restarting\n{}", c.context()),
        || Ok(r.call(format!("set {key} 0 0 1\r\nd\r\n").as_bytes())? == b"STORED\r\n"),
    )?;
    ensure!(stat(&mut r, "servers", &addr)?.starts_with("up "));
    ensure!(stat(&mut r, "", "route_probes")?.parse::<u64>()? >= 1);
    let got = back.connect()?.call(format!("get {key}\r\n").as_bytes())?;
    ensure!(
        got == b"VALUE tko:0 0 1\r\nd\r\nEND\r\n",
        "on the restarted node: {}",
        show(&got, 200)
    );
    Ok(())
}

#[test]
fn a_server_that_never_answers_is_soft_knocked_out_after_three_timeouts() -> Result<()> {
    // Accepts connections and reads them, never replies.
    let hole = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = hole.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().flatten() {
            held.push(s);
        }
    });
    let spool = spool_dir()?;
    let text = format!(
        "spool_dir = \"{}\"\n[pools.main]\nkind = \"hash\"\nservers = [\"127.0.0.1:{port}\"]\n\
         timeout_ms = 200\ntko_timeouts = 3\nprobe_ms = 60000\nprobe_max_ms = 60000\n",
        spool.0.display()
    );
    let config = temp_file("route-hole.toml", &text)?;
    let router = Server::start_router(&config.0, 1)?;
    let mut r = router.connect()?;
    for i in 0..3 {
        r.expect(b"get k\r\n", b"END\r\n")
            .with_context(|| format!("get {i}"))?;
    }
    ensure!(stat(&mut r, "", "route_timeouts")? == "3");
    let addr = format!("127.0.0.1:{port}");
    ensure!(stat(&mut r, "servers", &addr)? == "soft_tko soft_tko:1 hard_tko:0");
    // Down: answered at once as a miss, not after another timeout.
    r.expect(b"get k\r\n", b"END\r\n")?;
    r.expect(b"set k 0 0 1\r\nx\r\n", b"SERVER_ERROR unavailable\r\n")?;
    ensure!(stat(&mut r, "", "route_timeouts")? == "3");
    ensure!(stat(&mut r, "", "route_fast_fails")? == "2");
    Ok(())
}

#[test]
fn a_down_servers_keys_go_to_the_gutter_with_ttls_capped_never_to_other_primaries() -> Result<()> {
    let nodes = (0..3)
        .map(|_| Server::start(Target::Kcache, &node_config()))
        .collect::<Result<Vec<_>>>()?;
    let gutter = Server::start(Target::Kcache, &node_config())?;
    let (servers, ring) = pool(&nodes);
    let spool = spool_dir()?;
    let text = format!(
        "spool_dir = \"{}\"\n[pools.main]\nkind = \"hash\"\nhash = \"md5\"\nservers = [{servers}]\n\
         timeout_ms = 500\nprobe_ms = 60000\nprobe_max_ms = 60000\n\
         gutter = \"gutter\"\ngutter_ttl = 10\n\n\
         [pools.gutter]\nkind = \"hash\"\nhash = \"md5\"\n\
         servers = [\"127.0.0.1:{}:1\"]\n\n[[route]]\nprefix = \"\"\npool = \"main\"\n",
        spool.0.display(),
        gutter.addr().port()
    );
    let config = temp_file("route-gutter.toml", &text)?;
    let router = Server::start_router(&config.0, 1)?;
    let mut c = Cluster {
        nodes,
        router,
        ring,
        _config: config,
        spool,
    };
    let key = "g:0";
    let home = c.node_of(key);
    let other = (1..)
        .map(|i| format!("g:{i}"))
        .find(|k| c.node_of(k) != home)
        .context("a key on another node")?;
    let mut r = c.router.connect()?;
    r.expect(
        format!("set {key} 0 0 1\r\na\r\n").as_bytes(),
        b"STORED\r\n",
    )?;
    r.expect(
        format!("set {other} 0 0 1\r\no\r\n").as_bytes(),
        b"STORED\r\n",
    )?;
    let port = c.nodes[home].addr().port();
    let addr = c.nodes[home].addr().to_string();
    drop(std::mem::replace(
        &mut c.nodes[home],
        Server::start(Target::Kcache, &node_config())?,
    ));
    let _hold = std::net::UdpSocket::bind(("127.0.0.1", port))?;
    // Until the router has seen it die, requests fail; then they go to the gutter.
    until_knocked_out(&mut r, key, &addr, &c)?;
    // The gutter starts empty: a miss, filled by the client as usual, with its TTL capped.
    r.expect(format!("get {key}\r\n").as_bytes(), b"END\r\n")?;
    r.expect(
        format!("set {key} 0 0 1\r\nc\r\n").as_bytes(),
        b"STORED\r\n",
    )?;
    r.expect(
        format!("get {key} {other}\r\n").as_bytes(),
        format!("VALUE {key} 0 1\r\nc\r\nVALUE {other} 0 1\r\no\r\nEND\r\n").as_bytes(),
    )?;
    let on_gutter = gutter
        .connect()?
        .call(format!("mg {key} t v\r\n").as_bytes())?;
    let ttl: i64 = String::from_utf8_lossy(&on_gutter)
        .split_whitespace()
        .find_map(|w| w.strip_prefix('t')?.parse().ok())
        .with_context(|| format!("no TTL on the gutter: {}", show(&on_gutter, 200)))?;
    ensure!(
        (1..=10).contains(&ttl),
        "TTL {ttl} on the gutter (cap 10 s, set with 0)"
    );
    // Never rehashed onto the other primaries.
    for (i, n) in c.nodes.iter().enumerate().filter(|&(i, _)| i != home) {
        let got = n.connect()?.call(format!("get {key}\r\n").as_bytes())?;
        ensure!(
            got == b"END\r\n",
            "{key} on primary {i}: {}",
            show(&got, 200)
        );
    }
    // A delete reaches the gutter too: it never serves what was deleted.
    r.expect(format!("delete {key}\r\n").as_bytes(), b"DELETED\r\n")?;
    r.expect(format!("get {key}\r\n").as_bytes(), b"END\r\n")?;
    ensure!(
        gutter
            .connect()?
            .call(format!("get {key}\r\n").as_bytes())?
            == b"END\r\n"
    );
    ensure!(stat(&mut r, "", "route_gutter")?.parse::<u64>()? >= 4);
    Ok(())
}

#[test]
fn deletes_a_paused_server_missed_are_spooled_and_replayed_before_it_serves_again() -> Result<()> {
    use nix::sys::signal::Signal;
    let c = cluster_with(
        Target::Kcache,
        false,
        "timeout_ms = 300\ntko_timeouts = 3\nprobe_ms = 100\nprobe_max_ms = 200\n",
    )?;
    let key = "sp:0";
    let home = c.node_of(key);
    let addr = c.nodes[home].addr().to_string();
    // Another key of the same server, to knock it out with.
    let probe_key = (1..)
        .map(|i| format!("sp:{i}"))
        .find(|k| c.node_of(k) == home)
        .context("a second key on the node")?;
    let mut r = c.router.connect()?;
    r.expect(
        format!("set {key} 0 0 3\r\nold\r\n").as_bytes(),
        b"STORED\r\n",
    )?;
    c.nodes[home].signal(Signal::SIGSTOP)?;
    for _ in 0..3 {
        r.expect(format!("get {probe_key}\r\n").as_bytes(), b"END\r\n")?;
    }
    ensure!(stat(&mut r, "servers", &addr)?.starts_with("soft_tko"));
    // Down: the delete cannot reach it, so it is spooled (on disk, before the reply).
    let got = r.call(format!("delete {key}\r\n").as_bytes())?;
    ensure!(
        got == b"SERVER_ERROR unavailable\r\n",
        "delete while down: {}",
        show(&got, 200)
    );
    let file = c.spool.0.join(format!("{addr}.spool"));
    let spooled = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    ensure!(
        spooled == format!("delete {key}\r\n").as_bytes(),
        "spool: {}",
        show(&spooled, 200)
    );
    // The server wakes up holding the old value; the probe replays the delete before it counts
    // as up, so the old value is never read through the router.
    c.nodes[home].signal(Signal::SIGCONT)?;
    within_5s(
        || format!("not back within 5 s\n{}", c.context()),
        || {
            let got = r.call(format!("get {key}\r\n").as_bytes())?;
            ensure!(
                got == b"END\r\n",
                "read {key} through the router: {}",
                show(&got, 200)
            );
            Ok(stat(&mut r, "servers", &addr)?.starts_with("up "))
        },
    )?;
    let direct = c.nodes[home]
        .connect()?
        .call(format!("get {key}\r\n").as_bytes())?;
    ensure!(
        direct == b"END\r\n",
        "{key} still on its server: {}",
        show(&direct, 200)
    );
    ensure!(stat(&mut r, "", "route_replayed")? == "1");
    ensure!(
        std::fs::read(&file)?.is_empty(),
        "the spool was not emptied"
    );
    r.expect(format!("get {key}\r\n").as_bytes(), b"END\r\n")?;
    Ok(())
}

#[test]
fn a_refused_bucket_makes_the_router_reload_its_map_and_retry_once() -> Result<()> {
    use cache_core::bucket::{khash, vbucket_of, BucketMap};
    let dir = spool_dir()?;
    std::fs::create_dir_all(&dir.0)?;
    // The nodes know epoch 2 (buckets split over nodes 0 and 1); the router starts on epoch 1
    // (every bucket on node 0).
    let new = BucketMap::balanced(&[0, 1], 2).map_err(|e| anyhow::anyhow!("{e}"))?;
    let old = BucketMap::new_single(0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let node_map = dir.0.join("node.map");
    std::fs::write(&node_map, new.to_text())?;
    let nodes = (0..2)
        .map(|id| {
            let mut cfg = node_config();
            cfg.extra = vec![
                "--node-id".into(),
                id.to_string(),
                "--bucket-map".into(),
                node_map.display().to_string(),
            ];
            Server::start(Target::Kcache, &cfg)
        })
        .collect::<Result<Vec<_>>>()?;
    let router_map = dir.0.join("router.map");
    std::fs::write(&router_map, old.to_text())?;
    let text = format!(
        "spool_dir = \"{}\"\n[pools.n]\nkind = \"buckets\"\nmap = \"{}\"\n\
         servers = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
        dir.0.join("spool").display(),
        router_map.display(),
        nodes[0].addr().port(),
        nodes[1].addr().port()
    );
    let config = temp_file("route-buckets.toml", &text)?;
    let router = Server::start_router(&config.0, 1)?;
    let key = (0..)
        .map(|i| format!("b:{i}"))
        .find(|k| new.owner(vbucket_of(khash(k.as_bytes()))) == Some(1))
        .context("a key of node 1")?;
    // The map moved on: the file now says epoch 2, the router has not read it yet.
    std::fs::write(&router_map, new.to_text())?;
    let mut r = router.connect()?;
    let got = r.call(format!("set {key} 0 0 1\r\nv\r\n").as_bytes())?;
    ensure!(
        got == b"STORED\r\n",
        "set after the move: {}\n--- router log\n{}",
        show(&got, 200),
        router.log()
    );
    ensure!(stat(&mut r, "", "route_retries")? == "1");
    let on_owner = nodes[1]
        .connect()?
        .call(format!("get {key}\r\n").as_bytes())?;
    ensure!(on_owner == format!("VALUE {key} 0 1\r\nv\r\nEND\r\n").as_bytes());
    // From now on it goes to the owner at once.
    r.expect(
        format!("get {key}\r\n").as_bytes(),
        format!("VALUE {key} 0 1\r\nv\r\nEND\r\n").as_bytes(),
    )?;
    ensure!(stat(&mut r, "", "route_retries")? == "1");
    Ok(())
}
