//! The delete spool (mcrouter's asynclog, made part of the router): a delete that cannot reach
//! its server — the server is down, or the request was lost in flight — is appended to a file of
//! that server's in `spool_dir` (`<host:port>.spool`, one request a line, written and synced
//! before the client's reply), and replayed, in order, when the server is back: the probe that
//! finds it answering sends the spooled deletes on its own connection and only once every one
//! was answered does the server count as up again. A router restarted with entries left marks
//! their servers down at once, so they are replayed before anything is served. So an
//! invalidation the router took is never lost to a server failure.
//!
//! Deletes are safe to replay late and more than once: at worst a value written since is
//! dropped (a miss), never a stale value kept.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

use anyhow::{Context, Result};
use cache_core::protocol::Request;

/// Every server's spool file.
#[derive(Debug)]
pub(crate) struct Spool {
    files: Box<[(PathBuf, Mutex<()>)]>,
}

/// The text a delete is spooled as (its reply always asked for), or `None` for other requests.
pub(crate) fn entry(req: &Request<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match req {
        Request::Delete(d) => {
            out.extend_from_slice(b"delete ");
            out.extend_from_slice(d.key);
        }
        Request::MetaDelete(m) => {
            out.extend_from_slice(b"md ");
            out.extend_from_slice(m.key);
            // Quiet, opaque and key echo are the client's business; the rest is the delete.
            for t in m
                .flags
                .tokens()
                .filter(|t| !matches!(t[0], b'q' | b'O' | b'k'))
            {
                out.push(b' ');
                out.extend_from_slice(t);
            }
        }
        _ => return None,
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

impl Spool {
    /// The spool of these servers, in `dir` (created).
    pub(crate) fn open(dir: &Path, addrs: &[SocketAddr]) -> Result<Spool> {
        fs::create_dir_all(dir).with_context(|| format!("creating spool_dir {}", dir.display()))?;
        let files = addrs
            .iter()
            .map(|a| (dir.join(format!("{a}.spool")), Mutex::new(())))
            .collect();
        Ok(Spool { files })
    }

    /// Appends `entry` to server `d`'s spool and syncs it.
    pub(crate) fn append(&self, d: usize, entry: &[u8]) -> Result<()> {
        let Some((path, lock)) = self.files.get(d) else {
            return Ok(());
        };
        let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(entry)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Takes server `d`'s spooled requests, oldest first, leaving its file empty.
    pub(crate) fn take(&self, d: usize) -> Result<Vec<Vec<u8>>> {
        let Some((path, lock)) = self.files.get(d) else {
            return Ok(Vec::new());
        };
        let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        fs::write(path, b"").with_context(|| format!("emptying {}", path.display()))?;
        Ok(text
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.ends_with(b"\r\n") && l.len() > 2)
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// Whether server `d` has spooled requests.
    pub(crate) fn pending(&self, d: usize) -> bool {
        self.files
            .get(d)
            .and_then(|(p, _)| fs::metadata(p).ok())
            .is_some_and(|m| m.len() > 0)
    }
}

#[cfg(test)]
mod tests {
    use cache_core::protocol::Parser;

    use super::*;

    #[test]
    fn deletes_are_spooled_and_taken_in_order() {
        let p = Parser::new();
        let e = |t: &[u8]| entry(&p.parse(t).unwrap_or_else(|e| panic!("{e:?}")).request);
        assert_eq!(
            e(b"delete a noreply\r\n").as_deref(),
            Some(&b"delete a\r\n"[..])
        );
        assert_eq!(
            e(b"md a q O9 k I T30\r\n").as_deref(),
            Some(&b"md a I T30\r\n"[..])
        );
        assert_eq!(e(b"set a 0 0 1\r\nx\r\n"), None);
        let dir = std::env::temp_dir().join(format!("kcache-spool-test-{}", std::process::id()));
        let addrs: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let s = Spool::open(&dir, &addrs).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!s.pending(0));
        for k in ["a", "b"] {
            s.append(0, format!("delete {k}\r\n").as_bytes())
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
        assert!(s.pending(0) && !s.pending(1));
        let got = s.take(0).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            got,
            vec![b"delete a\r\n".to_vec(), b"delete b\r\n".to_vec()]
        );
        assert!(!s.pending(0));
        assert!(s.take(1).unwrap_or_else(|e| panic!("{e:#}")).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
