"""test_recs.py - the recommendation model in the daemon (docs/RECS.md),
checked from outside with redis-py and redis-cli:

- every event with an item is learned once (model:mf positives equals the
  generated stream's events), with any number of workers, and the model
  beats the popularity baseline prequentially (recall@10);
- each user's recommendations are cached in PREFIX recs:USER (a sorted set
  of mf.top_n known items), and its factors are in its record;
- after kill -9 mid-stream and a restart, the positives learned equal the
  uninterrupted run's exactly, and recall@10 is within 0.01 of it;
- a stored model learned with another mf.k refuses the start, naming the
  key and what to do.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import SLOW, Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
PARTITIONS = 4
EVENTS = 60000
USERS = 1500
RATE = 6000 // SLOW  # events/s
MODEL = fdtest.PREFIX + "model:mf"
ITEMS = fdtest.PREFIX + "mf:item"


def model(r):
    return {k: v for k, v in r.hgetall(MODEL).items()}


class Recs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="fd-recs-"))
        cls.framed = cls.tmp / "events.bin"
        cls.truth = fdtest.gen(cls.framed, cls.tmp / "truth.json", events=EVENTS, users=USERS,
                               seed=12)
        cls.positives = sum(u["click"] + u["cart"] + u["purchase"]
                            for u in cls.truth["users"].values())
        cls._reference = None
        cls._user_cli = None

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)

    def config(self, kafka, redis, name, **extra):
        return fdtest.daemon_config(self.tmp / f"{name}.yaml", kafka.bootstrap, redis.url,
                                    **{"redis.flush_interval_ms": 100, "engine.workers": 1,
                                       "mf.eval_every": 1, **extra})

    def reference(self):
        """The uninterrupted run: (model:mf, {user: recs}, item ids, user records)."""
        if type(self)._reference is not None:
            return type(self)._reference
        with RedisServer() as redis, Broker(partitions=PARTITIONS) as kafka:
            r = redis.client()
            # produced at the kill test's pace: how the partitions' events
            # interleave (a backlog is read in long runs per partition)
            # changes what the model has seen of the others at each event
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, self.framed, rate=RATE)
            try:
                with Daemon(self.config(kafka, redis, "ref")) as d:
                    d.wait_for_log(r"partition=\d+ assigned, starting at", timeout=30)
                    producer.start()
                    producer.join(60 * SLOW)
                    fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=90, daemon=d)
                    self.assertEqual(d.terminate(), 0)
            finally:
                producer.stop()
            m = model(r)
            items = set(r.hkeys(ITEMS))
            # the documented row layout, read from outside: 32 float32 then
            # the popularity as a float64, little-endian
            rows = redis.client(decode_responses=False).hgetall(ITEMS)
            self.assertEqual(len(rows), len(items))
            pops = []
            for item, row in rows.items():
                self.assertEqual(len(row), 32 * 4 + 8, item)
                *v, pop = struct.unpack("<32fd", row)
                self.assertTrue(all(abs(x) <= 16 for x in v), (item, v))
                self.assertGreaterEqual(pop, 0.0, item)
                pops.append(pop)
            self.assertGreater(max(pops), 0.0, "popularity is stored")
            recs = {}
            for k in r.scan_iter(match=fdtest.PREFIX + "recs:*", count=1000):
                recs[k[len(fdtest.PREFIX + "recs:"):]] = [
                    (x["item"], x["score"]) for x in json.loads(r.get(k))]
            # an independent client reads one user's list
            some = sorted(recs)[0]
            out = subprocess.run(["redis-cli", "-u", redis.url, "GET",
                                  fdtest.PREFIX + "recs:" + some],
                                 check=True, capture_output=True, text=True).stdout
            out = [x["item"] for x in json.loads(out)]
            records = fdtest.user_records(r, sorted(self.truth["users"])[:50])
            ctl = [str(harness.build_dir() / "funnelctl"), "user", "--redis", redis.url]
            shown = sorted(self.truth["users"])[:3]
            user_json = subprocess.run(ctl + ["--json", *shown], check=True,
                                       capture_output=True, text=True).stdout
            user_text = subprocess.run(ctl + [shown[0]], check=True, capture_output=True,
                                       text=True).stdout
            missing = subprocess.run(ctl + ["nobody"], capture_output=True, text=True)
        self.user_cli = (shown, user_json, user_text, missing)
        self.assertEqual(out, [i for i, _ in recs[some]], "redis-cli reads the same list")
        type(self)._reference = (m, recs, items, records)
        type(self)._user_cli = self.user_cli
        return type(self)._reference

    def test_uninterrupted_run(self):
        """One run (each test method is a process of its own under ctest,
        so the reference run is shared by checking everything here)."""
        self.check_learns_every_positive_and_beats_popularity()
        self.check_recommendations_are_cached_per_user()
        self.check_funnelctl_user_shows_features_risk_and_recommendations()

    def check_learns_every_positive_and_beats_popularity(self):
        m, recs, items, records = self.reference()
        self.assertEqual(int(m["positives"]), self.positives, "each event with an item once")
        self.assertEqual(int(m["k"]), 32)
        self.assertEqual(int(m["items"]), len(items))
        self.assertEqual(int(m["checks"]), self.positives, "mf.eval_every 1 checks them all")
        recall, pop = float(m["recall_at_10"]), float(m["popularity_recall_at_10"])
        ndcg, pop_ndcg = float(m["ndcg_at_10"]), float(m["popularity_ndcg_at_10"])
        print(f"test_recs: recall@10 {recall:.4f} (popularity {pop:.4f}), NDCG@10 {ndcg:.4f} "
              f"(popularity {pop_ndcg:.4f}), {len(items)} items", file=sys.stderr)
        self.assertGreater(recall, 2 * pop, "the model beats the popularity list")
        self.assertGreater(ndcg, 2 * pop_ndcg)
        self.assertAlmostEqual(recall, int(m["hits"]) / int(m["checks"]), places=5)

    def check_recommendations_are_cached_per_user(self):
        m, recs, items, records = self.reference()
        self.assertEqual(len(recs), len(self.truth["users"]), "every user has a list")
        for user, lst in recs.items():
            self.assertEqual(len(lst), 10, f"{user}: mf.top_n items: {lst}")
            scores = [sc for _, sc in lst]
            self.assertTrue(all(isinstance(sc, float) for sc in scores), lst)
            ids = [i for i, _ in lst]
            self.assertEqual(len(set(ids)), 10, f"{user}: an item twice")
            self.assertTrue(set(ids) <= items, f"{user}: unknown items {ids}")
        # what a user bought last is left out of its list
        bought = 0
        for uid, rec in zip(sorted(self.truth["users"])[:50], records):
            if uid in recs and rec["mf_bought"]:
                bought += 1
                hashes = {fdtest.fnv1a32(i) for i, _ in recs[uid]}
                self.assertFalse(hashes & set(rec["mf_bought"]),
                                 f"{uid} is recommended what it bought: {recs[uid]}")
        self.assertGreater(bought, 10, "users with purchases among the 50 checked")
        for rec in records:
            self.assertIsNotNone(rec)
            self.assertEqual(len(rec["mf_factors"]), 32, "k bfloat16 factors in the record")
            self.assertTrue(any(abs(x) > 0.01 for x in rec["mf_factors"]), rec["mf_factors"])

    def check_funnelctl_user_shows_features_risk_and_recommendations(self):
        m, recs, items, records = self.reference()
        shown, user_json, user_text, missing = type(self)._user_cli
        lines = user_json.splitlines()
        self.assertEqual(len(lines), len(shown))
        for uid, ln in zip(shown, lines):
            o = json.loads(ln)
            self.assertEqual(o["user"], uid)
            self.assertIn("click_1h", o["features"])
            want = [(i, s) for i, s in recs[uid]]
            got = [(x["item"], x["score"]) for x in o["recommendations"]]
            self.assertEqual([i for i, _ in got], [i for i, _ in want], uid)
            for (_, a), (_, b) in zip(got, want):
                self.assertAlmostEqual(a, b, places=5)
            rec = records[sorted(self.truth["users"]).index(uid)]
            self.assertIsNotNone(o["churn"], "the churn model scored every user")
            self.assertAlmostEqual(o["churn"]["risk"], int(rec["churn_risk_q"]) / 65535, places=4)
            self.assertEqual(o["churn"]["episode_open"], int(rec["churn_flags"]) & 1 == 1)
        text = user_text.splitlines()
        self.assertEqual(text[0].split()[:2], ["user", shown[0]])
        recs_lines = [ln.split() for ln in text if ln.startswith("recommendation ")]
        self.assertEqual([x[1] for x in recs_lines], [i for i, _ in recs[shown[0]]])
        self.assertTrue(any(ln.startswith("churn_risk ") for ln in text), text)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("funnelctl user: user 'nobody' not found", missing.stderr)

    def test_kill9_neither_loses_nor_repeats_a_positive(self):
        want, _, want_items, _ = self.reference()
        with RedisServer() as redis, Broker(partitions=PARTITIONS) as kafka:
            cfg = self.config(kafka, redis, "kill")
            r = redis.client()
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, self.framed, rate=RATE)
            try:
                with Daemon(cfg) as d:
                    d.wait_for_log(r"partition=\d+ assigned, starting at", timeout=30)
                    producer.start()
                    self.assertTrue(fdtest.sleep_until(
                        lambda: int(r.hget(MODEL, "positives") or 0) >= EVENTS // 3, 60),
                        "positives before the kill")
                    self.assertEqual(d.kill(), -signal.SIGKILL)
                before = int(r.hget(MODEL, "positives"))
                self.assertLess(before, EVENTS, "killed before the end")
                producer.join(60)
                with Daemon(cfg) as d:
                    d.wait_for_log(r"recommendation model loaded: \d+ items, %d positives" % before,
                                   timeout=30)
                    fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=90, daemon=d)
                    self.assertEqual(d.terminate(), 0)
            finally:
                producer.stop()
            got = model(r)
            got_items = set(r.hkeys(ITEMS))
        self.assertEqual(int(got["positives"]), int(want["positives"]), "positives learned")
        self.assertEqual(int(got["checks"]), int(want["checks"]), "positives checked")
        self.assertEqual(got_items, want_items)
        a, b = float(got["recall_at_10"]), float(want["recall_at_10"])
        print(f"test_recs: recall@10 after kill -9 {a:.4f}, uninterrupted {b:.4f}",
              file=sys.stderr)
        self.assertLess(abs(a - b), 0.01, (a, b))

    def test_another_k_refuses_to_start(self):
        with RedisServer() as redis, Broker(partitions=1) as kafka:
            r = redis.client()
            r.hset(MODEL, mapping={"k": 32, "positives": 5})
            cfg = self.config(kafka, redis, "k16", **{"mf.k": 16})
            proc = subprocess.run([str(harness.build_dir() / "funneld"), "-c", str(cfg)],
                                  capture_output=True, text=True, timeout=60 * SLOW)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("model:mf was learned with k = 32 factors but mf.k is 16", proc.stderr)
        self.assertIn("delete", proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
