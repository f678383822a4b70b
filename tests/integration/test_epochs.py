"""test_epochs.py - engine.epoch_max_users bounds the users one epoch (one
MULTI/EXEC) writes, so the records built in memory for a write stay bounded
however many users there are (issue 14: memory a user can plan with).

8,000 users' events (two each, JSON) are produced with confluent_kafka on
two partitions. funneld runs with engine.epoch_max_users 1024, the event
bound and the flush interval out of the way (1e9 events, 10 s), and
engine.queue_messages 64; its debug log says what each write carried
("wrote N epoch(s): U users (B bytes ...), ..."). Every epoch must stay within the bound
plus what the shards' queues and one routing round can add, the users
written must cover every user, and Redis (redis-py) must hold every user's
record with its two events. Without the bound the whole stream is one or
two epochs of thousands of users.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
from harness import Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
TS = 1767225600000
USERS = 8000
BOUND = 1024
# What may pass the bound before routing stops: the shards' queues
# (2 x engine.queue_messages) and one routing round (ROUTE_CHUNK, 512).
SLACK = 2 * 64 + 512


class EpochUserBound(unittest.TestCase):
    def test_epochs_hold_at_most_the_bound(self):
        tmp = Path(tempfile.mkdtemp(prefix="fd-epochs-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        with RedisServer() as redis, Broker(partitions=2) as kafka:
            from confluent_kafka import Producer
            p = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
            for rnd in range(2):
                for i in range(USERS):
                    uid = f"u{i}"
                    ev = {"event_id": f"e{rnd}-{i}", "user_id": uid, "ts": TS + rnd * 60000 + i,
                          "type": "click", "item_id": f"i{i % 50}"}
                    p.produce(TOPIC, key=uid.encode(), value=json.dumps(ev).encode())
                p.poll(0)
            self.assertEqual(p.flush(60), 0)
            r = redis.client()
            cfg = fdtest.daemon_config(
                tmp / "fd.yaml", kafka.bootstrap, redis.url,
                **{"input.format": "json", "log.level": "debug", "engine.workers": 2,
                   "engine.queue_messages": 64, "engine.epoch_max_users": BOUND,
                   "engine.epoch_max_events": 1000000000, "redis.flush_interval_ms": "10s"})
            with Daemon(cfg) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=120, daemon=d)
                self.assertEqual(d.terminate(), 0)
                log = d.log_text()
            writes = [(int(m.group(1)), int(m.group(2))) for m in
                      re.finditer(r"wrote (\d+) epoch\(s\): (\d+) users \(\d+ bytes", log)]
            self.assertTrue(writes, "no write was logged at debug level")
            per_epoch = [u / n for n, u in writes]
            self.assertLessEqual(max(per_epoch), BOUND + SLACK,
                                 f"an epoch carried more users than the bound allows: {writes}")
            # every user's record was written at least once, and the two
            # rounds put each user in at least two epochs' worth of writes
            self.assertGreaterEqual(sum(u for _, u in writes), USERS)
            self.assertGreaterEqual(sum(n for n, _ in writes), USERS * 2 // (BOUND + SLACK),
                                    f"too few epochs for the bound: {writes}")
            stats = r.hgetall(fdtest.PREFIX + "stats")
            self.assertEqual(int(stats["events"]), 2 * USERS)
            recs = fdtest.user_records(r, [f"u{i}" for i in range(0, USERS, 97)])
            for rec in recs:
                self.assertEqual(int(rec["click"]), 2, rec)


if __name__ == "__main__":
    unittest.main(verbosity=2)
