"""test_model_state.py - the stored churn model (PREFIX model:churn) when
something other than this funneld changed it (docs/CHURN.md, "Several
instances"):

- another writer's model (here: a copy of the stored one with its example
  count changed by hand) is merged, not overwritten: what funneld learns
  afterwards is added onto it;
- an unreadable stored model refuses writes with the key and the reason
  (consumption pauses, nothing is lost) until it is deleted; funneld then
  writes its own model again and every event is counted once.
"""

import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
from harness import SLOW, Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
KEY = fdtest.PREFIX + "model:churn"


def examples(r):
    return int(r.hget(KEY, "examples") or 0)


class ModelState(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-model-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_foreign_and_unreadable_models(self):
        framed = self.tmp / "events.bin"
        truth = fdtest.gen(framed, self.tmp / "truth.json", events=40000, users=2000, seed=5)
        with RedisServer() as redis, Broker(partitions=4) as kafka:
            cfg = fdtest.retrying_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                         backoff_min_ms=50, backoff_max_ms=300,
                                         **{"churn.horizon": "1d",
                                            "churn.warmup_examples": 0})
            r = redis.client()
            # slower under sanitizers, so events are left for step 2
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=4000 // SLOW)
            with Daemon(cfg) as d:
                fdtest.start_until_events(self, r, producer, 4000, timeout=60)
                self.assertTrue(fdtest.sleep_until(lambda: examples(r) > 0, 30),
                                "the model was never written")
                # 1. Another writer: the same model with 1,000,000 more
                # examples. funneld must add its learning onto it.
                producer.pause()
                # let funneld store what it was sent, so the edit below does
                # not race with one of its writes
                self.assertTrue(fdtest.sleep_until(
                    lambda: sum(max(v, 0) for v in
                                fdtest.stored_offsets(r, TOPIC, range(4)).values())
                    >= producer.sent, 30), "funneld did not catch up")
                lr = r.hget(KEY, "lr")
                head = lr.split(" ")
                before = int(head[2])
                head[2] = str(before + 1000000)
                mark = len(d.log_text())
                r.hset(KEY, mapping={"lr": " ".join(head), "examples": before + 1000000})
                producer.resume()
                d.wait_for_log(r"churn: merged with other instances' learning", timeout=30,
                               start=mark)
                self.assertTrue(fdtest.sleep_until(
                    lambda: examples(r) > before + 1000000, 30),
                    f"funneld's learning was not added onto the other model: {examples(r)}")
                # 2. An unreadable model: writes are refused, named, and
                # consumption pauses; deleting the key lets funneld go on.
                producer.pause()
                # as above: no write of funneld's in flight when the model
                # breaks (a write whose check came before the edit would
                # meet it inside its script, which replaces it, and says so)
                self.assertTrue(fdtest.sleep_until(
                    lambda: sum(max(v, 0) for v in
                                fdtest.stored_offsets(r, TOPIC, range(4)).values())
                    >= producer.sent, 30), "funneld did not catch up")
                mark = len(d.log_text())
                r.hset(KEY, "lr", "lr1 not a model")
                producer.resume()  # new events: a write that meets the bad model
                m = d.wait_for_log(r"Redis refuses writes: .*model:churn.* unreadable", timeout=30,
                                   start=mark)
                self.assertIn("delete the key", m.group(0) + d.log_text()[m.end():m.end() + 300])
                d.wait_for_log(r"pausing consumption", timeout=10, start=mark)
                self.assertTrue(d.running)
                stuck = fdtest.stored_offsets(r, TOPIC, range(4))
                r.delete(KEY)
                d.wait_for_log(r"was deleted since this instance last wrote it", timeout=30,
                               start=mark)
                d.wait_for_log(r"resuming consumption", timeout=30, start=mark)
                producer.join()
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                after = fdtest.stored_offsets(r, TOPIC, range(4))
                self.assertTrue(all(after[p] >= stuck[p] for p in range(4)))
                self.assertEqual(d.terminate(), 0)
                # the only errors logged are the refused writes
                for line in d.log_text().splitlines():
                    if " error " in line:
                        self.assertIn("model:churn", line)
            # nothing lost or counted twice through all of it
            fdtest.compare_with_truth(self, r, truth)
            self.assertGreater(examples(r), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
