//! Probes of down servers, and the replay of their spooled deletes before they count as up
//! (`health.rs`, `spool.rs`).

use std::{sync::Arc, time::Instant};

use cache_core::{
    pipeline::Ticket,
    protocol::reply::{is_error, Expect},
};

use super::*;

/// The client and ticket of work the router does for itself (probes, replays).
const NO_CLIENT: ConnId = ConnId::from_token(u64::MAX);
const NO_TICKET: Ticket = Ticket { seq: 0, part: 0 };

impl Shard {
    /// Spools `entry` (a delete) for destination `d`.
    pub(super) fn spool(&mut self, d: usize, entry: &[u8]) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        f.counters.spooled += 1;
        if let Err(e) = f.table.spool.append(d, entry) {
            tracing::error!(server = %f.table.dests[d].addr, "spooling a delete: {e:#}");
        }
    }

    /// A probe of `d` came back: if it answered, its spooled deletes are replayed on the probe's
    /// connection before it counts as up (`spool.rs`).
    pub(super) fn probe_answered(&mut self, d: usize, out: OutId, up: bool) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let table = Arc::clone(&f.table);
        let entries = if up {
            table.spool.take(d).unwrap_or_else(|e| {
                tracing::error!(server = %table.dests[d].addr, "reading the spool: {e:#}");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        if !up || entries.is_empty() {
            table.health.probed(d, up, table.now_ms());
            if up {
                tracing::info!(server = %table.dests[d].addr, "up again (probe answered)");
            }
            return self.outbound.close(&mut self.ring, out);
        }
        let group = f.token();
        f.replays.insert(
            group,
            ReplayWait {
                dest: d,
                out,
                left: entries.len(),
                failed: Vec::new(),
            },
        );
        let now = Instant::now();
        for entry in entries {
            let Some(f) = self.router.as_mut() else {
                return;
            };
            let expect = if entry.starts_with(b"md ") {
                Expect::Meta
            } else {
                Expect::Line
            };
            let token = f.token();
            self.outbound.send(out, &entry, Some(expect), token, now);
            let Some(f) = self.router.as_mut() else {
                return;
            };
            f.remember(
                token,
                NO_CLIENT,
                NO_TICKET,
                d,
                What::Replay { group, entry },
            );
        }
    }

    /// One replayed delete's reply; once all are in, the server is up (or, if any failed, they
    /// are spooled again and the next probe waits).
    pub(super) fn replay_answered(
        &mut self,
        group: u64,
        entry: Vec<u8>,
        reply: &Result<Vec<u8>, OutError>,
    ) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let Some(w) = f.replays.get_mut(&group) else {
            return;
        };
        let took = matches!(reply, Ok(b) if !is_error(b));
        if took {
            f.counters.replayed += 1;
        } else {
            w.failed.push(entry);
        }
        w.left -= 1;
        if w.left > 0 {
            return;
        }
        let Some(w) = f.replays.remove(&group) else {
            return;
        };
        let table = Arc::clone(&f.table);
        let ok = w.failed.is_empty();
        for e in &w.failed {
            if let Err(err) = table.spool.append(w.dest, e) {
                tracing::error!(server = %table.dests[w.dest].addr, "spooling again: {err:#}");
            }
        }
        table.health.probed(w.dest, ok, table.now_ms());
        if ok {
            tracing::info!(server = %table.dests[w.dest].addr, "up again (spooled deletes replayed)");
        }
        self.outbound.close(&mut self.ring, w.out);
    }

    /// Probes the down servers whose probe is due and that no other thread probes: `version`
    /// on a connection of its own (`health.rs`).
    pub(super) fn probe_down(&mut self) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let table = Arc::clone(&f.table);
        let now = table.now_ms();
        for d in 0..table.health.len() {
            if !table.health.claim_probe(d, now) {
                continue;
            }
            let dest = &table.dests[d];
            let Ok(out) = self.outbound.open(&mut self.ring, dest.addr, dest.timeout) else {
                table.health.probed(d, false, now);
                continue;
            };
            let Some(f) = self.router.as_mut() else {
                return;
            };
            f.counters.probes += 1;
            let token = f.expect(NO_CLIENT, NO_TICKET, d, What::Probe { out });
            let (bytes, expect) = (b"version\r\n", Some(Expect::Line));
            self.outbound
                .send(out, bytes, expect, token, Instant::now());
        }
    }
}
