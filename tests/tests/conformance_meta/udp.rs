//! The UDP frame (memcached's protocol.txt): 8-byte header, a reply cut into datagrams of at
//! most 1400 bytes with the request's id, `seq` 0..total and the same `total`; a request must
//! fit one datagram (others are dropped without a reply).

use std::time::Duration;

use anyhow::{ensure, Result};
use kcache_tests::{
    reply::{self, ReplyKind},
    show,
    udp::{self, Datagram, Udp, MAX_DATAGRAM},
    Config, Conn, Server, Target,
};

/// Generous: a reply on loopback takes microseconds.
const REPLY: Duration = Duration::from_secs(2);

fn start() -> Result<(Server, Conn, Udp)> {
    let server = Server::start(Target::from_env(), &Config::default().threads(1).udp())?;
    let conn = server.connect()?;
    let mut udp = Udp::connect(server.udp_addr()?)?;
    udp.request_when_ready(b"version\r\n", Duration::from_secs(5))?;
    Ok((server, conn, udp))
}

/// Checks the frame of a reply and returns its bytes.
fn reply_bytes(datagrams: &[Datagram]) -> Result<Vec<u8>> {
    for d in datagrams {
        ensure!(d.len <= MAX_DATAGRAM, "datagram of {} bytes", d.len);
        ensure!(d.reserved == 0, "reserved field {}", d.reserved);
    }
    udp::reassemble(datagrams)
}

#[test]
fn udp_get_of_a_small_value() -> Result<()> {
    let (_server, mut conn, mut udp) = start()?;
    conn.expect(b"set small 5 0 5\r\nhello\r\n", b"STORED\r\n")?;
    let datagrams = udp.request(b"get small\r\n", REPLY)?;
    ensure!(datagrams.len() == 1, "{} datagrams", datagrams.len());
    ensure!(datagrams[0].seq == 0 && datagrams[0].total == 1);
    let reply = reply_bytes(&datagrams)?;
    ensure!(
        reply == b"VALUE small 5 5\r\nhello\r\nEND\r\n",
        "{}",
        show(&reply, 200)
    );
    // Misses and other commands answer over UDP too.
    let miss = reply_bytes(&udp.request(b"get nothing\r\n", REPLY)?)?;
    ensure!(miss == b"END\r\n", "{}", show(&miss, 200));
    let stored = reply_bytes(&udp.request(b"set u 0 0 2\r\nhi\r\n", REPLY)?)?;
    ensure!(stored == b"STORED\r\n", "{}", show(&stored, 200));
    conn.expect(b"get u\r\n", b"VALUE u 0 2\r\nhi\r\nEND\r\n")
}

#[test]
fn udp_get_of_5000_bytes_spans_datagrams() -> Result<()> {
    let (_server, mut conn, mut udp) = start()?;
    // Every byte value, CR LF included, so a split inside a line ending would show.
    let value: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 256) as u8).collect();
    let mut set = b"set big 0 0 5000\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    conn.expect(&set, b"STORED\r\n")?;
    let tcp = conn.call(b"get big\r\n")?;
    let datagrams = udp.request(b"get big\r\n", REPLY)?;
    let total = usize::from(datagrams[0].total);
    let least = tcp.len().div_ceil(MAX_DATAGRAM - udp::HEADER);
    ensure!(
        total >= least && total > 1,
        "total {total} for {} bytes",
        tcp.len()
    );
    let reply = reply_bytes(&datagrams)?;
    ensure!(
        reply == tcp,
        "UDP {}\nTCP {}",
        show(&reply, 100),
        show(&tcp, 100)
    );
    Ok(())
}

#[test]
fn udp_multi_datagram_request_is_dropped() -> Result<()> {
    let (_server, _conn, udp_client) = start()?;
    // Datagram 1 of 2 of a request: memcached does not reassemble requests.
    udp_client.send_raw(&udp::frame(77, 0, 2, b"get a\r\n"))?;
    let got = udp_client.recv(Duration::from_millis(300))?;
    ensure!(
        got.is_none(),
        "a reply to a multi-datagram request: {got:?}"
    );
    // The server still answers.
    let mut udp_client = udp_client;
    let miss = reply_bytes(&udp_client.request(b"get a\r\n", REPLY)?)?;
    ensure!(miss == b"END\r\n", "{}", show(&miss, 200));
    Ok(())
}

/// The reply must equal the TCP one. Its framing is where memcached 1.6.18 strays from its own
/// protocol.txt: it sends each value of a multiget as a separate reply, every datagram with
/// `seq 0, total 1` (the last also holding `END`), so a client that trusts `total` stops after
/// the first value. kcache frames the whole reply as one: `seq` 0..n-1, `total` n, which
/// clients of either kind read correctly.
#[test]
fn udp_multiget_of_24_keys() -> Result<()> {
    let (server, mut conn, mut udp) = start()?;
    let mut get = b"get".to_vec();
    for i in 0..24 {
        let value = format!("{i:03}").repeat(40);
        let set = format!("set key{i} {i} 0 {}\r\n{value}\r\n", value.len());
        conn.expect(set.as_bytes(), b"STORED\r\n")?;
        get.extend_from_slice(format!(" key{i}").as_bytes());
    }
    // One missing key in the middle, as a multiget often has.
    get.extend_from_slice(b" absent key23\r\n");
    let tcp = conn.call(&get)?;
    ensure!(tcp.ends_with(b"END\r\n") && tcp.len() > 24 * 120);
    // Collect until the datagrams, in arrival order, hold a whole reply (or all `total` came).
    let datagrams = udp.request_until(&get, REPLY, |got| {
        let bytes: Vec<u8> = got.iter().flat_map(|d| d.payload.iter().copied()).collect();
        let whole = reply::reply_len(&bytes, ReplyKind::Retrieval) == Some(bytes.len());
        let all = got
            .first()
            .is_some_and(|d| d.total > 1 && got.len() >= usize::from(d.total));
        whole || all
    })?;
    let frames: Vec<(u16, u16)> = datagrams.iter().map(|d| (d.seq, d.total)).collect();
    let reply = match server.target() {
        Target::Kcache => reply_bytes(&datagrams)?,
        Target::Memcached => {
            ensure!(frames.iter().all(|&f| f == (0, 1)), "{frames:?}");
            datagrams
                .iter()
                .flat_map(|d| d.payload.iter().copied())
                .collect()
        }
    };
    ensure!(
        reply == tcp,
        "frames {frames:?}\nUDP {}\nTCP {}",
        show(&reply, 200),
        show(&tcp, 200)
    );
    Ok(())
}
