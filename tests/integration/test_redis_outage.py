"""test_redis_outage.py - Redis goes away mid-stream and comes back.

redis-server (AOF on) is stopped for a few seconds while events arrive:
funneld must pause consumption (backpressure), keep retrying with backoff,
resume when Redis is back, and end with counters equal to the truth: no
event lost, none counted twice.
"""

import os
import shutil
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
from harness import SLOW, Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"


class RedisOutage(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-outage-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_outage_mid_stream(self):
        framed = self.tmp / "events.bin"
        truth = fdtest.gen(framed, self.tmp / "truth.json", events=30000, users=3000, seed=11)
        with RedisServer(appendonly=True) as redis, Broker(partitions=4) as kafka:
            cfg = fdtest.retrying_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                         backoff_min_ms=50, backoff_max_ms=500)
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=5000)
            with Daemon(cfg) as d:
                r = redis.client()
                fdtest.start_until_events(self, r, producer, 5000, timeout=60)
                mark = len(d.log_text())
                redis.stop()
                d.wait_for_log(r"pausing consumption", timeout=20, start=mark)
                time.sleep(4 * SLOW)
                self.assertTrue(d.running, "funneld died while Redis was down")
                redis.start()
                d.wait_for_log(r"resuming consumption", timeout=30, start=mark)
                producer.join()
                r = redis.client()
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                self.assertEqual(d.terminate(), 0)
            fdtest.compare_with_truth(self, r, truth)


if __name__ == "__main__":
    unittest.main(verbosity=2)
