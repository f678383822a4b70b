"""test_e2e.py - the first end-to-end path against a real redis-server and
the Kafka mock cluster over TCP (funnelctl broker), with events produced by
an independent client (Python confluent_kafka):

- 50,000 generated events in: Redis counters equal the generator's truth;
- a restart mid-stream (SIGTERM, then SIGKILL) ends with the same counters;
- the same input replayed into a fresh Redis gives identical Redis contents.
"""

import os
import shutil
import signal
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="fd-e2e-"))
        cls.framed = cls.tmp / "events.bin"
        cls.truth = fdtest.gen(cls.framed, cls.tmp / "truth.json", events=50000, users=5000,
                               extra=("--max-disorder-ms", "5000"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_once(self, interrupt=(), **config):
        """Produce the stream, run funneld to the end, return Redis state.
        `interrupt` is a list of (fraction stored, signal): the stream is then
        produced at a bounded rate while funneld runs, and funneld is stopped
        with that signal once that share of the events is stored in Redis,
        and restarted."""
        with RedisServer() as redis, Broker(partitions=4) as kafka:
            cfg = fdtest.daemon_config(self.tmp / f"fd-{os.getpid()}.yaml", kafka.bootstrap,
                                       redis.url, **{"redis.flush_interval_ms": 50,
                                                     # a failure shows what the writer did last
                                                     "log.level": "debug", **config})
            r = redis.client()
            total = self.truth["events"]
            if not interrupt:
                self.assertEqual(harness.produce_framed(kafka.bootstrap, TOPIC, self.framed),
                                 total)
            # Slower under sanitizers, so the interruptions still land mid-stream.
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, self.framed,
                                           rate=6000 // harness.SLOW)
            try:
                for frac, sig in interrupt:
                    with Daemon(cfg) as d:
                        # Events arrive only while a funneld consumes them, so
                        # each interruption lands mid-stream however long the
                        # restarts and group joins take.
                        d.wait_for_log(r"partition=\d+ assigned, starting at", timeout=30)
                        if producer.started:
                            producer.resume()
                        else:
                            producer.start()
                        def progressed():
                            s = fdtest.stored_offsets(r, TOPIC, range(4))
                            return sum(max(v, 0) for v in s.values()) >= frac * total
                        self.assertTrue(fdtest.sleep_until(progressed, 60),
                                        "funneld made no progress")
                        producer.pause()
                        if sig == signal.SIGKILL:
                            d.kill()
                        else:
                            self.assertEqual(d.terminate(), 0, "exit code after SIGTERM")
                            self.assertIn("engine: stopped", d.log_text())
                    stored = fdtest.stored_offsets(r, TOPIC, range(4))
                    self.assertLess(sum(max(v, 0) for v in stored.values()), total,
                                    "the interrupted run had already finished")
                producer.resume()
                with Daemon(cfg) as d:
                    if interrupt:
                        producer.join()
                    fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                    self.assertEqual(d.terminate(), 0)
                    log = d.log_text()
            finally:
                producer.stop()
            self.assertNotIn(" error ", log)
            fdtest.compare_with_truth(self, r, self.truth)
            return fdtest.redis_state(r)

    def test_counts_equal_truth_and_replay_is_identical(self):
        first = self.run_once()
        again = self.run_once()
        self.assertTrue(first == again, "replaying the same input changed Redis contents: " +
                        fdtest.state_diff(again, first))

    def test_partition_assigned_again_loses_nothing(self):
        """The stuck-partition check's last resort (engine.c eng_reassign:
        the assignment again at each partition's position), forced once
        mid-stream by a test-only hook: every count still equals the truth."""
        with RedisServer() as redis, Broker(partitions=4) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd-reassign.yaml", kafka.bootstrap, redis.url,
                                       **{"redis.flush_interval_ms": 50})
            r = redis.client()
            total = self.truth["events"]
            self.assertEqual(harness.produce_framed(kafka.bootstrap, TOPIC, self.framed), total)
            env = {"FUNNELD_TEST_REASSIGN_AFTER": str(total // 3)}
            with Daemon(cfg, env=env) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=120, daemon=d)
                self.assertIn("test hook: assigning partition=", d.log_text())
                self.assertEqual(d.terminate(), 0)
            fdtest.compare_with_truth(self, r, self.truth)

    def test_worker_counts_agree(self):
        one = self.run_once(**{"engine.workers": 1})
        three = self.run_once(**{"engine.workers": 3, "engine.queue_messages": 64})
        self.assertTrue(one == three,
                        "1 and 3 workers (tiny queues) disagree: " + fdtest.state_diff(three, one))

    def test_restart_mid_stream(self):
        clean = self.run_once()
        interrupted = self.run_once(interrupt=[(0.25, signal.SIGTERM), (0.6, signal.SIGKILL)])
        self.assertTrue(interrupted == clean, "interrupted vs clean run: " +
                        fdtest.state_diff(interrupted, clean))


if __name__ == "__main__":
    unittest.main(verbosity=2)
