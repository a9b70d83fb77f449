//! What the simulated shards send each other, and how the host carries it.

use super::{Coherence, Outgoing, Sim};
use crate::pipeline::{
    remote::{Answer, Remote},
    session::{Cx, Session, Ticket},
};

/// What one shard sends another.
#[derive(Debug)]
pub(super) enum Msg {
    Exec {
        conn: usize,
        ticket: Ticket,
        op: Remote,
    },
    Answer {
        conn: usize,
        ticket: Ticket,
        answer: Answer,
    },
    Flush {
        conn: usize,
        ticket: Ticket,
        delay: i32,
    },
    Flushed {
        conn: usize,
        ticket: Ticket,
    },
}

impl<H: Coherence<Vec<u8>>> Sim<H> {
    /// Carries a session's outgoing work.
    pub(super) fn dispatch(&mut self, from: usize, conn: usize, out: Vec<Outgoing>) {
        for o in out {
            match o {
                Outgoing::Exec { to, ticket, op } => {
                    self.mail[to][from].push_back(Msg::Exec { conn, ticket, op });
                }
                Outgoing::Flush { ticket, delay } => {
                    let others = self.cores.len() - 1;
                    self.conns[conn].flushes.push((ticket, others));
                    for to in (0..self.cores.len()).filter(|&t| t != from) {
                        self.mail[to][from].push_back(Msg::Flush {
                            conn,
                            ticket,
                            delay,
                        });
                    }
                }
                Outgoing::Stats { ticket, args } => {
                    let mut text = Vec::new();
                    (self.stats)(&args, &mut text);
                    self.with_session(conn, |s, cx| s.complete(cx, ticket, &text));
                }
            }
        }
    }

    pub(super) fn handle(&mut self, to: usize, m: Msg) {
        let now = self.now;
        match m {
            Msg::Exec { conn, ticket, op } => {
                let answer = self.cores[to].worker.remote(&op, now);
                let home = self.conns[conn].shard;
                self.mail[home][to].push_back(Msg::Answer {
                    conn,
                    ticket,
                    answer,
                });
            }
            Msg::Answer {
                conn,
                ticket,
                answer,
            } => {
                self.with_session(conn, |s, cx| s.deliver(cx, ticket, answer));
            }
            Msg::Flush {
                conn,
                ticket,
                delay,
            } => {
                self.cores[to].worker.flush_all(delay, now, false);
                let home = self.conns[conn].shard;
                self.mail[home][to].push_back(Msg::Flushed { conn, ticket });
            }
            Msg::Flushed { conn, ticket } => {
                let c = &mut self.conns[conn];
                let Some(i) = c.flushes.iter().position(|(t, _)| *t == ticket) else {
                    return;
                };
                c.flushes[i].1 -= 1;
                if c.flushes[i].1 == 0 {
                    c.flushes.remove(i);
                    self.with_session(conn, |s, cx| s.complete(cx, ticket, &[]));
                }
            }
        }
    }

    /// Runs `f` on connection `conn`'s session on its shard, then carries what it sent.
    pub(super) fn with_session(
        &mut self,
        conn: usize,
        f: impl FnOnce(&mut Session, &mut Cx<'_, Vec<u8>, H>) -> bool,
    ) {
        let s = self.conns[conn].shard;
        let now = self.now;
        let mut out = Vec::new();
        {
            let (core, c) = (&mut self.cores[s], &mut self.conns[conn]);
            if c.closed {
                return;
            }
            let mut cx = Cx {
                core,
                now,
                who: conn as u64,
                out: &mut out,
            };
            f(&mut c.session, &mut cx);
        }
        self.dispatch(s, conn, out);
    }
}
