//! One shard: a pinned thread with its own io_uring, request pipeline core (store, parser,
//! pools), listener, UDP socket and clients. Nothing here is shared with other threads except
//! the mailboxes and the counters in [`Shared`].
//!
//! The rooms: [`ring`](super::ring) (operations and their memory), [`conn`](super::conn) (the
//! clients, as states), `stream.rs` (TCP receive and send), `udp.rs` (datagrams), `listen.rs`
//! (accepting, and backing off when descriptors run out), `host.rs` (what the pipeline asks of
//! the host: other shards, the `flush_all` barrier, `stats`), `tick.rs` (the periodic work) and
//! `outbound` (connections this shard opens to other servers).

use std::{
    collections::HashMap,
    os::fd::{AsRawFd, OwnedFd},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use cache_core::{
    bucket::Ownership,
    pipeline::{Core, Cx, Limits, Outgoing, Pool, Worker},
    protocol::Parser,
    store::Store,
};
use io_uring::{cqueue, opcode, types::Fd};
use memmap2::MmapMut;

use super::{
    conn::{slab::Slab, Conn, ConnId},
    host::{Barrier, Gather},
    hot::Hot,
    listen::Accept,
    msg::ShardCounters,
    outbound::Outbounds,
    ring::{bufring::BufRing, Done, Op, Ring},
    udp::UdpOut,
    Shared,
};

pub(crate) const TCP_GROUP: u16 = 0;
pub(crate) const UDP_GROUP: u16 = 1;
/// `maybe_poll`'s score runs from 0 to this, polling from the middle up.
const POLL_SCORE_MAX: u32 = 16;
/// Below the middle, one idle moment in this many still polls.
const POLL_PROBE: u32 = 16;

pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) n: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) ring: Ring,
    pub(crate) bufs: BufRing,
    pub(crate) udp_bufs: Option<BufRing>,
    pub(crate) core: Core<MmapMut, Hot>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) listener: OwnedFd,
    pub(crate) accept: Accept,
    pub(crate) udp: Option<OwnedFd>,
    pub(crate) udp_hdr: Box<libc::msghdr>,
    /// Reply datagram boxes not in flight, and how many are.
    #[expect(
        clippy::vec_box,
        reason = "the boxes travel into send operations, which must not see them move"
    )]
    pub(crate) udp_spare: Vec<Box<UdpOut>>,
    pub(crate) udp_in_flight: usize,
    /// Work sessions handed out in the current call, for `dispatch`.
    pub(crate) outbox: Vec<Outgoing>,
    /// Connections with output to start sending.
    pub(crate) dirty: Vec<ConnId>,
    /// `flush_all`s waiting for other shards, and `stats` being gathered.
    pub(crate) barriers: HashMap<(ConnId, u64), Barrier>,
    pub(crate) gathers: HashMap<(ConnId, u64), Gather>,
    pub(crate) counters: ShardCounters,
    pub(crate) outbound: Outbounds,
    /// On a router (`kcache route`): the backend side of its sessions.
    pub(crate) router: Option<crate::cluster::route::Forward>,
    cqes: Vec<cqueue::Entry>,
    pub(crate) now: u32,
    /// The second of the last tick (per-second work runs when it changes).
    pub(crate) last_second: u32,
    pub(crate) stopping: bool,
    /// How well polling has been paying (see `maybe_poll`), and idle moments counted.
    poll_score: u32,
    poll_idle: u32,
}

impl Shard {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        mut store: Store<MmapMut>,
        listener: OwnedFd,
        udp: Option<OwnedFd>,
        own: Arc<Ownership>,
    ) -> Result<Shard> {
        let ring = Ring::new(4096)?;
        let bufs = BufRing::new(&ring.uring, TCP_GROUP, 256, 16 << 10).context("TCP buffers")?;
        let udp_bufs = match udp {
            Some(_) => {
                Some(BufRing::new(&ring.uring, UDP_GROUP, 128, 4 << 10).context("UDP buffers")?)
            }
            None => None,
        };
        // SAFETY: msghdr is plain old data; all-zero is its documented empty value.
        let mut udp_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        udp_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        let cfg = &shared.cfg;
        let n = shared.mailboxes.len();
        let hot = Hot::new(shared.hot.as_ref(), &mut store, id, n);
        let parser = Parser::new()
            .item_max(cfg.item_max)
            .strict_keys(cfg.strict_keys);
        let limits = Limits {
            datagram_max: cfg.udp_reply_max,
            ..Limits::new(cfg.item_max, cfg.conn_reply_max)
        };
        // Each pool holds at least two of the largest replies, so one client always gets one.
        let per = |mb: usize| ((mb << 20) / n).max(2 * limits.reply_max);
        let core = Core {
            worker: Worker::new(store, hot, own),
            parser,
            replies: Pool::new(per(cfg.reply_pool_mb)),
            input: Pool::new(per(cfg.input_pool_mb)),
            limits,
            id,
            shards: n,
            place: cache_core::pipeline::Place::Shards,
        };
        tracing::debug!(
            shard = id,
            ring_bytes = bufs.bytes() + udp_bufs.as_ref().map_or(0, BufRing::bytes),
            reply_pool = core.replies.size(),
            input_pool = core.input.size(),
            "shard ready"
        );
        Ok(Shard {
            id,
            n,
            shared,
            ring,
            bufs,
            udp_bufs,
            core,
            conns: Slab::default(),
            listener,
            accept: Accept::default(),
            udp,
            udp_hdr,
            udp_spare: Vec::new(),
            udp_in_flight: 0,
            outbox: Vec::new(),
            dirty: Vec::new(),
            barriers: HashMap::new(),
            gathers: HashMap::new(),
            counters: ShardCounters::default(),
            outbound: Outbounds::default(),
            router: None,
            cqes: Vec::with_capacity(1024),
            now: unix_now(),
            last_second: 0,
            stopping: false,
            poll_score: POLL_SCORE_MAX / 2,
            poll_idle: 0,
        })
    }

    /// A client and the pipeline context to call its session with (`None` if it is gone).
    pub(crate) fn client(&mut self, id: ConnId) -> Option<(&mut Conn, Cx<'_, MmapMut, Hot>)> {
        let Shard {
            conns,
            core,
            outbox,
            now,
            ..
        } = self;
        let conn = conns.get_mut(id)?;
        let cx = Cx {
            core,
            now: *now,
            who: id.token(),
            out: outbox,
        };
        Some((conn, cx))
    }

    fn arm_mailbox(&mut self) {
        let fd = self.shared.mailboxes[self.id].efd();
        let mut buf = Box::new([0u8; 8]);
        let e = opcode::Read::new(Fd(fd), buf.as_mut_ptr(), 8).build();
        self.ring.submit(e, Op::Mailbox(buf));
    }

    /// The event loop; returns when the server shuts down.
    pub(crate) fn run(mut self) -> Result<()> {
        self.arm_accept();
        self.arm_mailbox();
        self.arm_udp();
        self.arm_tick();
        let shared = Arc::clone(&self.shared);
        let mailbox = &shared.mailboxes[self.id];
        let poll = Duration::from_micros(u64::from(shared.cfg.poll_us));
        // A turn runs from waking up to going back to sleep.
        let mut turn = Instant::now();
        loop {
            while let Some(m) = mailbox.pop() {
                self.handle_msg(m);
            }
            self.wake_waiters();
            if self.router.is_some() {
                self.route_events();
                self.outbound.flush(&mut self.ring);
            }
            self.flush_dirty();
            if shared.shutdown.load(Ordering::Acquire) && !self.stopping {
                self.begin_stop();
            }
            if self.stopping && self.conns.is_empty() && self.udp_in_flight == 0 {
                return Ok(());
            }
            self.note_turn(turn);
            if !poll.is_zero() && !self.ring.pending() {
                self.maybe_poll(poll);
            }
            let sleep = mailbox.prepare_sleep();
            let r = self.ring.enter(usize::from(sleep));
            mailbox.awake();
            turn = Instant::now();
            // After the wait, not before it: the first request after an idle spell must run at
            // the time it arrived (mg `t`/`l`, expiry), not at the time the loop fell asleep.
            self.now = unix_now();
            if let Err(e) = r {
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) {
                    return Err(e).context("io_uring_enter");
                }
            }
            let mut cqes = std::mem::take(&mut self.cqes);
            self.ring.reap(&mut cqes);
            for cqe in cqes.drain(..) {
                self.complete(&cqe);
            }
            self.cqes = cqes;
            self.bufs.publish();
            if let Some(b) = &self.udp_bufs {
                b.publish();
            }
        }
    }

    /// Waits up to `budget` in user space for something to do: completions the kernel has
    /// queued for this ring, a message from another shard, or shutdown. Work that arrives
    /// meanwhile is then picked up without the sleep and wake-up `io_uring_enter` would cost.
    fn poll_for_work(&mut self, budget: Duration) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..32 {
                if self.ring.has_work()
                    || !self.shared.mailboxes[self.id].is_empty()
                    || self.shared.shutdown.load(Ordering::Relaxed)
                {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= budget {
                return false;
            }
        }
    }

    /// Polls before sleeping while polling pays, that is while at least about half the polls
    /// find work: a score rises by one for a poll that did and falls by one for one that did
    /// not, and below the middle only every [`POLL_PROBE`]th idle moment polls, to notice the
    /// load rising again. Under a light load this spends almost no CPU spinning; under a busy
    /// one most polls save a sleep and a wake-up.
    fn maybe_poll(&mut self, budget: Duration) {
        self.poll_idle = self.poll_idle.wrapping_add(1);
        if self.poll_score < POLL_SCORE_MAX / 2 && self.poll_idle % POLL_PROBE != 0 {
            return;
        }
        if self.poll_for_work(budget) {
            self.poll_score = (self.poll_score + 1).min(POLL_SCORE_MAX);
        } else {
            self.poll_score = self.poll_score.saturating_sub(1);
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        // Stop listening: the multishot accept ends when the socket shuts down.
        // SAFETY: shutdown(2) on a socket we own; no memory is involved.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        for id in self.conns.ids() {
            self.begin_close(id, "shutting down");
            self.try_finish(id);
        }
        self.outbound.close_all(&mut self.ring);
    }

    /// One completion, by the operation it belongs to.
    fn complete(&mut self, cqe: &cqueue::Entry) {
        let (res, flags) = (cqe.result(), cqe.flags());
        let op = match self.ring.complete(cqe) {
            None => return,
            Some(Done::More(op)) => match op {
                Op::Accept => return self.accepted(res, true),
                Op::Recv(id) => {
                    let id = *id;
                    return self.received(id, res, flags, true);
                }
                Op::UdpRecv => return self.udp_received(res, flags, true),
                _ => return,
            },
            Some(Done::Last(op)) => op,
        };
        match op {
            Op::Accept => self.accepted(res, false),
            Op::Recv(id) => self.received(id, res, flags, false),
            Op::Send { conn, buf, at } => self.sent(conn, res, buf, at),
            Op::Cancel => {}
            Op::Mailbox(_) if !self.stopping => self.arm_mailbox(),
            Op::Mailbox(_) => {}
            Op::UdpRecv => self.udp_received(res, flags, false),
            Op::UdpSend(o) => self.udp_sent(o),
            Op::Tick(_) => self.ticked(),
            Op::Backoff(_) => self.backed_off(),
            Op::Out(o) => self.outbound_done(o, res),
        }
    }
}
