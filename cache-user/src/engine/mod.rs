//! The engine: one pinned thread per core, each with its own io_uring, request pipeline core
//! (store shard, slab arena, pools), SO_REUSEPORT listener and UDP socket. A key belongs to one
//! shard; a request for another shard's key travels parsed by message and its reply comes back
//! in the connection's order (cache-core's `pipeline` does all of that; this is its host).
//!
//! # Memory
//!
//! What clients can make a shard hold is bounded (cache-core's `pipeline::budget`): each
//! connection holds at most `reply_free` (32 KiB) of unsent replies and `input_free` (16 KiB) of
//! a partial request on its own, and borrows beyond that from the shard's reply and input pools
//! (`reply_pool_mb` and `input_pool_mb` split over the threads), never past `conn_reply_max`.
//! Replies are made as the client reads: a multiget stops when its connection's room runs out
//! and resumes as bytes are sent, so a 3 KB `get` naming a 1 MB key 1500 times holds about one
//! megabyte, not 1.5 GB. A value that cannot get input-pool bytes is refused as memcached
//! refuses a set it cannot allocate (`SERVER_ERROR out of memory storing object`), a UDP reply
//! is capped at `udp_reply_max` before it is made. So beyond `-m` the process holds a fixed
//! overhead (measured and documented in the README's Memory section): per shard the receive
//! buffers, rings and key index, both pools, and per connection slot at most 48 KiB.

mod conn;
mod host;
mod hot;
mod listen;
mod msg;
pub(crate) mod outbound;
mod own;
mod reload;
mod ring;
mod shard;
mod stream;
mod tick;
mod udp;

use std::{
    net::SocketAddr,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use anyhow::{anyhow, Context, Result};
use cache_core::{
    pipeline::{Place, Placer},
    store::{Store, StoreConfig},
};
use nix::sys::{
    signal::{SigSet, Signal},
    socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage},
};

pub(crate) use self::{conn::ConnId, msg::StatsPart, outbound::OutId, shard::Shard};
use self::{msg::Mailbox, reload::Reloader};
use crate::{
    cluster::route::RouteTable,
    config::Config,
    fastpath::{
        allow::Allowlist,
        counters::Counters,
        loader::{Fastpath, Settings},
        HotTables,
    },
};

/// What every shard thread shares: configuration, mailboxes, connection counts.
pub(crate) struct Shared {
    pub cfg: Config,
    pub mailboxes: Vec<Mailbox>,
    pub shutdown: AtomicBool,
    pub curr_conns: AtomicU64,
    pub total_conns: AtomicU64,
    pub rejected_conns: AtomicU64,
    pub started: u32,
    /// UDP sources answered (`None` when UDP is off).
    pub allow: Option<Allowlist>,
    /// The XDP fast path's tables and counters (`None` without XDP).
    pub hot: Option<Arc<HotTables>>,
    pub xdp_counters: Option<Arc<Counters>>,
    /// The bucket map's epoch and the buckets this node owns in it, for `stats`.
    pub bucket_epoch: AtomicU64,
    pub buckets_owned: AtomicU64,
    /// On a router (`kcache route`): its route table; `None` on a cache node.
    pub route: Option<Arc<RouteTable>>,
}

/// Runs the server until SIGTERM or SIGINT; SIGHUP re-reads the bucket map (`reload.rs`).
pub(crate) fn serve(cfg: Config) -> Result<()> {
    run(cfg, None)
}

/// Runs the engine: a cache node, or with `route` a router whose sessions send every keyed
/// request to the servers of its route table (`kcache route`).
pub(crate) fn run(cfg: Config, route: Option<Arc<RouteTable>>) -> Result<()> {
    let n = cfg.threads_resolved();
    // SAFETY: ignoring SIGPIPE installs no handler; sends also pass MSG_NOSIGNAL.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
        .context("ignoring SIGPIPE")?;
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    // Threads inherit the mask, so only the waiter below ever receives these.
    signals
        .thread_block()
        .context("blocking SIGINT/SIGTERM/SIGHUP")?;
    listen::raise_nofile(cfg.max_connections, n);
    let own = Arc::new(own::load(&cfg.bucket_map, cfg.node_id)?);
    if own.owned() == 0 {
        tracing::warn!(
            node = cfg.node_id,
            "the bucket map of epoch {} gives this node no bucket: every keyed request will be \
             refused",
            own.epoch()
        );
    }

    let mailboxes = (0..n)
        .map(|_| Mailbox::new())
        .collect::<std::io::Result<Vec<_>>>()?;
    let allow = if cfg.udp_port != 0 {
        let iface = (!cfg.xdp.is_empty()).then_some(cfg.xdp.as_str());
        Some(Allowlist::build(&cfg.udp_allow, iface).context("building the UDP allowlist")?)
    } else {
        None
    };
    // Detached and unpinned when this returns, on every path (Drop), or explicitly below.
    let fastpath = match (&allow, cfg.xdp.is_empty()) {
        (Some(allow), false) => Some(
            Fastpath::start(&Settings::new(&cfg, allow.clone(), own.map().clone()))
                .with_context(|| format!("starting XDP on {}", cfg.xdp))?,
        ),
        _ => None,
    };
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        mailboxes,
        shutdown: AtomicBool::new(false),
        curr_conns: AtomicU64::new(0),
        total_conns: AtomicU64::new(0),
        rejected_conns: AtomicU64::new(0),
        started: shard::unix_now(),
        allow,
        hot: fastpath.as_ref().map(|f| Arc::clone(f.tables())),
        xdp_counters: fastpath.as_ref().map(|f| Arc::clone(f.counters())),
        bucket_epoch: AtomicU64::new(own.epoch()),
        buckets_owned: AtomicU64::new(own.owned() as u64),
        route: route.clone(),
    });
    // Shared with the signal thread, which moves XDP to a reloaded map.
    let fastpath = Arc::new(Mutex::new(fastpath));

    let tcp: SocketAddr = format!("{}:{}", cfg.listen, cfg.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", cfg.listen, cfg.port).parse())
        .with_context(|| format!("bad listen address {:?}", cfg.listen))?;
    let per_shard = (cfg.memory_mb << 20) / n;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::new();
    let mut memory = String::new();
    // Every arena is mapped and locked (which faults it in: ~0.6 s for 256 MiB here) before any
    // port opens, so a client that can connect is served at once.
    let mut stores = Vec::with_capacity(n);
    for id in 0..n {
        let arena = crate::arena::allocate(per_shard)?;
        if id == 0 {
            memory = format!("{:?} huge pages, locked: {}", arena.huge, arena.locked);
        }
        let store_cfg = StoreConfig {
            page_size: (1 << 20usize).max(cfg.item_max),
            growth_factor: cfg.growth_factor,
            index_capacity: per_shard / 128,
            item_max: cfg.item_max,
            cas_offset: id as u64,
            cas_stride: n as u64,
            tombstone_secs: cfg.tombstone_secs,
            lease_secs: cfg.lease_secs,
            ..StoreConfig::default()
        };
        stores.push(Store::new(arena.mem, store_cfg).map_err(|e| anyhow!("shard {id}: {e}"))?);
    }
    for (id, store) in stores.into_iter().enumerate() {
        let listener = bind(tcp, SockType::Stream).with_context(|| format!("TCP {tcp}"))?;
        let udp = if cfg.udp_port != 0 {
            let mut a = tcp;
            a.set_port(cfg.udp_port);
            Some(bind(a, SockType::Datagram).with_context(|| format!("UDP {a}"))?)
        } else {
            None
        };
        let shared = Arc::clone(&shared);
        let own = Arc::clone(&own);
        let core = cfg
            .pin_threads
            .then(|| cores.get(id % cores.len().max(1)).copied())
            .flatten();
        let t = std::thread::Builder::new()
            .name(format!("kcache-shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(shard = id, "could not pin to core {:?}", core.id);
                    }
                }
                let r = Shard::new(id, Arc::clone(&shared), store, listener, udp, own)
                    .map(|mut s| {
                        if let Some(t) = &shared.route {
                            s.router = Some(crate::cluster::route::Forward::new(Arc::clone(t)));
                            let placer: Arc<dyn Placer> = Arc::clone(t) as Arc<dyn Placer>;
                            s.core.place = Place::Out(placer);
                        }
                        s
                    })
                    .and_then(Shard::run);
                if let Err(e) = &r {
                    tracing::error!(shard = id, "shard stopped: {e:#}");
                    stop_all(&shared);
                }
                r
            })?;
        threads.push(t);
    }
    tracing::info!(
        tcp = %tcp,
        udp = cfg.udp_port,
        threads = n,
        memory_mb = cfg.memory_mb,
        max_connections = cfg.max_connections,
        arena = %memory,
        bucket_epoch = own.epoch(),
        buckets_owned = own.owned(),
        budget_mb = cfg.budget_bytes() >> 20,
        "kcache {} {}listening",
        cache_core::exec::VERSION,
        if route.is_some() { "route " } else { "" }
    );

    let waiter = {
        let shared = Arc::clone(&shared);
        let mut reloader = Reloader::new(
            cfg.bucket_map.clone(),
            cfg.node_id,
            own,
            Arc::clone(&fastpath),
        );
        std::thread::Builder::new()
            .name("kcache-signals".into())
            .spawn(move || {
                loop {
                    match signals.wait() {
                        Ok(Signal::SIGHUP) if shared.route.is_some() => {
                            tracing::warn!(
                                "SIGHUP: kcache route does not reload its configuration yet; \
                                 restart it to change routes"
                            );
                        }
                        Ok(Signal::SIGHUP) => reloader.reload(&shared),
                        Ok(sig) => {
                            tracing::info!("{sig:?}: shutting down");
                            break;
                        }
                        Err(e) => {
                            tracing::error!("waiting for signals: {e}; shutting down");
                            break;
                        }
                    }
                }
                stop_all(&shared);
            })?
    };
    let mut first_err = None;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(anyhow!("a shard thread panicked"));
            }
        }
    }
    let fastpath = fastpath
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(f) = fastpath {
        if let Err(e) = f.stop() {
            tracing::warn!("stopping XDP: {e:#}");
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // The signal thread is still waiting if the shards stopped on their own (an error path);
    // it is detached with the process.
    drop(waiter);
    tracing::info!("stopped");
    Ok(())
}

fn stop_all(shared: &Shared) {
    shared.shutdown.store(true, Ordering::Release);
    for m in &shared.mailboxes {
        m.wake();
    }
}

/// A socket with SO_REUSEPORT bound to `addr` (listening, for TCP).
fn bind(addr: SocketAddr, ty: SockType) -> Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, ty, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    if ty == SockType::Stream {
        socket::listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    }
    Ok(fd)
}
