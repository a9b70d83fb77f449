//! mcrouter's lease commands, kcache-only (memcached 1.6 answers them with `ERROR`):
//! `lease-get` on a miss hands out a token (`LVALUE <key> <token> <flags> <bytes>`), later
//! callers get `NOT_FOUND_HOT` until the holder's `lease-set` with that token fills the key;
//! a wrong or voided token gets `NOT_STORED`.
//!
//! What a plain `get` sees while a lease is out is left open: memcached's own lease (`mg ... N`)
//! shows an empty value, mcrouter's memcache a miss.

use anyhow::{bail, Context, Result};
use kcache_tests::{show, Config, Conn, Server, Target};

#[test]
fn mcrouter_lease_get_and_set() -> Result<()> {
    let target = Target::from_env();
    if target.skips_kcache_only("mcrouter's lease-get/lease-set") {
        return Ok(());
    }
    let server = Server::start(target, &Config::default().threads(1))?;
    let (mut a, mut b) = (server.connect()?, server.connect()?);
    let token = lease(&mut a, "k")?;
    // Another caller is told someone is filling.
    b.expect(b"lease-get k\r\n", b"NOT_FOUND_HOT\r\nEND\r\n")?;
    // A wrong token is refused and leaves the lease in place.
    let wrong = format!("lease-set k {} 0 0 3\r\nval\r\n", token.wrapping_add(1));
    a.expect(wrong.as_bytes(), b"NOT_STORED\r\n")?;
    // The holder fills.
    let fill = format!("lease-set k {token} 0 0 3\r\nval\r\n");
    a.expect(fill.as_bytes(), b"STORED\r\n")?;
    b.expect(b"get k\r\n", b"VALUE k 0 3\r\nval\r\nEND\r\n")?;
    // A hit answers like get.
    b.expect(b"lease-get k\r\n", b"VALUE k 0 3\r\nval\r\nEND\r\n")?;
    // The token was spent.
    a.expect(fill.as_bytes(), b"NOT_STORED\r\n")
        .context(server.log())
}

#[test]
fn delete_voids_a_lease() -> Result<()> {
    let target = Target::from_env();
    if target.skips_kcache_only("mcrouter's lease-get/lease-set") {
        return Ok(());
    }
    let server = Server::start(target, &Config::default().threads(1))?;
    let mut conn = server.connect()?;
    let token = lease(&mut conn, "d")?;
    // The write the fill was computed before.
    conn.expect(b"delete d noreply\r\n", b"")?;
    let late = format!("lease-set d {token} 0 0 3\r\nold\r\n");
    conn.expect(late.as_bytes(), b"NOT_STORED\r\n")?;
    conn.expect(b"get d\r\n", b"END\r\n")?;
    // The next miss gets a new lease.
    let next = lease(&mut conn, "d")?;
    if next == token {
        bail!("the voided token {token} was handed out again");
    }
    Ok(())
}

/// Takes the lease on a missing `key`: the reply must be `LVALUE <key> <token> 0 0`, an empty
/// value and `END`.
fn lease(conn: &mut Conn, key: &str) -> Result<u64> {
    let reply = conn.call(format!("lease-get {key}\r\n").as_bytes())?;
    let text = String::from_utf8_lossy(&reply);
    let token = text
        .strip_prefix(&format!("LVALUE {key} "))
        .and_then(|rest| rest.strip_suffix(" 0 0\r\n\r\nEND\r\n"))
        .and_then(|t| t.parse::<u64>().ok());
    token.with_context(|| {
        format!(
            "lease-get {key}: want `LVALUE {key} <token> 0 0\\r\\n\\r\\nEND\\r\\n`, got {}",
            show(&reply, 200)
        )
    })
}
