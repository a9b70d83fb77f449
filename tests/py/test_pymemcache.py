"""pymemcache against a live server: every classic command, with and without noreply.

Run by tests/tests/pymemcache.rs, which starts a fresh server and sets KCACHE_TEST_ADDR to its
host:port and KCACHE_TEST_TARGET to `kcache` or `memcached` (or `route`: a `kcache route` in
front of servers, tests/tests/route.rs). Plain unittest, no pytest:

    KCACHE_TEST_ADDR=127.0.0.1:11211 python3 -m unittest -v test_pymemcache
"""

import os
import time
import unittest

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

# Every byte value, with CR LF and NUL in the middle, and a value of 512 KiB.
BINARY = bytes(range(256)) + b"\r\nEND\r\n\x00" + bytes(range(255, -1, -1))
LARGE = bytes((i * 7 + i // 251) % 256 for i in range(512 * 1024))


# A router keeps no items: its `stats` are its own (the process and `route_*`), not a store's.
ROUTER = os.environ.get("KCACHE_TEST_TARGET") == "route"
NOT_ROUTER = "a router's stats are its own: the process and route_*, no store counters"


def server():
    host, port = os.environ["KCACHE_TEST_ADDR"].rsplit(":", 1)
    return (host, int(port))


class FlagsSerde:
    """Values stay bytes; flags come back with them, to check they round-trip."""

    def serialize(self, key, value):
        return value, 0

    def deserialize(self, key, value, flags):
        return (value, flags)


class Base(unittest.TestCase):
    def setUp(self):
        # noreply defaults to False here; the tests that want noreply ask for it.
        self.mc = Client(server(), connect_timeout=5, timeout=5, default_noreply=False)
        self.assertTrue(self.mc.flush_all(noreply=False))

    def tearDown(self):
        self.mc.close()

    def wait_gone(self, key, limit=5.0):
        """Polls until `key` misses (memcached's clock ticks once a second), within `limit`."""
        deadline = time.monotonic() + limit
        while self.mc.get(key) is not None:
            self.assertLess(time.monotonic(), deadline, f"{key!r} still there after {limit} s")
            time.sleep(0.1)


class Storage(Base):
    def test_set_get(self):
        self.assertTrue(self.mc.set(b"k", b"v"))
        self.assertEqual(self.mc.get(b"k"), b"v")
        self.assertIsNone(self.mc.get(b"missing"))
        self.assertEqual(self.mc.get(b"missing", default=b"d"), b"d")

    def test_set_noreply(self):
        self.assertTrue(self.mc.set(b"k", b"v", noreply=True))
        self.assertEqual(self.mc.get(b"k"), b"v")

    def test_binary_and_large_values(self):
        self.assertTrue(self.mc.set(b"bin", BINARY))
        self.assertEqual(self.mc.get(b"bin"), BINARY)
        self.assertTrue(self.mc.set(b"large", LARGE))
        self.assertEqual(self.mc.get(b"large"), LARGE)
        self.assertTrue(self.mc.set(b"empty", b""))
        self.assertEqual(self.mc.get(b"empty"), b"")

    def test_flags_round_trip(self):
        mc = Client(server(), serde=FlagsSerde(), timeout=5, default_noreply=False)
        try:
            self.assertTrue(mc.set(b"f", b"v", flags=4294967295))
            self.assertEqual(mc.get(b"f"), (b"v", 4294967295))
            self.assertTrue(mc.set(b"f", b"w", flags=17, noreply=True))
            self.assertEqual(mc.get(b"f"), (b"w", 17))
        finally:
            mc.close()

    def test_set_many_get_many(self):
        values = {b"m%d" % i: b"v%d" % i for i in range(50)}
        self.assertEqual(self.mc.set_many(values), [])
        self.assertEqual(self.mc.set_many(values, noreply=True), [])
        keys = list(values) + [b"absent"]
        self.assertEqual(self.mc.get_many(keys), values)
        self.assertEqual(self.mc.get_many([]), {})

    def test_add(self):
        self.assertTrue(self.mc.add(b"a", b"1"))
        self.assertFalse(self.mc.add(b"a", b"2"))
        self.assertEqual(self.mc.get(b"a"), b"1")
        self.assertTrue(self.mc.add(b"b", b"1", noreply=True))
        self.assertTrue(self.mc.add(b"b", b"2", noreply=True))
        self.assertEqual(self.mc.get(b"b"), b"1")

    def test_replace(self):
        self.assertFalse(self.mc.replace(b"r", b"1"))
        self.assertIsNone(self.mc.get(b"r"))
        self.mc.set(b"r", b"1")
        self.assertTrue(self.mc.replace(b"r", b"2"))
        self.assertEqual(self.mc.get(b"r"), b"2")
        self.mc.replace(b"r", b"3", noreply=True)
        self.assertEqual(self.mc.get(b"r"), b"3")

    def test_append_prepend(self):
        self.assertFalse(self.mc.append(b"ap", b"x"))
        self.assertFalse(self.mc.prepend(b"ap", b"x"))
        self.mc.set(b"ap", b"mid")
        self.assertTrue(self.mc.append(b"ap", b"-end"))
        self.assertTrue(self.mc.prepend(b"ap", b"start-"))
        self.assertEqual(self.mc.get(b"ap"), b"start-mid-end")
        self.mc.append(b"ap", b"\r\n", noreply=True)
        self.mc.prepend(b"ap", b"\x00", noreply=True)
        self.assertEqual(self.mc.get(b"ap"), b"\x00start-mid-end\r\n")


class Cas(Base):
    def test_gets_cas(self):
        self.assertEqual(self.mc.gets(b"c"), (None, None))
        self.mc.set(b"c", b"1")
        value, token = self.mc.gets(b"c")
        self.assertEqual(value, b"1")
        self.assertTrue(self.mc.cas(b"c", b"2", token))
        # The token moved with the write: the old one is refused.
        self.assertFalse(self.mc.cas(b"c", b"3", token))
        self.assertEqual(self.mc.get(b"c"), b"2")
        self.assertIsNone(self.mc.cas(b"absent", b"x", token))

    def test_cas_noreply(self):
        self.mc.set(b"c", b"1")
        _, token = self.mc.gets(b"c")
        self.assertTrue(self.mc.cas(b"c", b"2", token, noreply=True))
        self.assertEqual(self.mc.get(b"c"), b"2")
        self.mc.cas(b"c", b"3", token, noreply=True)
        self.assertEqual(self.mc.get(b"c"), b"2")

    @unittest.skipIf(ROUTER, "CAS values are each server's own: keys on two servers may share one")
    def test_gets_many(self):
        self.mc.set(b"g1", b"a")
        self.mc.set(b"g2", b"b")
        got = self.mc.gets_many([b"g1", b"g2", b"g3"])
        self.assertEqual(sorted(got), [b"g1", b"g2"])
        self.assertEqual(got[b"g1"][0], b"a")
        self.assertNotEqual(got[b"g1"][1], got[b"g2"][1])


class Arithmetic(Base):
    def test_incr_decr(self):
        self.assertIsNone(self.mc.incr(b"n", 1))
        self.assertIsNone(self.mc.decr(b"n", 1))
        self.mc.set(b"n", b"10")
        self.assertEqual(self.mc.incr(b"n", 5), 15)
        self.assertEqual(self.mc.decr(b"n", 3), 12)
        # decr stops at zero; incr wraps at 2^64.
        self.assertEqual(self.mc.decr(b"n", 100), 0)
        self.mc.set(b"big", b"18446744073709551615")
        self.assertEqual(self.mc.incr(b"big", 2), 1)

    def test_incr_decr_noreply(self):
        self.mc.set(b"n", b"1")
        self.assertIsNone(self.mc.incr(b"n", 41, noreply=True))
        self.assertEqual(self.mc.get(b"n"), b"42")
        self.assertIsNone(self.mc.decr(b"n", 2, noreply=True))
        self.assertEqual(int(self.mc.get(b"n")), 40)

    def test_incr_non_numeric(self):
        self.mc.set(b"s", b"text")
        with self.assertRaises(MemcacheClientError):
            self.mc.incr(b"s", 1)


class Removal(Base):
    def test_delete(self):
        self.assertFalse(self.mc.delete(b"d"))
        self.mc.set(b"d", b"1")
        self.assertTrue(self.mc.delete(b"d"))
        self.assertIsNone(self.mc.get(b"d"))
        self.mc.set(b"d", b"1")
        self.assertTrue(self.mc.delete(b"d", noreply=True))
        self.assertIsNone(self.mc.get(b"d"))

    def test_delete_many(self):
        self.mc.set_many({b"x1": b"1", b"x2": b"2", b"x3": b"3"})
        self.assertTrue(self.mc.delete_many([b"x1", b"x2", b"absent"]))
        self.assertEqual(self.mc.get_many([b"x1", b"x2", b"x3"]), {b"x3": b"3"})
        self.assertTrue(self.mc.delete_many([b"x3"], noreply=True))
        self.assertEqual(self.mc.get_many([b"x3"]), {})

    def test_flush_all(self):
        self.mc.set_many({b"f1": b"1", b"f2": b"2"})
        self.assertTrue(self.mc.flush_all())
        self.assertEqual(self.mc.get_many([b"f1", b"f2"]), {})
        self.mc.set(b"f1", b"1")
        self.assertTrue(self.mc.flush_all(noreply=True))
        self.assertIsNone(self.mc.get(b"f1"))
        # Items written after the flush live.
        self.mc.set(b"f3", b"3")
        self.assertEqual(self.mc.get(b"f3"), b"3")


class Expiry(Base):
    def test_short_ttl(self):
        self.assertTrue(self.mc.set(b"ttl", b"v", expire=1))
        self.assertTrue(self.mc.set(b"forever", b"v", expire=0))
        self.assertTrue(self.mc.set(b"long", b"v", expire=3600))
        self.wait_gone(b"ttl")
        self.assertEqual(self.mc.get_many([b"forever", b"long"]), {b"forever": b"v", b"long": b"v"})

    def test_negative_ttl_expires_at_once(self):
        self.assertTrue(self.mc.set(b"neg", b"v", expire=-1))
        self.assertIsNone(self.mc.get(b"neg"))

    def test_touch(self):
        self.assertFalse(self.mc.touch(b"t", 1))
        self.mc.set(b"t", b"v", expire=3600)
        self.assertTrue(self.mc.touch(b"t", 1))
        self.wait_gone(b"t")
        self.mc.set(b"t", b"v", expire=3600)
        self.assertTrue(self.mc.touch(b"t", 1, noreply=True))
        self.wait_gone(b"t")


class Info(Base):
    def test_version(self):
        version = self.mc.version()
        if os.environ.get("KCACHE_TEST_TARGET") == "memcached":
            self.assertEqual(version, b"1.6.18")
        else:
            self.assertTrue(version.startswith(b"1.6.18-kcache-"), version)

    @unittest.skipIf(ROUTER, NOT_ROUTER)
    def test_stats(self):
        # Counters are cumulative over the server's life (flush_all keeps them): compare deltas.
        before = self.mc.stats()
        self.mc.set(b"s", b"v")
        self.mc.get(b"s")
        self.mc.get(b"absent")
        after = self.mc.stats()
        for field in [b"pid", b"uptime", b"time", b"version", b"curr_connections",
                      b"total_connections", b"cmd_get", b"cmd_set", b"get_hits",
                      b"get_misses", b"curr_items", b"total_items", b"bytes",
                      b"limit_maxbytes", b"threads", b"evictions"]:
            self.assertIn(field, after)
        for field, delta in [(b"cmd_set", 1), (b"total_items", 1), (b"cmd_get", 2),
                             (b"get_hits", 1), (b"get_misses", 1)]:
            self.assertEqual(after[field] - before[field], delta, field)
        self.assertEqual(after[b"limit_maxbytes"], 64 * 1024 * 1024)

    @unittest.skipIf(ROUTER, NOT_ROUTER)
    def test_stats_groups(self):
        self.mc.set(b"s", b"v")
        settings = self.mc.stats("settings")
        for field in [b"maxbytes", b"maxconns", b"tcpport", b"item_size_max"]:
            self.assertIn(field, settings)
        self.assertEqual(settings[b"tcpport"], server()[1])
        items = self.mc.stats("items")
        self.assertTrue(any(k.endswith(b":number") for k in items), items)
        slabs = self.mc.stats("slabs")
        self.assertIn(b"active_slabs", slabs)


class Errors(Base):
    def test_too_large_value(self):
        with self.assertRaises(MemcacheServerError):
            self.mc.set(b"huge", b"x" * (2 * 1024 * 1024))
        # The connection carries on.
        self.assertTrue(self.mc.set(b"after", b"ok"))
        self.assertEqual(self.mc.get(b"after"), b"ok")


if __name__ == "__main__":
    unittest.main()
