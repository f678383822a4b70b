"""test_user_records.py - the user record (docs/REDIS_KEYS.md) as funneld
reads it back, against a real redis-server and the embedded Kafka mock
cluster, with redis-cli and kcat as independent clients:

- a record written with other half-lives is carried over: the counts and
  the decayed values of the half-lives in both lists keep going, a new
  half-life starts at 0, and the next write uses the configured list;
- a value funneld cannot read is logged with its key and what is wrong,
  counted in stats user_records_unreadable, and the user starts afresh,
  without losing any other user.
"""

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
from harness import Daemon, RedisServer  # noqa: E402

T0 = 1767225600000
PREFIX = "fd:v2:"


def old_record(clicks):
    """A record of user with `clicks` clicks at T0, written with half-lives
    1h,7d (funneld below runs with 1h,1d)."""
    fixed = [clicks, 0, 0, T0, T0, 0, 0, 0, 1, 0, 0, 0, 0, T0, T0, 2]
    fixed = [str(v) for v in fixed] + ["0.000000", "0.000000"]
    per_hl = [f"{clicks}.000000", "0.000000", "0.000000", "0.000000", "1.000000"]
    return " ".join(["u1", "1h,7d"] + fixed + per_hl + per_hl)


class UserRecords(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="fd-records-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_other_half_lives_and_unreadable_values(self):
        with RedisServer() as redis:
            port = str(redis.port)

            def cli(*a):
                r = subprocess.run(["redis-cli", "-p", port, *a], capture_output=True,
                                   text=True, timeout=10)
                self.assertEqual(r.returncode, 0, r.stderr)
                return r.stdout.strip()

            self.assertEqual(cli("SET", PREFIX + "user:ua", old_record(5)), "OK")
            self.assertEqual(cli("SET", PREFIX + "user:ub", "u1 1h,1d 7 not-a-number"), "OK")
            cfg = harness.write_config(self.tmp / "rec.yaml", {
                "kafka.brokers": "embedded", "kafka.partitions": 2, "redis.url": redis.url,
                "input.format": "json", "input.schema": fdtest.schema_path(),
                "kafka.metrics_schema": fdtest.metrics_schema_path(),
                "kafka.alerts_schema": fdtest.alerts_schema_path(),
                "features.half_lives": "1h,1d"})
            with Daemon(cfg) as d:
                m = d.wait_for_log(r"embedded Kafka mock cluster listening at (\S+)")
                lines = "".join(
                    f'{u}:{{"event_id":"e{u}","user_id":"{u}","ts":{T0},"type":"click"}}\n'
                    for u in ("ua", "ub", "uc"))
                p = subprocess.run(["kcat", "-b", m.group(1), "-P", "-t", "events", "-K:"],
                                   input=lines.encode(), capture_output=True, timeout=60)
                self.assertEqual(p.returncode, 0, p.stderr)
                harness.wait_until(lambda: cli("HGET", PREFIX + "stats", "events") == "3", 30,
                                   what="3 events counted (redis-cli)")
                log = d.log_text()
                self.assertEqual(d.terminate(), 0)

            a = fdtest.parse_user_record(cli("GET", PREFIX + "user:ua"))
            self.assertEqual(a["click"], "6")           # 5 carried over + 1
            self.assertEqual(a["click_1h"], "6.000000")  # in both lists: kept (same time)
            self.assertEqual(a["click_1d"], "1.000000")  # new half-life: from 0
            self.assertNotIn("click_7d", a)              # written with the configured list
            self.assertTrue(cli("GET", PREFIX + "user:ua").startswith("u1 1h,1d "))

            b = fdtest.parse_user_record(cli("GET", PREFIX + "user:ub"))
            self.assertEqual(b["click"], "1")  # afresh
            self.assertIn(f"key {PREFIX}user:ub: unreadable user record", log)
            self.assertIn("not-a-number", log)
            self.assertEqual(cli("HGET", PREFIX + "stats", "user_records_unreadable"), "1")
            self.assertEqual(fdtest.parse_user_record(cli("GET", PREFIX + "user:uc"))["click"],
                             "1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
