"""test_bench.py - `funnelctl bench` runs end to end at a tiny size and its
JSON is one well-formed object with positive figures that agree with each
other. Speed is measured, never asserted here.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SLOW, build_dir  # noqa: E402

FUNNELCTL = str(build_dir() / "funnelctl")
POSITIVE = ["seconds", "events_per_s", "raw_consume_events_per_s", "ratio",
            "core_events_per_s_per_core", "redis_commands_per_event", "peak_rss_bytes",
            "bytes_per_user", "workers", "users", "partitions", "steady_events_per_s",
            "raw_steady_events_per_s", "steady_ratio", "funneld_cpu_seconds",
            "funneld_cpu_s_per_million_events", "redis_cpu_seconds",
            "redis_cpu_s_per_million_events"]


class Bench(unittest.TestCase):
    def test_tiny_run_json(self):
        r = subprocess.run([FUNNELCTL, "bench", "--json", "--events", "20000", "--users", "2000",
                            "--partitions", "4"],
                           capture_output=True, text=True, timeout=300 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 1, "one JSON object on stdout: " + r.stdout)
        j = json.loads(lines[0])
        self.assertIsInstance(j, dict)
        self.assertEqual(j["events"], 20000)
        self.assertEqual(j["users"], 2000)
        self.assertEqual(j["partitions"], 4)
        self.assertEqual(j["format"], "avro")
        for k in POSITIVE:
            if k == "bytes_per_user" and os.environ.get("FD_SANITIZE"):
                continue  # mallinfo2 means nothing under ASan's allocator
            self.assertIn(k, j)
            v = j[k]
            self.assertTrue(isinstance(v, (int, float)) and not isinstance(v, bool), (k, v))
            self.assertTrue(math.isfinite(v) and v > 0, (k, v))
        self.assertIn("kcat_events_per_s", j)
        kc = j["kcat_events_per_s"]
        self.assertTrue(kc is None or kc > 0, kc)
        self.assertAlmostEqual(j["ratio"], j["events_per_s"] / j["raw_consume_events_per_s"],
                               delta=1e-3 * max(1.0, j["ratio"]))
        self.assertAlmostEqual(j["steady_ratio"],
                               j["steady_events_per_s"] / j["raw_steady_events_per_s"],
                               delta=1e-3 * max(1.0, j["steady_ratio"]))
        # steady state leaves the start-up out: faster than the whole run
        self.assertGreater(j["raw_steady_events_per_s"], j["raw_consume_events_per_s"])
        self.assertGreater(j["steady_events_per_s"], j["events_per_s"])
        self.assertAlmostEqual(j["funneld_cpu_s_per_million_events"],
                               j["funneld_cpu_seconds"] * 1e6 / j["events"],
                               delta=0.01 * j["funneld_cpu_s_per_million_events"] + 0.01)
        self.assertAlmostEqual(j["events_per_s"], j["events"] / j["seconds"],
                               delta=0.01 * j["events_per_s"])
        self.assertEqual(j["funneld_events_counted"], 20000)
        self.assertIsInstance(j["workers"], int)

    def test_peer_runs_on_the_same_topic(self):
        """--peer: tools/peer_consumer.py (confluent_kafka + redis-py) reads the
        whole topic after funneld, and the ratio funneld / peer is reported."""
        for fmt in ("avro", "json"):
            r = subprocess.run([FUNNELCTL, "bench", "--json", "--peer", "--no-kcat",
                                "--format", fmt, "--events", "20000", "--users", "2000",
                                "--partitions", "4", "--reps", "1"],
                               capture_output=True, text=True, timeout=300 * SLOW)
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            j = json.loads(r.stdout)
            self.assertGreater(j["peer_steady_events_per_s"], 0, fmt)
            self.assertGreater(j["peer_cpu_s_per_million_events"], 0, fmt)
            self.assertAlmostEqual(j["funneld_vs_peer_steady"],
                                   j["steady_events_per_s"] / j["peer_steady_events_per_s"],
                                   delta=0.01 * j["funneld_vs_peer_steady"] + 0.001)
            self.assertIn("python peer", r.stderr, "the table (on stderr with --json)")
        # without --peer: no peer figures
        r = subprocess.run([FUNNELCTL, "bench", "--core-only", "--json", "--events", "2000",
                            "--users", "200", "--reps", "1"],
                           capture_output=True, text=True, timeout=60 * SLOW)
        self.assertNotIn("peer_seconds", json.loads(r.stdout))

    def test_rss_users_fit(self):
        """--rss-users: one funneld run per user count, each with its peak RSS,
        and a least-squares line through them whose numbers agree with the
        points."""
        # a 16x spread of users, so that the growth (~600 bytes a user, ~18 MB
        # over the range) stands above the run-to-run jitter of the peak
        # (a few MiB) and the slope's sign means something
        r = subprocess.run([FUNNELCTL, "bench", "--json", "--rss-users", "2000,8000,32000",
                            "--events", "20000", "--partitions", "4", "--timeout", "120"],
                           capture_output=True, text=True, timeout=400 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["mode"], "rss_users")
        pts = j["points"]
        self.assertEqual([p["users"] for p in pts], [2000, 8000, 32000])
        for p in pts:
            self.assertEqual(p["events"], max(20000, 5 * p["users"]), p)
            self.assertEqual(p["funneld_events_counted"], p["events"], p)
            self.assertTrue(0 < p["users_present"] <= p["users"], p)
            # a funneld with its libraries and threads takes more than 8 MiB,
            # and less than 4 GiB on 160,000 events
            self.assertTrue(8 << 20 < p["peak_rss_bytes"] < 4 << 30, p)
            self.assertGreater(p["seconds"], 0, p)
        xs = [p["users_present"] for p in pts]
        self.assertEqual(len(set(xs)), 3, "three distinct x: " + str(xs))
        # the fit, recomputed from the points
        ys = [p["peak_rss_bytes"] for p in pts]
        mx, my = sum(xs) / 3, sum(ys) / 3
        slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
                 / sum((x - mx) ** 2 for x in xs))
        self.assertAlmostEqual(j["slope_bytes_per_user"], slope, delta=0.1 + 1e-6 * abs(slope))
        self.assertAlmostEqual(j["fixed_bytes"], my - slope * mx, delta=1 + 1e-6 * my)
        self.assertAlmostEqual(j["fixed_mib"], j["fixed_bytes"] / 1048576, delta=0.06)
        self.assertGreater(j["slope_bytes_per_user"], 0)
        self.assertGreater(j["fixed_bytes"], 0)
        self.assertTrue(0 <= j["r2"] <= 1, j["r2"])
        self.assertIn("fixed cost", r.stderr, "the table (on stderr with --json)")

    def test_rss_users_needs_two_counts(self):
        r = subprocess.run([FUNNELCTL, "bench", "--rss-users", "2000"],
                           capture_output=True, text=True, timeout=30 * SLOW)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("at least two", r.stderr)

    def test_core_only(self):
        r = subprocess.run([FUNNELCTL, "bench", "--core-only", "--json", "--events", "5000",
                            "--users", "500", "--reps", "1"],
                           capture_output=True, text=True, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["events"], 5000)
        self.assertGreater(j["core_ns_per_event"], 0)
        self.assertGreater(j["core_events_per_s_per_core"], 0)
        self.assertNotIn("ratio", j)

    def test_bench_model_json(self):
        """bench-model learns (mean prequential p is a probability strictly
        inside 0..1) and times every figure it names."""
        r = subprocess.run([FUNNELCTL, "bench-model", "--json", "--examples", "20000",
                            "--reps", "1", "--batch", "256"],
                           capture_output=True, text=True, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual((j["inputs"], j["examples"], j["batch"]), (64, 20000, 256))
        for k in ("learn_ns_per_example", "predict_ns_per_example", "transform_ns_per_example",
                  "batch_loop_ns_per_example", "batch_dgemv_ns_per_example"):
            self.assertGreater(j[k], 0, k)
        self.assertIn(j["batch_faster"], ("loop", "dgemv"))
        self.assertTrue(0.05 < j["mean_p"] < 0.95, j["mean_p"])
        # the recommendation model's figures (models/mf.h)
        self.assertEqual((j["mf_k"], j["mf_negatives"], j["mf_items"]), (32, 4, 100000))
        for k in ("mf_update_ns", "mf_top10_sgemv_ms", "mf_top10_loop_ms", "mf_top10_select_ms"):
            self.assertGreater(j[k], 0, k)
        self.assertIsInstance(j["mf_top10_same"], bool)
        bad = subprocess.run([FUNNELCTL, "bench-model", "--examples", "0"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--examples", bad.stderr)
        # fewer inputs (funneld's model has 35): 7 is no multiple of 4 or 8,
        # the plain loop's remainder and the model's padding both run
        r = subprocess.run([FUNNELCTL, "bench-model", "--json", "--examples", "20000",
                            "--reps", "1", "--batch", "256", "--inputs", "7"],
                           capture_output=True, text=True, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["inputs"], 7)
        self.assertGreater(j["learn_ns_per_example"], 0)
        self.assertTrue(0.05 < j["mean_p"] < 0.95, j["mean_p"])
        bad = subprocess.run([FUNNELCTL, "bench-model", "--inputs", "65"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--inputs", bad.stderr)

    def test_preload_reaches_funneld_only(self):
        """--preload runs funneld with LD_PRELOAD=LIB (the report names it)
        and funneld still counts every event under that allocator (in a
        sanitizer build, where no allocator can be preloaded, the bench
        reports funneld's exit and its reason); a path that does not exist
        is a usage error naming it."""
        lib = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"  # tools/setup.sh installs libjemalloc2
        bad = subprocess.run([FUNNELCTL, "bench", "--preload", "/nonexistent/libx.so"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("/nonexistent/libx.so", bad.stderr)
        r = subprocess.run([FUNNELCTL, "bench", "--json", "--no-kcat", "--events", "20000",
                            "--users", "2000", "--reps", "1", "--preload", lib],
                           capture_output=True, text=True, timeout=300 * SLOW)
        self.assertIn("LD_PRELOAD=" + lib, r.stderr)
        if os.environ.get("FD_SANITIZE"):
            # A sanitizer runtime must come first: no other allocator can be
            # preloaded into this funneld (ASan refuses, TSan crashes). The
            # bench must report that funneld died, not hang or print figures.
            self.assertEqual(r.returncode, 1, r.stderr[-3000:])
            self.assertRegex(r.stderr, r"funneld exited \((exit code|killed by signal) \d+\)")
            self.assertEqual(r.stdout, "")
            return
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        j = json.loads(r.stdout)
        self.assertEqual(j["preload"], lib)
        self.assertEqual(j["funneld_events_counted"], 20000)

    def test_bench_ab_alternates_variants(self):
        """tools/bench_ab.sh runs the variants round by round and prints one
        line of figures per run; a failed run says FAILED with its log."""
        script = str(Path(__file__).resolve().parents[2] / "tools" / "bench_ab.sh")
        out = Path(tempfile.mkdtemp(prefix="fd-ab-"))
        self.addCleanup(shutil.rmtree, out, True)
        env = dict(os.environ, FUNNELCTL=FUNNELCTL, OUT=str(out))
        tiny = "--events 20000 --users 2000"
        r = subprocess.run([script, "1", f"a|{tiny}", f"b|{tiny} --workers 1",
                            "bad|--events 0"],
                           capture_output=True, text=True, timeout=300 * SLOW, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual([ln.split()[0] for ln in lines], ["a", "b", "bad"], r.stdout)
        for ln in lines[:2]:
            self.assertIn("counted=20000", ln)
            self.assertRegex(ln, r"steady_ratio=\d+\.\d{3}")
        self.assertIn("FAILED", lines[2])
        self.assertTrue((out / "a.1.json").exists() and (out / "bad.1.err").exists())

    def test_write_shape_compares_three_shapes(self):
        """tools/bench_write_shape.py loads a private redis-server with each
        shape and reports redis-server's CPU per update: the partial write
        sends fewer bytes than the whole record, the hash holds far more
        memory per user; a bad value is a usage error."""
        script = str(Path(__file__).resolve().parents[2] / "tools" / "bench_write_shape.py")
        r = subprocess.run(["/usr/bin/python3", script, "--users", "2000", "--rounds", "1",
                            "--reps", "1", "--batch", "100"],
                           capture_output=True, text=True, timeout=120 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines()[1:]}
        self.assertEqual(sorted(rows), ["hset", "mset", "setrange"], r.stdout)
        # columns: shape rep changed "of" fields bytes cpu wall mem
        num = {k: [float(x) for x in v[5:]] for k, v in rows.items()}
        self.assertLess(num["setrange"][0], num["mset"][0], r.stdout)
        self.assertGreater(num["hset"][3], 2 * num["mset"][3], r.stdout)
        for k in num:
            self.assertGreater(num[k][1], 0, r.stdout)  # redis-server CPU was counted
        bad = subprocess.run(["/usr/bin/python3", script, "--changed", "0"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("out of range", bad.stderr)

    def test_bench_codec_json(self):
        """bench-codec checks the direct decoders against the libraries on
        every generated message (exit 1 if one differs), and the generator's
        JSON takes the direct path every time."""
        r = subprocess.run([FUNNELCTL, "bench-codec", "--json", "--events", "3000",
                            "--users", "300", "--reps", "1"],
                           capture_output=True, text=True, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual((j["events"], j["users"]), (3000, 300))
        self.assertEqual(j["json_direct_taken"], 3000)
        for k in ("avro_direct_ns", "avro_avroc_ns", "avro_peek_ns", "json_direct_ns",
                  "json_jansson_ns", "json_peek_ns"):
            self.assertGreater(j[k], 0, k)
        self.assertGreater(j["json_bytes_per_event"], j["avro_bytes_per_event"])
        self.assertIn("| json |", r.stderr)
        bad = subprocess.run([FUNNELCTL, "bench-codec", "--reps", "0"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--reps", bad.stderr)

    def test_usage_errors(self):
        for args in (["--events", "0"], ["--partitions", "x"], ["--format", "xml"], ["--nope"]):
            r = subprocess.run([FUNNELCTL, "bench", *args], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn("funnelctl bench", r.stderr)

    def test_sigint_stops_everything(self):
        """Interrupted mid-run: exit 130, no redis-server or funneld left behind."""
        p = subprocess.Popen([FUNNELCTL, "bench", "--events", "400000", "--users", "20000",
                              "--partitions", "8", "--no-kcat"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60 * SLOW
        err = ""
        # wait until funneld runs (not the short `funneld --check-config` before it)
        def running(kids):
            return any("funneld" in c and "--check-config" not in c for c in kids.values())
        while time.monotonic() < deadline:
            kids = _children(p.pid)
            if running(kids):
                break
            time.sleep(0.1)
        kids = _children(p.pid)
        self.assertTrue(running(kids), kids)
        self.assertTrue(any("redis-server" in c for c in kids.values()), kids)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60 * SLOW)
        self.assertEqual(p.returncode, 130, err)
        for pid in kids:
            self.assertFalse(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z",
                             f"child {pid} {kids[pid]} still running")


def _children(pid):
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            if ppid == pid:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    out[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            pass
    return out


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        return st[st.rindex(")") + 2]
    except OSError:
        return "gone"


if __name__ == "__main__":
    unittest.main()
