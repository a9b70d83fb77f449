//! The bucket map in the engine, on loopback without XDP: a server given a map (`--bucket-map`)
//! serves the keys of its buckets and refuses the others with `SERVER_ERROR not my vbucket <vb>
//! epoch <e>` over TCP and UDP, whatever the command; a multiget mixing both is refused whole;
//! `noreply` writes to other buckets vanish; `stats` counts it all. SIGHUP moves it to a newer
//! map (only a newer one) and drops what it lost. kcache only: memcached has no bucket map.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use cache_core::bucket::vbucket;
use kcache_tests::{
    buckets::{key, refusal, HALF},
    kcache,
    server::free_port,
    udp::{reassemble, Udp},
    Conn, Target,
};

/// `kcache serve` on loopback, TCP and UDP, with a bucket map; killed on drop.
struct Node {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Node {
    /// Writes `map` to a fresh directory and serves with it as node 0.
    fn start(name: &str, map: &str) -> Result<Node> {
        let dir =
            std::env::temp_dir().join(format!("kcache-buckets-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        write_map(&dir, map)?;
        let port = free_port()?;
        let p = port.to_string();
        let child = Command::new(kcache::bin()?)
            .args([
                "serve",
                "-p",
                &p,
                "-U",
                &p,
                "-l",
                "127.0.0.1",
                "-t",
                "2",
                "-m",
                "16",
            ])
            .args(["--no-pin", "--node-id", "0", "--bucket-map"])
            .arg(dir.join("map"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log"))?)
            .spawn()
            .context("starting kcache")?;
        let mut node = Node {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Conn::connect(node.addr).is_err() {
            if let Some(status) = node.child.try_wait()? {
                bail!("kcache exited ({status}):\n{}", node.log());
            }
            ensure!(
                Instant::now() < deadline,
                "kcache did not listen:\n{}",
                node.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        Ok(node)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Replaces the map file and sends SIGHUP.
    fn reload(&self, map: &str) -> Result<()> {
        write_map(&self.dir, map)?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes the map beside the file and renames it over, so a reload never reads half a file.
fn write_map(dir: &Path, map: &str) -> Result<()> {
    std::fs::write(dir.join("map.new"), map)?;
    std::fs::rename(dir.join("map.new"), dir.join("map"))?;
    Ok(())
}

/// `HALF` at `epoch`, but with bucket `vb` (< 8192) given to node 1.
fn moved_away(vb: u16, epoch: u64) -> String {
    let mut mine = Vec::new();
    if vb > 0 {
        mine.push(format!("0-{}", vb - 1));
    }
    if vb < 8191 {
        mine.push(format!("{}-8191", vb + 1));
    }
    format!(
        "epoch {epoch}\nnode 0 {}\nnode 1 {vb},8192-16383\n",
        mine.join(",")
    )
}

fn stats(conn: &mut Conn) -> Result<HashMap<String, u64>> {
    kcache_tests::testbed::stats(conn)
}

/// Waits until `stats` shows `bucket_epoch` = `epoch` (the signal thread applied the map).
fn until_epoch(conn: &mut Conn, epoch: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(conn)?.get("bucket_epoch") != Some(&epoch) {
        ensure!(
            Instant::now() < deadline,
            "bucket_epoch never reached {epoch}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn skip() -> bool {
    Target::from_env().skips_kcache_only("the bucket map")
}

#[test]
fn unowned_keys_are_refused_on_every_path() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let node = Node::start("refuse", HALF)?;
    let r = (|| -> Result<()> {
        let mut tcp = Conn::connect(node.addr)?;
        let (a, b) = (key("a", true), key("b", false));
        let no = refusal(&b, 3);
        let s = stats(&mut tcp)?;
        ensure!(s.get("bucket_epoch") == Some(&3), "{s:?}");
        ensure!(s.get("buckets_owned") == Some(&8192), "{s:?}");
        // An owned key works as ever.
        tcp.expect(format!("set {a} 0 0 1\r\nx\r\n").as_bytes(), b"STORED\r\n")?;
        let value = format!("VALUE {a} 0 1\r\nx\r\nEND\r\n");
        tcp.expect(format!("get {a}\r\n").as_bytes(), value.as_bytes())?;
        tcp.expect(format!("mg {a} v\r\n").as_bytes(), b"VA 1\r\nx\r\n")?;
        // Every command on an unowned key is refused, and nothing is stored.
        let refused: [String; 7] = [
            format!("set {b} 0 0 1\r\ny\r\n"),
            format!("get {b}\r\n"),
            format!("delete {b}\r\n"),
            format!("mg {b} v\r\n"),
            format!("ms {b} 1\r\ny\r\n"),
            format!("lease-get {b}\r\n"),
            // A multiget mixing both, in either order, is refused whole.
            format!("get {a} {b}\r\n"),
        ];
        for req in &refused {
            tcp.expect(req.as_bytes(), &no)?;
        }
        tcp.expect(format!("gets {b} {a} {a}\r\n").as_bytes(), &no)?;
        // noreply writes vanish, and the connection goes on.
        tcp.expect(format!("set {b} 0 0 1 noreply\r\nz\r\n").as_bytes(), b"")?;
        tcp.expect(format!("delete {b} noreply\r\n").as_bytes(), b"")?;
        // Requests without keys are not the map's business.
        tcp.expect(b"verbosity 1\r\n", b"OK\r\n")?;
        // Over UDP too.
        let mut udp = Udp::connect(node.addr)?;
        let d =
            udp.request_when_ready(format!("get {b}\r\n").as_bytes(), Duration::from_secs(5))?;
        ensure!(reassemble(&d)? == no, "UDP get {b}");
        let d = udp.request(format!("get {a}\r\n").as_bytes(), Duration::from_secs(2))?;
        ensure!(reassemble(&d)? == value.as_bytes(), "UDP get {a}");
        let s = stats(&mut tcp)?;
        // 7 + 1 refused above, 2 dropped, 1 over UDP.
        ensure!(s.get("bucket_refused") == Some(&11), "{s:?}");
        ensure!(s.get("bucket_refused_noreply") == Some(&2), "{s:?}");
        ensure!(s.get("curr_items") == Some(&1), "{s:?}");
        Ok(())
    })();
    r.with_context(|| format!("server log:\n{}", node.log()))
}

#[test]
fn sighup_moves_to_a_newer_map_only() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let node = Node::start("reload", HALF)?;
    let r = (|| -> Result<()> {
        let mut tcp = Conn::connect(node.addr)?;
        let (a, c) = (key("a", true), key("c", true));
        let vb = vbucket(a.as_bytes());
        for k in [&a, &c] {
            tcp.expect(format!("set {k} 0 0 1\r\nx\r\n").as_bytes(), b"STORED\r\n")?;
        }
        // Epoch 4 gives a's bucket to node 1: a is refused with the new epoch, c still served.
        let moved = moved_away(vb, 4);
        node.reload(&moved)?;
        until_epoch(&mut tcp, 4)?;
        tcp.expect(format!("get {a}\r\n").as_bytes(), &refusal(&a, 4))?;
        let value = format!("VALUE {c} 0 1\r\nx\r\nEND\r\n");
        tcp.expect(format!("get {c}\r\n").as_bytes(), value.as_bytes())?;
        // An older (or equal) epoch is not applied.
        node.reload(HALF)?;
        thread::sleep(Duration::from_millis(300));
        ensure!(stats(&mut tcp)?.get("bucket_epoch") == Some(&4));
        tcp.expect(format!("get {a}\r\n").as_bytes(), &refusal(&a, 4))?;
        // Nor is a file that does not parse.
        node.reload("epoch 9\nnode 0 0-99999\n")?;
        thread::sleep(Duration::from_millis(300));
        ensure!(stats(&mut tcp)?.get("bucket_epoch") == Some(&4));
        // Epoch 5 gives the bucket back: it starts empty (its items went when it was lost).
        node.reload(&HALF.replace("epoch 3", "epoch 5"))?;
        until_epoch(&mut tcp, 5)?;
        tcp.expect(format!("get {a}\r\n").as_bytes(), b"END\r\n")?;
        tcp.expect(format!("get {c}\r\n").as_bytes(), value.as_bytes())?;
        Ok(())
    })();
    r.with_context(|| format!("server log:\n{}", node.log()))
}

#[test]
fn start_errors_and_warnings() -> Result<()> {
    if skip() {
        return Ok(());
    }
    // An unreadable map stops the server with the file named.
    let out = Command::new(kcache::bin()?)
        .args([
            "serve",
            "-p",
            "1",
            "--bucket-map",
            "/nonexistent/kcache-map",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "started without its map");
    ensure!(
        err.contains("reading bucket_map /nonexistent/kcache-map"),
        "{err}"
    );
    // A map that gives this node nothing only warns; every keyed request is then refused.
    let node = Node::start("none", "epoch 2\nnode 1 0-16383\n")?;
    let mut tcp = Conn::connect(node.addr)?;
    let k = key("k", true);
    tcp.expect(format!("get {k}\r\n").as_bytes(), &refusal(&k, 2))?;
    ensure!(
        node.log().contains("gives this node no bucket"),
        "{}",
        node.log()
    );
    Ok(())
}
