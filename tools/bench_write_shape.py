#!/usr/bin/python3
"""bench_write_shape.py - what redis-server spends to update user state
written whole (funneld's MSET of the user record) against writing only what
changed (issue 14): a partial overwrite of a fixed-width record (SETRANGE)
and a hash of fields (HSET of the changed fields).

    /usr/bin/python3 tools/bench_write_shape.py [--users N] [--rounds R]
                                                [--changed F] [--batch B]

A private redis-server (a unix socket in a temporary directory) is started
for each shape, loaded with N users' state in that shape, then every user
is updated R times, in MULTI/EXEC transactions of B users (as funneld's
epochs: many users per transaction). What is reported is redis-server's
own CPU (INFO cpu: used_cpu_user + used_cpu_sys) per user update, so the
cost of this client (Python) does not count. The record is shaped like
funneld's (docs/REDIS_KEYS.md: "u1 <half-lives>", 18 integer fields, 20
decayed values with six decimals, the churn suffix, 32 factors as hex and
the recs minute): ~580 bytes in 46 fields. F is the share of the fields an
update changes (an event changes the type's count, last_ts, the session
and, since the decayed values are kept as of last_ts, all 20 of them:
~0.7 by default).

The shapes, each wrapped in MULTI/EXEC per batch:
  mset      MSET k1 v1 k2 v2 ... (B keys per MSET), the whole record
  setrange  SETRANGE k off bytes: one command per user writing the changed
            share of a fixed-width record (the changed fields contiguous,
            the cheapest case a fixed layout could give)
  hset      HSET k f1 v1 ... : the changed fields of a hash per user
Exit status 0, or 1 when redis-server cannot be started.
"""
import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t in (b"+", b":"):
            return rest
        if t == b"-":
            raise RuntimeError("redis error: " + rest.decode())
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(1 << 20)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *args):
        self.send(resp(*args))
        return self.reply()

    def cpu(self):
        info = self.call("INFO", "cpu").decode()
        d = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
        return float(d["used_cpu_user"]) + float(d["used_cpu_sys"])


def fields(rng):
    """One user's state as funneld's record fields (text)."""
    ts = 1767225600000 + rng.randrange(10**9)
    f = [str(rng.randrange(60)), str(rng.randrange(9)), str(rng.randrange(3)),
         str(ts - rng.randrange(10**9)), str(ts), str(rng.randrange(10**6)),
         str(ts - rng.randrange(10**8)), str(ts - rng.randrange(10**9)),
         str(rng.randrange(40)), str(rng.randrange(10**10)),
         str(rng.getrandbits(64)), str(rng.getrandbits(64)),
         str(rng.getrandbits(64)), str(ts - 60000), str(ts), str(rng.randrange(1, 5)),
         "%.6f" % rng.random(), "%.6f" % rng.random()]
    f += ["%.6f" % (rng.random() * 20) for _ in range(20)]
    f += ["m", str(rng.randrange(65536)), str(rng.randrange(6)), str(rng.randrange(16)), "0"]
    f += ["f", "".join("%04x" % rng.randrange(65536) for _ in range(32)),
          str(rng.randrange(10**7))]
    return f


def record(f):
    return "u1 1h,1d,7d,30d " + " ".join(f)


def changed(f, share, rng):
    """A new state: the first `share` of the updatable fields get new
    values of the same width (what an event does to the counts, last_ts,
    the session and the decayed values)."""
    g = list(f)
    n = int(round(len(g) * share))
    for i in range(n):
        if g[i] in ("m", "f"):
            continue
        s = g[i]
        g[i] = "".join(rng.choice("0123456789") if c.isdigit() else c for c in s)
    return g, n


def run_shape(shape, args, rng_seed):
    rs = shutil.which("redis-server")
    if not rs:
        print("bench_write_shape: redis-server not found (apt-get install redis-server)",
              file=sys.stderr)
        sys.exit(1)
    d = tempfile.mkdtemp(prefix="fd-write-shape-")
    sock = os.path.join(d, "redis.sock")
    p = subprocess.Popen([rs, "--port", "0", "--unixsocket", sock, "--save", "",
                          "--appendonly", "no", "--dir", d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        r = Redis(sock)
        rng = random.Random(rng_seed)
        users = [fields(rng) for _ in range(args.users)]
        keys = ["fd:v2:user:u%d" % i for i in range(args.users)]
        names = ["f%d" % i for i in range(len(users[0]))]
        # load
        for b in range(0, args.users, args.batch):
            if shape == "hset":
                cmds = [resp("HSET", keys[i], *[x for pair in zip(names, users[i]) for x in pair])
                        for i in range(b, min(b + args.batch, args.users))]
            else:
                kv = []
                for i in range(b, min(b + args.batch, args.users)):
                    kv += [keys[i], record(users[i])]
                cmds = [resp("MSET", *kv)]
            r.send(b"".join(cmds))
            for _ in cmds:
                r.reply()
        # updates, prepared before the measurement
        batches = []
        share_fields = 0
        for _ in range(args.rounds):
            for b in range(0, args.users, args.batch):
                idx = range(b, min(b + args.batch, args.users))
                cmds = [resp("MULTI")]
                if shape == "mset":
                    kv = []
                    for i in idx:
                        users[i], share_fields = changed(users[i], args.changed, rng)
                        kv += [keys[i], record(users[i])]
                    cmds.append(resp("MSET", *kv))
                elif shape == "setrange":
                    for i in idx:
                        users[i], share_fields = changed(users[i], args.changed, rng)
                        rec = record(users[i])
                        # the changed fields are the record's first ones
                        # after the header: write that span
                        head = len("u1 1h,1d,7d,30d ")
                        span = len(" ".join(users[i][:share_fields]))
                        cmds.append(resp("SETRANGE", keys[i], str(head), rec[head:head + span]))
                else:
                    for i in idx:
                        users[i], share_fields = changed(users[i], args.changed, rng)
                        kv = []
                        for j in range(share_fields):
                            kv += [names[j], users[i][j]]
                        cmds.append(resp("HSET", keys[i], *kv))
                cmds.append(resp("EXEC"))
                batches.append((b"".join(cmds), len(cmds)))
        sent = sum(len(b) for b, _ in batches)
        c0 = r.cpu()
        t0 = time.monotonic()
        for data, n in batches:
            r.send(data)
            for _ in range(n):
                r.reply()
        wall = time.monotonic() - t0
        c1 = r.cpu()
        updates = args.users * args.rounds
        mem = r.call("INFO", "memory").decode()
        used = [l for l in mem.splitlines() if l.startswith("used_memory:")][0].split(":")[1]
        return {"shape": shape, "updates": updates, "fields_changed": share_fields,
                "fields": len(users[0]), "bytes_sent_per_update": sent / updates,
                "redis_cpu_us_per_update": (c1 - c0) / updates * 1e6,
                "wall_us_per_update": wall / updates * 1e6,
                "redis_used_memory_per_user": int(used) / args.users}
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--users", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--changed", type=float, default=0.7)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=2, help="alternating repetitions of all shapes")
    args = ap.parse_args()
    if not (1 <= args.users <= 10**7 and 1 <= args.rounds <= 100 and 0 < args.changed <= 1
            and 1 <= args.batch <= 100000 and 1 <= args.reps <= 20):
        ap.error("a value is out of range")
    print("shape     rep  fields_changed  bytes/update  redis_cpu_us/update  wall_us/update  "
          "redis_mem/user")
    for rep in range(args.reps):
        for shape in ("mset", "setrange", "hset"):
            m = run_shape(shape, args, 1 + rep)
            print("%-9s %3d  %6d of %-5d  %12.0f  %19.2f  %14.2f  %14.0f" % (
                shape, rep + 1, m["fields_changed"], m["fields"], m["bytes_sent_per_update"],
                m["redis_cpu_us_per_update"], m["wall_us_per_update"],
                m["redis_used_memory_per_user"]), flush=True)


if __name__ == "__main__":
    main()
