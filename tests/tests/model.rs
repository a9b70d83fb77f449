//! Model test: seeded random request sequences run through the engine's request pipeline (one
//! connection of a server of one to three shards, `cache_core::pipeline::sim`: the same
//! `Session`, routing, cross-shard requests and reply ordering the engine runs, with messages
//! between shards delivered in a seeded order) and, side by side, through a plain `HashMap`
//! model of memcached 1.6 (`model/plain.rs`). Every reply must match the model's byte for byte.
//!
//! Multigets pick keys from the whole pool, so with several shards most of them span shards;
//! the runs count the ones whose keys are on two shards or more (computed with the server's
//! placement) and require some. Now and then a burst of 2..=12 requests that write nothing is
//! sent at once, pipelined, and their replies must be the model's in order.
//!
//! Pages are 64 KiB and values up to 3000 bytes, which spreads items over some 55 slab classes.
//! Even seeds get 8 pages per shard: classes keep taking pages from each other, dropping whole
//! pages of items. Odd seeds get 64 pages per shard: every class keeps a page, phases of
//! similar-sized values fill a class, and the CLOCK hand evicts and reclaims. The clock is injected and moves by 0..=3
//! seconds now and then, calling `rebalance` as the engine does once a second.
//!
//! Removals by the store are the one allowed divergence, and only because the store reports them
//! (`Store::record_removals`):
//!
//! - Every key the store reports removed while running request i is deleted from the model
//!   before the model computes request i's reply.
//! - Except the request's own key when the request may allocate (storage commands, `incr`,
//!   `decr`, `ms`, `ma`): the store looks that key up before allocating, so the allocation can
//!   only have evicted the version being replaced. The model runs the request on the key's prior
//!   state and keeps what it wrote (or drops the key if it wrote nothing).
//! - A report must be plausible: `Evicted` only for a key the model holds live, `Reclaimed` only
//!   for one it holds dead or not at all; `PageMoved` may be either.
//!
//! Anything else fails with the seed, the request's index and bytes, and both replies: a wrong
//! value, flags, CAS or TTL, a hit the model calls a miss or the reverse, a different error line.
//! One request in 20 is fed in two pieces, and the first piece must do nothing. At the end of
//! each run an `mg` scan over every key checks that the store holds exactly the model's live
//! items, with `curr_items` and `bytes` to match.

#[path = "model/draw.rs"]
mod draw;
#[path = "model/plain.rs"]
mod plain;
#[path = "model/request.rs"]
mod request;

use std::fmt::Write as _;

use cache_core::{
    pipeline::{
        route::shard_of,
        sim::{Config, Sim},
        Limits,
    },
    store::{item::item_len, slabs::Removal, StoreConfig},
};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use self::{
    draw::{Phase, Pool},
    plain::{Item, Plain},
    request::{Flag, Op},
};

/// The injected clock's start (Unix seconds).
const START: u32 = 1_700_000_000;
const PAGE: usize = 64 * 1024;
/// Arena sizes in pages (see the top of the file).
const TINY: usize = 8;
const FULL: usize = 64;
/// Requests between changes of the value-size profile and flush rate.
const PHASE: usize = 2500;
/// The longest pipelined burst.
const BURST: usize = 12;

#[test]
fn random_sequences_match_the_plain_model() {
    check((0..16).map(|seed| (seed, 20_000)));
}

#[test]
fn long_sequences_match_the_plain_model() {
    // One full arena, one tiny.
    check([(0x6b63_6163_6865, 150_000), (0x6b63_6163_6866, 150_000)]);
}

/// Runs each `(seed, requests)` and checks that, together, the runs went through every kind of
/// removal the store reports, so the divergence rule above was really put to work.
fn check(runs: impl IntoIterator<Item = (u64, usize)>) {
    let mut total = Tally::default();
    for (seed, ops) in runs {
        let mut run = match Run::new(seed) {
            Ok(run) => run,
            Err(why) => panic!("seed {seed:#x}: no store: {why}"),
        };
        if let Err(why) = run.go(ops) {
            panic!("{why}");
        }
        println!("seed {seed:#x}: {ops} requests, {:?}", run.tally);
        total.add(&run.tally);
    }
    let t = &total;
    let idle = [
        (t.evicted, "evicted"),
        (t.reclaimed, "reclaimed"),
        (t.page_moved, "page_moved"),
        (t.rebalanced, "rebalanced"),
        (t.own_key_removed, "own_key_removed"),
    ];
    for (n, what) in idle {
        assert!(n > 0, "no run saw {what}: {total:?}");
    }
    assert!(
        t.mixed_multigets > 1000 && t.bursts > 100,
        "too few multigets across shards or pipelined bursts: {total:?}"
    );
}

/// What a run went through, to show it exercised what it claims to.
#[derive(Debug, Default)]
struct Tally {
    evicted: u64,
    reclaimed: u64,
    page_moved: u64,
    /// Pages `rebalance` moved.
    rebalanced: u64,
    /// Removals of a request's own key while it wrote.
    own_key_removed: u64,
    /// Requests fed in two pieces.
    split: u64,
    /// Multigets whose keys live on two shards or more.
    mixed_multigets: u64,
    /// Pipelined bursts, and the requests in them.
    bursts: u64,
    burst_requests: u64,
    /// Requests whose (first) key the model held live beforehand.
    found: u64,
    items_at_end: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.evicted += o.evicted;
        self.reclaimed += o.reclaimed;
        self.page_moved += o.page_moved;
        self.rebalanced += o.rebalanced;
        self.own_key_removed += o.own_key_removed;
        self.split += o.split;
        self.mixed_multigets += o.mixed_multigets;
        self.bursts += o.bursts;
        self.burst_requests += o.burst_requests;
        self.found += o.found;
        self.items_at_end += o.items_at_end;
    }
}

/// One request as it went in (or a clock tick, with no request), for a failure report.
struct Seen<'a> {
    index: usize,
    op: Option<&'a Op>,
    /// The model's view of each key the request names, before it ran.
    before: Vec<(Vec<u8>, Option<Item>)>,
}

struct Run {
    seed: u64,
    rng: SmallRng,
    pool: Pool,
    plain: Plain,
    sim: Sim,
    conn: usize,
    shards: usize,
    tally: Tally,
}

impl Run {
    fn new(seed: u64) -> Result<Run, String> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let pool = Pool::new(&mut rng);
        let pages = if seed % 2 == 0 { TINY } else { FULL };
        let shards = 1 + (seed / 2 % 3) as usize;
        let cfg = Config {
            shards,
            arena: pages * PAGE,
            store: StoreConfig {
                page_size: PAGE,
                item_max: PAGE,
                ..StoreConfig::default()
            },
            limits: Limits::new(PAGE, 1 << 20),
            // The client reads everything at once: no request waits for room here (the
            // pipeline's own tests cover that).
            window: 16 << 20,
            seed,
            ..Config::default()
        };
        let mut sim = Sim::new(&cfg, START).map_err(|e| e.to_string())?;
        for s in 0..shards {
            sim.worker(s).record_removals();
        }
        let conn = sim.connect(0);
        Ok(Run {
            seed,
            rng,
            pool,
            plain: Plain::new(START, shards),
            sim,
            conn,
            shards,
            tally: Tally::default(),
        })
    }

    fn go(&mut self, ops: usize) -> Result<(), String> {
        // The first phase spreads sizes, so every class takes a page before any band settles.
        let mut phase = Phase::SPREAD;
        let mut i = 0;
        while i < ops {
            if i % PHASE == 0 && i > 0 {
                phase = Phase::draw(&mut self.rng);
            }
            if self.rng.gen_ratio(1, 20) {
                self.tick(i)?;
            }
            if self.rng.gen_ratio(1, 15) {
                let n = self.rng.gen_range(2..=BURST);
                let burst = self.draw_burst(phase, n);
                self.burst(i, &burst)?;
                i += n;
                continue;
            }
            let op = draw::op(&mut self.rng, &self.pool, phase, &self.plain);
            self.step(i, &op)?;
            i += 1;
        }
        self.scan(ops)?;
        Ok(())
    }

    /// `n` requests that write nothing (so the store can only reclaim what the model holds dead
    /// while they run) and flush nothing.
    fn draw_burst(&mut self, phase: Phase, n: usize) -> Vec<Op> {
        let mut burst = Vec::with_capacity(n);
        while burst.len() < n {
            let op = draw::op(&mut self.rng, &self.pool, phase, &self.plain);
            if op.written_key().is_none() && !matches!(op, Op::Flush { .. }) {
                burst.push(op);
            }
        }
        burst
    }

    /// Moves the clock on by 0..=3 seconds; on a new second the engine's once-a-second page
    /// balancing runs on every shard, and what it drops leaves the model too.
    fn tick(&mut self, index: usize) -> Result<(), String> {
        let step = self.rng.gen_range(0..=3);
        if step == 0 {
            return Ok(());
        }
        self.plain.now += step;
        self.sim.set_now(self.plain.now);
        for s in 0..self.shards {
            if self.sim.worker(s).tick(self.plain.now, true).is_some() {
                self.tally.rebalanced += 1;
            }
        }
        let removals = self.removals();
        let seen = Seen {
            index,
            op: None,
            before: Vec::new(),
        };
        self.absorb(&seen, &removals, &[]).map(|_| ())
    }

    /// What every shard removed since the last call.
    fn removals(&mut self) -> Vec<(Removal, Vec<u8>)> {
        (0..self.shards)
            .flat_map(|s| self.sim.worker(s).take_removals())
            .collect()
    }

    /// Counts a multiget whose keys are on several shards.
    fn note_spread(&mut self, op: &Op) {
        if let Op::Get { keys, .. } = op {
            let mut shards = keys.iter().map(|k| shard_of(k, self.shards));
            let first = shards.next();
            if shards.any(|s| Some(s) != first) {
                self.tally.mixed_multigets += 1;
            }
        }
    }

    /// Sends `wire` and returns what came back; the server must use all of it.
    fn exchange(&mut self, wire: &[u8]) -> Result<Vec<u8>, String> {
        self.sim.send(self.conn, wire);
        self.sim.run();
        let left = self.sim.unread_input(self.conn);
        if left != 0 || self.sim.closed(self.conn) {
            return Err(format!(
                "{left} of {} bytes left unread (closed: {})",
                wire.len(),
                self.sim.closed(self.conn)
            ));
        }
        Ok(self.sim.take_read(self.conn))
    }

    /// Runs one request on both sides and compares the replies.
    fn step(&mut self, index: usize, op: &Op) -> Result<(), String> {
        let wire = op.encode();
        let before = op
            .keys()
            .iter()
            .map(|k| (k.to_vec(), self.plain.live(k).cloned()))
            .collect();
        let seen = Seen {
            index,
            op: Some(op),
            before,
        };
        self.tally.found += u64::from(seen.before.first().is_some_and(|(_, it)| it.is_some()));
        self.note_spread(op);
        // Now and then the request arrives in two pieces: the first must do nothing at all.
        let mut rest = &wire[..];
        if self.rng.gen_ratio(1, 20) {
            self.tally.split += 1;
            let cut = self.rng.gen_range(1..wire.len());
            self.sim.send(self.conn, &wire[..cut]);
            self.sim.run();
            let out = self.sim.take_read(self.conn);
            let used = cut - self.sim.unread_input(self.conn);
            if used != 0 || self.sim.closed(self.conn) || !out.is_empty() {
                let why = format!("the first {cut} bytes alone were acted on ({used} used)");
                return Err(self.report(&seen, &why, &[], &out, &[]));
            }
            rest = &wire[cut..];
        }
        let out = match self.exchange(rest) {
            Ok(out) => out,
            Err(why) => return Err(self.report(&seen, &why, &[], &[], &[])),
        };
        let removals = self.removals();
        let own = op.written_key();
        let own_removed = self.absorb(&seen, &removals, &out)?;
        let outcome = self.plain.apply(op);
        if let (true, Some(own)) = (own_removed, own) {
            self.tally.own_key_removed += 1;
            if !outcome.wrote {
                self.plain.forget(own);
            }
        }
        if out != outcome.reply {
            return Err(self.report(&seen, "replies differ", &removals, &out, &outcome.reply));
        }
        Ok(())
    }

    /// Sends `ops` at once, pipelined; the replies must be the model's, in order.
    fn burst(&mut self, index: usize, ops: &[Op]) -> Result<(), String> {
        self.tally.bursts += 1;
        self.tally.burst_requests += ops.len() as u64;
        let wire: Vec<u8> = ops.iter().flat_map(Op::encode).collect();
        for op in ops {
            self.note_spread(op);
        }
        let seen = Seen {
            index,
            op: None,
            before: Vec::new(),
        };
        let out = match self.exchange(&wire) {
            Ok(out) => out,
            Err(why) => return Err(self.report(&seen, &why, &[], &[], &[])),
        };
        // Writing nothing, they can only have reclaimed what the model holds dead (absorb
        // checks), so the model may drop those keys first.
        let removals = self.removals();
        self.absorb(&seen, &removals, &out)?;
        let want: Vec<u8> = ops
            .iter()
            .flat_map(|op| self.plain.apply(op).reply)
            .collect();
        if out != want {
            let why = format!(
                "a pipelined burst of {} requests ({}) came back differently",
                ops.len(),
                show(&wire)
            );
            return Err(self.report(&seen, &why, &removals, &out, &want));
        }
        Ok(())
    }

    /// Applies the store's removal reports to the model (see the top of the file). Returns
    /// whether the request's own key was among them; that one is left for the caller.
    fn absorb(
        &mut self,
        seen: &Seen<'_>,
        removals: &[(Removal, Vec<u8>)],
        out: &[u8],
    ) -> Result<bool, String> {
        let own = seen.op.and_then(Op::written_key);
        let mut own_removed = false;
        for (why, key) in removals {
            let live = self.plain.live(key).is_some();
            let bad = match why {
                Removal::Evicted => {
                    self.tally.evicted += 1;
                    (!live).then_some("evicted a key the model holds dead or absent")
                }
                Removal::Reclaimed => {
                    self.tally.reclaimed += 1;
                    live.then_some("reclaimed a key the model holds live")
                }
                Removal::PageMoved => {
                    self.tally.page_moved += 1;
                    None
                }
            };
            if let Some(bad) = bad {
                let why = format!("{bad}: {}", show(key));
                return Err(self.report(seen, &why, removals, out, &[]));
            }
            if own == Some(&key[..]) {
                own_removed = true;
            } else {
                self.plain.forget(key);
            }
        }
        Ok(own_removed)
    }

    /// Looks every key up: the store must hold exactly the model's live items, and its counters
    /// must agree once the scan has unlinked whatever was dead.
    fn scan(&mut self, ops: usize) -> Result<(), String> {
        let keys: Vec<Vec<u8>> = self.pool.all().cloned().collect();
        let mut hits = 0;
        for (i, key) in keys.into_iter().enumerate() {
            let flags = b"vcft".iter().map(|&c| Flag::Ret(c)).collect();
            hits += u64::from(self.plain.live(&key).is_some());
            self.step(ops + i, &Op::MetaGet { key, flags })?;
        }
        let stats = (0..self.shards)
            .map(|s| self.sim.worker(s).store().stats())
            .fold(cache_core::store::Stats::default(), |mut sum, s| {
                sum.add(&s);
                sum
            });
        let bytes: usize = self
            .plain
            .live_items()
            .map(|(k, it)| item_len(k.len(), it.value.len(), false))
            .sum();
        self.tally.items_at_end = hits;
        if stats.curr_items != hits || stats.bytes != bytes as u64 {
            return Err(format!(
                "seed {:#x}: after the scan the store counts {} items of {} bytes, the model {} of {}",
                self.seed, stats.curr_items, stats.bytes, hits, bytes
            ));
        }
        Ok(())
    }

    fn report(
        &self,
        seen: &Seen<'_>,
        why: &str,
        removals: &[(Removal, Vec<u8>)],
        got: &[u8],
        want: &[u8],
    ) -> String {
        let mut s = String::new();
        let (seed, now, index) = (self.seed, self.plain.now, seen.index);
        let _ = writeln!(s, "seed {seed:#x}, request #{index} at now={now}: {why}");
        let _ = match seen.op {
            Some(op) => writeln!(s, "  request: {}", show(&op.encode())),
            None => writeln!(
                s,
                "  (a burst, or no request: the clock moved and `rebalance` ran)"
            ),
        };
        let _ = writeln!(s, "  shards:  {}", self.shards);
        let _ = writeln!(s, "  store:   {}", show(got));
        let _ = writeln!(s, "  model:   {}", show(want));
        if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
            let from = at.saturating_sub(80);
            let _ = writeln!(s, "  first difference at byte {at}:");
            let _ = writeln!(s, "    store: ...{}", show(&got[from..]));
            let _ = writeln!(s, "    model: ...{}", show(&want[from..]));
        }
        for (key, item) in &seen.before {
            let state = match item {
                Some(it) => format!(
                    "live, {} bytes {}, flags {}, exptime {}, cas {}, born {}",
                    it.value.len(),
                    show(&it.value),
                    it.flags,
                    it.exptime,
                    it.cas,
                    it.born
                ),
                None => "absent or dead".to_string(),
            };
            let _ = writeln!(s, "  model before, {}: {state}", show(key));
        }
        for (why, key) in removals {
            let _ = writeln!(s, "  removed by the store: {why:?} {}", show(key));
        }
        s
    }
}

/// Bytes for a failure message: printable ASCII as is, the rest escaped, long runs cut.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 160;
    let mut s = String::new();
    for &b in bytes.iter().take(MAX) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > MAX {
        let _ = write!(s, "... ({} bytes)", bytes.len());
    }
    s
}
