//! Table tests: size syntax, the embedded default, file overlay, flags, validation.

use super::*;

fn ok<T, E: fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn err<T: fmt::Debug, E: fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// Errors including their context chain, as `main` prints them.
fn err_chain<T: fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// A scratch file that removes itself.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("kcache-config-{}-{name}", std::process::id()));
        ok(std::fs::write(&path, text));
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn sizes() {
    for (s, want) in [
        // Plain bytes.
        ("2048", Ok(2048)),
        ("0", Ok(0)),
        // memcached's suffixes, either case.
        ("512k", Ok(512 << 10)),
        ("512K", Ok(512 << 10)),
        ("1m", Ok(1 << 20)),
        ("1M", Ok(1 << 20)),
        ("1024m", Ok(1 << 30)),
        // g as well, for config files.
        ("1g", Ok(1 << 30)),
        // Leading zeros are still decimal.
        ("010", Ok(10)),
        // Nothing at all.
        ("", Err(SizeError::Empty)),
        // A suffix alone.
        ("m", Err(SizeError::Syntax("m".into()))),
        // Fractions, signs, spaces, other units: refused, where memcached guesses.
        ("1.5m", Err(SizeError::Syntax("1.5m".into()))),
        ("-1", Err(SizeError::Syntax("-1".into()))),
        ("+1", Err(SizeError::Syntax("+1".into()))),
        (" 1m", Err(SizeError::Syntax(" 1m".into()))),
        ("1 m", Err(SizeError::Syntax("1 m".into()))),
        ("1mb", Err(SizeError::Syntax("1mb".into()))),
        ("1t", Err(SizeError::Syntax("1t".into()))),
        ("abc", Err(SizeError::Syntax("abc".into()))),
        // Past usize, before or after the unit.
        (
            "99999999999999999999",
            Err(SizeError::Overflow("99999999999999999999".into())),
        ),
        (
            "99999999999999g",
            Err(SizeError::Overflow("99999999999999g".into())),
        ),
    ] {
        assert_eq!(parse_size(s), want, "{s:?}");
    }
}

#[test]
fn item_max_flag() {
    for (s, want) in [
        // The bounds themselves are fine.
        ("1k", Ok(1024)),
        ("1024", Ok(1024)),
        ("1024m", Ok(1 << 30)),
        // One byte either side is not.
        ("1023", Err("below the 1k minimum")),
        ("1073741825", Err("above the 1024m maximum")),
        // Syntax errors say what is expected.
        ("1.5m", Err("like 512k or 1m")),
    ] {
        match (item_max_arg(s), want) {
            (Ok(n), Ok(w)) => assert_eq!(n, w, "{s:?}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{s:?}: {e}"),
            (got, want) => panic!("{s:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn embedded_default_is_the_default_and_lists_every_key() {
    assert_eq!(ok(Config::from_toml(DEFAULT_TOML)), Config::default());
    let table: toml::Table = ok(toml::from_str(DEFAULT_TOML));
    let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bpffs",
            "bucket_map",
            "conn_reply_max",
            "growth_factor",
            "input_pool_mb",
            "item_max",
            "lease_secs",
            "listen",
            "log",
            "max_connections",
            "memory_mb",
            "node_id",
            "pin_threads",
            "poll_us",
            "port",
            "reply_pool_mb",
            "reply_stall_secs",
            "strict_keys",
            "threads",
            "tombstone_secs",
            "udp_allow",
            "udp_port",
            "udp_reply_cap",
            "udp_reply_max",
            "xdp",
            "xdp_large_slots",
            "xdp_mode",
            "xdp_small_slots",
        ]
    );
    // And it is valid as it stands.
    ok(Config::default().validate());
}

#[test]
fn files_overlay_the_default() {
    let d = Config::default();
    for (text, want) in [
        // Empty: the default.
        ("", d.clone()),
        // A few keys; the rest stay.
        (
            "port = 9999\nthreads = 2\n",
            Config {
                port: 9999,
                threads: 2,
                ..d.clone()
            },
        ),
        // item_max as an integer ...
        (
            "item_max = 2048",
            Config {
                item_max: 2048,
                ..d.clone()
            },
        ),
        // ... or in -I syntax.
        (
            "item_max = \"4m\"",
            Config {
                item_max: 4 << 20,
                ..d.clone()
            },
        ),
        (
            "pin_threads = false\nlog = \"debug\"\ngrowth_factor = 1.25",
            Config {
                pin_threads: false,
                log: "debug".into(),
                growth_factor: 1.25,
                ..d.clone()
            },
        ),
    ] {
        assert_eq!(ok(Config::from_toml(text)), want, "{text:?}");
    }
}

#[test]
fn bad_files() {
    for (text, want) in [
        // A misspelt key is named, with the ones that exist.
        ("prot = 1", "unknown field `prot`"),
        ("prot = 1", "expected one of"),
        // Wrong types.
        ("port = \"11211\"", "invalid type"),
        ("port = 70000", "port"),
        ("pin_threads = 1", "invalid type"),
        // Sizes: bad syntax, negative, wrong type.
        ("item_max = \"1.5m\"", "is not a size"),
        ("item_max = -1", "invalid value"),
        ("item_max = 1.5", "a size"),
        // Not TOML at all.
        ("port = ", "TOML parse error"),
        // Tables are not keys.
        ("[server]\nport = 1", "unknown field `server`"),
    ] {
        let e = err(Config::from_toml(text));
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn flags_beat_the_file_which_beats_the_default() {
    let file = Scratch::new(
        "layers.toml",
        "port = 2000\nudp_port = 2001\nmemory_mb = 32\n",
    );
    let args = ServeArgs {
        config: Some(file.0.clone()),
        port: Some(3000),
        threads: Some(1),
        max_item_size: Some(4096),
        log: Some("warn".into()),
        no_pin: true,
        ..ServeArgs::default()
    };
    let cfg = ok(Config::load(&args));
    assert_eq!(
        cfg,
        Config {
            // Flag over file.
            port: 3000,
            // File over default.
            udp_port: 2001,
            memory_mb: 32,
            // Flags over default.
            threads: 1,
            item_max: 4096,
            log: "warn".into(),
            pin_threads: false,
            ..Config::default()
        }
    );
    // Without flags or file: the embedded default.
    assert_eq!(ok(Config::load(&ServeArgs::default())), Config::default());
}

#[test]
fn load_errors_name_the_file() {
    let bad = Scratch::new("bad.toml", "port = 1\nmemroy_mb = 64\n");
    let args = ServeArgs {
        config: Some(bad.0.clone()),
        ..ServeArgs::default()
    };
    let e = err_chain(Config::load(&args));
    assert!(e.contains("memroy_mb") && e.contains("bad.toml"), "{e}");
    // A file that is not there.
    let args = ServeArgs {
        config: Some("/nonexistent/kcache.toml".into()),
        ..ServeArgs::default()
    };
    let e = err_chain(Config::load(&args));
    assert!(
        e.contains("reading config file /nonexistent/kcache.toml"),
        "{e}"
    );
    // Validation runs after the flags: a file value a flag fixes is fine.
    let low = Scratch::new("low.toml", "memory_mb = 1\n");
    let args = ServeArgs {
        config: Some(low.0.clone()),
        memory_limit: Some(64),
        ..ServeArgs::default()
    };
    assert_eq!(ok(Config::load(&args)).memory_mb, 64);
}

#[test]
fn validation() {
    let base = Config {
        threads: 2,
        ..Config::default()
    };
    /// A name, a change to a valid config, and the error it should cause.
    type Case = (&'static str, fn(&mut Config), Option<&'static str>);
    let cases: &[Case] = &[
        // The default with two threads is fine.
        ("default", |_| {}, None),
        ("port 0", |c| c.port = 0, Some("port (-p) 0")),
        // UDP on, even on the TCP port number, as memcached allows.
        ("udp", |c| c.udp_port = c.port, None),
        ("ipv6", |c| c.listen = "::1".into(), None),
        ("any", |c| c.listen = "0.0.0.0".into(), None),
        (
            "hostname",
            |c| c.listen = "localhost".into(),
            Some("not an IP"),
        ),
        (
            "with port",
            |c| c.listen = "127.0.0.1:1".into(),
            Some("not an IP"),
        ),
        ("memory 7", |c| c.memory_mb = 7, Some("memory_mb (-m) 7")),
        ("memory 8", |c| c.memory_mb = 8, None),
        (
            "memory huge",
            |c| c.memory_mb = 1 << 21,
            Some("memory_mb (-m)"),
        ),
        (
            "conns 0",
            |c| c.max_connections = 0,
            Some("max_connections (-c) 0"),
        ),
        ("threads 257", |c| c.threads = 257, Some("threads (-t) 257")),
        (
            "item 1023",
            |c| c.item_max = 1023,
            Some("below the 1k minimum"),
        ),
        (
            "item 1g+1",
            |c| c.item_max = GIB + 1,
            Some("above the 1024m"),
        ),
        (
            "factor 1",
            |c| c.growth_factor = 1.0,
            Some("growth_factor 1 "),
        ),
        (
            "factor 4",
            |c| c.growth_factor = 4.0,
            Some("growth_factor 4 "),
        ),
        (
            "factor NaN",
            |c| c.growth_factor = f64::NAN,
            Some("growth_factor NaN"),
        ),
        (
            "tombstone 0",
            |c| c.tombstone_secs = 0,
            Some("tombstone_secs 0"),
        ),
        ("lease 0", |c| c.lease_secs = 0, Some("lease_secs 0")),
        (
            "lease day+1",
            |c| c.lease_secs = 86_401,
            Some("lease_secs 86401"),
        ),
        ("poll 1000", |c| c.poll_us = 1000, None),
        (
            "poll 1001",
            |c| c.poll_us = 1001,
            Some("poll_us (--poll-us) 1001"),
        ),
        ("log ok", |c| c.log = "warn,kcache=debug".into(), None),
        (
            "log bad",
            |c| c.log = "[[".into(),
            Some("log (--log) \"[[\""),
        ),
        // 64 MiB over 32 threads is exactly 2 MiB each: enough.
        ("share exact", |c| c.threads = 32, None),
        // Over 33 it is not; the hint gives both ways out.
        (
            "share short",
            |c| c.threads = 33,
            Some("use -m 66 or more, -t 32 or fewer"),
        ),
        // A big -I raises every thread's need.
        (
            "big item",
            |c| c.item_max = 32 << 20,
            Some("each needs at least 65536 KiB"),
        ),
        // One thread cannot use more than 32 GiB.
        (
            "share huge",
            |c| {
                c.threads = 1;
                c.memory_mb = 40 << 10
            },
            Some("use -t 2 or more"),
        ),
    ];
    for (name, change, want) in cases {
        let mut c = base.clone();
        change(&mut c);
        match (c.validate(), want) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{name}: {e}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn threads() {
    // Explicit counts are kept as given.
    let c = Config {
        threads: 3,
        ..Config::default()
    };
    assert_eq!(c.threads_resolved(), 3);
    // 0: one per core, within bounds.
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let c = Config {
        memory_mb: 1 << 16,
        ..Config::default()
    };
    assert_eq!(c.threads_resolved(), cores.min(THREADS_MAX));
    // 0 with little memory: no more threads than it can feed, but always one.
    let c = Config {
        memory_mb: 8,
        item_max: 4 << 20,
        ..Config::default()
    };
    assert_eq!(c.threads_resolved(), 1);
    ok(c.validate());
    // Even when one is too many, so validation gives the reason.
    let c = Config {
        memory_mb: 8,
        item_max: 8 << 20,
        ..Config::default()
    };
    assert_eq!(c.threads_resolved(), 1);
    assert!(err(c.validate()).contains("use -m 16 or more, or a smaller -I"));
}

#[test]
fn xdp_keys() {
    // A file sets every XDP key.
    let c = ok(Config::from_toml(
        "udp_port = 11311\nxdp = \"eth0\"\nxdp_mode = \"generic\"\nbpffs = \"/mnt/bpf\"\n\
         xdp_small_slots = 1024\nxdp_large_slots = 64\nudp_allow = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
         udp_reply_cap = 1200\nnode_id = 3\n",
    ));
    assert_eq!((c.xdp.as_str(), c.xdp_mode), ("eth0", XdpMode::Generic));
    assert_eq!(
        (c.bpffs.as_str(), c.xdp_small_slots, c.xdp_large_slots),
        ("/mnt/bpf", 1024, 64)
    );
    assert_eq!(c.udp_allow, ["10.0.0.0/8", "fd00::/8"]);
    assert_eq!((c.udp_reply_cap, c.node_id), (1200, 3));
    ok(c.validate());
    // Modes are lower-case words.
    for (text, mode) in [("auto", XdpMode::Auto), ("native", XdpMode::Native)] {
        let c = ok(Config::from_toml(&format!("xdp_mode = \"{text}\"")));
        assert_eq!(c.xdp_mode, mode);
    }
    assert!(Config::from_toml("xdp_mode = \"fast\"").is_err());
    // Flags: --xdp and --xdp-mode beat the file.
    let mut c = Config::default();
    c.apply(&ServeArgs {
        xdp: Some("lo".into()),
        xdp_mode: Some(XdpMode::Native),
        ..ServeArgs::default()
    });
    assert_eq!((c.xdp.as_str(), c.xdp_mode), ("lo", XdpMode::Native));
}

#[test]
fn xdp_validation() {
    let base = Config {
        threads: 1,
        udp_port: 11311,
        xdp: "lo".into(),
        ..Config::default()
    };
    ok(base.validate());
    /// A change to a valid XDP config and the error it should cause.
    type Case = (fn(&mut Config), &'static str);
    let cases: &[Case] = &[
        (|c| c.udp_port = 0, "needs UDP"),
        (|c| c.xdp = "a/b".into(), "not an interface name"),
        (
            |c| c.xdp = "sixteen-chars-xx".into(),
            "not an interface name",
        ),
        (
            |c| c.xdp_small_slots = 1000,
            "xdp_small_slots 1000 must be a power of two",
        ),
        (|c| c.xdp_small_slots = 2, "xdp_small_slots 2"),
        (|c| c.xdp_large_slots = 1 << 21, "xdp_large_slots"),
        (|c| c.udp_allow = vec!["10.0.0.0/33".into()], "udp_allow"),
        (|c| c.udp_allow = vec!["nope".into()], "udp_allow"),
        (|c| c.udp_reply_cap = 63, "udp_reply_cap 63"),
        (|c| c.udp_reply_cap = 1401, "udp_reply_cap 1401"),
        (|c| c.node_id = u32::MAX, "node_id"),
        (|c| c.bpffs = "bpf".into(), "absolute"),
    ];
    for (change, want) in cases {
        let mut c = base.clone();
        change(&mut c);
        let e = err_chain(c.validate());
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    }
    // UDP without XDP still checks the allowlist entries.
    let c = Config {
        xdp: String::new(),
        udp_allow: vec!["x".into()],
        ..base
    };
    assert!(err_chain(c.validate()).contains("udp_allow"));
}
