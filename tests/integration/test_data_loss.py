"""test_data_loss.py - data loss is never silent, and memory is bounded.

1. The mock cluster keeps about 5 MiB of log per partition and moves the log
   start up without a word. A stored offset that fell below the log start
   must be logged as DATA LOSS with the number of offsets skipped, counted in
   `stats data_loss_offsets`, and consumption resumes at the log start.
2. The same while funneld reads: the broker's retention moves the log start
   past funneld's fetch position (funneld is stopped with SIGSTOP while
   ~12 MiB more arrive); librdkafka resets to the log start and the jump is
   logged as DATA LOSS and counted, exactly.
3. With state.max_users_in_memory far below the number of users, shards
   evict users whose state is written and reload them on sight: counts still
   equal the truth.
"""

import os
import re
import shutil
import signal
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


def producer(bootstrap):
    """An uncompressed confluent_kafka producer with room for a big backlog."""
    from confluent_kafka import Producer
    return Producer({"bootstrap.servers": bootstrap, "compression.codec": "none",
                     "linger.ms": 20, "queue.buffering.max.messages": 200000})


def produce_events(test, p, first, n, pad=""):
    """Produce Avro clicks first..first+n-1 (users u0..u499, item_id pad or
    none) with p, waiting when its queue is full; asserts all are delivered."""
    for i in range(first, first + n):
        v = A.event(event_id=f"e{i}", user_id=f"u{i % 500}", ts=1767225600000 + i,
                    item_id=pad or None)
        while True:
            try:
                p.produce(TOPIC, key=f"u{i % 500}".encode(), value=v)
                break
            except BufferError:
                p.poll(0.05)
    test.assertEqual(p.flush(60), 0)


class DataLoss(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-loss-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_offset_below_log_start_is_reported_and_counted(self):
        with RedisServer() as redis, Broker(partitions=1) as kafka:
            # ~12 MiB uncompressed into one partition: the broker drops the oldest.
            p = producer(kafka.bootstrap)
            n = 80000
            produce_events(self, p, 0, n, pad="x" * 150)
            (lo, hi), = fdtest.end_offsets(kafka.bootstrap, TOPIC).values()
            self.assertEqual(hi, n)
            self.assertGreater(lo, 0, "the broker kept everything; nothing to lose")
            r = redis.client()
            # As if an earlier run had stored offset 10 long ago.
            r.hset(f"{fdtest.PREFIX}part:{TOPIC}:0", mapping={"offset": 10, "max_ts": 0})
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url)
            with Daemon(cfg) as d:
                m = d.wait_for_log(r"DATA LOSS partition=0 stored offset 10 is below the log "
                                   r"start (\d+): (\d+) offsets were deleted", timeout=30)
                self.assertEqual(int(m.group(1)), lo)
                self.assertEqual(int(m.group(2)), lo - 10)
                harness.wait_until(
                    lambda: int(r.hget(f"{fdtest.PREFIX}part:{TOPIC}:0", "offset") or 0) == n,
                    60, what="funneld to reach the end")
                self.assertEqual(d.terminate(), 0)
            stats = r.hgetall(fdtest.PREFIX + "stats")
            self.assertEqual(int(stats["data_loss_offsets"]), lo - 10)
            self.assertEqual(int(stats["events"]), n - lo)

    def test_log_start_passing_the_fetch_position_mid_stream_is_counted(self):
        with RedisServer() as redis, Broker(partitions=1) as kafka:
            p = producer(kafka.bootstrap)
            first = 1000
            produce_events(self, p, 0, first)
            r = redis.client()
            part_key = f"{fdtest.PREFIX}part:{TOPIC}:0"
            # a session that outlasts the stop: no rebalance, the fetcher resumes
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"kafka.properties": {"fetch.wait.max.ms": 50,
                                                               "session.timeout.ms": 45000}})
            with Daemon(cfg) as d:
                harness.wait_until(lambda: int(r.hget(part_key, "offset") or 0) == first, 60,
                                   what="funneld to store the first batch")
                os.kill(d.pid, signal.SIGSTOP)
                try:
                    # ~12 MiB: the broker drops the oldest
                    produce_events(self, p, first, 80000, pad="x" * 150)
                    (lo, hi), = fdtest.end_offsets(kafka.bootstrap, TOPIC).values()
                finally:
                    os.kill(d.pid, signal.SIGCONT)
                self.assertGreater(lo, first, "the log start did not pass funneld's position")
                m = d.wait_for_log(r"DATA LOSS partition=0 fetch offset (\d+) is below the log "
                                   r"start (\d+): (\d+) offsets were deleted", timeout=30)
                self.assertEqual(int(m.group(1)), first)
                self.assertEqual(int(m.group(3)), lo - first)
                harness.wait_until(lambda: int(r.hget(part_key, "offset") or 0) == hi, 60,
                                   what="funneld to reach the end")
                self.assertEqual(d.terminate(), 0)
                self.assertNotIn("assigned, starting", d.log_text().split("DATA LOSS")[1],
                                 "a rebalance, not the mid-stream path, handled the loss")
            stats = r.hgetall(fdtest.PREFIX + "stats")
            self.assertEqual(int(stats["data_loss_offsets"]), lo - first)
            self.assertEqual(int(stats["events"]), first + hi - lo)

    def test_users_beyond_memory_bound_are_evicted_and_reloaded(self):
        framed = self.tmp / "events.bin"
        truth = fdtest.gen(framed, self.tmp / "truth.json", events=40000, users=8000, seed=5)
        self.assertGreater(len(truth["users"]), 3000)  # three times the bound
        with RedisServer() as redis, Broker(partitions=4) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"state.max_users_in_memory": 1000,
                                          "redis.flush_interval_ms": 20,
                                          "engine.queue_messages": 256,
                                          "log.level": "debug"})
            r = redis.client()
            # The stream arrives over a few seconds while funneld runs, so
            # epochs are confirmed while new users keep coming (a whole
            # backlog read in a burst under a loaded machine once left no
            # confirmed epoch to evict behind).
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=8000)
            with Daemon(cfg) as d:
                d.wait_for_log(r"partition=\d+ assigned, starting at", timeout=30)
                producer.start()
                producer.join()
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                self.assertEqual(d.terminate(), 0)
                evicted = sum(int(x) for x in re.findall(r"evicted (\d+) users", d.log_text()))
            self.assertGreater(evicted, 0, "no user was evicted: the bound was not exercised")
            fdtest.compare_with_truth(self, r, truth)


if __name__ == "__main__":
    unittest.main(verbosity=2)
