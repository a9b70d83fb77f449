//! A tiny client for tests: one shard of the pipeline ([`cache_core::pipeline::sim`]), byte
//! requests in, reply text out.

use cache_core::{
    pipeline::{
        sim::{Config, Sim},
        Worker,
    },
    store::StoreConfig,
};

pub(crate) struct Harness {
    sim: Sim,
    conn: usize,
    pub(crate) now: u32,
}

impl Harness {
    pub(crate) fn new(arena: usize, cfg: StoreConfig) -> Harness {
        let now = 1_700_000_000;
        let cfg = Config {
            shards: 1,
            arena,
            store: cfg,
            ..Config::default()
        };
        let Ok(mut sim) = Sim::new(&cfg, now) else {
            panic!("store")
        };
        let conn = sim.connect(0);
        Harness { sim, conn, now }
    }

    pub(crate) fn small() -> Harness {
        Harness::new(16 << 20, StoreConfig::default())
    }

    /// The shard's worker: its store to look at, and what tests do between requests.
    pub(crate) fn worker(&mut self) -> &mut Worker<Vec<u8>, ()> {
        self.sim.worker(0)
    }

    /// Sends `req` (with `\r\n` already in it) and returns the reply as text.
    pub(crate) fn send(&mut self, req: &str) -> String {
        self.sim.set_now(self.now);
        self.sim.send(self.conn, req.as_bytes());
        self.sim.run();
        assert_eq!(
            self.sim.unread_input(self.conn),
            0,
            "request not fully consumed: {req:?}"
        );
        String::from_utf8_lossy(&self.sim.take_read(self.conn)).into_owned()
    }

    /// Sends each (request, expected reply) pair in order.
    pub(crate) fn script(&mut self, steps: &[(&str, &str)]) {
        for (i, (req, want)) in steps.iter().enumerate() {
            assert_eq!(self.send(req), *want, "step {i}: {req:?}");
        }
    }
}
