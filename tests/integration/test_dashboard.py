"""test_dashboard.py - the live dashboard at / (issue 13), loaded in headless
Chromium (Debian's chromium) against a funneld that processed a generated
stream: the page fills itself from /api/, the funnel numbers in its DOM
equal those in Redis, a screenshot is taken, and a user id that is markup
(`<img src=x onerror=...>`) shows as text: nothing of it runs.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from html import unescape
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import SLOW, Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
P = fdtest.PREFIX
XSS = "<img src=x onerror=\"document.title='pwned';document.body.dataset.pwned=1\">"


def chromium(*args, timeout=120):
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--no-first-run", *args],
                          capture_output=True, text=True, timeout=timeout * SLOW)


class Dashboard(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-dash-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_page_shows_what_redis_holds(self):
        framed = self.tmp / "events.bin"
        fdtest.gen(framed, self.tmp / "truth.json", events=20000, users=1000, seed=14)
        with RedisServer() as redis, Broker(partitions=2) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"churn.horizon": "1d", "churn.warmup_examples": 0})
            r = redis.client()
            self.assertEqual(harness.produce_framed(kafka.bootstrap, TOPIC, framed), 20000)
            with Daemon(cfg) as d:
                port = int(d.wait_for_log(r"http: listening on 127\.0\.0\.1:0 \(port (\d+)\)",
                                          timeout=30).group(1))
                fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, timeout=90, daemon=d)
                r.zadd(P + "churn:risk", {XSS: 2.0})
                url = f"http://127.0.0.1:{port}/"
                # what the page must show: the sessions of the last 30 1m windows
                members = [m for m in r.zrange(P + "funnel:open", 0, -1) +
                           r.zrange(P + "funnel:closed", 0, -1) if m.startswith("1m:")]
                starts = sorted({int(m[3:]) for m in members}, reverse=True)[:30]
                want = {}
                for st in ("visit", "click", "cart", "purchase"):
                    want[st] = sum(int(r.hget(f"{P}funnel:1m:{s}", f"sessions_{st}") or 0)
                                   for s in starts)
                self.assertGreater(want["visit"], 0)
                # the DOM once the page's script ran (virtual time lets its fetches finish)
                out = chromium("--virtual-time-budget=15000", "--dump-dom", url)
                self.assertEqual(out.returncode, 0, out.stderr[-2000:])
                dom = out.stdout
                self.assertIn('data-loaded="1"', dom, "the page filled itself from /api/: "
                              + dom[-1500:])
                for st, v in want.items():
                    m = re.search(rf'id="funnel-{st}" data-value="(\d+)"', dom)
                    self.assertIsNotNone(m, st)
                    self.assertEqual(int(m.group(1)), v, f"{st} sessions on the page")
                self.assertIn(f'id="funnel-n">{len(starts)}<', dom)
                # the planted id is text in the first row, and nothing of it ran
                cells = re.findall(r'<td class="mono user-id">(.*?)</td>', dom, re.S)
                self.assertGreater(len(cells), 1)
                self.assertEqual(unescape(cells[0]), XSS)
                self.assertNotIn("<img", dom.split("<body", 1)[1])
                self.assertNotIn("pwned", dom.replace(unescape(cells[0]), "").replace(cells[0], ""))
                self.assertIn("<title>funneld</title>", dom)
                # the other rows are Redis' ranking
                ranked = [m for m, _ in r.zrevrange(P + "churn:risk", 1, len(cells) - 1,
                                                     withscores=True)]
                self.assertEqual([unescape(c) for c in cells[1:]], ranked)
                # a screenshot of it
                png = self.tmp / "dashboard.png"
                out = chromium("--virtual-time-budget=15000", "--window-size=1200,1800",
                               f"--screenshot={png}", url)
                self.assertEqual(out.returncode, 0, out.stderr[-2000:])
                self.assertEqual(png.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
                self.assertGreater(png.stat().st_size, 10000)
                keep = os.environ.get("FD_DASHBOARD_PNG")
                if keep:
                    shutil.copy(png, keep)
                # the page is self-contained: no external script, style or font
                page = urllib_get(port, "/")
                self.assertNotRegex(page, r"(src|href)=\"https?://")
                self.assertEqual(d.terminate(), 0)


def urllib_get(port, path):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        assert resp.headers.get("Content-Security-Policy", "").startswith("default-src 'none'")
        return resp.read().decode()


if __name__ == "__main__":
    unittest.main(verbosity=2)
