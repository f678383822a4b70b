"""test_views.py - funnelctl funnel, top-risk, model and status, and the HTTP
listener's /api/ (issue 13), against a funneld that processed a generated
stream: every figure shown equals what Redis holds (read here with
redis-py), the terminal and the API answer the same JSON (one code path,
daemon/views.c), and strings from events come back exact and escaped.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
from harness import Broker, Daemon, RedisServer, build_dir  # noqa: E402

TOPIC = "events"
P = fdtest.PREFIX
PLANTED = b'<img src=x onerror="alert(1)">\r\n:\xff\x01\x00\xed\xa0\x80'


def get(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


class Views(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-views-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def ctl(self, *args, code=0):
        r = subprocess.run([str(build_dir() / "funnelctl"), *args], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, code, f"funnelctl {' '.join(args)}: {r.stderr}")
        return r.stdout

    def test_views_equal_redis_and_the_api(self):
        framed = self.tmp / "events.bin"
        fdtest.gen(framed, self.tmp / "truth.json", events=30000, users=1500, seed=12)
        with RedisServer() as redis, Broker(partitions=2) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"churn.horizon": "1d", "churn.warmup_examples": 0})
            r = redis.client()
            rb = redis.client(decode_responses=False)
            self.assertEqual(fdtest.harness.produce_framed(kafka.bootstrap, TOPIC, framed), 30000)
            with Daemon(cfg) as d:
                port = int(d.wait_for_log(r"http: listening on 127\.0\.0\.1:0 \(port (\d+)\)",
                                          timeout=30).group(1))
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=90, daemon=d)
                c = ["-c", str(cfg)]
                # ---- funnel: the last 5 windows, newest first, as Redis has them
                fj = json.loads(self.ctl("funnel", *c, "--last", "5", "--json"))
                self.assertEqual(fj["span"], "1m")
                members = [m for m in r.zrange(P + "funnel:open", 0, -1) +
                           r.zrange(P + "funnel:closed", 0, -1) if m.startswith("1m:")]
                starts = sorted({int(m[3:]) for m in members}, reverse=True)[:5]
                self.assertEqual([w["start_ms"] for w in fj["windows"]], starts)
                for w in fj["windows"]:
                    h = r.hgetall(f"{P}funnel:1m:{w['start_ms']}")
                    for f in ("sessions_visit", "sessions_click", "sessions_cart",
                              "sessions_purchase", "click", "cart", "purchase", "revenue_cents"):
                        self.assertEqual(w[f], int(h.get(f, 0)), f)
                    v, p = int(h.get("sessions_visit", 0)), int(h.get("sessions_purchase", 0))
                    self.assertAlmostEqual(w["conversion"], p / v if v else 0.0)
                    if "conversion" in h:  # closed: the rate funneld wrote itself
                        self.assertAlmostEqual(w["conversion"], float(h["conversion"]))
                self.assertTrue(any(w["sessions_visit"] for w in fj["windows"]))
                # the API answers the same document
                st, ctype, body = get(port, "/api/funnel?last=5")
                self.assertEqual((st, ctype), (200, "application/json"))
                self.assertEqual(json.loads(body), fj)
                # the table and the bar chart
                table = self.ctl("funnel", *c, "--last", "5")
                self.assertRegex(table, r"(?m)^window \(UTC\) +visit +click +cart +purchase")
                self.assertIn("\u2588", table)
                self.assertEqual(len(re.findall(r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d", table)), 5)

                # ---- top-risk, with a planted user id that is markup and bytes
                rb.zadd(P.encode() + b"churn:risk", {PLANTED: 2.0})
                tj = json.loads(self.ctl("top-risk", "5", *c, "--json"))
                want = rb.zrevrange(P.encode() + b"churn:risk", 0, 4, withscores=True)
                self.assertEqual(len(tj["users"]), 5)
                self.assertEqual(tj["users"][0]["user_id"],
                                 '<img src=x onerror="alert(1)">\r\n:\u00ff\u0001\u0000'
                                 '\u00ed\u00a0\u0080')
                for u, (_, score) in zip(tj["users"], want):
                    self.assertAlmostEqual(u["risk"], score)
                self.assertEqual(want[0][0], PLANTED)
                self.assertEqual([u["user_id"] for u in tj["users"][1:]],
                                 [m.decode() for m, _ in want[1:]])
                # the reasons: the model's largest contributions for the user's features
                names = self.ctl("features", *c, "--names").split()
                self.assertIsNone(tj["users"][0]["reasons"], "no record: no reasons")
                self.assertGreater(tj["at_ms"], 0)
                for u in tj["users"][1:]:
                    self.assertTrue(1 <= len(u["reasons"]) <= 3, u)
                    self.assertTrue(all(x["feature"] in names for x in u["reasons"]), u)
                    cs = [x["contribution"] for x in u["reasons"]]
                    self.assertEqual(cs, sorted(cs, reverse=True), u)
                st, _, body = get(port, "/api/top-risk?n=5")
                self.assertEqual(st, 200)
                self.assertEqual(json.loads(body), tj)
                self.assertNotIn("\r", body, "control characters escaped in the JSON text")
                text = self.ctl("top-risk", "3", *c)
                self.assertIn("\\x0d\\x0a", text, "a control character is shown, not obeyed")

                # ---- model: weights named as `funnelctl features --names` names them
                mj = json.loads(self.ctl("model", *c, "--json"))
                names = self.ctl("features", *c, "--names").split()
                self.assertEqual([w["feature"] for w in mj["churn"]["weights"]], names)
                stored = r.hgetall(P + "model:churn")
                self.assertEqual(mj["churn"]["examples"], int(stored["examples"]))
                self.assertAlmostEqual(mj["churn"]["auc"], float(stored["auc"]))
                self.assertEqual(mj["recs"]["positives"],
                                 int(r.hget(P + "model:mf", "positives")))
                st, _, body = get(port, "/api/model")
                self.assertEqual(json.loads(body), mj)
                self.assertIn("weights (standardised inputs)", self.ctl("model", *c))

                # ---- status from /metrics
                # (the listener's copy of the counters is refreshed every second)
                events = int(r.hget(P + "stats", "events"))
                sj = {}

                def caught_up():
                    sj.update(json.loads(self.ctl("status", "--http", f"127.0.0.1:{port}",
                                                  "--json")))
                    return sj["events_total"] == events
                self.assertTrue(fdtest.sleep_until(caught_up, 20), sj)
                self.assertTrue(sj["ready"] and sj["healthy"], sj)
                self.assertEqual(sj["lag"], 0)
                self.assertIn("ready: ", self.ctl("status", "--http", f"127.0.0.1:{port}"))

                # ---- what the API refuses
                self.assertEqual(get(port, "/api/funnel", method="POST")[0], 405)
                self.assertEqual(get(port, "/api/funnel?last=0")[0], 400)
                self.assertEqual(get(port, "/api/nothing")[0], 404)
                self.assertEqual(d.terminate(), 0)
            # a daemon that is not there: status says so, exit 1
            gone = json.loads(self.ctl("status", "--http", f"127.0.0.1:{port}", "--json", code=1))
            self.assertFalse(gone["reachable"])
            self.assertIn(f"127.0.0.1:{port}", gone["error"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
