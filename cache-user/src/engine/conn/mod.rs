//! A client of the shard: a TCP connection, or one UDP datagram's requests. Its requests run
//! through its [`Session`] (the pipeline in cache-core); what is here is the I/O around it, as
//! states rather than flags.

pub(crate) mod slab;

use std::os::fd::RawFd;

use cache_core::pipeline::Session;

use super::{ring::UserData, udp::UdpPeer};

/// A client's id in its shard's slab.
pub(crate) type ConnId = slab::Id;

/// What a client reads from and answers to.
#[derive(Debug)]
pub(crate) enum Kind {
    Stream(Stream),
    /// One datagram: answered once its replies are all made, then gone.
    Datagram(UdpPeer),
}

/// A TCP connection's socket and the operations on it.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) fd: RawFd,
    pub(crate) recv: Recv,
    pub(crate) send: Send,
    /// Already in the shard's list of connections with output to start sending.
    pub(crate) queued: bool,
    /// Unix seconds of the last send that made progress (or of the connection's start).
    pub(crate) last_sent: u32,
}

/// The connection's receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recv {
    /// None in flight.
    Idle,
    /// A multishot receive is in flight.
    Armed(UserData),
    /// It is being cancelled (the session wants no input for now); its last completion comes.
    Cancelling,
}

/// The connection's send.
#[derive(Debug)]
pub(crate) enum Send {
    /// None in flight; the buffer is kept for the next one.
    Idle(Vec<u8>),
    /// A send is in flight and owns the buffer.
    Busy,
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Open,
    /// Hang up once the output is sent (`quit`, a fatal request, shutdown).
    Draining,
    /// Shut down: freed once nothing of it is in flight.
    Closing,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) kind: Kind,
    pub(crate) session: Session,
    /// Received and not yet used by the session.
    pub(crate) inbuf: Vec<u8>,
    pub(crate) life: Life,
}

impl Conn {
    pub(crate) fn stream(fd: RawFd, now: u32) -> Conn {
        Conn {
            kind: Kind::Stream(Stream {
                fd,
                recv: Recv::Idle,
                send: Send::Idle(Vec::new()),
                queued: false,
                last_sent: now,
            }),
            session: Session::new(),
            inbuf: Vec::new(),
            life: Life::Open,
        }
    }

    pub(crate) fn datagram(peer: UdpPeer, payload: Vec<u8>) -> Conn {
        Conn {
            kind: Kind::Datagram(peer),
            session: Session::datagram(),
            inbuf: payload,
            life: Life::Open,
        }
    }
}
