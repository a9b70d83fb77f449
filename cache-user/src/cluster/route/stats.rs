//! A router's `stats`: the process (as memcached names it) and the backend counters of every
//! shard, summed; `stats servers`, each server's state. `stats reset` zeroes the counters (the
//! engine's host handles it).

use std::{fmt::Write as _, sync::atomic::Ordering};

use super::RouteCounters;
use crate::engine::{Shared, StatsPart};

/// `stats <args>` on a router: the general group, or `ERROR` for a group it does not keep.
pub(crate) fn write_stats(
    shared: &Shared,
    args: &[u8],
    parts: &[StatsPart],
    now: u32,
    out: &mut Vec<u8>,
) {
    let args = args.trim_ascii();
    if args == b"servers" {
        return servers(shared, out);
    }
    if !args.is_empty() {
        out.extend_from_slice(b"ERROR\r\n");
        return;
    }
    let mut sum = RouteCounters::default();
    let (mut read, mut written, mut loop_max) = (0, 0, 0);
    for (_, _, c) in parts {
        read += c.bytes_read;
        written += c.bytes_written;
        loop_max = loop_max.max(c.loop_max_us);
        let r = &c.route;
        sum.sent += r.sent;
        sum.errors += r.errors;
        sum.timeouts += r.timeouts;
        sum.unroutable += r.unroutable;
        sum.get_errors += r.get_errors;
        sum.connects += r.connects;
        sum.fast_fails += r.fast_fails;
        sum.probes += r.probes;
        sum.gutter += r.gutter;
        sum.spooled += r.spooled;
        sum.replayed += r.replayed;
        sum.retries += r.retries;
    }
    let servers = shared.route.as_ref().map_or(0, |t| t.dests.len());
    let pools = shared.route.as_ref().map_or(0, |t| t.pools.len());
    let mut s = String::new();
    let mut stat = |name: &str, v: &dyn std::fmt::Display| {
        let _ = write!(s, "STAT {name} {v}\r\n");
    };
    stat("pid", &std::process::id());
    stat("uptime", &now.saturating_sub(shared.started));
    stat("time", &now);
    stat("version", &cache_core::exec::VERSION);
    stat("threads", &shared.mailboxes.len());
    stat(
        "curr_connections",
        &shared.curr_conns.load(Ordering::Relaxed),
    );
    stat(
        "total_connections",
        &shared.total_conns.load(Ordering::Relaxed),
    );
    stat("bytes_read", &read);
    stat("bytes_written", &written);
    stat("event_loop_max_us", &loop_max);
    stat("route_pools", &pools);
    stat("route_servers", &servers);
    stat("route_sent", &sum.sent);
    stat("route_errors", &sum.errors);
    stat("route_timeouts", &sum.timeouts);
    stat("route_unroutable", &sum.unroutable);
    stat("route_get_errors", &sum.get_errors);
    stat("route_connects", &sum.connects);
    stat("route_fast_fails", &sum.fast_fails);
    stat("route_probes", &sum.probes);
    stat("route_gutter", &sum.gutter);
    stat("route_spooled", &sum.spooled);
    stat("route_replayed", &sum.replayed);
    stat("route_retries", &sum.retries);
    let down = shared.route.as_ref().map_or(0, |t| {
        (0..t.dests.len()).filter(|&d| t.health.is_down(d)).count()
    });
    stat("route_servers_down", &down);
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"END\r\n");
}

/// `stats servers`: `STAT <addr> <state> soft_tko:<n> hard_tko:<n>` for each server, in the
/// configuration's order.
fn servers(shared: &Shared, out: &mut Vec<u8>) {
    if let Some(t) = &shared.route {
        for (d, dest) in t.dests.iter().enumerate() {
            let (soft, hard) = t.health.tkos(d);
            let line = format!(
                "STAT {} {} soft_tko:{soft} hard_tko:{hard}\r\n",
                dest.addr,
                t.health.state(d).name()
            );
            out.extend_from_slice(line.as_bytes());
        }
    }
    out.extend_from_slice(b"END\r\n");
}
