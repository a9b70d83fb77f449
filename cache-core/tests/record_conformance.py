#!/usr/bin/env python3
"""Records memcached 1.6's replies to the scripts in conformance_scripts.txt into conformance.tsv.

Each script runs against a fresh `memcached` (Debian's 1.6.18) on a free loopback port, so CAS
values start from scratch exactly as in a fresh kcache store. Run it after editing the scripts:

    python3 cache-core/tests/record_conformance.py

The test `conformance.rs` replays every script through kcache's parser and store and compares
byte for byte. Lines of the script file: `name<TAB>script` with \\r \\n \\t \\0 escapes.
"""
import os, re, socket, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def unescape(s):
    # `{{N}}` stands for N bytes of filler ('v'), so big data blocks stay one short line.
    s = re.sub(r"\{\{(\d+)\}\}", lambda m: "v" * int(m.group(1)), s)
    return s.encode().decode("unicode_escape").encode("latin-1")

def escape(b):
    return b.decode("latin-1").encode("unicode_escape").decode().replace("\t", "\\t")

def run(script):
    port = free_port()
    p = subprocess.Popen(["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-u", "root", "-m", "64"])
    try:
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", port)); break
            except OSError:
                time.sleep(0.02)
        s.sendall(script)
        s.settimeout(0.5)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    out += b"<CLOSED>"; break
                out += d
        except socket.timeout:
            pass
        return out
    finally:
        p.kill(); p.wait()

def main():
    src = os.path.join(HERE, "conformance_scripts.txt")
    rows = []
    for line in open(src, encoding="latin-1"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        name, script = line.split("\t", 1)
        reply = run(unescape(script))
        rows.append(f"{name}\t{script}\t{escape(reply)}")
        print(name, file=sys.stderr)
    with open(os.path.join(HERE, "conformance.tsv"), "w", encoding="latin-1") as f:
        f.write("# name\tscript\treply recorded from memcached 1.6.18 (see record_conformance.py)\n")
        f.write("\n".join(rows) + "\n")

if __name__ == "__main__":
    main()
