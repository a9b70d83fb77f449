//! The request pipeline: the one path every request takes, whoever drives it.
//!
//! ```text
//!  bytes ──► Session::feed ──parse──► route ──► this shard: Worker (store + bucket map + HOT)
//!                 ▲                        └──► another shard: Outgoing::Exec(Remote) ─┐
//!                 │                                                                    │
//!  host ◄── output in request order ◄── queue ◄── Session::deliver(Answer) ◄───────────┘
//! ```
//!
//! - [`Session`] (per connection): parses, runs or hands on each request, keeps replies in
//!   request order, and holds the connection to its memory budget ([`budget`]).
//! - [`Core`] (per shard): the [`Worker`] that owns the store, the parser, the limits and the
//!   pools the shard lends from.
//! - [`Worker`]: the only way to change a store; every entry point ends with the
//!   [`Coherence`] hook, so HOT copies a request changed are gone before its reply can leave.
//! - [`Remote`]/[`Answer`]: what shards ask each other, parsed and owned (no text parsed twice).
//! - [`Place`]: where keys live — this node's shards, or (on a router) its destinations, which
//!   the host reaches over backend connections with the same `Remote`/`Answer` exchange.
//!
//! The engine in `cache-user` drives this with io_uring and threads; the model test, the fuzz
//! targets and the conformance replay drive the same code in memory, with as many shards as
//! they like.

pub mod budget;
mod hazard;
mod multi;
pub mod place;
mod queue;
pub mod remote;
pub mod route;
mod session;
pub mod sim;
pub mod worker;

pub use budget::{Limits, Pool};
pub use place::{Place, Placer};
pub use remote::{Answer, GetKind, KeyList, Part, Remote};
pub use session::{Core, Cx, Fed, Outgoing, Session, Ticket};
pub use worker::{Coherence, Ran, Read, Worker};
