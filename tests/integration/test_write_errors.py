"""test_write_errors.py - Redis refusing funneld's writes (docs/REDIS_KEYS.md,
"When Redis refuses a write"), against a real redis-server and the Kafka
mock cluster:

- another client turned a window key, the stats key and two user keys into
  other types: the window's refused counts are counted in stats
  write_errors.window, the stats deltas are kept in memory and all arrive
  once the stats key is repaired, the foreign user values are counted as
  unreadable records and replaced, each key is named once in the log, and
  consumption never stops;
- a partition's offset key of another type stops the writes until it is
  restored as the log says (nothing lost, nothing counted twice);
- Redis fills up to its maxmemory (noeviction): funneld pauses, retries with
  the configured backoff, logs the cause (OOM) once and a bounded number of
  lines while it lasts, and counts every event once the limit is lifted.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import SLOW, Broker, Daemon, RedisServer  # noqa: E402

T0 = 1767225600000  # an hour's start
PREFIX = fdtest.PREFIX
TOPIC = "events"


def clicks(users, ts, tag):
    """kcat -K: input: one click per user at ts (+ i ms)."""
    return "".join(
        f'{u}:{{"event_id":"e{tag}{u}","user_id":"{u}","ts":{ts + i},"type":"click"}}\n'
        for i, u in enumerate(users)).encode()


def embedded_config(path, redis, partitions, backoff_max_ms):
    """A JSON-input config on funneld's embedded Kafka mock cluster, flushing
    every 50 ms and retrying refused writes from 50 ms to backoff_max_ms."""
    return harness.write_config(path, {
        "kafka.brokers": "embedded", "kafka.partitions": partitions, "redis.url": redis.url,
        "input.format": "json", "input.schema": fdtest.schema_path(),
        "kafka.metrics_schema": fdtest.metrics_schema_path(),
        "kafka.alerts_schema": fdtest.alerts_schema_path(),
        "redis.flush_interval_ms": 50, "redis.backoff_min_ms": 50,
        "redis.backoff_max_ms": backoff_max_ms})


def kcat_produce(test, boot, data):
    """Produce kcat -K: input to TOPIC at boot; the test fails if kcat does."""
    p = subprocess.run(["kcat", "-b", boot, "-P", "-t", TOPIC, "-K:"],
                       input=data, capture_output=True, timeout=60)
    test.assertEqual(p.returncode, 0, p.stderr)


class WrongTypes(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-werr-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_window_stats_and_user_keys_of_another_type(self):
        users = [f"u{i}" for i in range(20)] + ["ulist", "uhash"]
        w1, w2 = T0, T0 + 60000
        wkey, skey = f"{PREFIX}funnel:1m:{w1}", PREFIX + "stats"
        with RedisServer() as redis:
            r = redis.client()
            r.rpush(wkey, "foreign")
            r.rpush(skey, "foreign")
            r.rpush(PREFIX + "user:ulist", "foreign")
            r.hset(PREFIX + "user:uhash", "foreign", "1")
            cfg = embedded_config(self.tmp / "werr.yaml", redis, partitions=2,
                                  backoff_max_ms=500)
            with Daemon(cfg) as d:
                boot = d.wait_for_log(r"embedded Kafka mock cluster listening at (\S+)").group(1)

                # Two rounds, so that several writes hit the same keys.
                for rnd in range(2):
                    kcat_produce(self, boot, clicks(users, w1 + 1000 * rnd, f"a{rnd}") +
                                 clicks(users, w2 + 1000 * rnd, f"b{rnd}"))
                    fdtest.wait_consumed(r, boot, TOPIC, timeout=30, daemon=d)
                # Consumption went on; the foreign values were left alone.
                self.assertEqual(r.type(skey), "list")
                self.assertEqual(r.lrange(wkey, 0, -1), ["foreign"])
                self.assertEqual(int(r.hget(f"{PREFIX}funnel:1m:{w2}", "click")),
                                 2 * len(users))
                self.assertEqual(int(r.hget(f"{PREFIX}funnel:1h:{T0}", "click")),
                                 4 * len(users))
                # Repaired: every count kept in memory arrives, with no new event.
                r.delete(skey)
                harness.wait_until(lambda: r.hget(skey, "events") == str(4 * len(users)), 20,
                                   what="the kept stats deltas to be written")
                log = d.log_text()
                self.assertEqual(d.terminate(), 0)

            stats = r.hgetall(skey)
            self.assertEqual(stats.get("user_records_unreadable"), "2", stats)
            kinds = {k: int(v) for k, v in stats.items() if k.startswith("write_errors.")}
            self.assertGreaterEqual(kinds.get("write_errors.window", 0), 2, stats)
            self.assertGreaterEqual(kinds.get("write_errors.stats", 0), 1, stats)
            self.assertEqual(int(stats["write_errors"]), sum(kinds.values()), stats)
            for u in ("ulist", "uhash"):
                rec = fdtest.parse_user_record(r.get(PREFIX + "user:" + u))
                self.assertEqual(rec["click"], "4")
            # Each key named once, at error level, with what Redis said.
            for key in (wkey, skey):
                lines = [ln for ln in log.splitlines()
                         if f"key {key}: Redis refused a command" in ln]
                self.assertEqual(len(lines), 1, f"{key}:\n" + "\n".join(lines))
                self.assertIn(" error ", lines[0])
                self.assertIn("WRONGTYPE", lines[0])
            self.assertRegex(log, rf"key {PREFIX}user:ulist: unreadable user record.*a list")
            self.assertRegex(log, rf"key {PREFIX}user:uhash: unreadable user record.*a hash")
            self.assertNotIn("pausing consumption", log)

    def test_partition_key_of_another_type(self):
        """The offsets' key must be a hash: writes stop (nothing lost, nothing
        counted twice) until it is restored as the log says."""
        users = [f"u{i}" for i in range(10)]
        pkey = f"{PREFIX}part:{TOPIC}:0"
        with RedisServer() as redis:
            r = redis.client()
            cfg = embedded_config(self.tmp / "part.yaml", redis, partitions=1,
                                  backoff_max_ms=400)
            with Daemon(cfg) as d:
                boot = d.wait_for_log(r"embedded Kafka mock cluster listening at (\S+)").group(1)

                kcat_produce(self, boot, clicks(users, T0, "a"))
                fdtest.wait_consumed(r, boot, TOPIC, timeout=30, daemon=d)
                r.delete(pkey)
                r.rpush(pkey, "foreign")
                mark = len(d.log_text())
                kcat_produce(self, boot, clicks(users, T0 + 1000, "b"))
                m = d.wait_for_log(rf"Redis refuses writes: WRONGTYPE: key {pkey}.*HSET it "
                                   rf"offset (\d+) max_ts (\d+)", timeout=30, start=mark)
                d.wait_for_log(r"pausing consumption", timeout=10, start=mark)
                self.assertEqual(int(r.hget(PREFIX + "stats", "events")), len(users))
                self.assertEqual(m.group(1), str(len(users)))  # what funneld had stored
                # In one transaction, as the log says: a retry between a bare
                # DEL and HSET would find the key gone (CI saw it once).
                with r.pipeline(transaction=True) as tx:
                    tx.delete(pkey)
                    tx.hset(pkey, mapping={"offset": m.group(1), "max_ts": m.group(2)})
                    tx.execute()
                d.wait_for_log(r"Redis accepts writes again", timeout=30, start=mark)
                fdtest.wait_consumed(r, boot, TOPIC, timeout=30, daemon=d)
                log = d.log_text()[mark:]
                self.assertEqual(d.terminate(), 0)
            self.assertEqual(int(r.hget(PREFIX + "stats", "events")), 2 * len(users))
            self.assertEqual(int(r.hget(f"{PREFIX}funnel:1m:{T0}", "click")), 2 * len(users))
            self.assertEqual(log.count("Redis refuses writes: WRONGTYPE"), 1, log)
            self.assertNotIn("another instance wrote it", log)


class RedisFull(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-oom-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_maxmemory_reached(self):
        framed = self.tmp / "events.bin"
        truth = fdtest.gen(framed, self.tmp / "truth.json", events=20000, users=2000, seed=5)
        with RedisServer(extra_args=["--maxmemory-policy", "noeviction"]) as redis, \
                Broker(partitions=2) as kafka:
            cfg = fdtest.retrying_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                         backoff_min_ms=100, backoff_max_ms=1000)
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=4000)
            with Daemon(cfg) as d:
                r = redis.client()
                fdtest.start_until_events(self, r, producer, 3000, timeout=60)
                # funneld's own writes fill what is left.
                mark = len(d.log_text())
                used = int(r.info("memory")["used_memory"])
                r.config_set("maxmemory", str(used + 100 * 1024))
                d.wait_for_log(r"Redis refuses writes: OOM command not allowed", timeout=30,
                               start=mark)
                t_full = time.monotonic()
                # The outage lasts at least 12 s: what does the log do meanwhile?
                # (the summary comes with the first attempt 10 s after the start,
                # which a loaded machine may delay past a fixed 12 s)
                d.wait_for_log(r"Redis still refuses writes \(OOM\)", timeout=30, start=mark)
                time.sleep(max(0.0, 12 * SLOW - (time.monotonic() - t_full)))
                self.assertTrue(d.running, "funneld died while Redis was full")
                during = d.log_text()[mark:]
                held = time.monotonic() - t_full
                r.config_set("maxmemory", "0")
                d.wait_for_log(r"Redis accepts writes again", timeout=30, start=mark)
                producer.join()
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                self.assertEqual(d.terminate(), 0)
            fdtest.compare_with_truth(self, r, truth)

        lines = during.splitlines()
        self.assertEqual(sum("Redis refuses writes: OOM" in ln for ln in lines), 1, during)
        summaries = sum("Redis still refuses writes (OOM)" in ln for ln in lines)
        self.assertGreaterEqual(summaries, 1, during)  # said while it lasts (every 10 s)
        self.assertLessEqual(summaries, held / 10 + 1, during)
        self.assertNotIn("EXECABORT", during)
        # start, pause, summaries, and whatever else happened (connections,
        # shards): nothing per attempt (at 100..1000 ms, ~17 attempts)
        self.assertLess(len(lines), 15, during)
        self.assertTrue(any(re.search(r"pausing consumption", ln) for ln in lines), during)


if __name__ == "__main__":
    unittest.main(verbosity=2)
