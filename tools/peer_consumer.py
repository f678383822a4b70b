#!/usr/bin/python3
"""peer_consumer.py - the consumer a team would write instead of funneld,
for `funnelctl bench --peer` (issue 14): Debian's confluent_kafka and
redis-py, doing the same kind of per-user and per-minute work:

- per user: decayed click/cart/purchase counts (half-life 1 day), the
  revenue and the last event time, written as one hash per user;
- per minute of event time: the events of each type (HINCRBY);
- each polled batch goes to Redis in one pipelined MULTI/EXEC, and the
  offsets are committed (synchronously) after it: at-least-once.

It reads the topic from the beginning in a group of its own until it has
seen --events messages, then prints one JSON line on stdout:
{"events", "first_s", "end_s", "cpu_s"} (seconds since its start; cpu_s is
its own process CPU time from its first batch on, leaving out the imports
and the group join). Avro uses Debian's python3-avro (pure Python;
there is no fastavro in Debian 12), JSON the standard library.
"""

import argparse
import io
import json
import math
import sys
import time

from confluent_kafka import Consumer
import redis

TYPES = {0: "click", 1: "cart", 2: "purchase", "CLICK": "click", "CART": "cart",
         "PURCHASE": "purchase", "click": "click", "cart": "cart", "purchase": "purchase"}
HALF_LIFE_MS = 86400000.0


def decoder(fmt, schema_path):
    if fmt == "json":
        return lambda b: json.loads(b)
    import avro.io
    import avro.schema
    schema = avro.schema.parse(open(schema_path).read())
    reader = avro.io.DatumReader(schema)
    skip = 5 if fmt == "confluent-avro" else 0

    def dec(b):
        return reader.read(avro.io.BinaryDecoder(io.BytesIO(b[skip:])))
    return dec


def redis_client(url):
    if url.startswith("unix://"):
        path, _, query = url[len("unix://"):].partition("?")
        db = int(query[3:]) if query.startswith("db=") else 0
        return redis.Redis(unix_socket_path=path, db=db)
    return redis.Redis.from_url(url)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--prefix", default="peer:")
    ap.add_argument("--format", default="avro", choices=["avro", "confluent-avro", "json"])
    ap.add_argument("--schema")
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--group", default="funnelctl-bench-peer")
    a = ap.parse_args()
    if a.format != "json" and not a.schema:
        ap.error("--schema is needed with Avro")

    t0 = time.monotonic()
    decode = decoder(a.format, a.schema)
    r = redis_client(a.redis)
    c = Consumer({"bootstrap.servers": a.brokers, "group.id": a.group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([a.topic])
    users = {}  # id -> [t_ms, click, cart, purchase, revenue]
    seen, first = 0, None
    while seen < a.events:
        msgs = c.consume(num_messages=10000, timeout=1.0)
        if not msgs:
            if time.monotonic() - t0 > 600:
                print(json.dumps({"error": f"timed out after {seen} events"}))
                return 1
            continue
        if first is None:
            first = time.monotonic() - t0
            cpu_first = time.process_time()
        minutes = {}
        touched = set()
        for m in msgs:
            if m.error():
                continue
            seen += 1
            try:
                ev = decode(m.value())
                uid = ev["user_id"]
                ts = int(ev["ts_ms"] if "ts_ms" in ev else ev["ts"])
                kind = TYPES[ev["type"]]
            except Exception:  # noqa: BLE001 - bad input is skipped, as a team would
                continue
            u = users.get(uid)
            if u is None:
                u = users[uid] = [ts, 0.0, 0.0, 0.0, 0.0]
            if ts > u[0]:
                d = math.pow(2.0, -(ts - u[0]) / HALF_LIFE_MS)
                u[1] *= d
                u[2] *= d
                u[3] *= d
                u[0] = ts
            u[1 + ("click", "cart", "purchase").index(kind)] += 1.0
            if kind == "purchase":
                u[4] += float(ev.get("price") or 0.0) * int(ev.get("quantity") or 1)
            touched.add(uid)
            key = (ts - ts % 60000, kind)
            minutes[key] = minutes.get(key, 0) + 1
        p = r.pipeline(transaction=True)
        for uid in touched:
            u = users[uid]
            p.hset(f"{a.prefix}user:{uid}", mapping={"last_ts": u[0], "click": u[1],
                                                     "cart": u[2], "purchase": u[3],
                                                     "revenue": u[4]})
        for (minute, kind), n in minutes.items():
            p.hincrby(f"{a.prefix}minute:{minute}", kind, n)
        p.execute()
        c.commit(asynchronous=False)
    end = time.monotonic() - t0
    c.close()
    print(json.dumps({"events": seen, "first_s": first, "end_s": end,
                      "cpu_s": time.process_time() - cpu_first}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
