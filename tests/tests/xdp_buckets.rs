//! The bucket map in XDP, on a veth test bed: a hot key of a bucket this node owns is answered in
//! the kernel; a get for a bucket it does not own goes up (`xdp_pass_bucket_not_owned`) and user
//! space refuses it; after SIGHUP moves a hot key's bucket away, XDP stops answering it at once
//! and keys still owned become hot again under the new epoch. Needs root: skipped without it,
//! except in CI, where it fails.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use cache_core::bucket::vbucket;
use kcache_tests::{
    buckets::{key, refusal, HALF},
    show, skip,
    testbed::{delta, stats, udp_get, until_hot, BedServer, Testbed},
    udp::Udp,
    Conn,
};

/// A directory of this test's own holding the map file, removed on drop.
struct MapDir(PathBuf);

impl MapDir {
    fn new(name: &str, map: &str) -> Result<MapDir> {
        let dir = std::env::temp_dir().join(format!("kcache-xdpb-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let d = MapDir(dir);
        d.write(map)?;
        Ok(d)
    }

    fn path(&self) -> PathBuf {
        self.0.join("map")
    }

    /// Writes beside the file and renames over it, so a reload never reads half a file.
    fn write(&self, map: &str) -> Result<()> {
        let tmp: &Path = &self.0.join("map.new");
        std::fs::write(tmp, map)?;
        std::fs::rename(tmp, self.path())?;
        Ok(())
    }
}

impl Drop for MapDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A UDP get of `key` is refused by user space, passed up by XDP for its bucket.
fn refused_via_pass(udp: &mut Udp, tcp: &mut Conn, key: &str, epoch: u64) -> Result<()> {
    let before = stats(tcp)?;
    let got = udp_get(udp, key)?;
    ensure!(got == refusal(key, epoch), "get {key}: {}", show(&got, 200));
    let after = stats(tcp)?;
    for (stat, want) in [
        ("xdp_pass_bucket_not_owned", 1),
        ("xdp_hit", 0),
        ("bucket_refused", 1),
    ] {
        ensure!(
            delta(&before, &after, stat) == want,
            "get {key}: {stat} moved {}",
            delta(&before, &after, stat)
        );
    }
    Ok(())
}

/// Test bed `net` with kcache serving on port 11300 + `net`, with XDP and the map `HALF` (in a
/// directory named after `name`). Bound in this order so the server stops before the bed goes.
fn with_map(net: u8, name: &str) -> Result<(Testbed, MapDir, BedServer)> {
    let bed = Testbed::up(net)?;
    let map = MapDir::new(name, HALF)?;
    let path = map.path().to_string_lossy().into_owned();
    let server = bed.serve(
        11300 + u16::from(net),
        &["--xdp", &bed.server_if, "--bucket-map", &path],
    )?;
    Ok((bed, map, server))
}

#[test]
fn xdp_answers_owned_buckets_only() -> Result<()> {
    if skip::unless_root("the XDP test bed")? {
        return Ok(());
    }
    let (bed, _map, server) = with_map(21, "owned")?;
    let (addr, client) = (server.addr, bed.client_v4);
    let r = bed.in_client(move || -> Result<()> {
        let mut tcp = Conn::connect(addr)?;
        let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
        let (a, b) = (key("hot", true), key("far", false));
        tcp.expect(format!("set {a} 0 0 2\r\nhi\r\n").as_bytes(), b"STORED\r\n")?;
        let want = format!("VALUE {a} 0 2\r\nhi\r\nEND\r\n");
        // The owned key becomes hot and XDP answers it.
        until_hot(&mut udp, &mut tcp, &a, want.as_bytes())?;
        // The unowned one goes up, every time, and is refused there.
        for _ in 0..3 {
            refused_via_pass(&mut udp, &mut tcp, &b, 3)?;
        }
        Ok(())
    })?;
    r.with_context(|| format!("server log:\n{}", server.log()))
}

#[test]
fn sighup_takes_a_hot_bucket_away_from_xdp() -> Result<()> {
    if skip::unless_root("the XDP test bed")? {
        return Ok(());
    }
    let (bed, map, server) = with_map(22, "reload")?;
    let (addr, client) = (server.addr, bed.client_v4);
    let (a, c) = (key("hot", true), key("stay", true));
    let vb = vbucket(a.as_bytes());
    let (a2, c2) = (a.clone(), c.clone());
    let setup = bed.in_client(move || -> Result<()> {
        let mut tcp = Conn::connect(addr)?;
        let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
        for k in [&a2, &c2] {
            tcp.expect(format!("set {k} 0 0 2\r\nhi\r\n").as_bytes(), b"STORED\r\n")?;
            until_hot(
                &mut udp,
                &mut tcp,
                k,
                format!("VALUE {k} 0 2\r\nhi\r\nEND\r\n").as_bytes(),
            )?;
        }
        Ok(())
    })?;
    setup.with_context(|| format!("server log:\n{}", server.log()))?;
    // Epoch 4 gives a's bucket to node 1.
    let mut mine = Vec::new();
    if vb > 0 {
        mine.push(format!("0-{}", vb - 1));
    }
    if vb < 8191 {
        mine.push(format!("{}-8191", vb + 1));
    }
    map.write(&format!(
        "epoch 4\nnode 0 {}\nnode 1 {vb},8192-16383\n",
        mine.join(",")
    ))?;
    let r = bed.in_client(move || -> Result<()> {
        let mut tcp = Conn::connect(addr)?;
        let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
        // The server's own pid, from its stats: `ip netns exec` shares the pid namespace.
        let pid = stats(&mut tcp)?
            .get("pid")
            .copied()
            .context("no pid stat")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid)?),
            nix::sys::signal::Signal::SIGHUP,
        )?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats(&mut tcp)?.get("bucket_epoch") != Some(&4) {
            ensure!(Instant::now() < deadline, "bucket_epoch never reached 4");
            thread::sleep(Duration::from_millis(20));
        }
        // The hot key's bucket is gone: XDP passes it up, user space refuses it.
        refused_via_pass(&mut udp, &mut tcp, &a, 4)?;
        tcp.expect(format!("get {a}\r\n").as_bytes(), &refusal(&a, 4))?;
        // A key still owned is served, and XDP answers it again under the new epoch.
        let want = format!("VALUE {c} 0 2\r\nhi\r\nEND\r\n");
        until_hot(&mut udp, &mut tcp, &c, want.as_bytes())?;
        Ok(())
    })?;
    r.with_context(|| format!("server log:\n{}", server.log()))
}
