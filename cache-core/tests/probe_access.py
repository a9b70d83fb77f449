#!/usr/bin/env python3
"""Replays the timed table of access.rs against a live memcached 1.6 and shows where its replies
differ from the ones written there (exit status 1 if any do).

    python3 cache-core/tests/probe_access.py [--runs N] [--verbose]

Each case runs on a fresh `memcached` (default options) on a free loopback port, so CAS values
start from scratch as in a fresh kcache store. A step's "seconds the clock moves" is waited out
on memcached's own clock: the script polls `stats` (`time`) on a second connection until it has
advanced that many ticks, then waits 0.2 s more, so every request lands mid-second.
"""
import argparse, os, re, socket, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = re.compile(r'\(\s*"(\w+)",\s*&\[(.*?)\],\s*\),', re.S)
STEP = re.compile(r'\(\s*(\d+),\s*"((?:[^"\\]|\\.)*)",\s*"((?:[^"\\]|\\.)*)",?\s*\)', re.S)


def unescape(s):
    return s.encode().decode("unicode_escape").encode("latin-1")


def cases():
    src = open(os.path.join(HERE, "access.rs"), encoding="utf-8").read()
    table = src[src.index("const CASES"):]
    for name, body in CASE.findall(table):
        yield name, [(int(s), unescape(r), unescape(w)) for s, r, w in STEP.findall(body)]


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def connect(port):
    for _ in range(200):
        try:
            s = socket.create_connection(("127.0.0.1", port)); s.settimeout(2); return s
        except OSError:
            time.sleep(0.02)
    sys.exit(f"memcached on port {port} never listened")


def call(s, req):
    # Everything before the `MN` that answers a trailing `mn`.
    s.sendall(req + b"mn\r\n")
    buf = b""
    while not buf.endswith(b"MN\r\n"):
        buf += s.recv(65536)
    return buf[:-4]


def clock(s):
    for line in call(s, b"stats\r\n").split(b"\r\n"):
        if line.startswith(b"STAT time "):
            return int(line.split()[2])


def wait_ticks(s, n):
    start = clock(s)
    while clock(s) < start + n:
        time.sleep(0.005)
    time.sleep(0.2)


def layout_free(reply):
    # As access.rs: `me`'s cls= and size= follow each server's item layout.
    if reply.startswith(b"ME ") and b" cls=" in reply:
        return reply[: reply.index(b" cls=")]
    return reply


def run(name, steps, verbose):
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    p = subprocess.Popen(["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1"] + user)
    try:
        conn, side = connect(port), connect(port)
        wait_ticks(side, 1)
        differ = 0
        for secs, req, want in steps:
            if secs:
                wait_ticks(side, secs)
            got = call(conn, req)
            same = layout_free(got) == layout_free(want)
            differ += not same
            if verbose or not same:
                mark = "  " if same else "!="
                print(f"{name}: +{secs} {req!r}\n  {mark} memcached {got!r}\n     access.rs {want!r}")
        return differ
    finally:
        p.kill(); p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    total = 0
    found = list(cases())
    if not found:
        sys.exit("no cases found in access.rs")
    for r in range(a.runs):
        for name, steps in found:
            total += run(name, steps, a.verbose)
        print(f"run {r + 1}: {len(found)} cases, {total} differing replies so far", file=sys.stderr)
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
