"""test_bounds.py - money from input cannot overflow (issue 10.3), end to end.

JSON purchases at and past input.max_price and past the line-total bound
are produced with confluent_kafka; funneld must accept the ones at the
bound, dead-letter the others as bad_price / bad_quantity, keep the exact
revenue in the user's record and the minute window (redis-py), and count
the sums that stopped at their limit (a user's decayed revenue saturates
after a few purchases at the bound) in stats saturated_sums.
"""

import json
import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
TS = 1767225600000


def buy(i, price, quantity=1, user="ub"):
    return json.dumps({"event_id": f"b{i}", "user_id": user, "ts": TS + i, "type": "purchase",
                       "price": price, "quantity": quantity}).encode()


class Bounds(unittest.TestCase):
    def test_prices_at_and_past_the_bound(self):
        tmp = Path(tempfile.mkdtemp(prefix="fd-bounds-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        max_price = 1000000000
        msgs = [buy(0, max_price), buy(1, max_price), buy(2, max_price), buy(3, max_price),
                buy(4, 1e300), buy(5, max_price + 1), buy(6, 5e16), buy(7, 2.0 ** 63),
                buy(8, 1000.0, quantity=1000001), buy(9, max_price / 2, quantity=3),
                buy(10, 0.01, quantity=1000000)]
        want_bad = {4: "bad_price", 5: "bad_price", 6: "bad_price", 7: "bad_price",
                    8: "bad_quantity", 9: "bad_quantity"}
        with RedisServer() as redis, Broker(partitions=1) as kafka:
            from confluent_kafka import Producer
            p = Producer({"bootstrap.servers": kafka.bootstrap})
            for m in msgs:
                p.produce(TOPIC, key=b"ub", value=m)
            self.assertEqual(p.flush(30), 0)
            r = redis.client()
            cfg = fdtest.daemon_config(tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"input.format": "json"})
            with Daemon(cfg) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=60, daemon=d)
                dead = harness.consume_all(kafka.bootstrap, "events.dlq", timeout=30)
                self.assertEqual(d.terminate(), 0)
            got = {int(h["fd.source.offset"]): h["fd.reason"].decode() for _, _, h, _, _ in dead}
            self.assertEqual(got, want_bad)
            cents = 4 * max_price * 100 + 1000000  # four at the bound, 1e6 x 1 cent
            stats = r.hgetall(fdtest.PREFIX + "stats")
            self.assertEqual(int(stats["events"]), 5)
            self.assertEqual(int(stats["dlq.bad_price"]), 4)
            self.assertEqual(int(stats["dlq.bad_quantity"]), 2)
            self.assertGreaterEqual(int(stats.get("saturated_sums", 0)), 1,
                                    "the decayed revenue stops at its limit and says so")
            rec = fdtest.user_records(r, ["ub"])[0]
            self.assertEqual(int(rec["revenue_cents"]), cents)
            self.assertEqual(int(r.hget(fdtest.PREFIX + f"funnel:1m:{TS}", "revenue_cents")), cents)


if __name__ == "__main__":
    unittest.main(verbosity=2)
