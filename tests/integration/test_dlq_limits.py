"""test_dlq_limits.py - a dead letter never stalls the daemon (issue 10.1).

1. A ~1 MB Kafka key and a ~1 MB user id: the dead letter keeps at most
   1 KiB of the key (header fd.key.truncated) and, when key, value and
   headers do not fit message.max.bytes, 64 KiB of the value (header
   fd.truncated); the valid events around them are counted.
2. A dead-letter topic that refuses everything (every Produce request
   answered TOPIC_AUTHORIZATION_FAILED): each dead letter is given up,
   counted in stats dlq_failed.REASON and logged with its partition and
   offset (rate-limited); every valid event is still counted and every
   offset stored.
3. A dead-letter topic that answers a retriable error for ever: each dead
   letter is given up after kafka.dlq_timeout_ms, then the writes go on.
4. A stop while dead letters cannot be delivered says so and exits non-zero.

Everything is checked from outside: redis-py on the stats and offsets,
confluent_kafka on the dead-letter topic.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
DLQ = "events.dlq"
TS = 1767225600000  # 2026-01-01T00:00:00Z; every event in one minute: no window closes
PRODUCE = 0  # Kafka ApiKey of Produce
TOPIC_AUTHORIZATION_FAILED = 29
NOT_ENOUGH_REPLICAS = 19  # retriable


def ev(i, user="ua", **kw):
    e = {"event_id": f"j{i}", "user_id": user, "ts": TS + i, "type": "click"}
    e.update(kw)
    return json.dumps(e).encode()


class DlqLimits(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-dlqlim-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def mixed(self, n_good=20, n_bad=6):
        """n_good valid clicks of user ua, with n_bad events missing a field
        (field_missing) in between."""
        msgs = []
        for i in range(n_good):
            msgs.append((b"ua", ev(i)))
            if i < n_bad:
                msgs.append((b"ua", b'{"user_id": "ua"}'))
        return msgs

    def config(self, kafka, redis, **extra):
        return fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                    **{"input.format": "json", **extra})

    def test_megabyte_key_and_user_id_are_dead_lettered_within_bounds(self):
        big_key = b"k" * 999950
        big_user = "u" * 999000
        msgs = [(b"ua", ev(0)), (big_key, b"{}"), (b"ua", ev(1)),
                (big_user.encode(), ev(2, user=big_user)), (b"ua", ev(3))]
        with RedisServer() as redis, Broker(partitions=1) as kafka:
            pos = fdtest.produce_positions(kafka.bootstrap, TOPIC, msgs)
            r = redis.client()
            with Daemon(self.config(kafka, redis)) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=60, daemon=d)
                dead = harness.consume_all(kafka.bootstrap, DLQ, timeout=30,
                                           config={"fetch.max.bytes": 52428800})
                self.assertEqual(d.terminate(), 0)
            self.assertEqual(len(dead), 2, "one dead letter per bad message")
            by_src = {(int(h["fd.source.partition"]), int(h["fd.source.offset"])): (k, v, h)
                      for k, v, h, _, _ in dead}
            k, v, h = by_src[pos[1]]
            self.assertEqual(h["fd.reason"], b"field_missing")
            self.assertEqual(k, big_key[:1024])
            self.assertEqual(int(h["fd.key.truncated"]), len(big_key))
            self.assertEqual(v, b"{}", "a value that fits is kept whole")
            self.assertNotIn("fd.truncated", h)
            k, v, h = by_src[pos[3]]
            self.assertEqual(h["fd.reason"], b"field_too_long")
            self.assertEqual(k, big_user.encode()[:1024])
            self.assertEqual(int(h["fd.key.truncated"]), len(big_user))
            self.assertEqual(int(h["fd.truncated"]), len(msgs[3][1]))
            self.assertEqual(v, msgs[3][1][:64 * 1024])
            stats = r.hgetall(fdtest.PREFIX + "stats")
            self.assertEqual(int(stats["events"]), 3)
            self.assertEqual(int(stats["dlq"]), 2)
            self.assertNotIn("dlq_failed", stats)
            self.assertEqual(fdtest.user_records(r, ["ua"])[0]["click"], "3")

    def test_dlq_topic_refusing_everything_is_counted_not_blocking(self):
        msgs = self.mixed(n_good=40, n_bad=25)
        with RedisServer() as redis, Broker(partitions=2, control=True) as kafka:
            pos = fdtest.produce_positions(kafka.bootstrap, TOPIC, msgs)
            self.assertEqual(kafka.control(f"errors {PRODUCE} 20000 "
                                           f"{TOPIC_AUTHORIZATION_FAILED}"), "ok")
            r = redis.client()
            with Daemon(self.config(kafka, redis)) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=60, daemon=d)
                harness.wait_until(
                    lambda: int(r.hget(fdtest.PREFIX + "stats", "dlq_failed") or 0) >= 25, 30,
                    what="dlq_failed to reach 25")
                self.assertEqual(d.terminate(), 0, "nothing is pending once given up")
                log = d.log_text()
            stats = r.hgetall(fdtest.PREFIX + "stats")
            self.assertEqual(int(stats["events"]), 40)
            self.assertEqual(int(stats["dlq"]), 25)
            self.assertEqual(int(stats["dlq_failed"]), 25)
            self.assertEqual(int(stats["dlq_failed.field_missing"]), 25)
            lines = re.findall(r"dead letter for partition=(\d+) offset=(\d+) \(reason "
                               r"field_missing\) could not be delivered to events\.dlq", log)
            bad = {pos[i] for i, (_, v) in enumerate(msgs) if v == b'{"user_id": "ua"}'}
            self.assertTrue(lines, "no line names a failed dead letter")
            self.assertLessEqual(len(lines), 10, "failed dead letters are logged rate-limited")
            for p, o in lines:
                self.assertIn((int(p), int(o)), bad, "the line names a bad message's position")
            self.assertIn("more dead letters were given up", log)

    def test_dlq_topic_retrying_forever_gives_up_after_timeout(self):
        msgs = self.mixed(n_good=10, n_bad=3)
        with RedisServer() as redis, Broker(partitions=1, control=True) as kafka:
            fdtest.produce_positions(kafka.bootstrap, TOPIC, msgs)
            self.assertEqual(kafka.control(f"errors {PRODUCE} 20000 {NOT_ENOUGH_REPLICAS}"),
                             "ok")
            r = redis.client()
            cfg = self.config(kafka, redis, **{"kafka.dlq_timeout_ms": 3000})
            with Daemon(cfg) as d:
                t0 = time.monotonic()
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=60, daemon=d)
                waited = time.monotonic() - t0
                self.assertEqual(d.terminate(), 0)
                log = d.log_text()
            self.assertGreaterEqual(waited, 2.5, "the writes waited for the dead letters")
            stats = r.hgetall(fdtest.PREFIX + "stats")
            self.assertEqual(int(stats["events"]), 10)
            self.assertEqual(int(stats["dlq_failed.field_missing"]), 3)
            self.assertRegex(log, r"could not be delivered to events\.dlq: .*timed out")

    def test_stop_with_undeliverable_dead_letters_exits_nonzero(self):
        msgs = self.mixed(n_good=10, n_bad=3)
        with RedisServer() as redis, Broker(partitions=1, control=True) as kafka:
            pos = fdtest.produce_positions(kafka.bootstrap, TOPIC, msgs)
            self.assertEqual(kafka.control(f"errors {PRODUCE} 20000 {NOT_ENOUGH_REPLICAS}"),
                             "ok")
            r = redis.client()
            cfg = self.config(kafka, redis, **{"kafka.dlq_timeout_ms": 600000,
                                               "engine.shutdown_timeout_ms": 2000})
            with Daemon(cfg) as d:
                d.wait_for_log(r"waiting for dead letters to be delivered", timeout=30)
                code = d.terminate()
                log = d.log_text()
            self.assertNotEqual(code, 0, "a stop with undelivered output is not clean")
            self.assertRegex(log, r"shutdown: 3 dead letter\(s\) not delivered to events\.dlq")
            # Nothing past the first dead letter was stored: a restart reads it again.
            stored = r.hget(fdtest.PREFIX + f"part:{TOPIC}:0", "offset")
            self.assertTrue(stored is None or int(stored) <= pos[1][1], f"stored {stored}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
