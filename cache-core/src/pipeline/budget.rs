//! How much memory one connection may make its shard hold, and the pool the shard lends from.
//!
//! A connection holds reply bytes from the moment they are produced until the host reports them
//! sent, plus what it reserved for answers still on their way from other shards, plus the owned
//! copies of requests still waiting to run. The first [`Limits::reply_free`] bytes are its own;
//! beyond that every byte is borrowed from its shard's reply [`Pool`], and nothing may take it
//! past [`Limits::reply_max`] (which fits the largest single reply, so one item always gets
//! through). Input works the same way: a partial request (a long multiget line, a data block
//! still arriving) may hold [`Limits::input_free`] bytes on its own and borrows the rest from
//! the shard's input pool — or, for a data block that cannot get its bytes, is refused as
//! memcached refuses a set it cannot allocate.
//!
//! So a shard holds at most `connections × (reply_free + input_free) + both pools` for its
//! clients, whatever they send and however little they read.

use std::collections::VecDeque;

/// Per-connection limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reply bytes a connection holds without borrowing.
    pub reply_free: usize,
    /// Reply bytes a connection may hold in all; at least the largest single reply.
    pub reply_max: usize,
    /// Input bytes of a partial request held without borrowing.
    pub input_free: usize,
    /// The reply cap of one datagram's requests (UDP replies cannot be sent as they are made).
    pub datagram_max: usize,
    /// The first grant for a value read on another shard; a larger value asks again.
    pub grant: usize,
}

/// What a reply carries besides an item's key and value, at most: a `VALUE` line with a CAS, or
/// the meta flags echoed (opaque, base64 key, ...), or any error line.
pub const REPLY_SLACK: usize = 1024;

impl Limits {
    /// Limits for items of up to `item_max` bytes, with `reply_budget` bytes of replies per
    /// connection (raised to fit one whole item).
    pub fn new(item_max: usize, reply_budget: usize) -> Limits {
        let largest = item_max + REPLY_SLACK;
        Limits {
            reply_free: 32 << 10,
            reply_max: reply_budget.max(largest),
            input_free: 16 << 10,
            datagram_max: (1 << 20usize).max(largest),
            grant: 4 << 10,
        }
    }

    /// The largest reply one item can need.
    pub fn largest_reply(&self) -> usize {
        self.reply_max.min(self.datagram_max)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(1 << 20, 1 << 20)
    }
}

/// Bytes a shard lends to its connections beyond their own allowance, first come first served.
#[derive(Debug)]
pub struct Pool {
    size: usize,
    free: usize,
    /// Connections waiting for bytes, in the order they asked; only the first may borrow while
    /// any wait, so a big request is not starved by a stream of small ones.
    waiters: VecDeque<u64>,
    /// Bytes came back while someone waited: the host should wake the first waiter.
    wake: bool,
}

impl Pool {
    pub fn new(size: usize) -> Pool {
        Pool {
            size,
            free: size,
            waiters: VecDeque::new(),
            wake: false,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes lent out now.
    pub fn lent(&self) -> usize {
        self.size - self.free
    }

    /// What `who` could borrow right now.
    pub fn available(&self, who: u64) -> usize {
        match self.waiters.front() {
            Some(&first) if first != who => 0,
            _ => self.free,
        }
    }

    /// Lends `n` bytes to `who`, or queues `who` to be woken when bytes come back.
    pub fn borrow(&mut self, n: usize, who: u64) -> bool {
        if n <= self.available(who) {
            self.free -= n;
            if self.waiters.front() == Some(&who) {
                self.waiters.pop_front();
                self.wake = !self.waiters.is_empty() && self.free > 0;
            }
            return true;
        }
        if !self.waiters.contains(&who) {
            self.waiters.push_back(who);
        }
        false
    }

    /// Takes back `n` lent bytes.
    pub fn give(&mut self, n: usize) {
        debug_assert!(self.free + n <= self.size, "gave back more than was lent");
        self.free = (self.free + n).min(self.size);
        if n > 0 && !self.waiters.is_empty() {
            self.wake = true;
        }
    }

    /// The connection to wake because bytes came back, if any; each call hands out the first
    /// waiter once per return of bytes (it borrows or stays first in line).
    pub fn to_wake(&mut self) -> Option<u64> {
        if !std::mem::take(&mut self.wake) {
            return None;
        }
        self.waiters.front().copied()
    }

    /// Whether anyone waits.
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// `who` is gone: it no longer waits.
    pub fn forget(&mut self, who: u64) {
        let first = self.waiters.front() == Some(&who);
        self.waiters.retain(|&w| w != who);
        if first && !self.waiters.is_empty() {
            self.wake = true;
        }
    }
}

/// One connection's bytes against its limits and its shard's pool.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    held: usize,
    borrowed: usize,
}

/// Why an [`Account::take`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Short {
    /// Over the connection's own cap: wait until the client reads.
    Drain,
    /// The pool is lent out: wait to be woken (the pool queued the connection).
    Pool,
}

impl Account {
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn borrowed(&self) -> usize {
        self.borrowed
    }

    /// Bytes that can be taken now without waiting (`cap` is the connection's cap).
    pub fn room(&self, free: usize, cap: usize, pool: &Pool, who: u64) -> usize {
        let own = free + self.borrowed + pool.available(who);
        cap.saturating_sub(self.held)
            .min(own.saturating_sub(self.held))
    }

    /// Takes `n` more bytes, borrowing what the connection's own allowance lacks.
    pub fn take(
        &mut self,
        n: usize,
        free: usize,
        cap: usize,
        pool: &mut Pool,
        who: u64,
    ) -> Result<(), Short> {
        if self.held + n > cap {
            return Err(Short::Drain);
        }
        let need = (self.held + n).saturating_sub(free + self.borrowed);
        if need > 0 {
            if !pool.borrow(need, who) {
                return Err(Short::Pool);
            }
            self.borrowed += need;
        }
        self.held += n;
        Ok(())
    }

    /// `n` held bytes are gone (sent, or a reservation replaced); returns borrowed bytes the
    /// connection no longer needs to the pool.
    pub fn give(&mut self, n: usize, free: usize, pool: &mut Pool) {
        debug_assert!(n <= self.held, "gave {n} of {} held", self.held);
        self.held = self.held.saturating_sub(n);
        let keep = self.held.saturating_sub(free);
        if self.borrowed > keep {
            pool.give(self.borrowed - keep);
            self.borrowed = keep;
        }
    }

    /// Replaces a reservation of `reserved` bytes by the `actual` bytes that came of it
    /// (`actual <= reserved`).
    pub fn settle(&mut self, reserved: usize, actual: usize, free: usize, pool: &mut Pool) {
        debug_assert!(
            actual <= reserved,
            "{actual} bytes in a {reserved}-byte reservation"
        );
        self.give(reserved.saturating_sub(actual), free, pool);
    }

    /// Counts `n` bytes that exist already and cannot wait (bounded elsewhere), without
    /// borrowing: what a later [`Account::give`] returns is computed from `held` alone.
    pub fn force(&mut self, n: usize) {
        self.held += n;
    }

    /// Everything goes back (the connection closed).
    pub fn close(&mut self, pool: &mut Pool, who: u64) {
        pool.give(self.borrowed);
        pool.forget(who);
        *self = Account::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_borrows_beyond_its_allowance_and_gives_back() {
        let mut pool = Pool::new(100);
        let mut a = Account::default();
        // Within the allowance of 10: nothing borrowed.
        assert_eq!(a.take(10, 10, 50, &mut pool, 1), Ok(()));
        assert_eq!((a.held(), a.borrowed(), pool.lent()), (10, 0, 0));
        // Beyond it: the excess comes from the pool.
        assert_eq!(a.take(25, 10, 50, &mut pool, 1), Ok(()));
        assert_eq!((a.held(), a.borrowed(), pool.lent()), (35, 25, 25));
        // Never past the cap, pool or not.
        assert_eq!(a.take(16, 10, 50, &mut pool, 1), Err(Short::Drain));
        assert_eq!(a.room(10, 50, &pool, 1), 15);
        // Sending 30 bytes gives back all but what the 5 still held beyond... nothing.
        a.give(30, 10, &mut pool);
        assert_eq!((a.held(), a.borrowed(), pool.lent()), (5, 0, 0));
        // A reservation settled for less.
        assert_eq!(a.take(40, 10, 50, &mut pool, 1), Ok(()));
        a.settle(40, 3, 10, &mut pool);
        assert_eq!((a.held(), a.borrowed(), pool.lent()), (8, 0, 0));
    }

    #[test]
    fn the_pool_serves_waiters_in_order() {
        let mut pool = Pool::new(100);
        let (mut a, mut b, mut c) = (Account::default(), Account::default(), Account::default());
        assert_eq!(a.take(90, 0, 1000, &mut pool, 1), Ok(()));
        // b wants 50: it waits, first in line.
        assert_eq!(b.take(50, 0, 1000, &mut pool, 2), Err(Short::Pool));
        // c wants only 5, which is there, but b is first.
        assert_eq!(pool.available(3), 0);
        assert_eq!(c.take(5, 0, 1000, &mut pool, 3), Err(Short::Pool));
        assert_eq!(pool.to_wake(), None);
        // a sends 60: b is woken and borrows, then c.
        a.give(60, 0, &mut pool);
        assert_eq!(pool.to_wake(), Some(2));
        assert_eq!(b.take(50, 0, 1000, &mut pool, 2), Ok(()));
        assert_eq!(pool.to_wake(), Some(3));
        assert_eq!(c.take(5, 0, 1000, &mut pool, 3), Ok(()));
        assert!(!pool.has_waiters());
        assert_eq!(pool.lent(), 30 + 50 + 5);
        // A connection that closes gives everything back and leaves the line.
        assert_eq!(a.take(60, 0, 1000, &mut pool, 1), Err(Short::Pool));
        b.close(&mut pool, 2);
        assert_eq!(pool.to_wake(), Some(1));
        c.close(&mut pool, 3);
        a.close(&mut pool, 1);
        assert_eq!((pool.lent(), pool.has_waiters()), (0, false));
    }
}
