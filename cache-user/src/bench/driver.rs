//! The event loop every client thread runs, over TCP connections or UDP sockets alike: keep the
//! pipeline full (closed loop) or send on a Poisson schedule fixed in advance (open loop), wait
//! on epoll, hand what arrives to the endpoint, and at the end drain what is still in flight.
//!
//! Open loop, each request's latency runs from the time it was DUE, not the time it went out:
//! if the client falls behind (or the server stalls and the socket backs up), the schedule is
//! kept and the lateness is counted, so a stalled server cannot hide behind a slowed-down client
//! (coordinated omission).

use std::{
    io,
    os::fd::BorrowedFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nix::{
    errno::Errno,
    sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags},
};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::{
    record::{Live, Recorder},
    workload::Workload,
};

/// The longest the loop sleeps in one wait, so expiry and the progress counters keep moving.
const TICK: Duration = Duration::from_millis(10);

/// A TCP connection or a UDP socket as the loop drives it.
pub(crate) trait Endpoint {
    fn fd(&self) -> BorrowedFd<'_>;
    /// Requests sent (or queued) and not yet answered or given up on.
    fn in_flight(&self) -> usize;
    /// Queues one request from `w`, started (closed loop) or due (open loop) at `start`.
    fn push(&mut self, w: &Workload, rng: &mut SmallRng, start: Instant);
    /// Sends what is queued; `false` if some of it must wait for the socket to drain.
    fn flush(&mut self, now: Instant) -> io::Result<bool>;
    /// Reads what arrived and records the replies it completes.
    fn readable(&mut self, now: Instant, rec: &mut Recorder) -> Result<()>;
    /// Gives up on requests past their timeout (UDP).
    fn expire(&mut self, _now: Instant, _rec: &mut Recorder) {}
    /// Counts what is still in flight when the run is over.
    fn abandon(&mut self, rec: &mut Recorder);
}

/// When requests are sent.
#[derive(Debug)]
pub(crate) enum Pacing {
    /// Each endpoint keeps `depth` requests in flight.
    Closed { depth: usize },
    /// Requests are due at Poisson arrival times, spread round-robin over the endpoints.
    Open(Poisson),
}

/// Poisson arrivals: exponential gaps of mean `1 / rate`, drawn from their own seeded generator,
/// so the schedule does not depend on how the run goes.
#[derive(Debug)]
pub(crate) struct Poisson {
    rng: SmallRng,
    mean_gap: f64,
    next: Duration,
}

impl Poisson {
    /// Arrivals at `rate` per second (positive), the first one gap after the start.
    pub(crate) fn new(rate: f64, seed: u64) -> Self {
        let mut p = Self {
            rng: SmallRng::seed_from_u64(seed),
            mean_gap: 1.0 / rate,
            next: Duration::ZERO,
        };
        p.advance();
        p
    }

    /// The next arrival, as an offset from the start.
    pub(crate) fn next(&self) -> Duration {
        self.next
    }

    pub(crate) fn advance(&mut self) {
        let u: f64 = self.rng.gen();
        // 1 - u is in (0, 1], so the logarithm is finite.
        self.next += Duration::from_secs_f64(-(1.0 - u).ln() * self.mean_gap);
    }
}

/// The times of a run: traffic from `start`, recorded from `measure_from`, none sent after `end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
}

/// What one client thread drives, and how.
#[derive(Debug)]
pub(crate) struct Job<'a> {
    pub(crate) workload: &'a Workload,
    pub(crate) rng: SmallRng,
    pub(crate) pacing: Pacing,
    pub(crate) window: Window,
    /// How long to wait for replies still in flight at the end.
    pub(crate) drain: Duration,
    pub(crate) live: &'a Live,
}

/// Runs `job` over `conns` until the window ends, then drains; returns what was recorded.
pub(crate) fn drive<E: Endpoint>(conns: &mut [E], mut job: Job<'_>) -> Result<Recorder> {
    anyhow::ensure!(!conns.is_empty(), "a client thread without connections");
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
    for (i, c) in conns.iter().enumerate() {
        epoll
            .add(c.fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .context("epoll_ctl")?;
    }
    let mut events = vec![EpollEvent::empty(); conns.len()];
    let mut rec = Recorder::new(job.window.measure_from);
    let (win, w) = (job.window, job.workload);
    let (mut rr, mut published) = (0, [0; 3]);
    let mut now = Instant::now();
    while now < win.end {
        let next_send = match &mut job.pacing {
            Pacing::Closed { depth } => {
                for c in conns.iter_mut() {
                    while c.in_flight() < *depth {
                        c.push(w, &mut job.rng, now);
                    }
                }
                win.end
            }
            Pacing::Open(p) => {
                while win.start + p.next() <= now {
                    conns[rr].push(w, &mut job.rng, win.start + p.next());
                    rr = (rr + 1) % conns.len();
                    p.advance();
                }
                win.start + p.next()
            }
        };
        now = turn(
            &epoll,
            &mut events,
            conns,
            &mut rec,
            now,
            next_send.min(win.end),
        )?;
        job.live.publish(&rec, &mut published);
    }
    let deadline = win.end + job.drain;
    while now < deadline && conns.iter().any(|c| c.in_flight() > 0) {
        now = turn(&epoll, &mut events, conns, &mut rec, now, deadline)?;
    }
    conns.iter_mut().for_each(|c| c.abandon(&mut rec));
    job.live.publish(&rec, &mut published);
    Ok(rec)
}

/// Flushes every endpoint; `true` if all of them sent everything.
fn flush_all<E: Endpoint>(conns: &mut [E], now: Instant) -> Result<bool> {
    let mut all = true;
    for c in conns {
        all &= c.flush(now).context("sending")?;
    }
    Ok(all)
}

/// Waits up to `wait` (whole milliseconds, at most [`TICK`]; under a millisecond it only looks)
/// and hands each readable endpoint to `readable`. Returns the time after.
/// One turn of the loop: send what is queued, wait for replies until `until` at the most (not
/// at all while sends are still pending), and time out overdue requests.
fn turn<E: Endpoint>(
    epoll: &Epoll,
    events: &mut [EpollEvent],
    conns: &mut [E],
    rec: &mut Recorder,
    now: Instant,
    until: Instant,
) -> Result<Instant> {
    let wait = flush_all(conns, now)?.then(|| until - now);
    let now = poll(epoll, events, wait.unwrap_or_default(), conns, rec)?;
    conns.iter_mut().for_each(|c| c.expire(now, rec));
    Ok(now)
}

fn poll<E: Endpoint>(
    epoll: &Epoll,
    events: &mut [EpollEvent],
    wait: Duration,
    conns: &mut [E],
    rec: &mut Recorder,
) -> Result<Instant> {
    let ms = u16::try_from(wait.min(TICK).as_millis()).unwrap_or(u16::MAX);
    let n = match epoll.wait(events, ms) {
        Ok(n) => n,
        Err(Errno::EINTR) => 0,
        Err(e) => return Err(e).context("epoll_wait"),
    };
    let now = Instant::now();
    for ev in &events[..n] {
        let i = usize::try_from(ev.data()).unwrap_or(usize::MAX);
        if let Some(c) = conns.get_mut(i) {
            c.readable(now, rec)?;
        }
    }
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_schedule() {
        // 10k arrivals at 1000/s land about 10 s in (sd 0.1 s), each gap positive, and the same
        // seed gives the same schedule.
        let mut p = Poisson::new(1000.0, 5);
        let mut q = Poisson::new(1000.0, 5);
        let mut last = Duration::ZERO;
        for _ in 0..10_000 {
            assert!(p.next() > last);
            assert_eq!(p.next(), q.next());
            last = p.next();
            p.advance();
            q.advance();
        }
        assert!((last.as_secs_f64() - 10.0).abs() < 0.5, "{last:?}");
    }
}
