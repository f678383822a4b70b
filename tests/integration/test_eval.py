"""test_eval.py - `funnelctl eval` runs funneld's features and churn model
over a stream and reports prequential quality: on a generated stream with
planted churn the model must learn (AUC well above chance, episodes
labelled churned), the same input gives the same figures, and a recorded
JSON stream is read with bad lines reported by line number and skipped.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SLOW, build_dir  # noqa: E402

FUNNELCTL = str(build_dir() / "funnelctl")
DAY = 86400000
KEYS = ("auc", "logloss", "alert_precision", "alert_recall", "median_lead_time_s", "horizon_s",
        "examples", "positives", "alerts", "churned", "reactivated", "calibration")


def run_eval(*args, timeout=120):
    r = subprocess.run([FUNNELCTL, "eval", "--no-peers", "--json", *args], capture_output=True,
                       text=True, timeout=timeout * SLOW)
    return r


class Eval(unittest.TestCase):
    def test_generated_stream_learns_and_replays(self):
        args = ["--users", "400", "--events", "200000", "--span", "90d", "--seed", "7"]
        r = run_eval(*args)
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        for k in KEYS:
            self.assertIn(k, j)
        self.assertEqual(j["horizon_s"], 14 * 86400)
        self.assertEqual(j["events"], 200000)
        self.assertGreater(j["churned"], 20, "90 days of planted churn confirm some episodes")
        self.assertGreater(j["positives"], 0)
        self.assertLess(j["positives"], j["examples"])
        self.assertGreater(j["auc"], 0.8, "the model ranks churners above the others")
        self.assertTrue(0 < j["logloss"] < 0.69, j["logloss"])
        self.assertEqual(len(j["calibration"]), 10)
        self.assertEqual(sum(c["n"] for c in j["calibration"]), j["examples"])
        self.assertIn("events, day", r.stderr, "progress on stderr")
        again = run_eval(*args)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(json.loads(again.stdout), j, "the same stream gives the same figures")

    def test_csv_of_labelled_examples(self):
        with tempfile.TemporaryDirectory() as d:
            csv = os.path.join(d, "ex.csv")
            r = run_eval("--users", "200", "--events", "60000", "--span", "60d", "--csv", csv)
            self.assertEqual(r.returncode, 0, r.stderr)
            j = json.loads(r.stdout)
            with open(csv) as f:
                header = f.readline().rstrip("\n").split(",")
                rows = [ln.rstrip("\n").split(",") for ln in f]
            self.assertEqual(header[:3], ["ts", "label", "p"])
            self.assertIn("recency_s", header)
            self.assertEqual(len(rows), j["examples"])
            self.assertEqual(sum(int(x[1]) for x in rows), j["positives"])
            self.assertTrue(all(0.0 <= float(x[2]) <= 1.0 for x in rows))
            self.assertTrue(all(len(x) == len(header) for x in rows))

    def test_recorded_json_stream(self):
        """Three users active every day for 40 days; u3 stops after day 10:
        exactly one churned episode (u3's last), and a bad line is named."""
        t0 = 1767225600000
        lines = []
        for day in range(40):
            for u in ("u1", "u2", "u3"):
                if u == "u3" and day > 10:
                    continue
                lines.append(json.dumps({"event_id": f"{u}-{day}", "user_id": u,
                                         "type": "click", "ts": t0 + day * DAY + 3600000}))
        lines.insert(5, "{not json")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "events.jsonl")
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            r = run_eval("--input", path, "--format", "json")
            self.assertEqual(r.returncode, 0, r.stderr)
            j = json.loads(r.stdout)
            self.assertIn(f"{path}:6: skipped", r.stderr)
            self.assertEqual(j["events"], len(lines) - 1)
            self.assertEqual(j["churned"], 1)
            self.assertEqual(j["reactivated"], 0)
            self.assertGreater(j["positives"], 0)

    def test_usage_errors(self):
        for args in (["--input", "/nonexistent.jsonl", "--format", "json"],):
            r = subprocess.run([FUNNELCTL, "eval", "--no-peers", *args], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("/nonexistent.jsonl", r.stderr)
        for args in (["--input", "x"], ["--format", "json"], ["--users", "0"], ["--horizon", "5x"],
                     ["--churn-fraction", "2"], ["--nope"]):
            r = subprocess.run([FUNNELCTL, "eval", *args], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn("funnelctl eval", r.stderr)


if __name__ == "__main__":
    unittest.main()
