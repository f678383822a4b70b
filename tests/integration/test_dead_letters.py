"""test_dead_letters.py - bad input never stops the stream (DESIGN.md
decision 5), checked from outside:

For each wire format a mix of valid and invalid messages is produced with
Python confluent_kafka; funneld must count the valid ones, put every
invalid one on the dead-letter topic with its original key and bytes and
headers naming the reason, the source topic, partition and offset, count it
by reason in Redis, and store the offset past it. The dead-letter topic is
also read with kcat, a second independent client.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import avro_enc as A  # noqa: E402
import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
DLQ = "events.dlq"
TS = 1767225600000          # 2026-01-01T00:00:00Z
FAR_FUTURE = 4102444800000  # 2100-01-01
BIG = 10 * 1024 * 1024      # "a 10 MB string"


def produce(bootstrap, msgs):
    """msgs: [(key, value, reason-or-None)] -> same with (partition, offset)."""
    pos = fdtest.produce_positions(bootstrap, TOPIC, [(k, v) for k, v, _ in msgs],
                                   **{"compression.codec": "lz4"})
    return [(k, v, why, at) for (k, v, why), at in zip(msgs, pos)]


class DeadLetters(unittest.TestCase):
    def run_format(self, msgs, **config):
        tmp = Path(tempfile.mkdtemp(prefix="fd-dlq-"))
        with RedisServer() as redis, Broker(partitions=2) as kafka:
            sent = produce(kafka.bootstrap, msgs)
            cfg = fdtest.daemon_config(tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"kafka.properties": {"fetch.wait.max.ms": 50,
                                                               "fetch.max.bytes": 52428800}},
                                       **config)
            r = redis.client()
            with Daemon(cfg) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=60, daemon=d)
                self.assertTrue(d.running, "funneld died on bad input")
                dead = harness.consume_all(kafka.bootstrap, DLQ, timeout=30)
                kcat = subprocess.run(["kcat", "-b", kafka.bootstrap, "-C", "-t", DLQ, "-e", "-q",
                                       "-f", "%h\\n"], capture_output=True, timeout=60)
                self.assertEqual(d.terminate(), 0)
            self.check(r, sent, dead, kcat.stdout.decode(errors="replace"))
            self.after(r)

    def after(self, r):
        pass

    def check(self, r, sent, dead, kcat_headers):
        bad = [m for m in sent if m[2]]
        good = [m for m in sent if not m[2]]
        by_src = {}
        for key, value, hdrs, _, _ in dead:
            src = (int(hdrs["fd.source.partition"]), int(hdrs["fd.source.offset"]))
            self.assertNotIn(src, by_src, f"dead letter for {src} twice")
            by_src[src] = (key, value, hdrs)
        self.assertEqual(len(dead), len(bad), "one dead letter per invalid message")
        for key, value, why, pos in bad:
            self.assertIn(pos, by_src, f"no dead letter for {why} at {pos}")
            dkey, dvalue, hdrs = by_src[pos]
            self.assertEqual(hdrs["fd.reason"].decode(), why, f"reason of message at {pos}")
            self.assertEqual(hdrs["fd.source.topic"].decode(), TOPIC)
            self.assertTrue(hdrs["fd.error"], "fd.error is empty")
            self.assertEqual(dkey, key)
            if len(value) > 1024 * 1024:
                self.assertEqual(int(hdrs["fd.truncated"]), len(value))
                self.assertEqual(dvalue, value[:len(dvalue)])
                self.assertGreater(len(dvalue), 0)
            else:
                self.assertEqual(dvalue, value, f"dead letter bytes of {why}")
        for why in {m[2] for m in bad}:
            self.assertIn(f"fd.reason={why}", kcat_headers, "kcat sees the reason header")
        stats = r.hgetall(fdtest.PREFIX + "stats")
        self.assertEqual(int(stats.get("dlq", 0)), len(bad))
        self.assertEqual(int(stats.get("events", 0)), len(good))
        for why in {m[2] for m in bad}:
            self.assertEqual(int(stats.get("dlq." + why, 0)), sum(1 for m in bad if m[2] == why),
                             f"stats dlq.{why}")

    def test_avro(self):
        ok = A.event(event_id="a1", user_id="ua", ts=TS, type="CLICK", item_id="i1")
        buy = A.event(event_id="a2", user_id="ua", ts=TS + 1000, type="PURCHASE", item_id="i1",
                      price=9.99, quantity=2, category="c1", session_id="s1")
        msgs = [
            (b"ua", ok, None),
            (b"ua", ok[:-3], "avro_decode"),                         # truncated
            (b"ua", ok + b"\x00\x00", "avro_decode"),                # trailing bytes
            (b"ux", b"\x00\x01garbage\xff\xfe", "avro_decode"),
            (b"ux", b'{"user_id": "json on an avro topic"}', "avro_decode"),
            (b"ua", A.event(user_id="ua", price=float("nan"), type="PURCHASE"), "bad_price"),
            (b"ua", A.event(user_id="ua", price=float("inf"), type="PURCHASE"), "bad_price"),
            (b"ua", A.event(user_id="ua", price=-1.0, type="PURCHASE"), "bad_price"),
            (b"ua", A.event(user_id="ua", quantity=-1), "bad_quantity"),
            (b"ua", A.event(user_id="ua", quantity=0), "bad_quantity"),
            (b"ua", A.event(user_id="ua", type_index=7), "unknown_event_type"),  # no such enum index
            (b"", A.event(user_id=""), "bad_user_id"),
            (b"ua", A.event(user_id="ua", ts=FAR_FUTURE), "future_ts"),
            (b"ua", A.event(user_id="ua", ts=-5), "bad_ts"),
            (b"ub", A.event(user_id="u" * 300), "field_too_long"),
            (b"uc", A.event(user_id="x" * BIG), "message_too_large"),
            (b"ua", buy, None),
        ]
        def after(r):
            fields = ("click", "cart", "purchase", "first_ts", "last_ts", "revenue_cents")
            self.assertEqual([fdtest.user_records(r, ["ua"])[0][f] for f in fields],
                             ["1", "0", "1", str(TS), str(TS + 1000), "1998"])
            minute = r.hgetall(fdtest.PREFIX + f"funnel:1m:{TS}")
            self.assertEqual(minute.get("revenue_cents"), "1998")
        self.after = after
        self.run_format(msgs)

    def test_confluent_avro(self):
        src = fdtest.source_dir() / "conf" / "schemas"
        v1 = A.confluent(1, A.event(event_id="c1", user_id="uc", ts=TS))
        v0 = A.confluent(2, A.event_v0(event_id="c2", user_id="uc", ts=TS + 5, type="PURCHASE",
                                       price=5.0))
        msgs = [
            (b"uc", v1, None),
            (b"uc", v0, None),                                   # older writer schema
            (b"uc", b"\x01" + v1[1:], "bad_magic"),
            (b"uc", A.confluent(99, A.event(user_id="uc")), "unknown_schema_id"),
            (b"uc", b"\x00\x00", "avro_decode"),                  # truncated header
            (b"uc", v1[:-4], "avro_decode"),                      # truncated body
            (b"uc", b"", "avro_decode"),
        ]
        def after(r):
            fields = ("click", "cart", "purchase", "first_ts", "last_ts", "sessions")
            self.assertEqual([fdtest.user_records(r, ["uc"])[0][f] for f in fields],
                             ["1", "0", "1", str(TS), str(TS + 5), "1"])
            # v0 has no quantity: the reader default 1 applies to the revenue.
            self.assertEqual(r.hget(fdtest.PREFIX + f"funnel:1m:{TS}", "revenue_cents"), "500")
        self.after = after
        self.run_format(msgs, **{
            "input.format": "confluent-avro",
            "input.schema_ids": {"1": str(src / "event.avsc"), "2": str(src / "event.v0.avsc")}})

    def test_json(self):
        def j(**kw):
            base = {"event_id": "j1", "user_id": "uj", "ts": TS, "type": "click"}
            base.update(kw)
            return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()
        msgs = [
            (b"uj", j(), None),
            (b"uj", j(type="view", ts="2026-01-01T00:00:30Z"), None),
            (b"uj", j(type="purchase", ts="2026-01-01T00:00:40.500+00:00", price=12.5,
                      quantity=2), None),
            (b"uj", b'{"event_id": "j9", "user_id": ', "json_syntax"),
            (b"uj", b"[1, 2, 3]", "json_syntax"),
            (b"uj", b'{"event_id":"j1","user_id":"uj","ts":1,"type":"click","price":NaN}',
             "json_syntax"),
            (b"uj", j(price="abc", type="purchase"), "field_type"),
            (b"uj", j(user_id=42), "field_type"),
            (b"uj", j(quantity="2"), "field_type"),
            (b"uj", j(ts=True), "field_type"),
            (b"uj", j(user_id=...), "field_missing"),
            (b"uj", j(event_id=...), "field_missing"),
            (b"uj", j(type="refund"), "unknown_event_type"),
            (b"uj", j(quantity=-3), "bad_quantity"),
            (b"uj", j(quantity=1000001), "bad_quantity"),
            (b"uj", j(price=-0.5, type="purchase"), "bad_price"),
            (b"uj", j(user_id=""), "bad_user_id"),
            (b"uj", j(ts="2999-01-01T00:00:00Z"), "future_ts"),
            (b"uj", j(ts="yesterday"), "bad_ts"),
            (b"uj", j(user_id="x" * BIG), "message_too_large"),
        ]
        def after(r):
            fields = ("click", "cart", "purchase", "first_ts", "last_ts", "revenue_cents")
            self.assertEqual([fdtest.user_records(r, ["uj"])[0][f] for f in fields],
                             ["2", "0", "1", str(TS), str(TS + 40500), "2500"])
            self.assertEqual(r.hget(fdtest.PREFIX + f"funnel:1m:{TS}", "revenue_cents"), "2500")
        self.after = after
        self.run_format(msgs, **{"input.format": "json"})


if __name__ == "__main__":
    unittest.main(verbosity=2)
