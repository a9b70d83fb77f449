//! memcached's `stats` replies: `stats`, `stats settings`, `stats items`, `stats slabs`, `stats
//! sizes` and `stats reset`.
//!
//! Field names, order and number formats are memcached 1.6.18's, read off a live `memcached -p P
//! -u root`. A field is left out rather than made up when kcache has nothing that means the same
//! (memcached's segmented-LRU, crawler, extstore and per-class hit counters, `hash_power_level`,
//! `expired_unfetched`, which the store does not count); exporters such as prometheus's
//! memcached_exporter skip missing fields. kcache's own counters come after memcached's.
//!
//! With XDP on, `cmd_get` and `get_hits` are the engine's counts plus the keys XDP answered
//! (`fastpath::counters::Answered`); `get_misses` is the engine's alone, since XDP answers no
//! miss. The `xdp_*` fields stay as they are. Per-class hit counts (memcached's `stats slabs`
//! `N:get_hits`, `N:cmd_set`, ...) stay out, and could not include XDP's answers if the store
//! counted them: the program counts per CPU, not per slab class, and a HOT slot's `hits` is a
//! sampled estimate that the demotion scan clears. Nor is there `stats detail` (per-key-prefix
//! counts, `detail_enabled no`).

use std::io::Write;

use cache_core::store::{slabs::ClassStats, Stats};

use crate::fastpath::counters::Answered;

/// What the process knows that no store does. Connection counts are server-wide.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// Unix seconds.
    pub(crate) started: u32,
    pub(crate) threads: usize,
    pub(crate) max_connections: usize,
    pub(crate) curr_connections: u64,
    pub(crate) total_connections: u64,
    pub(crate) rejected_connections: u64,
    pub(crate) tcp_port: u16,
    pub(crate) udp_port: u16,
    pub(crate) listen: String,
    pub(crate) limit_maxbytes: u64,
    pub(crate) item_max: usize,
    pub(crate) growth_factor: f64,
    pub(crate) evictions_on: bool,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
    /// UDP datagrams dropped because their source is outside the allowlist.
    pub(crate) udp_refused: u64,
    /// The bucket map's epoch and how many buckets this node owns in it.
    pub(crate) bucket_epoch: u64,
    pub(crate) buckets_owned: u64,
    /// Requests not run because a key's bucket is not this node's, and of those the `noreply`
    /// writes dropped without a reply.
    pub(crate) bucket_refused: u64,
    pub(crate) bucket_refused_noreply: u64,
    /// The engine's own counters.
    pub(crate) engine: Engine,
    /// The XDP program's counters, `xdp_native` (1 = driver mode, 0 = generic) and
    /// `xdp_hot_slots`, in order; empty without XDP.
    pub(crate) xdp: Vec<(&'static str, u64)>,
}

/// What the engine counts, summed (or for `event_loop_max_us`, the largest) over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Engine {
    /// memcached's: times accepting stopped because file descriptors ran out.
    pub(crate) listen_disabled_num: u64,
    /// Clients closed for holding borrowed reply memory while reading nothing.
    pub(crate) conns_stall_closed: u64,
    /// Reply datagrams dropped because too many were in flight.
    pub(crate) udp_replies_dropped: u64,
    /// The longest event-loop turn of any shard since the last `stats reset`, microseconds.
    pub(crate) event_loop_max_us: u64,
    /// Bytes the shards' reply and input pools have lent out now.
    pub(crate) reply_pool_lent: u64,
    pub(crate) input_pool_lent: u64,
}

/// The `stats` groups kcache answers. `Reset` only replies `RESET`: zeroing the counters is the
/// caller's job (every shard's store counters and the process's byte counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    General,
    Settings,
    Items,
    Slabs,
    Sizes,
    Reset,
}

/// The group `args` (the text after `stats`) asks for, or `None` for one kcache does not answer
/// (the caller replies `ERROR`, as memcached does). Like memcached, only the first word counts and
/// it is case-sensitive.
pub(crate) fn group(args: &[u8]) -> Option<Group> {
    let first = args
        .split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .find(|w| !w.is_empty())
        .unwrap_or_default();
    Some(match first {
        b"" => Group::General,
        b"settings" => Group::Settings,
        b"items" => Group::Items,
        b"slabs" => Group::Slabs,
        b"sizes" => Group::Sizes,
        b"reset" => Group::Reset,
        _ => return None,
    })
}

/// Appends the reply to `stats <args>` to `out`; `false` (and nothing written) for a group kcache
/// does not answer. `classes` is indexed by the store's class id, summed over shards; memcached
/// numbers classes from 1, so class `i` is reported as `i + 1`.
pub(crate) fn write(
    args: &[u8],
    p: &Process,
    s: &Stats,
    classes: &[ClassStats],
    now: u32,
    out: &mut Vec<u8>,
) -> bool {
    let Some(group) = group(args) else {
        return false;
    };
    match group {
        Group::General => general(p, s, classes, now, Cpu::now(), out),
        Group::Settings => settings(p, classes, out),
        Group::Items => items(classes, out),
        Group::Slabs => slabs(classes, out),
        // Size histograms are off, as in a memcached started without `-o track_sizes`.
        Group::Sizes => out.extend_from_slice(b"STAT sizes_status disabled\r\nEND\r\n"),
        Group::Reset => out.extend_from_slice(b"RESET\r\n"),
    }
    true
}

/// Process CPU time, user and system, as (seconds, microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cpu {
    user: (i64, i64),
    system: (i64, i64),
}

impl Cpu {
    fn now() -> Cpu {
        use nix::sys::resource::{getrusage, UsageWho};
        // getrusage(RUSAGE_SELF) cannot fail with valid arguments; zeros are a harmless fallback.
        getrusage(UsageWho::RUSAGE_SELF).map_or(Cpu::default(), |u| Cpu {
            user: (u.user_time().tv_sec(), u.user_time().tv_usec()),
            system: (u.system_time().tv_sec(), u.system_time().tv_usec()),
        })
    }
}

/// One `STAT name value` line. Writing to a `Vec` cannot fail.
fn stat(out: &mut Vec<u8>, name: impl std::fmt::Display, value: impl std::fmt::Display) {
    let _ = write!(out, "STAT {name} {value}\r\n");
}

fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"END\r\n");
}

fn general(p: &Process, s: &Stats, classes: &[ClassStats], now: u32, cpu: Cpu, out: &mut Vec<u8>) {
    let slabs_moved: u64 = classes.iter().map(|c| c.pages_moved_out).sum();
    stat(out, "pid", p.pid);
    stat(out, "uptime", now.saturating_sub(p.started));
    stat(out, "time", now);
    stat(out, "version", cache_core::exec::VERSION);
    stat(out, "pointer_size", usize::BITS);
    stat(
        out,
        "rusage_user",
        format_args!("{}.{:06}", cpu.user.0, cpu.user.1),
    );
    stat(
        out,
        "rusage_system",
        format_args!("{}.{:06}", cpu.system.0, cpu.system.1),
    );
    stat(out, "max_connections", p.max_connections);
    stat(out, "curr_connections", p.curr_connections);
    stat(out, "total_connections", p.total_connections);
    stat(out, "rejected_connections", p.rejected_connections);
    // One connection structure per open connection; none are pooled.
    stat(out, "connection_structures", p.curr_connections);
    let xdp = Answered::from_read(&p.xdp);
    for (name, v) in [
        ("cmd_get", s.cmd_get + xdp.keys),
        ("cmd_set", s.cmd_set),
        ("cmd_flush", s.cmd_flush),
        ("cmd_touch", s.cmd_touch),
        ("get_hits", s.get_hits + xdp.keys),
        ("get_misses", s.get_misses),
        ("get_expired", s.get_expired),
        ("get_flushed", s.get_flushed),
        ("delete_misses", s.delete_misses),
        ("delete_hits", s.delete_hits),
        ("incr_misses", s.incr_misses),
        ("incr_hits", s.incr_hits),
        ("decr_misses", s.decr_misses),
        ("decr_hits", s.decr_hits),
        ("cas_misses", s.cas_misses),
        ("cas_hits", s.cas_hits),
        ("cas_badval", s.cas_badval),
        ("touch_hits", s.touch_hits),
        ("touch_misses", s.touch_misses),
        ("store_too_large", s.store_too_large),
        ("store_no_memory", s.store_no_memory),
        // No SASL or ascii auth.
        ("auth_cmds", 0),
        ("auth_errors", 0),
        ("bytes_read", p.bytes_read),
        ("bytes_written", p.bytes_written),
        ("limit_maxbytes", p.limit_maxbytes),
        // Past `-c`, connections are accepted and refused; listeners pause only when file
        // descriptors run out (counted in listen_disabled_num), for milliseconds.
        ("accepting_conns", 1),
        ("listen_disabled_num", p.engine.listen_disabled_num),
        ("time_in_listen_disabled_us", 0),
        ("threads", p.threads as u64),
        // No per-event request limit (`-R`), so no yields.
        ("conn_yields", 0),
        // The key index's heap bytes: kcache's hash table. (`hash_power_level` stays out: the
        // index is not a power-of-two array of pointers.)
        ("hash_bytes", s.hash_bytes),
        ("slabs_moved", slabs_moved),
        ("bytes", s.bytes),
        ("curr_items", s.curr_items),
        ("total_items", s.total_items),
        ("evicted_unfetched", s.evicted_unfetched),
        ("evictions", s.evictions),
        ("reclaimed", s.reclaimed),
        // kcache's own.
        ("tombstones", s.tombstones),
        ("lease_grants", s.lease_grants),
        ("lease_hot_misses", s.lease_hot_misses),
        ("stale_fills_refused", s.stale_fills_refused),
        ("slab_reassign_evictions", s.slab_reassign_evictions),
        ("udp_refused", p.udp_refused),
        ("bucket_epoch", p.bucket_epoch),
        ("buckets_owned", p.buckets_owned),
        ("bucket_refused", p.bucket_refused),
        ("bucket_refused_noreply", p.bucket_refused_noreply),
        ("conns_stall_closed", p.engine.conns_stall_closed),
        ("udp_replies_dropped", p.engine.udp_replies_dropped),
        ("event_loop_max_us", p.engine.event_loop_max_us),
        ("reply_pool_lent", p.engine.reply_pool_lent),
        ("input_pool_lent", p.engine.input_pool_lent),
    ] {
        stat(out, name, v);
    }
    for (name, v) in &p.xdp {
        stat(out, name, v);
    }
    end(out);
}

fn settings(p: &Process, classes: &[ClassStats], out: &mut Vec<u8>) {
    let threads = p.threads;
    stat(out, "maxbytes", p.limit_maxbytes);
    stat(out, "maxconns", p.max_connections);
    stat(out, "tcpport", p.tcp_port);
    stat(out, "udpport", p.udp_port);
    stat(out, "inter", &p.listen);
    stat(out, "evictions", if p.evictions_on { "on" } else { "off" });
    stat(out, "domain_socket", "NULL");
    stat(out, "growth_factor", format_args!("{:.2}", p.growth_factor));
    // memcached's is its smallest chunk's payload room; the smallest chunk is the nearest thing.
    if let Some(c) = classes.first() {
        stat(out, "chunk_size", c.chunk_size);
    }
    stat(out, "num_threads", threads);
    // Each thread has its own UDP socket when UDP is on.
    stat(out, "num_threads_per_udp", threads);
    stat(out, "detail_enabled", "no");
    stat(out, "cas_enabled", "yes");
    stat(out, "binding_protocol", "ascii");
    stat(out, "auth_enabled_sasl", "no");
    stat(out, "auth_enabled_ascii", "no");
    stat(out, "item_size_max", p.item_max);
    // Over the limit a connection is accepted, told SERVER_ERROR and closed.
    stat(out, "maxconns_fast", "yes");
    // `slabs reassign` moves pages between classes.
    stat(out, "slab_reassign", "yes");
    stat(out, "lru_crawler", "no");
    stat(out, "flush_enabled", "yes");
    stat(out, "dump_enabled", "no");
    stat(out, "lru_maintainer_thread", "no");
    stat(out, "lru_segmented", "no");
    stat(out, "temp_lru", "no");
    stat(out, "ssl_enabled", "no");
    end(out);
}

fn items(classes: &[ClassStats], out: &mut Vec<u8>) {
    for (i, c) in classes.iter().enumerate() {
        // memcached lists the classes that hold items.
        if c.used_chunks == 0 {
            continue;
        }
        let id = i + 1;
        stat(out, format_args!("items:{id}:number"), c.used_chunks);
        stat(out, format_args!("items:{id}:evicted"), c.evictions);
        stat(out, format_args!("items:{id}:reclaimed"), c.reclaimed);
    }
    end(out);
}

fn slabs(classes: &[ClassStats], out: &mut Vec<u8>) {
    let mut active = 0;
    let mut pages = 0u64;
    for (i, c) in classes.iter().enumerate() {
        // memcached lists the classes that own pages.
        if c.pages == 0 {
            continue;
        }
        active += 1;
        pages += u64::from(c.pages);
        let id = i + 1;
        stat(out, format_args!("{id}:chunk_size"), c.chunk_size);
        stat(out, format_args!("{id}:chunks_per_page"), c.chunks_per_page);
        stat(out, format_args!("{id}:total_pages"), c.pages);
        stat(
            out,
            format_args!("{id}:total_chunks"),
            u64::from(c.pages) * u64::from(c.chunks_per_page),
        );
        stat(out, format_args!("{id}:used_chunks"), c.used_chunks);
        stat(out, format_args!("{id}:free_chunks"), c.free_chunks);
    }
    // The last class's chunk is exactly one page, so its size is the page size.
    let page = classes.last().map_or(0, |c| u64::from(c.chunk_size));
    stat(out, "active_slabs", active);
    stat(out, "total_malloced", pages * page);
    end(out);
}

#[cfg(test)]
mod tests;
