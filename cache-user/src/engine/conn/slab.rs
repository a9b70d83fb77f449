//! A generational slab: values addressed by an id that goes stale when its slot is reused, so a
//! late completion or message for a closed connection never reaches the next one in its slot.

/// A slot index and the generation it had when the value went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Id {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

impl Id {
    /// As one number (what the pipeline's pools queue).
    pub(crate) fn token(self) -> u64 {
        u64::from(self.idx) | u64::from(self.gen) << 32
    }

    pub(crate) const fn from_token(t: u64) -> Id {
        Id {
            idx: t as u32,
            gen: (t >> 32) as u32,
        }
    }
}

#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> Id {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[idx as usize];
        s.gen = s.gen.wrapping_add(1);
        s.value = Some(value);
        self.len += 1;
        Id { idx, gen: s.gen }
    }

    pub(crate) fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        self.slots
            .get_mut(id.idx as usize)
            .filter(|s| s.gen == id.gen)
            .and_then(|s| s.value.as_mut())
    }

    pub(crate) fn remove(&mut self, id: Id) -> Option<T> {
        let s = self
            .slots
            .get_mut(id.idx as usize)
            .filter(|s| s.gen == id.gen)?;
        let v = s.value.take()?;
        self.free.push(id.idx);
        self.len -= 1;
        Some(v)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every live id.
    pub(crate) fn ids(&self) -> Vec<Id> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| Id {
                idx: i as u32,
                gen: s.gen,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_id_finds_nothing() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        // The slot is reused under a new generation; the old id no longer reaches it.
        let b = s.insert("b");
        assert_eq!(a.idx, b.idx);
        assert_eq!(s.get_mut(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get_mut(b), Some(&mut "b"));
        assert_eq!(Id::from_token(b.token()), b);
        assert_eq!((s.len, s.ids()), (1, vec![b]));
    }
}
