//! Test harness for the slab store: a tiny arena, an item writer, and a long random run checked
//! against a `HashMap` model.

use std::{collections::HashMap, error::Error};

use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::{item, AllocError, Header, ItemId, Removal, SlabConfig, SlabError, Slabs};
use crate::bucket::khash;

pub(super) type TestResult = Result<(), Box<dyn Error>>;
/// Removals seen by `on_remove`: why, and the key read from the chunk at that moment.
pub(super) type Log = Vec<(Removal, Vec<u8>)>;

/// `pages` pages of 64 KiB; classes double from 32 bytes: 32, 64, .., 32 KiB, then 64 KiB (12).
pub(super) fn tiny(pages: usize) -> Result<Slabs<Vec<u8>>, SlabError> {
    let cfg = SlabConfig {
        page_size: 1 << 16,
        min_chunk: 32,
        growth_factor: 2.0,
        index_capacity: 16,
    };
    Slabs::new(vec![0u8; pages << 16], cfg)
}

/// A `dead` predicate for runs without expiry.
pub(super) fn never(_: &Header) -> bool {
    false
}

/// The `dead` predicate of the tests: exptime 1 stands for "already expired".
pub(super) fn expired(h: &Header) -> bool {
    h.exptime == 1
}

/// Stores `key` with a `vlen`-byte value the way the store will: alloc, write, link or replace.
pub(super) fn put(
    s: &mut Slabs<Vec<u8>>,
    key: &[u8],
    vlen: usize,
    exptime: u32,
    iflag: u16,
    log: &mut Log,
) -> Result<ItemId, AllocError> {
    let len = item::item_len(key.len(), vlen, false);
    let id = s.alloc(len, &expired, &mut |why, chunk| {
        log.push((why, item::key(chunk).to_vec()))
    })?;
    let chunk = s.chunk_mut(id);
    let header = Header {
        exptime,
        vlen: vlen as u32,
        klen: key.len() as u8,
        iflag,
        ..Header::default()
    };
    header.write(chunk);
    chunk[item::HEADER_LEN..item::HEADER_LEN + key.len()].copy_from_slice(key);
    let hash = khash(key);
    match s.find(key, hash) {
        Some(old) => s.replace(old, id, hash),
        None => s.link(id, hash),
    }
    Ok(id)
}

/// Stores `{prefix}{i}` for `i` in `0..n`, each with a `vlen`-byte value.
pub(super) fn fill(
    s: &mut Slabs<Vec<u8>>,
    prefix: &str,
    n: usize,
    vlen: usize,
    exptime: u32,
    iflag: u16,
    log: &mut Log,
) -> Result<Vec<ItemId>, AllocError> {
    (0..n)
        .map(|i| {
            put(
                s,
                format!("{prefix}{i}").as_bytes(),
                vlen,
                exptime,
                iflag,
                log,
            )
        })
        .collect()
}

/// The keys in `log`, as text, in order.
pub(super) fn keys(log: &Log, why: Removal) -> Vec<String> {
    log.iter()
        .filter(|(w, _)| *w == why)
        .map(|(_, k)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Checks the counters against the model and the arena.
fn check(s: &Slabs<Vec<u8>>, model: &HashMap<Vec<u8>, usize>) {
    assert_eq!(s.len(), model.len());
    let stats = s.class_stats();
    let used: u64 = stats.iter().map(|c| c.used_chunks).sum();
    assert_eq!(
        used,
        model.len() as u64,
        "no allocation is outstanding between operations"
    );
    let pages: u32 = stats.iter().map(|c| c.pages).sum();
    assert!(pages as usize <= s.page_class.len());
    for (id, c) in stats.iter().enumerate() {
        assert_eq!(
            c.used_chunks + c.free_chunks,
            u64::from(c.pages * c.chunks_per_page),
            "{id}"
        );
        let class = &s.classes[id];
        assert_eq!(
            class.free_len,
            free_list_len(s, class.free_head),
            "class {id}"
        );
    }
    // Every item a walker sees is the linked copy of its key: no stale bytes past a bump cursor.
    let mut seen = 0;
    s.for_each(&mut |id, chunk| {
        let key = item::key(chunk);
        assert_eq!(s.find(key, khash(key)), Some(id));
        assert!(model.contains_key(key));
        seen += 1;
    });
    assert_eq!(seen, model.len());
}

fn free_list_len(s: &Slabs<Vec<u8>>, mut id: ItemId) -> u64 {
    let mut n = 0;
    while id != super::NIL {
        assert_eq!(
            item::read_klen(s.chunk(id)),
            0,
            "free chunk {id} holds an item"
        );
        id = super::clock::read_next(&s.mem, id);
        n += 1;
    }
    n
}

/// Drops every removed key from the model, counting evictions and page moves.
fn settle(
    log: &mut Log,
    model: &mut HashMap<Vec<u8>, usize>,
    evicted: &mut u32,
    moved: &mut u32,
) -> TestResult {
    for (why, key) in log.drain(..) {
        assert!(model.remove(&key).is_some(), "{why:?} of an unknown key");
        match why {
            Removal::Evicted => *evicted += 1,
            Removal::PageMoved => *moved += 1,
            Removal::Reclaimed => return Err("nothing expires in this run".into()),
        }
    }
    Ok(())
}

#[test]
fn random_run_matches_a_model() -> TestResult {
    // 16 pages of 64 KiB for keys of up to ~16 KiB: classes fill, evict and steal pages.
    let mut s = tiny(16)?;
    let mut rng = SmallRng::seed_from_u64(0x6b63_6163_6865);
    let mut model: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut log = Log::new();
    let (mut evicted, mut moved) = (0, 0);
    for step in 0..100_000u32 {
        let key = format!("key:{}", rng.gen_range(0..3000)).into_bytes();
        let hash = khash(&key);
        match rng.gen_range(0..100) {
            // Stores dominate; value sizes are skewed small with a long tail.
            0..=59 => {
                let vlen = match rng.gen_range(0..10) {
                    0..=6 => rng.gen_range(0..100),
                    7..=8 => rng.gen_range(100..2000),
                    _ => rng.gen_range(2000..16_000),
                };
                put(&mut s, &key, vlen, 0, 0, &mut log)?;
                // The put may have evicted the key's old copy: settle the log first.
                settle(&mut log, &mut model, &mut evicted, &mut moved)?;
                model.insert(key.clone(), vlen);
            }
            // Deletes.
            60..=79 => {
                if let Some(id) = s.find(&key, hash) {
                    s.unlink(id, hash);
                }
                assert_eq!(s.find(&key, hash), None);
                model.remove(&key);
            }
            // A hit sets the reference bit, as the store does.
            80..=97 => {
                if let Some(id) = s.find(&key, hash) {
                    let chunk = s.chunk_mut(id);
                    let h = Header::read(chunk);
                    assert_eq!(
                        h.vlen as usize,
                        model.get(&key).copied().unwrap_or(usize::MAX)
                    );
                    item::write_iflag(chunk, h.iflag | item::ITEM_REF);
                }
            }
            // Now and then the balancer runs, or an operator moves a page.
            98 => {
                let mut on_remove = |why, chunk: &[u8]| log.push((why, item::key(chunk).to_vec()));
                s.rebalance(&mut on_remove);
            }
            _ => {
                let (a, b) = (rng.gen_range(0..12), rng.gen_range(0..12));
                let mut on_remove = |why, chunk: &[u8]| log.push((why, item::key(chunk).to_vec()));
                let _ = s.reassign(a, b, &mut on_remove);
            }
        }
        settle(&mut log, &mut model, &mut evicted, &mut moved)?;
        if step % 1000 == 0 {
            check(&s, &model);
        }
    }
    check(&s, &model);
    for key in model.keys() {
        assert!(s.find(key, khash(key)).is_some(), "{key:?} lost");
    }
    // The run is only meaningful if memory ran out and pages moved.
    assert!(
        evicted > 1000 && moved > 100,
        "evicted {evicted}, moved {moved}"
    );
    Ok(())
}

#[test]
fn index_grows_past_its_capacity() -> TestResult {
    let mut s = tiny(16)?;
    let mut log = Log::new();
    let small = s.index_bytes();
    // Four-byte keys and no value fill the 32-byte class: 20 000 of them, far past the 16
    // the index was sized for.
    for i in 0..20_000u32 {
        put(&mut s, &i.to_le_bytes(), 0, 0, 0, &mut log)?;
    }
    for i in 0..20_000u32 {
        let key = i.to_le_bytes();
        let id = s.find(&key, khash(&key)).ok_or("key lost in a resize")?;
        assert_eq!(item::key(s.chunk(id)), key);
    }
    assert_eq!(s.len(), 20_000);
    assert!(log.is_empty());
    // 20 000 ids need at least 80 000 bytes of buckets.
    assert!(
        s.index_bytes() > small + 80_000,
        "{} bytes",
        s.index_bytes()
    );
    Ok(())
}
