"""test_http.py - the HTTP listener (http.listen; docs/OPERATIONS.md), from
outside with urllib and Prometheus's own promtool:

- /metrics is valid Prometheus text (`promtool check metrics`), and its
  counters agree with the stream: events by type, dead letters by reason,
  lag 0 once caught up, the write-latency histogram;
- /healthz and /readyz answer 200 with a reason; /readyz answers 503 while
  Redis is down and 200 again once it is back;
- other paths 404, other methods 405.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
from harness import SLOW, Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
EVENTS = 20000
BAD = 3


def get(port, path, method="GET"):
    """(status, body text) of one request."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text):
    """{(name, labels text): value} of the Prometheus text."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", ln)
        assert m, f"not a sample line: {ln!r}"
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


class Http(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-http-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_metrics_health_and_readiness(self):
        framed = self.tmp / "events.bin"
        truth = fdtest.gen(framed, self.tmp / "truth.json", events=EVENTS, users=1000, seed=8)
        types = {t: sum(u[t] for u in truth["users"].values())
                 for t in ("click", "cart", "purchase")}
        with RedisServer(appendonly=True) as redis, Broker(partitions=4) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"redis.flush_interval_ms": 100,
                                          "redis.backoff_max_ms": 300})
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=10000)
            with Daemon(cfg) as d:
                try:
                    m = d.wait_for_log(r"http: listening on 127\.0\.0\.1:0 \(port (\d+)\)",
                                       timeout=30)
                    port = int(m.group(1))
                    d.wait_for_log(r"partition=\d+ assigned, starting at", timeout=30)
                    producer.start()
                    producer.join(60 * SLOW)
                    from confluent_kafka import Producer
                    p = Producer({"bootstrap.servers": kafka.bootstrap})
                    for i in range(BAD):
                        p.produce(TOPIC, key=f"bad{i}", value=b"\x00\x01not avro")
                    self.assertEqual(p.flush(30), 0)
                    r = redis.client()
                    fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                finally:
                    producer.stop()

                def scraped():
                    st, body = get(port, "/metrics")
                    self.assertEqual(st, 200)
                    return samples(body), body
                # the copy is published every second: wait until it shows the end
                self.assertTrue(fdtest.sleep_until(
                    lambda: scraped()[0].get(("funneld_dead_letters_total",
                                              '{reason="avro_decode"}')) == BAD
                    and scraped()[0].get(("funneld_messages_total", "")) == EVENTS + BAD, 15),
                    scraped()[1][:3000])
                s, body = scraped()
                check = subprocess.run(["promtool", "check", "metrics"], input=body,
                                       capture_output=True, text=True)
                self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
                for t, n in types.items():
                    self.assertEqual(s[("funneld_events_total", f'{{type="{t}"}}')], n, t)
                self.assertEqual(s[("funneld_partitions_assigned", "")], 4)
                lags = {k[1]: v for k, v in s.items() if k[0] == "funneld_consumer_lag_messages"}
                self.assertEqual(len(lags), 4, lags)
                self.assertEqual(set(lags.values()), {0.0}, lags)
                writes = s[("funneld_redis_write_seconds_count", "")]
                self.assertGreater(writes, 0)
                self.assertEqual(s[("funneld_redis_write_seconds_bucket", '{le="+Inf"}')], writes)
                self.assertEqual(s[("funneld_up", "")], 1)
                self.assertEqual(s[("funneld_ready", "")], 1)
                self.assertGreater(s[("funneld_users_in_memory", "")], 0)
                self.assertGreater(s[("funneld_recs_positives_total", "")], 0)
                self.assertGreaterEqual(s[("funneld_rebalances_total", "")], 1)
                st, text = get(port, "/healthz")
                self.assertEqual((st, text.startswith("ok")), (200, True), text)
                st, text = get(port, "/readyz")
                self.assertEqual((st, text), (200, "ready: 4 partition(s) assigned, "
                                               "Redis takes writes\n"))
                self.assertEqual(get(port, "/nope")[0], 404)
                self.assertEqual(get(port, "/metrics", method="POST")[0], 405)
                # Redis goes away: not ready (the next write fails), alive
                redis.kill()
                more = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=2000)
                more.start()
                try:
                    self.assertTrue(fdtest.sleep_until(
                        lambda: get(port, "/readyz")[0] == 503, 30), get(port, "/readyz"))
                    st, text = get(port, "/readyz")
                    self.assertIn("Redis", text)
                    self.assertEqual(get(port, "/healthz")[0], 200, "alive while Redis is down")
                    redis.start()
                    self.assertTrue(fdtest.sleep_until(
                        lambda: get(port, "/readyz")[0] == 200, 60), get(port, "/readyz"))
                finally:
                    more.stop()
                self.assertEqual(d.terminate(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
