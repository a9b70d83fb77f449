//! Model test: seeded random request sequences run through `Session::feed` against a store with a
//! small arena and, side by side, through a plain `HashMap` model of memcached 1.6
//! (`model/plain.rs`). Every reply must match the model's byte for byte.
//!
//! Pages are 64 KiB and values up to 3000 bytes, which spreads items over some 55 slab classes.
//! Even seeds get 8 pages: classes keep taking pages from each other, dropping whole pages of
//! items. Odd seeds get 64 pages: every class keeps a page, phases of similar-sized values fill
//! a class, and the CLOCK hand evicts and reclaims. The clock is injected and moves by 0..=3
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
    exec::Session,
    protocol::{Parser, Request},
    store::{item::item_len, slabs::Removal, Store, StoreConfig},
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
    store: Store<Vec<u8>>,
    parser: Parser,
    session: Session,
    tally: Tally,
}

impl Run {
    fn new(seed: u64) -> Result<Run, String> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let pool = Pool::new(&mut rng);
        let pages = if seed % 2 == 0 { TINY } else { FULL };
        let cfg = StoreConfig {
            page_size: PAGE,
            item_max: PAGE,
            ..StoreConfig::default()
        };
        let mut store = Store::new(vec![0u8; pages * PAGE], cfg).map_err(|e| e.to_string())?;
        store.record_removals();
        Ok(Run {
            seed,
            rng,
            pool,
            plain: Plain::new(START),
            store,
            parser: Parser::new(),
            session: Session::new(),
            tally: Tally::default(),
        })
    }

    fn go(&mut self, ops: usize) -> Result<(), String> {
        // The first phase spreads sizes, so every class takes a page before any band settles.
        let mut phase = Phase::SPREAD;
        for i in 0..ops {
            if i % PHASE == 0 && i > 0 {
                phase = Phase::draw(&mut self.rng);
            }
            if self.rng.gen_ratio(1, 20) {
                self.tick(i)?;
            }
            let op = draw::op(&mut self.rng, &self.pool, phase, &self.plain);
            self.step(i, &op)?;
        }
        self.scan(ops)?;
        Ok(())
    }

    /// Moves the clock on by 0..=3 seconds; on a new second the engine's once-a-second page
    /// balancing runs, and what it drops leaves the model too.
    fn tick(&mut self, index: usize) -> Result<(), String> {
        let step = self.rng.gen_range(0..=3);
        if step == 0 {
            return Ok(());
        }
        self.plain.now += step;
        if self.store.rebalance(self.plain.now).is_some() {
            self.tally.rebalanced += 1;
        }
        let removals = self.store.take_removals();
        let seen = Seen {
            index,
            op: None,
            before: Vec::new(),
        };
        self.absorb(&seen, &removals, &[]).map(|_| ())
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
        let now = self.plain.now;
        let mut out = Vec::new();
        // Now and then the request arrives in two pieces: the first must do nothing at all.
        if self.rng.gen_ratio(1, 20) {
            self.tally.split += 1;
            let cut = self.rng.gen_range(1..wire.len());
            let fed = self.session.feed(
                &self.parser,
                &mut self.store,
                &wire[..cut],
                now,
                &mut out,
                &mut no_stats,
            );
            if fed.consumed != 0 || fed.close || !out.is_empty() {
                let why = format!("the first {cut} bytes alone were acted on: {fed:?}");
                return Err(self.report(&seen, &why, &[], &out, &[]));
            }
        }
        let fed = self.session.feed(
            &self.parser,
            &mut self.store,
            &wire,
            now,
            &mut out,
            &mut no_stats,
        );
        if fed.consumed != wire.len() || fed.close {
            let why = format!("feed stopped early: {fed:?} of {} bytes", wire.len());
            return Err(self.report(&seen, &why, &[], &out, &[]));
        }
        let removals = self.store.take_removals();
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
        let stats = self.store.stats();
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
            None => writeln!(s, "  (no request: the clock moved and `rebalance` ran)"),
        };
        let _ = writeln!(s, "  store:   {}", show(got));
        let _ = writeln!(s, "  model:   {}", show(want));
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

/// `stats` is never sent.
fn no_stats(_: &Request<'_>, _: &Store<Vec<u8>>, _: &mut Vec<u8>) {}

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
