//! `kcache herd`: the hot-key herd of Meta's "Scaling Memcache at Facebook" (§3.2.1), counting
//! backend fills.
//!
//! Each round deletes one key, then releases every client at once; each wants the value. Without
//! leases (`plain`) every client that misses fetches from the "backend" (a sleep) and sets the
//! key, so a herd of N can cost N fills. With memcached 1.6's meta leases (`lease`) a miss asks
//! `mg <key> v c t N<ttl>`: the first caller gets `W` with an empty placeholder and fills with
//! `ms <key> <n> C<cas>` (refused if the key changed since, as protocol.txt's `C` says); later
//! callers get `Z` and ask again every [`RETRY`] until the value is there, so a round costs one
//! fill. An `X` (stale) value counts as not there yet.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Barrier,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use self::report::Report;

mod report;

pub(crate) const HERD_AFTER_HELP: &str = "\
Each round deletes --key on a control connection, then releases every client at once (one
thread and one TCP connection each). plain: `get`; on a miss sleep --backend-ms (one backend
fill) and `set`. lease: `mg <key> v c t N30`; W = fetch (one fill) and `ms <key> <n> C<cas>`;
Z = another client is filling: ask again every 1 ms, for at most 5 s. Time to value runs from
the round's release until a client has the value.";

/// The lease period asked for with `N`: only matters if a winner never fills.
const LEASE_TTL: u32 = 30;
/// How long a client that got `Z` waits before asking again.
const RETRY: Duration = Duration::from_millis(1);
/// How long a client may go without the value before the run fails.
const WAIT_LIMIT: Duration = Duration::from_secs(5);
/// Largest --value-size; a reply announcing more than the run's values is refused unread.
const VALUE_MAX: usize = 1 << 20;

/// `kcache herd` flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct HerdArgs {
    /// Server address (TCP)
    #[arg(
        short = 's',
        long,
        default_value = "127.0.0.1:11211",
        value_name = "HOST:PORT"
    )]
    pub(crate) server: String,
    /// Clients in the herd, each with its own thread and TCP connection
    #[arg(short = 'c', long, default_value_t = 50, value_name = "N")]
    pub(crate) clients: usize,
    /// Rounds, each starting with a delete of the key
    #[arg(short = 'r', long, default_value_t = 20, value_name = "R")]
    pub(crate) rounds: usize,
    /// Milliseconds one simulated backend fetch takes
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub(crate) backend_ms: u64,
    /// lease: memcached 1.6 meta leases (mg N / W / Z); plain: get, then set on a miss
    #[arg(long, value_enum, default_value_t = Mode::Lease)]
    pub(crate) mode: Mode,
    /// Also write the results as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// The hot key
    #[arg(long, default_value = "herd:hot")]
    pub(crate) key: String,
    /// Bytes in the value the fills store
    #[arg(long, default_value_t = 32, value_name = "BYTES")]
    pub(crate) value_size: usize,
}

/// How clients that miss get the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// memcached 1.6 meta leases: one winner fills, the others wait.
    Lease,
    /// No leases: every client that misses fills.
    Plain,
}

/// Runs `kcache herd` and prints (and maybe writes) the report.
pub(crate) fn run(args: &HerdArgs) -> Result<()> {
    let plan = Plan::new(args)?;
    let rounds = execute(&plan)?;
    let report = Report::new(&plan, &rounds);
    print!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A checked run.
#[derive(Debug, Clone)]
struct Plan {
    addr: SocketAddr,
    clients: usize,
    rounds: usize,
    backend: Duration,
    mode: Mode,
    key: String,
    value: Vec<u8>,
}

impl Plan {
    fn new(a: &HerdArgs) -> Result<Self> {
        let addr = super::args::resolve(&a.server)?;
        ensure!(a.clients >= 1, "--clients must be at least 1");
        ensure!(a.rounds >= 1, "--rounds must be at least 1");
        ensure!(
            !a.key.is_empty() && a.key.len() <= 250 && a.key.bytes().all(|b| b.is_ascii_graphic()),
            "--key must be 1 to 250 printable ASCII bytes without spaces"
        );
        ensure!(
            (1..=VALUE_MAX).contains(&a.value_size),
            "--value-size must be 1 to {VALUE_MAX}"
        );
        Ok(Self {
            addr,
            clients: a.clients,
            rounds: a.rounds,
            backend: Duration::from_millis(a.backend_ms),
            mode: a.mode,
            key: a.key.clone(),
            value: vec![b'h'; a.value_size],
        })
    }
}

/// One client's part of a round.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// When the client had the value.
    done: Instant,
    fills: u32,
    requests: u32,
    /// Lease fills the server refused (`ms` with `C` answered `EX` or `NF`).
    refused: u32,
}

/// What one round measured.
#[derive(Debug, Clone, Default)]
struct Round {
    fills: u32,
    requests: u32,
    refused: u32,
    /// Microseconds from the release until each client had the value, in client order.
    to_value_us: Vec<u64>,
    /// Microseconds until every client had the value.
    all_us: u64,
}

/// Connects every client, runs the rounds and returns what each measured.
fn execute(plan: &Plan) -> Result<Vec<Round>> {
    let mut control = Client::connect(plan.addr)?;
    let clients = (0..plan.clients)
        .map(|_| Client::connect(plan.addr))
        .collect::<Result<Vec<_>>>()?;
    // Clients and this thread meet at the barrier to start each round; `stop` set before the
    // last meeting sends the clients home.
    let barrier = Barrier::new(plan.clients + 1);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        for (i, mut client) in clients.into_iter().enumerate() {
            let (tx, barrier, stop) = (tx.clone(), &barrier, &stop);
            s.spawn(move || loop {
                barrier.wait();
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let outcome = client.want(plan).with_context(|| format!("client {i}"));
                if tx.send(outcome).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let rounds = rounds(plan, &mut control, &barrier, &rx);
        stop.store(true, Ordering::Release);
        barrier.wait();
        rounds
    })
}

/// The rounds, driven from the control connection; returns with every client at the barrier.
fn rounds(
    plan: &Plan,
    control: &mut Client,
    barrier: &Barrier,
    rx: &mpsc::Receiver<Result<Outcome>>,
) -> Result<Vec<Round>> {
    let mut rounds = Vec::with_capacity(plan.rounds);
    for r in 0..plan.rounds {
        control.delete(&plan.key)?;
        let start = Instant::now();
        barrier.wait();
        let mut round = Round::default();
        let mut failed = None;
        // One message from every client, even after a failure, so all are back at the barrier.
        for _ in 0..plan.clients {
            match rx.recv().context("a client thread ended")? {
                Ok(o) => {
                    round.fills += o.fills;
                    round.requests += o.requests;
                    round.refused += o.refused;
                    let us = micros(o.done.saturating_duration_since(start));
                    round.to_value_us.push(us);
                    round.all_us = round.all_us.max(us);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e.context(format!("round {}", r + 1)));
        }
        rounds.push(round);
    }
    Ok(rounds)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One blocking connection; a read or write stuck past [`WAIT_LIMIT`] fails the run.
#[derive(Debug)]
struct Client {
    conn: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(WAIT_LIMIT))?;
        stream.set_write_timeout(Some(WAIT_LIMIT))?;
        Ok(Self {
            conn: BufReader::new(stream),
        })
    }

    /// Gets the value as `plan.mode` says, fetching it from the backend if told to.
    fn want(&mut self, plan: &Plan) -> Result<Outcome> {
        match plan.mode {
            Mode::Plain => self.want_plain(plan),
            Mode::Lease => self.want_leased(plan),
        }
    }

    fn want_plain(&mut self, plan: &Plan) -> Result<Outcome> {
        let key = &plan.key;
        self.send(format!("get {key}\r\n").as_bytes())?;
        let line = self.line()?;
        let mut out = Outcome {
            done: Instant::now(),
            fills: 0,
            requests: 1,
            refused: 0,
        };
        if line == b"END" {
            thread::sleep(plan.backend);
            let mut set = format!("set {key} 0 0 {}\r\n", plan.value.len()).into_bytes();
            set.extend_from_slice(&plan.value);
            set.extend_from_slice(b"\r\n");
            self.send(&set)?;
            let reply = self.line()?;
            ensure!(reply == b"STORED", "set: {}", reply.escape_ascii());
            (out.done, out.fills, out.requests) = (Instant::now(), 1, 2);
            return Ok(out);
        }
        // `VALUE <key> <flags> <bytes>`
        let len = line
            .strip_prefix(b"VALUE ")
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|rest| rest.split(' ').nth(2)?.parse().ok())
            .with_context(|| format!("get: {}", line.escape_ascii()))?;
        let value = self.data(len, plan)?;
        let end = self.line()?;
        ensure!(end == b"END", "get: {} after the value", end.escape_ascii());
        check_value(&value, plan)?;
        out.done = Instant::now();
        Ok(out)
    }

    fn want_leased(&mut self, plan: &Plan) -> Result<Outcome> {
        let key = &plan.key;
        let ask = format!("mg {key} v c t N{LEASE_TTL}\r\n");
        let mut out = Outcome {
            done: Instant::now(),
            fills: 0,
            requests: 0,
            refused: 0,
        };
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            self.send(ask.as_bytes())?;
            out.requests += 1;
            let line = self.line()?;
            let va = Va::parse(&line).with_context(|| format!("mg: {}", line.escape_ascii()))?;
            let value = self.data(va.len, plan)?;
            if va.won {
                thread::sleep(plan.backend);
                out.fills += 1;
                let cas = va.cas.context("mg: a W reply without the c flag's CAS")?;
                let mut ms = format!("ms {key} {} C{cas}\r\n", plan.value.len()).into_bytes();
                ms.extend_from_slice(&plan.value);
                ms.extend_from_slice(b"\r\n");
                self.send(&ms)?;
                out.requests += 1;
                match self.line()?.as_slice() {
                    b"HD" => {
                        out.done = Instant::now();
                        return Ok(out);
                    }
                    // The key changed since the lease was granted: ask again.
                    b"EX" | b"NF" => out.refused += 1,
                    other => bail!("ms: {}", other.escape_ascii()),
                }
            } else if !va.held && !va.stale {
                check_value(&value, plan)?;
                out.done = Instant::now();
                return Ok(out);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no value after {WAIT_LIMIT:?} ({} mg requests; last reply {})",
                    out.requests,
                    line.escape_ascii()
                );
            }
            thread::sleep(RETRY);
        }
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        self.send(format!("delete {key}\r\n").as_bytes())?;
        let reply = self.line()?;
        ensure!(
            reply == b"DELETED" || reply == b"NOT_FOUND",
            "delete {key}: {}",
            reply.escape_ascii()
        );
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn
            .get_mut()
            .write_all(bytes)
            .context("sending to the server")
    }

    /// One reply line without its `\r\n`.
    fn line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = (&mut self.conn)
            .take(4096)
            .read_until(b'\n', &mut line)
            .context("reading from the server")?;
        ensure!(n > 0, "the server closed the connection");
        ensure!(
            line.ends_with(b"\r\n"),
            "a reply line without \\r\\n: {}",
            line.escape_ascii()
        );
        line.truncate(line.len() - 2);
        Ok(line)
    }

    /// A data block of `len` bytes and its `\r\n`.
    fn data(&mut self, len: usize, plan: &Plan) -> Result<Vec<u8>> {
        ensure!(
            len <= plan.value.len(),
            "a {len}-byte value, longer than this run's {}-byte values",
            plan.value.len()
        );
        let mut data = vec![0; len + 2];
        self.conn
            .read_exact(&mut data)
            .context("reading a value from the server")?;
        ensure!(data.ends_with(b"\r\n"), "a value not followed by \\r\\n");
        data.truncate(len);
        Ok(data)
    }
}

/// A hit must return what the fills store.
fn check_value(value: &[u8], plan: &Plan) -> Result<()> {
    ensure!(
        value == plan.value,
        "a hit returned {} bytes {}, not this run's value",
        value.len(),
        value.escape_ascii()
    );
    Ok(())
}

/// The parts of an `mg` value reply (`VA <len> <flags>*`) the herd looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Va {
    len: usize,
    cas: Option<u64>,
    /// `W`: this client won the lease and must fill.
    won: bool,
    /// `Z`: another client holds the lease.
    held: bool,
    /// `X`: the value is stale.
    stale: bool,
}

impl Va {
    fn parse(line: &[u8]) -> Option<Self> {
        let mut words = std::str::from_utf8(line).ok()?.split(' ');
        if words.next()? != "VA" {
            return None;
        }
        let mut va = Self {
            len: words.next()?.parse().ok()?,
            ..Self::default()
        };
        for flag in words {
            match flag.split_at_checked(1)? {
                ("c", cas) => va.cas = Some(cas.parse().ok()?),
                ("W", "") => va.won = true,
                ("Z", "") => va.held = true,
                ("X", "") => va.stale = true,
                _ => {}
            }
        }
        Some(va)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn va_lines() {
        let va = |len, cas, won, held, stale| Va {
            len,
            cas,
            won,
            held,
            stale,
        };
        let cases: &[(&[u8], Option<Va>)] = &[
            // The winner's placeholder (memcached 1.6.18's exact reply).
            (b"VA 0 c1 t-1 W", Some(va(0, Some(1), true, false, false))),
            // Someone else is filling.
            (b"VA 0 c1 t30 Z", Some(va(0, Some(1), false, true, false))),
            // A stale value whose refill is under way.
            (b"VA 3 c3 Z X", Some(va(3, Some(3), false, true, true))),
            // A hit.
            (b"VA 32 c4 t-1", Some(va(32, Some(4), false, false, false))),
            // Not a value reply.
            (b"EN", None),
            (b"SERVER_ERROR out of memory", None),
            // A CAS that is not a number.
            (b"VA 0 cx W", None),
        ];
        for (line, want) in cases {
            assert_eq!(Va::parse(line), *want, "{}", line.escape_ascii());
        }
    }
}
