//! A partial request's bytes against the input budget.

use super::{feed::Went, *};

impl Session {
    /// Keeps a partial request's bytes within the input allowance, borrowing from the input
    /// pool beyond it; a data block that cannot get its bytes is refused as memcached refuses a
    /// value it has no memory for, and a multiget line that cannot hangs up.
    pub(super) fn hold_input<B, H>(&mut self, cx: &mut Cx<'_, B, H>, input: &[u8], at: &mut usize)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let free = cx.core.limits.input_free;
        let rest = &input[*at..];
        if rest.len() <= free || self.close || self.failed {
            self.release_input(cx, rest.len() <= free);
            return;
        }
        if self.stalled() && self.expect.is_none() {
            // A whole request waits for room; its bytes were counted while they arrived.
            return;
        }
        let total = match self.expect {
            Some(t) => Some(t),
            None => {
                self.expect = cx.core.parser.pending_block(rest);
                self.expect
            }
        };
        let need = total.unwrap_or(rest.len()).saturating_sub(free);
        if need <= self.input_borrowed {
            return;
        }
        let more = need - self.input_borrowed;
        if cx.core.input.borrow(more, cx.who) {
            self.input_borrowed += more;
            return;
        }
        cx.core.input.forget(cx.who);
        if total.is_some() {
            // Refused now, as memcached does when it cannot allocate the item; the rest of the
            // block is swallowed as it comes.
            if let Ok(p) = cx.core.parser.parse_no_room(rest) {
                let raw = &rest[..p.consumed.min(rest.len())];
                if self.run(cx, &p.request, raw) == Went::On {
                    self.expect = None;
                    *at += self.advance(p.consumed, rest.len());
                }
            }
        } else {
            let buf = self.buf();
            let before = buf.len();
            ErrorReply::Server("out of memory reading request").write(buf);
            let n = buf.len() - before;
            self.force(cx, n);
            self.close = true;
            *at = input.len();
        }
        let small = input.len() - *at <= free;
        self.release_input(cx, small);
    }

    /// Gives the input pool back what the partial request held, when it is gone (`done`).
    pub(super) fn release_input<B, H>(&mut self, cx: &mut Cx<'_, B, H>, done: bool) {
        if done && self.input_borrowed > 0 {
            cx.core.input.give(self.input_borrowed);
            self.input_borrowed = 0;
        }
    }
}
