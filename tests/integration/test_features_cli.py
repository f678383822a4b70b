"""test_features_cli.py - `funnelctl features` from outside: hand-made Avro
events for two users go through a real funneld into a real redis-server,
then the tool reads the users back. Its values are checked against values
worked out by hand from docs/FEATURES.md (decay, sessions, revenue,
recency, tenure, session stage at --at), --json against the text output,
--names against the values, the stored fields against redis-cli HGET, and
the errors: unknown user (exit 1, others still printed), bad --at (exit 2),
unreachable Redis, config errors, half-lives that do not match what
funneld wrote.

funneld runs once per process (setUpClass): each test method is its own
ctest entry and gets its own Redis, broker and funneld.
"""

import json
import math
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

import avro_enc as A  # noqa: E402
import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import Broker, Daemon, RedisServer, build_dir  # noqa: E402

FUNNELCTL = str(build_dir() / "funnelctl")
TOPIC = "events"
T = 1767225600000  # 2026-01-01T00:00:00Z
MIN = 60000
HOUR = 3600000
U1 = "u1"
U2 = "shop:u 2"  # a colon and a space: the key is built from bytes, not a format
HALF_LIVES = "1h,1d"  # not the default: -c must carry it to the tool
N_VALUES = 2 * 5 + 15  # 5 decayed values per half-life, 15 once

EVENTS = [  # (user, event)
    (U1, A.event(event_id="a1", user_id=U1, ts=T, type="CLICK", item_id="i1", session_id="s1",
                 category="c1")),
    (U1, A.event(event_id="a2", user_id=U1, ts=T + HOUR, type="CLICK", item_id="i2",
                 session_id="s2", category="c1")),
    (U2, A.event(event_id="b1", user_id=U2, ts=T + 10 * MIN, type="CART", item_id="i3",
                 session_id="x1", category="c2")),
    (U2, A.event(event_id="b2", user_id=U2, ts=T + 20 * MIN, type="PURCHASE", item_id="i3",
                 session_id="x1", category="c2", price=9.99, quantity=2)),
]


def round6(x):
    """funneld keeps decayed values in whole millionths."""
    return round(x * 1e6) / 1e6


def sketch_estimate(bits):
    z = 64 - bin(bits).count("1")
    return -64 * math.log(z / 64)


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("FUNNELD_REDIS_PASSWORD", None)
    e.update(env or {})
    return subprocess.run([FUNNELCTL, "features", *args], capture_output=True, text=True,
                          timeout=60, env=e)


def parse_text(out):
    """Text output -> [(user, at, [(name, value)])]."""
    users = []
    for block in out.strip("\n").split("\n\n"):
        lines = block.split("\n")
        m = re.fullmatch(r"user (.+) at (\d+)", lines[0])
        assert m, f"bad header {lines[0]!r}"
        vals = []
        for line in lines[1:]:
            name, value = line.split(" ")
            vals.append((name, float(value)))
        users.append((m.group(1), int(m.group(2)), vals))
    return users


class FeaturesCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="fd-featcli-"))
        cls.redis = RedisServer()
        try:
            with Broker(partitions=2) as kafka:
                from confluent_kafka import Producer
                p = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all"})
                errors = []
                for user, value in EVENTS:
                    p.produce(TOPIC, key=user.encode(), value=value,
                              on_delivery=lambda err, msg: err and errors.append(err))
                assert p.flush(30) == 0 and not errors, f"produce failed: {errors}"
                cls.cfg = fdtest.daemon_config(cls.tmp / "fd.yaml", kafka.bootstrap,
                                               cls.redis.url,
                                               **{"features.half_lives": HALF_LIVES})
                r = cls.redis.client()
                with Daemon(cls.cfg) as d:
                    fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=60, daemon=d)
                    assert d.terminate() == 0, "funneld did not exit 0"
        except BaseException:
            cls.redis.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()
        shutil.rmtree(cls.tmp, True)

    def features(self, *args, expect=0, **kw):
        r = run("-c", str(self.cfg), *args, **kw)
        self.assertEqual(r.returncode, expect, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def vector(self, user, *args):
        """{name: value} and at of one user, text output."""
        [(uid, at, vals)] = parse_text(self.features(*args, user).stdout)
        self.assertEqual(uid, user)
        return dict(vals), at

    def hget(self, user, field):
        """A field of the user record, read with redis-cli (a client that
        shares no code with funneld or the tool) and decoded as
        docs/REDIS_KEYS.md says."""
        r = subprocess.run(["redis-cli", "-p", str(self.redis.port), "GET",
                            fdtest.PREFIX + "user:" + user],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        return fdtest.parse_user_record(r.stdout.strip())[field]

    def assertValues(self, got, want, rel=1e-9):
        for name, w in want.items():
            self.assertIn(name, got)
            self.assertTrue(math.isclose(got[name], w, rel_tol=rel, abs_tol=1e-9),
                            f"{name}: got {got[name]!r}, want {w!r}")

    def test_values_by_hand(self):
        v, at = self.vector(U1)  # default: at the user's last event
        self.assertEqual(at, T + HOUR)
        self.assertEqual(v["click_1h"], 1.5)  # 1 at T decayed one half-life, plus 1
        self.assertValues(v, {
            "sessions_1h": 1.5, "cart_1h": 0, "purchase_1h": 0, "revenue_1h": 0,
            "click_1d": round6(2 ** (-1 / 24)) + 1, "sessions_1d": round6(2 ** (-1 / 24)) + 1,
            "revenue_total": 0, "aov": 0, "recency_s": 0, "recency_cart_s": -1,
            "recency_purchase_s": -1, "session_gap_mean_s": 3600, "cart_abandonment": 0,
            "tenure_s": 3600, "session_stage": 2, "clicks_total": 2, "carts_total": 0,
            "purchases_total": 0, "sessions_total": 2,
            "categories_distinct": sketch_estimate(1 << 63),  # one category: one bit
        })
        items = int(self.hget(U1, "items_sketch"))
        self.assertIn(bin(items).count("1"), (1, 2))
        self.assertValues(v, {"items_distinct": sketch_estimate(items)})

        # half an hour later (epoch ms): decayed by 2^-0.5; the session is over
        # (T >= last + session.gap of 30 min)
        v, at = self.vector(U1, "--at", str(T + HOUR + 30 * MIN))
        self.assertEqual(at, T + HOUR + 30 * MIN)
        self.assertValues(v, {"click_1h": 1.5 * 2 ** -0.5, "sessions_1h": 1.5 * 2 ** -0.5,
                              "recency_s": 1800, "tenure_s": 5400, "session_stage": 0,
                              "clicks_total": 2, "sessions_total": 2})
        v, _ = self.vector(U1, "--at", str(T + HOUR + 29 * MIN))
        self.assertEqual(v["session_stage"], 2)
        v, _ = self.vector(U1, "--at", str(T + HOUR + 30 * MIN), "--session-gap", "1h")
        self.assertEqual(v["session_stage"], 2)

        v, at = self.vector(U2)
        self.assertEqual(at, T + 20 * MIN)
        self.assertValues(v, {
            "cart_1h": round6(2 ** (-1 / 6)), "purchase_1h": 1, "revenue_1h": 19.98,
            "sessions_1h": round6(2 ** (-1 / 6)), "revenue_total": 19.98, "aov": 19.98,
            "recency_s": 0, "recency_cart_s": 600, "recency_purchase_s": 0,
            "session_gap_mean_s": 0, "cart_abandonment": 0, "tenure_s": 600,
            "session_stage": 4, "clicks_total": 0, "carts_total": 1, "purchases_total": 1,
            "sessions_total": 1,
        })
        # RFC 3339, one hour after the purchase
        v, at = self.vector(U2, "--at", "2026-01-01T01:20:00Z")
        self.assertEqual(at, T + 80 * MIN)
        self.assertValues(v, {"revenue_1h": 9.99, "purchase_1h": 0.5, "recency_s": 3600,
                              "recency_cart_s": 4200, "recency_purchase_s": 3600,
                              "tenure_s": 4200, "session_stage": 0, "revenue_total": 19.98})
        # the same instant with an offset
        v2, at2 = self.vector(U2, "--at", "2026-01-01T02:20:00.000+01:00")
        self.assertEqual((v2, at2), (v, at))
        # before the last event: the values are as of last_ts, and "at" says so
        v, at = self.vector(U2, "--at", str(T))
        self.assertEqual(at, T + 20 * MIN)
        self.assertEqual(v["recency_s"], 0)

    def test_stored_fields_agree_with_redis_cli(self):
        v, at = self.vector(U1)
        self.assertEqual(self.hget(U1, "click_1h"), "1.500000")
        self.assertEqual(v["click_1h"], float(self.hget(U1, "click_1h")))
        self.assertEqual(v["click_1d"], float(self.hget(U1, "click_1d")))
        self.assertEqual(at, int(self.hget(U1, "last_ts")))
        self.assertEqual(v["sessions_total"], int(self.hget(U1, "sessions")))
        v, at = self.vector(U2)
        self.assertEqual(self.hget(U2, "revenue_cents"), "1998")
        self.assertEqual(v["revenue_total"], 1998 / 100)
        self.assertEqual(v["cart_1h"], float(self.hget(U2, "cart_1h")))
        self.assertEqual(v["tenure_s"], (at - int(self.hget(U2, "first_ts"))) / 1000)

    def test_json_equals_text(self):
        args = ("--at", str(T + 2 * HOUR), U1, U2)
        text = parse_text(self.features(*args).stdout)
        lines = self.features("--json", *args).stdout.splitlines()
        self.assertEqual(len(lines), 2, "one JSON object per user per line")
        objs = [json.loads(line) for line in lines]
        for o in objs:
            self.assertEqual(set(o), {"user", "at", "version", "features"})
            self.assertEqual(o["version"], 1)
        as_json = [(o["user"], o["at"], list(o["features"].items())) for o in objs]
        self.assertEqual(as_json, text)
        self.assertEqual([u for u, _, _ in text], [U1, U2])
        self.assertTrue(math.isclose(objs[0]["features"]["click_1h"], 0.75, rel_tol=1e-9))

    def test_names(self):
        names = self.features("--names").stdout.splitlines()
        self.assertEqual(len(names), N_VALUES)
        [(_, _, vals)] = parse_text(self.features(U1).stdout)
        self.assertEqual(names, [n for n, _ in vals])
        self.assertEqual(names[:5], ["click_1h", "cart_1h", "purchase_1h", "revenue_1h",
                                     "sessions_1h"])
        self.assertEqual(names[-1], "sessions_total")
        self.assertEqual(json.loads(self.features("--names", "--json").stdout), names)
        # no Redis needed: a URL where nothing listens
        r = run("--names", "--redis", f"redis://127.0.0.1:{harness.free_port()}/0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 4 * 5 + 15, "funneld's default half-lives")

    def test_unknown_user(self):
        r = self.features(U1, "nobody", U2, expect=1)
        self.assertIn("funnelctl features: user 'nobody' not found (no key fd:v2:user:nobody)",
                      r.stderr)
        self.assertEqual([u for u, _, _ in parse_text(r.stdout)], [U1, U2],
                         "the other users are still printed")
        r = self.features("--prefix", "other:", U1, expect=1)
        self.assertIn("user 'u1' not found (no key other:user:u1)", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_usage_errors(self):
        for args in (["--at", "yesterday", U1], ["--at", "2026-13-01T00:00:00Z", U1],
                     ["--at"], [], ["--no-such-option", U1], ["--half-lives", "1h,1h", U1],
                     ["--session-gap", "0", U1], ["--redis", "http://x", U1],
                     ["--names", U1], [""]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, f"{args}: {r.stderr}")
            self.assertEqual(r.stdout, "", args)
            self.assertIn("funnelctl features", r.stderr, args)
        r = run("--at", "yesterday", U1)
        self.assertIn("--at: invalid value 'yesterday'", r.stderr)
        h = run("--help")
        self.assertEqual(h.returncode, 0)
        for opt in ("--config", "--redis", "--prefix", "--half-lives", "--session-gap", "--at",
                    "--json", "--names"):
            self.assertIn(opt, h.stdout)

    def test_at_now(self):
        before = int(time.time() * 1000)
        [(_, at, vals)] = parse_text(self.features("--at", "now", U1).stdout)
        after = int(time.time() * 1000)
        self.assertGreaterEqual(at, before)
        self.assertLessEqual(at, after)
        self.assertEqual(dict(vals)["recency_s"], (at - (T + HOUR)) / 1000)

    def test_config_and_overrides(self):
        url = self.redis.url
        want = self.features("--at", str(T + 2 * HOUR), U1).stdout
        # funneld's defaults (4 half-lives) do not match what funneld wrote with 1h,1d
        r = run("--redis", url, U1)
        self.assertEqual(r.returncode, 1)
        self.assertIn("has no half-life 7d (so no field click_7d)", r.stderr)
        self.assertEqual(r.stdout, "")
        # the same half-lives by option: the same output as with -c
        r = run("--redis", url, "--half-lives", HALF_LIVES, "--at", str(T + 2 * HOUR), U1)
        self.assertEqual((r.returncode, r.stdout), (0, want), r.stderr)
        # a subset of the stored half-lives: those values, unchanged
        r = run("--redis", url, "--half-lives", "1d", "--at", str(T + 2 * HOUR), U1)
        self.assertEqual(r.returncode, 0, r.stderr)
        [(_, _, sub)] = parse_text(r.stdout)
        [(_, _, full)] = parse_text(want)
        self.assertEqual(dict(sub)["click_1d"], dict(full)["click_1d"])
        self.assertNotIn("click_1h", dict(sub))
        # redis.key_prefix from the config, overridden by --prefix
        other = harness.write_config(self.tmp / "other.yaml", {
            "redis.url": url, "redis.key_prefix": "shop-a:", "features.half_lives": HALF_LIVES})
        r = run("-c", str(other), U1)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no key shop-a:user:u1", r.stderr)
        r = run("-c", str(other), "--prefix", "fd:v2:", "--at", str(T + 2 * HOUR), U1)
        self.assertEqual((r.returncode, r.stdout), (0, want), r.stderr)
        # unreachable Redis: exit 1, the URL named
        dead = f"redis://127.0.0.1:{harness.free_port()}/0"
        r = run("-c", str(self.cfg), "--redis", dead, U1)
        self.assertEqual(r.returncode, 1)
        self.assertIn(dead, r.stderr)
        self.assertEqual(r.stdout, "")
        # a config error as funneld prints it: FILE:LINE:COL: key: ...
        bad = self.tmp / "bad.yaml"
        bad.write_text("session:\n  gap: 5 minutes\n")
        r = run("-c", str(bad), U1)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, re.escape(str(bad)) + r":2:8: session\.gap: ")
        fd = subprocess.run([str(build_dir() / "funneld"), "--check-config", "-c", str(bad)],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stderr, fd.stderr)

    def test_password(self):
        with RedisServer(password="s3cret") as locked:
            cfg = harness.write_config(self.tmp / "pw.yaml", {"redis.url": locked.url})
            r = run("-c", str(cfg), U1)
            self.assertEqual(r.returncode, 1)
            self.assertIn(locked.url, r.stderr)
            self.assertNotIn("not found", r.stderr)
            # the password from funneld's environment variable: connected, no such user
            r = run("-c", str(cfg), U1, env={"FUNNELD_REDIS_PASSWORD": "s3cret"})
            self.assertEqual(r.returncode, 1)
            self.assertIn("user 'u1' not found (no key fd:v2:user:u1)", r.stderr)
            pw = self.tmp / "pw.txt"
            pw.write_text("s3cret\n")
            cfg = harness.write_config(self.tmp / "pwf.yaml", {"redis.url": locked.url,
                                                                "redis.password_file": str(pw)})
            r = run("-c", str(cfg), U1)
            self.assertIn("user 'u1' not found", r.stderr)


if __name__ == "__main__":
    unittest.main()
