"""test_funnel.py - sessions, funnel windows, lateness and the funnel-metrics
topic end to end, against a real redis-server and the Kafka mock cluster:

- a generated stream with disorder beyond funnel.allowed_lateness (so some
  events are late) and a category breakdown: users' sessions, every window
  and hour (stage counts, revenue, unique users within HyperLogLog error),
  the categories and the late events equal the generator's ground truth
  (tools/gen_truth.c, an independent implementation of docs/FEATURES.md);
- every closed window has exactly one funnel-metrics message (read with
  confluent_kafka and counted with kcat), whose counts and rates equal the
  window's hash in Redis;
- a replay of the same input into a fresh Redis and broker gives identical
  Redis contents and identical metrics messages.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
METRICS = "funnel-metrics"
PARTITIONS = 4
CATEGORIES = "c1,c2,c3"
STAGES = ("visit", "click", "cart", "purchase")


class Funnel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="fd-funnel-"))
        cls.framed = cls.tmp / "events.bin"
        # 60,000 events over 2 days; disorder up to 5 minutes against an
        # allowed lateness of 2 minutes: some events are late.
        cls.truth = fdtest.gen(cls.framed, cls.tmp / "truth.json", events=60000, users=6000,
                               seed=21,
                               extra=("--span", "2d", "--max-disorder-ms", "300000",
                                      "--truth-partitions", str(PARTITIONS),
                                      "--categories", CATEGORIES))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_once(self, tag):
        """Run the stream through funneld; return (Redis state, metrics
        messages {id: value}, raw message list)."""
        with RedisServer() as redis, Broker(partitions=PARTITIONS) as kafka:
            cfg = fdtest.daemon_config(self.tmp / f"fd-{tag}.yaml", kafka.bootstrap, redis.url,
                                       **{"redis.flush_interval_ms": 50,
                                          "funnel.categories": CATEGORIES,
                                          "kafka.metrics_format": "json"})
            r = redis.client()
            self.assertEqual(harness.produce_framed(kafka.bootstrap, TOPIC, self.framed),
                             self.truth["events"])
            with Daemon(cfg) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                self.assertEqual(d.terminate(), 0)
                log = d.log_text()
            self.assertNotIn(" error ", log)
            fdtest.compare_with_truth(self, r, self.truth)
            msgs = harness.consume_all(kafka.bootstrap, METRICS)
            kcat = subprocess.run(["kcat", "-b", kafka.bootstrap, "-C", "-t", METRICS, "-e",
                                   "-q", "-f", "%k\n"], capture_output=True, text=True,
                                  timeout=60 * harness.SLOW, check=True)
            self.assertEqual(sorted(kcat.stdout.split()),
                             sorted(k.decode() for k, *_ in msgs),
                             "kcat and confluent_kafka see different metrics messages")
            by_id = {}
            for key, value, *_ in msgs:
                doc = json.loads(value)
                self.assertEqual(key.decode(), doc["id"], "message key is the id")
                self.assertNotIn(doc["id"], by_id, "a window was sent twice without a restart")
                by_id[doc["id"]] = value
            self.check_messages_match_redis(r, by_id)
            return fdtest.redis_state(r), by_id

    def check_messages_match_redis(self, r, by_id):
        prefix = fdtest.PREFIX
        closed = set()
        for span in ("1m", "1h"):
            base = f"{prefix}funnel:{span}:"
            for k in r.scan_iter(match=base + "*", count=1000):
                k = k.decode() if isinstance(k, bytes) else k
                rest = k[len(base):]
                if rest.isdigit() and r.hget(k, "closed") in (b"1", "1"):
                    closed.add(f"{span}:{rest}")
        self.assertGreater(len(closed), 100, "windows closed during the run")
        self.assertEqual(sorted(set(by_id) - closed)[:5], [], "messages for windows not closed")
        self.assertEqual(sorted(closed - set(by_id))[:5], [], "closed windows without a message")
        open_left = {m.decode() if isinstance(m, bytes) else m
                     for m in r.zrange(prefix + "funnel:open", 0, -1)}
        self.assertFalse(open_left & closed, "closed windows still in funnel:open")
        self.assertTrue(open_left, "the last windows stay open (no watermark past them)")
        bad = []
        for wid, value in by_id.items():
            doc = json.loads(value)
            span, start = wid.split(":")
            h = r.hgetall(f"{prefix}funnel:{span}:{start}")
            h = {(k.decode() if isinstance(k, bytes) else k):
                 (v.decode() if isinstance(v, bytes) else v) for k, v in h.items()}
            got = {**{f"sessions_{s}": doc["sessions"][s] for s in STAGES},
                   **{e: doc["events"][e] for e in ("click", "cart", "purchase")},
                   "revenue_cents": doc["revenue_cents"]}
            want = {f: int(h.get(f, 0)) for f in got}
            if got != want:
                bad.append((wid, got, want))
            for rate, v in doc["rates"].items():
                if abs(v - float(h[rate])) > 1e-12:
                    bad.append((wid, rate, v, h[rate]))
            visit = doc["sessions"]["visit"]
            if visit and abs(doc["rates"]["conversion"] -
                             doc["sessions"]["purchase"] / visit) > 1e-12:
                bad.append((wid, "conversion", doc["rates"]["conversion"]))
            for s in STAGES:
                pf = r.pfcount(f"{prefix}funnel:{span}:{start}:users:{s}")
                if doc["users"][s] != pf:
                    bad.append((wid, "users", s, doc["users"][s], pf))
            if span == "1m":
                self.assertEqual(doc["window_end_ms"] - doc["window_start_ms"], 60000)
                names = [c["category"] for c in doc["categories"]]
                self.assertTrue(set(names) <= {"c1", "c2", "c3", "other"}, names)
        self.assertEqual(bad[:5], [], f"{len(bad)} metrics messages differ from Redis")

    def test_retention_deletes_old_windows(self):
        """funnel.retention is event time: once the topic's watermark is a
        retention past a closed window's end, all its keys are gone; newer
        windows are all there."""
        with RedisServer() as redis, Broker(partitions=PARTITIONS) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd-ret.yaml", kafka.bootstrap, redis.url,
                                       **{"redis.flush_interval_ms": 50,
                                          "funnel.retention": "1d"})
            r = redis.client()
            harness.produce_framed(kafka.bootstrap, TOPIC, self.framed)
            with Daemon(cfg) as d:
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                self.assertEqual(d.terminate(), 0)
            wm = min(int(r.hget(f"{fdtest.PREFIX}part:{TOPIC}:{p}", "max_ts"))
                     for p in range(PARTITIONS)) - 120000
            gone = kept = 0
            bad = []
            for start, t in self.truth["funnel"]["windows"].items():
                key = f"{fdtest.PREFIX}funnel:1m:{start}"
                hlls = [key + ":users:" + s for s in STAGES]
                if int(start) + 60000 + 86400000 <= wm:
                    gone += 1
                    if r.exists(key, *hlls):
                        bad.append(("not deleted", start))
                else:
                    kept += 1
                    want = 1 + sum(1 for s in STAGES if t["users_" + s])
                    if r.exists(key, *hlls) != want:
                        bad.append(("missing", start))
            self.assertEqual(bad[:5], [], f"{len(bad)} windows wrong after retention")
            self.assertGreater(gone, 100, "the stream spans 2 days: day one is past retention")
            self.assertGreater(kept, 100)
            oldest = r.zrange(fdtest.PREFIX + "funnel:closed", 0, 0, withscores=True)
            self.assertTrue(oldest and oldest[0][1] > wm, "funnel:closed holds only what is due")

    def test_truth_late_events_metrics_and_replay(self):
        self.assertGreater(self.truth["funnel"]["late_events"], 0,
                           "the stream must have late events")
        first_state, first_msgs = self.run_once("a")
        again_state, again_msgs = self.run_once("b")
        self.assertTrue(first_state == again_state, "replay changed Redis: " +
                        fdtest.state_diff(again_state, first_state))
        self.assertEqual(sorted(first_msgs), sorted(again_msgs), "replay sent other windows")
        diff = [w for w in first_msgs if first_msgs[w] != again_msgs[w]]
        self.assertEqual(diff[:5], [], "replay changed metrics messages")


if __name__ == "__main__":
    unittest.main(verbosity=2)
