"""test_replay.py - `funnelctl replay` produces real datasets to Kafka as
funneld events, in time order: MovieLens latest-small (read in
../shared/data, never copied) read back with an independent client and
compared with the CSV itself; every format's sample rows accepted, malformed
rows named by line and counted, --strict stopping before anything is
produced; pacing; `funnelctl eval` on the same formats; usage errors.

The Avro messages are decoded here by a small decoder written from
conf/schemas/event.avsc, not by funneld's codec.
"""

import csv
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import unittest
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import SLOW, Broker, build_dir, source_dir  # noqa: E402

FUNNELCTL = str(build_dir() / "funnelctl")
TYPES = ("click", "cart", "purchase")


def ml_ratings():
    """ratings.csv of MovieLens latest-small: beside the repository, in
    ../shared/data (FD_SOURCE_DIR/../shared when set)."""
    for root in (source_dir().parent, Path(__file__).resolve().parents[3]):
        p = root / "shared" / "data" / "ml-latest-small" / "ratings.csv"
        if p.exists():
            return p
    return None


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def long(self):
        shift = n = 0
        while True:
            c = self.b[self.i]
            self.i += 1
            n |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                return (n >> 1) ^ -(n & 1)

    def string(self):
        n = self.long()
        v = self.b[self.i:self.i + n]
        self.i += n
        return v.decode()

    def double(self):
        v = struct.unpack_from("<d", self.b, self.i)[0]
        self.i += 8
        return v


def decode_avro(value):
    """An event in the field order of conf/schemas/event.avsc."""
    with open(fdtest.schema_path()) as f:
        fields = json.load(f)["fields"]
    r = Reader(value)
    out = {}
    for fld in fields:
        t = fld["type"]
        if isinstance(t, list):  # ["null", X]
            out[fld["name"]] = None if r.long() == 0 else (
                r.double() if t[1] == "double" else r.string())
        elif isinstance(t, dict) and t["type"] == "enum":
            out[fld["name"]] = t["symbols"][r.long()].lower()
        elif isinstance(t, dict) or t in ("long", "int"):
            out[fld["name"]] = r.long()
        else:
            out[fld["name"]] = r.string()
    if r.i != len(value):
        raise ValueError(f"{len(value) - r.i} bytes left after the event")
    return out


def replay(*args, timeout=120):
    return subprocess.run([FUNNELCTL, "replay", "--schema", fdtest.schema_path(), *args],
                          capture_output=True, text=True, timeout=timeout * SLOW)


def produced(stdout):
    m = re.search(r"^  produced +(\d+) events", stdout, re.M)
    if not m:
        raise AssertionError(f"no 'produced' line in the summary:\n{stdout}")
    return int(m.group(1))


def skipped(stdout):
    """{reason: count} of the summary."""
    m = re.search(r"^  skipped +(\d+)", stdout, re.M)
    if not m:
        raise AssertionError(f"no 'skipped' line in the summary:\n{stdout}")
    out = {k: int(v) for k, v in re.findall(r"^    (\w+) +(\d+)$", stdout, re.M)}
    assert sum(out.values()) == int(m.group(1)), stdout
    return out


def read_json_events(path):
    return [(k.decode(), json.loads(v)) for k, v in harness.read_framed(path)]


# Each sample: the lines written (None marks nothing), the events expected
# for the good lines (in file order), and the bad lines {line number:
# reason}. Times are distinct so the expected order is by ts.
T0 = 1_700_000_000  # seconds

SAMPLES = {
    "movielens-udata": ("movielens", [
        f"196\t242\t3\t{T0 + 30}",
        f"186\t302\t4\t{T0 + 10}",
        f"22\t377\t1\t{T0 + 20}",
        f"244\t51\t5\t{T0}",
        "244\t51\tfive\t881250949",          # 5: non-numeric rating
        f"244\t51\t4",                        # 6: 3 fields
        f"x9\t51\t4\t{T0}",                  # 7: user not a number
        f"244\t51\t7\t{T0}",                  # 8: rating out of range
        f"244\t51\t4\t-5",                    # 9: bad timestamp
    ], [("196", "242", T0 + 30, "click"), ("186", "302", T0 + 10, "purchase"),
        ("22", "377", T0 + 20, "click"), ("244", "51", T0, "purchase")],
        {5: "bad_number", 6: "field_count", 7: "bad_number", 8: "bad_rating", 9: "bad_ts"}),
    "movielens-csv": ("movielens", [
        "userId,movieId,rating,timestamp",
        f"1,1,4.0,{T0 + 5}",
        f"1,3,3.5,{T0 + 1}",
        f"2,50,0.5,{T0 + 3}",
        "",
        f"2,50,4.5,{T0 + 2}",
        f"2,,4.5,{T0 + 2}",                  # 7: empty item
        f"3,10,4.0,{T0}.5",                  # 8: fractional timestamp
    ], [("1", "1", T0 + 5, "purchase"), ("1", "3", T0 + 1, "click"),
        ("2", "50", T0 + 3, "click"), ("2", "50", T0 + 2, "purchase")],
        {7: "bad_number", 8: "bad_ts"}),
    "taobao": ("taobao", [
        f"1,2268318,2520377,pv,{T0 + 4}",
        f"1,2333346,2520771,cart,{T0 + 3}",
        f"1,2576651,149192,buy,{T0 + 2}",
        f"100,3830808,4181361,fav,{T0 + 1}",
        f"100,3830808,4181361,like,{T0}",   # 5: unknown behaviour
        f"100,3830808,pv,{T0}",              # 6: 4 fields
        f"100,3830808,4181361,pv,{T0},x",   # 7: 6 fields
        f"100,3830808,4181361,pv,0",         # 8: ts 0
    ], [("1", "2268318", T0 + 4, "click", "2520377"), ("1", "2333346", T0 + 3, "cart", "2520771"),
        ("1", "2576651", T0 + 2, "purchase", "149192"),
        ("100", "3830808", T0 + 1, "click", "4181361")],
        {5: "unknown_behavior", 6: "field_count", 7: "field_count", 8: "bad_ts"}),
    "rees46": ("rees46", [
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,"
        "user_session",
        "2019-10-01 00:00:03 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,"
        "72d76fde-8bb3-4e00-8c23-a032dfed738c",
        "2019-10-01 00:00:01 UTC,cart,3900821,2053013552326770905,appliances.environment."
        "water_heater,aqua,33.20,554748717,9333dfbd-b87a-4708-9857-6336556b0fcc",
        "2019-10-01 00:00:02 UTC,remove_from_cart,3900821,2053013552326770905,,aqua,33.20,"
        "554748717,9333dfbd-b87a-4708-9857-6336556b0fcc",
        "2019-10-01 00:00:04 UTC,purchase,1004856,2053013555631882655,electronics.smartphone,"
        "samsung,130.76,543272936,8187d148-3c41-46d4-b0c0-9c08cd9dc564",
        "2019-10-01 00:00:05 UTC,purchase,1004856,2053013555631882655,electronics.smartphone,"
        "samsung,abc,543272936,8187d148",  # 6: price not a number
        "2019-13-01 00:00:05 UTC,view,1004856,1,,x,1.0,543272936,s",  # 7: bad month
        "2019-10-01 00:00:05 UTC,view,1004856,1,,x,-1.0,543272936,s",  # 8: negative price
        "2019-10-01 00:00:05 UTC,click,1004856,1,,x,1.0,543272936,s",  # 9: unknown type
        "2019-10-01 00:00:05 UTC,view,1004856,1,,x,1.0,543272936",  # 10: 8 fields
    ], [("541312140", "44600062", 1569888003000 // 1000, "click", "2103807459595387724",
         35.79, "72d76fde-8bb3-4e00-8c23-a032dfed738c"),
        ("554748717", "3900821", 1569888001, "cart", "appliances.environment.water_heater", 33.2,
         "9333dfbd-b87a-4708-9857-6336556b0fcc"),
        ("543272936", "1004856", 1569888004, "purchase", "electronics.smartphone", 130.76,
         "8187d148-3c41-46d4-b0c0-9c08cd9dc564")],
        {6: "bad_price", 7: "bad_ts", 8: "bad_price", 9: "unknown_behavior",
         10: "field_count"}),
    "json": ("json", [
        json.dumps({"event_id": "a", "user_id": "u1", "ts": (T0 + 2) * 1000, "type": "click",
                    "item_id": "i1"}),
        json.dumps({"event_id": "b", "user_id": "u2", "ts": (T0 + 1) * 1000,
                    "type": "purchase", "item_id": "i2", "price": 9.5, "quantity": 2}),
        "{not json",                                                          # 3
        json.dumps({"event_id": "c", "user_id": "", "ts": T0 * 1000, "type": "click"}),  # 4
        json.dumps({"event_id": "d", "user_id": "u3", "ts": T0 * 1000, "type": "view",
                    "item_id": "i3"}),
        json.dumps({"event_id": "e", "user_id": "u3", "ts": T0 * 1000, "type": "refund"}),  # 6
    ], [("u1", "i1", T0 + 2, "click"), ("u2", "i2", T0 + 1, "purchase"),
        ("u3", "i3", T0, "click")],
        {3: "json_syntax", 4: "bad_user_id", 6: "unknown_event_type"}),
}


def write_sample(d, name):
    fmt, lines, good, bad = SAMPLES[name]
    path = os.path.join(d, name + (".jsonl" if fmt == "json" else ".csv"))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return fmt, path, good, bad


class Replay(unittest.TestCase):
    def test_movielens_latest_small_to_kafka(self):
        path = ml_ratings()
        if path is None:
            self.skipTest("../shared/data/ml-latest-small/ratings.csv is not there")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 100836, "MovieLens latest-small has 100,836 ratings")
        want = Counter((r["userId"], r["movieId"], int(r["timestamp"]) * 1000,
                        "purchase" if float(r["rating"]) >= 4 else "click") for r in rows)
        purchases = sum(1 for r in rows if float(r["rating"]) >= 4)
        with Broker(partitions=4, topics=("events",)) as kafka:
            r = replay("--format", "movielens", "--brokers", kafka.bootstrap, "--topic",
                       "events", str(path), timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(produced(r.stdout), len(rows))
            self.assertEqual(skipped(r.stdout), {})
            self.assertIn("sorted: the file was not", r.stdout)
            self.assertRegex(r.stderr, r"ratings\.csv: 100836 rows read, 100836 events produced,"
                                       r" 0 skipped", "a plain progress line at the end")
            for p, (lo, hi) in fdtest.end_offsets(kafka.bootstrap, "events").items():
                self.assertEqual(lo, 0, f"the broker kept partition {p} whole")
            msgs = harness.consume_all(kafka.bootstrap, "events", timeout=120)
        self.assertEqual(len(msgs), len(rows))
        got, last, parts = Counter(), {}, Counter()
        for key, value, _, part, _ in msgs:
            ev = decode_avro(value)
            self.assertEqual(key.decode(), ev["user_id"], "keyed by user id")
            self.assertGreaterEqual(ev["ts"], last.get(part, 0),
                                    f"partition {part} in time order at {ev}")
            last[part] = ev["ts"]
            parts[part] += 1
            self.assertEqual(ev["quantity"], 1)
            self.assertIsNone(ev["price"])
            self.assertRegex(ev["event_id"], r"^movielens-\d+$")
            got[(ev["user_id"], ev["item_id"], ev["ts"], ev["type"])] += 1
        self.assertGreater(len(parts), 1, "610 users spread over the partitions")
        self.assertEqual(sum(1 for k in got.elements() if k[3] == "purchase"), purchases,
                         "rating >= 4 is a purchase")
        self.assertEqual(got, want, "users, items, times and types are the CSV's")

    def test_every_format_sample(self):
        with tempfile.TemporaryDirectory() as d:
            for name in SAMPLES:
                with self.subTest(name):
                    fmt, path, good, bad = write_sample(d, name)
                    out = os.path.join(d, name + ".framed")
                    r = replay("--format", fmt, "--out", out, "--output-format", "json", path)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(produced(r.stdout), len(good), r.stdout)
                    reasons = Counter(bad.values())
                    if name == "rees46":
                        reasons["remove_from_cart"] += 1
                    self.assertEqual(skipped(r.stdout), dict(reasons), r.stdout)
                    for line, reason in bad.items():
                        self.assertIn(f"{path}:{line}: skipped ({reason})", r.stderr)
                    self.assertEqual(len(re.findall(r": skipped \(", r.stderr)), len(bad),
                                     r.stderr)
                    evs = read_json_events(out)
                    want = sorted(good, key=lambda g: g[2])
                    self.assertEqual([e["ts"] for _, e in evs], [g[2] * 1000 for g in want],
                                     "in time order")
                    for (key, e), g in zip(evs, want):
                        self.assertEqual(key, e["user_id"])
                        self.assertEqual((e["user_id"], e["item_id"], e["type"]),
                                         (g[0], g[1], g[3]))
                        if fmt == "taobao":
                            self.assertEqual(e["category"], g[4])
                        if fmt == "rees46":
                            self.assertEqual((e["category"], e["price"], e["session_id"]),
                                             (g[4], g[5], g[6]))
                        if fmt != "json":
                            self.assertRegex(e["event_id"], rf"^{fmt}-\d+$")
                    if fmt == "json":
                        self.assertEqual(evs[0][1]["quantity"], 1)
                        self.assertEqual([e["event_id"] for _, e in evs], ["d", "b", "a"])
                        self.assertEqual((evs[1][1]["price"], evs[1][1]["quantity"]), (9.5, 2))

    def test_strict_and_limit(self):
        with tempfile.TemporaryDirectory() as d:
            fmt, path, good, bad = write_sample(d, "taobao")
            out = os.path.join(d, "strict.framed")
            r = replay("--format", fmt, "--out", out, "--strict", path)
            self.assertEqual(r.returncode, 1, r.stderr)
            first = min(bad)
            self.assertIn(f"{path}:{first}: malformed row ({bad[first]})", r.stderr)
            self.assertNotIn(f"{path}:{first + 1}:", r.stderr, "stops at the first bad row")
            self.assertFalse(os.path.exists(out) and os.path.getsize(out) > 0,
                             "nothing is produced")
            # --strict on a clean file, and --limit: the first N rows only
            r = replay("--format", fmt, "--out", out, "--strict", "--limit", "3",
                       "--output-format", "json", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(produced(r.stdout), 3)
            self.assertEqual(sorted(e["item_id"] for _, e in read_json_events(out)),
                             sorted(g[1] for g in good[:3]))

    def test_pacing(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ml.data")
            with open(path, "w") as f:
                for i in range(21):  # 20 s of event time, one rating a second
                    f.write(f"{i % 3 + 1}\t{i}\t4\t{T0 + i}\n")
            out = os.path.join(d, "o.framed")
            t = time.monotonic()
            r = replay("--format", "movielens", "--out", out, "--speed", "20", path)
            el = time.monotonic() - t
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(produced(r.stdout), 21)
            self.assertGreaterEqual(el, 0.9, "20 s of event time at 20x take 1 s")
            t = time.monotonic()
            r = replay("--format", "movielens", "--out", out, "--rate", "40", path)
            el = time.monotonic() - t
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertGreaterEqual(el, 0.45, "21 events at 40/s take 0.5 s")
            self.assertEqual(len(harness.read_framed(out)), 21)

    def test_eval_reads_the_formats(self):
        with tempfile.TemporaryDirectory() as d:
            for name in SAMPLES:
                with self.subTest(name):
                    fmt, path, good, bad = write_sample(d, name)
                    r = subprocess.run([FUNNELCTL, "eval", "--input", path, "--format", fmt,
                                        "--no-peers", "--json"], capture_output=True, text=True,
                                       timeout=60 * SLOW)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    j = json.loads(r.stdout)
                    self.assertEqual(j["events"], len(good))
                    self.assertEqual(j["users"], len({g[0] for g in good}))
                    first = min(bad)
                    self.assertIn(f"{path}:{first}: skipped ({bad[first]})", r.stderr)
        path = ml_ratings()
        if path is not None:
            r = subprocess.run([FUNNELCTL, "eval", "--input", str(path), "--format", "movielens",
                                "--no-peers", "--json"], capture_output=True, text=True,
                               timeout=300 * SLOW)
            self.assertEqual(r.returncode, 0, r.stderr)
            j = json.loads(r.stdout)
            self.assertEqual((j["events"], j["users"]), (100836, 610))

    def test_usage_errors(self):
        with tempfile.TemporaryDirectory() as d:
            fmt, path, _, _ = write_sample(d, "taobao")
            out = os.path.join(d, "o.framed")
            cases = [
                (["--format", "netflix", "--out", out, path], "--format: invalid value 'netflix'"),
                (["--out", out, path], "--format is required"),
                (["--format", "taobao", "--out", out], "missing FILE"),
                (["--format", "taobao", path], "need --brokers LIST and --topic T"),
                (["--format", "taobao", "--out", out, "--speed", "2", "--rate", "5", path],
                 "--speed and --rate exclude each other"),
                (["--format", "taobao", "--out", out, "--speed", "0", path], "--speed"),
                (["--format", "taobao", "--out", out, "--output-format", "xml", path],
                 "--output-format"),
                (["--format", "taobao", "--out", out, path, "extra"], "unexpected argument"),
            ]
            for args, want in cases:
                r = replay(*args)
                self.assertEqual(r.returncode, 2, (args, r.stderr))
                self.assertIn(want, r.stderr, args)
            r = replay("--format", "taobao", "--out", out, os.path.join(d, "nope.csv"))
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("nope.csv: No such file", r.stderr)
            r = subprocess.run([FUNNELCTL, "eval", "--input", path, "--format", "netflix"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--format movielens, taobao, rees46 or json", r.stderr)


if __name__ == "__main__":
    unittest.main()
