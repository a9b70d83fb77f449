//! The bucket map from its file, as this node sees it (`cache_core::bucket::Ownership`, which
//! says where the check runs and why).

use std::path::Path;

use anyhow::{ensure, Context, Result};
use cache_core::bucket::{BucketMap, NodeId, Ownership};

/// `path`'s map, or for an empty path every bucket owned by `node` at epoch 1.
pub(crate) fn load(path: &str, node: NodeId) -> Result<Ownership> {
    let map = if path.is_empty() {
        BucketMap::new_single(node).context("the single-node bucket map")?
    } else {
        let path = Path::new(path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading bucket_map {}", path.display()))?;
        BucketMap::from_text(&text)
            .with_context(|| format!("decoding bucket_map {}", path.display()))?
    };
    // XDP's bucket entries and HOT slots carry the epoch in 32 bits.
    ensure!(
        u32::try_from(map.epoch()).is_ok(),
        "bucket map epoch {} does not fit 32 bits (XDP's epoch)",
        map.epoch()
    );
    Ok(Ownership::new(map, node))
}

#[cfg(test)]
mod tests {
    use cache_core::bucket::VBUCKETS;

    use super::*;

    #[test]
    fn an_empty_path_owns_everything() {
        let own = load("", 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((own.epoch(), own.owned()), (1, usize::from(VBUCKETS)));
    }

    #[test]
    fn load_errors() {
        let dir = std::env::temp_dir().join(format!("kcache-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            // Not there.
            ("", "reading bucket_map"),
            // Not a map.
            ("epoch x\n", "decoding bucket_map"),
            // An epoch XDP cannot carry.
            ("epoch 4294967296\nnode 0 0\n", "does not fit 32 bits"),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("map{i}"));
            if !text.is_empty() {
                std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
            }
            let e = load(&path.to_string_lossy(), 0)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
