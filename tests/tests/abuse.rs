//! Abuse tests (issue 3, "Behaviour under abuse"): each point must hold without a crash, a hang of
//! other clients, or memory past the limit.
//!
//! - `conns.rs`: 2000 concurrent connections all served; over `-c`, new connections get the
//!   refusal line and are closed while the admitted ones keep working.
//! - `stall.rs`: clients stalled mid-command do not hold up another client.
//! - `fds.rs`: past the descriptor limit, accepting backs off (CPU measured, no spin), counts
//!   `listen_disabled_num`, and every waiting client is served once connections close.
//! - `input.rs`: oversize keys, values and lines, and seeded garbage, get memcached's replies or
//!   a close; the server stays up and other connections are unaffected.
//! - `memory.rs`: a 500 MB write flood into `-m 64` keeps resident memory within the limit plus
//!   a fixed overhead, and the server still answers.
//! - `budget.rs`: replies asked for and not read (a 6 KB `get` naming a 1 MB key 1500 times,
//!   on 1, 2 and 100 connections), values sent halfway (300 × 1 MB, 2000 × 200 KB) and an
//!   oversized UDP reply keep resident memory within `-m` plus the documented overhead while
//!   another client is served; memcached's peaks are printed beside.
//! - `signals.rs`: SIGTERM and SIGINT end the server with status 0 within 5 s.

#[path = "abuse/budget.rs"]
mod budget;
#[path = "abuse/conns.rs"]
mod conns;
#[path = "abuse/fds.rs"]
mod fds;
#[path = "abuse/input.rs"]
mod input;
#[path = "abuse/memory.rs"]
mod memory;
#[path = "abuse/signals.rs"]
mod signals;
#[path = "abuse/stall.rs"]
mod stall;
