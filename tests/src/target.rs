//! Which server the suite runs against.

use std::fmt;

/// The environment variable that picks the target: `kcache` (the default) or `memcached`.
pub const TARGET_ENV: &str = "KCACHE_TEST_TARGET";

/// A server implementation the tests can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The server under test.
    Kcache,
    /// memcached 1.6 from Debian: the reference every expectation was recorded from.
    Memcached,
}

impl Target {
    /// The target named by `KCACHE_TEST_TARGET`. Panics on a name it does not know, so a typo
    /// cannot quietly test the wrong server.
    pub fn from_env() -> Target {
        match std::env::var(TARGET_ENV) {
            Err(std::env::VarError::NotPresent) => Target::Kcache,
            Ok(name) => match name.as_str() {
                "" | "kcache" => Target::Kcache,
                "memcached" => Target::Memcached,
                other => panic!("{TARGET_ENV}={other:?}: expected `kcache` or `memcached`"),
            },
            Err(e) => panic!("{TARGET_ENV}: {e}"),
        }
    }

    /// True when a test of `feature`, which only kcache has, must not run: the target is
    /// memcached. The skip is recorded ([`crate::skip::record`]), so it is counted as skipped,
    /// not passed; the caller returns at once. This is a deliberate choice of target, never a
    /// missing tool (those fail).
    pub fn skips_kcache_only(self, feature: &str) -> bool {
        if self == Target::Memcached {
            crate::skip::record(&format!(
                "{feature} is kcache-only ({TARGET_ENV}=memcached)"
            ));
        }
        self == Target::Memcached
    }

    /// What the server says to a connection over its `-c` limit, before closing it.
    pub fn too_many_connections(self) -> &'static [u8] {
        match self {
            // The contract of issue 3: a SERVER_ERROR, as the issue words it.
            Target::Kcache => b"SERVER_ERROR too many open connections\r\n",
            // memcached 1.6.18 (`maxconns_fast`, the default) answers with ERROR.
            Target::Memcached => b"ERROR Too many open connections\r\n",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Kcache => "kcache",
            Target::Memcached => "memcached",
        })
    }
}
