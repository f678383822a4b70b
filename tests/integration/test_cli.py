"""test_cli.py - funneld's command line and start-up, from outside:
--version/--help, --check-config with positioned errors (YAML and
librdkafka properties), --print-config redaction, the embedded Kafka
cluster (kcat produces to the address funneld logs; redis-cli reads the
result), and the Redis password from a file and from the environment.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
import harness  # noqa: E402
from harness import Daemon, RedisServer, build_dir, source_dir  # noqa: E402

METRICS_SCHEMA = str(fdtest.source_dir() / "conf" / "schemas" / "funnel_metrics.avsc")
ALERTS_SCHEMA = str(fdtest.source_dir() / "conf" / "schemas" / "churn_alert.avsc")

FUNNELD = str(build_dir() / "funneld")


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([FUNNELD, *args], capture_output=True, text=True, timeout=60, env=e)


class Cli(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-cli-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, text):
        p = self.tmp / name
        p.write_text(text)
        return str(p)

    def test_version_and_help(self):
        v = run("--version")
        self.assertEqual(v.returncode, 0)
        self.assertRegex(v.stdout, r"^funneld \d+\.\d+\.\d+")
        h = run("--help")
        self.assertEqual(h.returncode, 0)
        for opt in ("--check-config", "--print-config", "--config"):
            self.assertIn(opt, h.stdout)
        bad = run("--no-such-option")
        self.assertEqual(bad.returncode, 2)

    def test_check_config_shipped_file(self):
        r = run("--check-config", "-c", str(source_dir() / "conf" / "funneld.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OK", r.stdout)

    def test_check_config_errors_name_file_line_column(self):
        cases = [
            ("redis:\n  url: redis://127.0.0.1:6379/0\n  flush_intervl_ms: 100\n",
             r":3:3: redis\.flush_intervl_ms: "),
            ("kafka:\n  partitions: 0\n", r":2:15: kafka\.partitions: .*range"),
            ("input:\n  format: xml\n", r":2:11: input\.format: "),
            ("kafka:\n  brokers: a\n  brokers: b\n", r":3:3: kafka\.brokers: .*duplicate"),
            ("kafka:\n  properties:\n    fetch.wait.max.ms: banana\n",
             r":3:24: kafka\.properties\.fetch\.wait\.max\.ms: Invalid value"),
            ("kafka:\n  properties:\n    no.such.property: 1\n",
             r":3:23: kafka\.properties\.no\.such\.property: No such configuration property"),
        ]
        for i, (text, pattern) in enumerate(cases):
            path = self.write(f"bad{i}.yaml", text)
            r = run("--check-config", "-c", path)
            self.assertEqual(r.returncode, 1, text)
            self.assertRegex(r.stderr, re.escape(path) + pattern, text)
        missing = run("--check-config", "-c", str(self.tmp / "nope.yaml"))
        self.assertEqual(missing.returncode, 1)
        self.assertIn("nope.yaml", missing.stderr)

    def test_journal_prefix_only_when_stderr_is_the_journal_stream(self):
        """JOURNAL_STREAM is DEVICE:INODE of the journal stream (systemd.exec):
        a funneld whose stderr is that file uses <N> prefixes; one that
        inherited the variable but writes to another file keeps timestamps."""
        with RedisServer() as redis:
            cfg = fdtest.daemon_config(self.tmp / "journal.yaml", "embedded", redis.url)
            for same in (False, True):
                log = self.tmp / f"stderr-{same}.log"
                with open(log, "wb") as f:
                    st = os.fstat(f.fileno())
                    js = f"{st.st_dev}:{st.st_ino}" if same else f"{st.st_dev}:{st.st_ino + 1}"
                    env = dict(os.environ, JOURNAL_STREAM=js)
                    p = subprocess.Popen([FUNNELD, "-c", str(cfg)], stdout=f, stderr=f, env=env)
                try:
                    self.assertTrue(harness.wait_until(
                        lambda: "starting with" in log.read_text(), 30, 0.1,
                        "funneld's first line"))
                finally:
                    p.send_signal(signal.SIGTERM)
                    p.wait(60)
                first = log.read_text().splitlines()[0]
                if same:
                    self.assertRegex(first, r"^<6>main: funneld .* starting with ")
                else:
                    self.assertRegex(first, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info  main: ")
                    self.assertNotIn("<6>", log.read_text())

    def test_print_config_redacts_secrets(self):
        path = self.write("p.yaml", "kafka:\n  properties:\n    sasl.password: hunter2\n"
                                    "    sasl.username: alice\n    security.protocol: SASL_PLAINTEXT\n"
                                    "    sasl.mechanisms: PLAIN\n"
                                    f"  metrics_schema: {METRICS_SCHEMA}\n"
                                    f"  alerts_schema: {ALERTS_SCHEMA}\n"
                                    f"input:\n  schema: {fdtest.schema_path()}\n")
        r = run("--print-config", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("hunter2", r.stdout)
        self.assertIn("<redacted>", r.stdout)
        self.assertNotIn("alice", r.stdout)  # librdkafka treats sasl.username as sensitive
        # What it prints is a config that loads again.
        again = self.write("again.yaml", r.stdout)
        self.assertEqual(run("--check-config", "-c", again).returncode, 0)

    def test_embedded_broker_with_kcat_and_redis_cli(self):
        with RedisServer() as redis:
            cfg = harness.write_config(self.tmp / "emb.yaml", {
                "kafka.brokers": "embedded", "kafka.partitions": 2, "redis.url": redis.url,
                "input.format": "json", "input.schema": fdtest.schema_path(),
                    "kafka.metrics_schema": METRICS_SCHEMA, "kafka.alerts_schema": ALERTS_SCHEMA})
            with Daemon(cfg) as d:
                m = d.wait_for_log(r"embedded Kafka mock cluster listening at (\S+)")
                bootstrap = m.group(1)
                lines = "".join(
                    f'u{i % 3}:{{"event_id":"k{i}","user_id":"u{i % 3}","ts":{1767225600000 + i},'
                    f'"type":"{["click", "cart", "purchase"][i % 3]}","price":2.5}}\n'
                    for i in range(30))
                p = subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "events", "-K:"],
                                   input=lines.encode(), capture_output=True, timeout=60)
                self.assertEqual(p.returncode, 0, p.stderr)
                port = str(redis.port)

                def cli(*a):
                    return subprocess.run(["redis-cli", "-p", port, *a], capture_output=True,
                                          text=True, timeout=10).stdout.strip()
                harness.wait_until(lambda: cli("HGET", "fd:v2:stats", "events") == "30", 30,
                                   what="30 events counted (redis-cli)")
                u1 = fdtest.parse_user_record(cli("GET", "fd:v2:user:u1"))
                u2 = fdtest.parse_user_record(cli("GET", "fd:v2:user:u2"))
                self.assertEqual((u1["cart"], u2["purchase"]), ("10", "10"))
                self.assertEqual(cli("HGET", "fd:v2:funnel:1m:1767225600000", "revenue_cents"),
                                 "2500")
                self.assertEqual(d.terminate(), 0)

    def test_sighup_reloads_what_it_can_and_survives_a_bad_file(self):
        with RedisServer() as redis:
            path = self.tmp / "hup.yaml"
            base = {"kafka.brokers": "embedded", "redis.url": redis.url,
                    "input.schema": fdtest.schema_path(),
                    "kafka.metrics_schema": METRICS_SCHEMA, "kafka.alerts_schema": ALERTS_SCHEMA, "log.level": "info"}
            harness.write_config(path, base)
            with Daemon(path) as d:
                d.wait_for_log(r"partition=\d+ assigned, starting at offset", timeout=30)
                path.write_text(path.read_text() + "bogus: 1\n")
                mark = len(d.log_text())
                d.proc.send_signal(signal.SIGHUP)
                d.wait_for_log(r"SIGHUP: .*hup\.yaml:\d+:\d+: bogus: .*keeping the running",
                               start=mark)
                mark = len(d.log_text())
                harness.write_config(path, {**base, "log.level": "debug",
                                            "churn.alert_threshold": 0.6, "mf.top_n": 5,
                                            "redis.flush_interval_ms": "350ms",
                                            "log.format": "json"})
                d.proc.send_signal(signal.SIGHUP)
                # what changed is named: applied (with the value it runs
                # with), or waiting for a restart; the line is JSON already
                m = d.wait_for_log(r"\{[^\n]*SIGHUP: [^\n]*\}\n", start=mark)
                line = json.loads(m.group(0))
                self.assertEqual((line["level"], line["component"]), ("info", "main"))
                self.assertRegex(line["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
                self.assertRegex(line["msg"],
                                 r"^SIGHUP: .*hup\.yaml is valid; applied: "
                                 r"redis\.flush_interval_ms=350ms, churn\.alert_threshold=0\.6, "
                                 r"log\.level=debug, log\.format=json; "
                                 r"changed, taking effect on restart: mf\.top_n$")
                # the same file again: nothing new to apply
                mark = len(d.log_text())
                d.proc.send_signal(signal.SIGHUP)
                m = d.wait_for_log(r"\{[^\n]*SIGHUP: [^\n]*\}\n", start=mark)
                self.assertRegex(json.loads(m.group(0))["msg"],
                                 r"applied: nothing; changed, taking effect on restart: "
                                 r"mf\.top_n$")
                # every line from here on is a JSON object (debug level now)
                after = d.log_text()[mark:].splitlines()
                self.assertTrue(after)
                for ln in after:
                    json.loads(ln)
                self.assertTrue(d.running)
                self.assertEqual(d.terminate(), 0)

    def test_redis_password_from_file_and_env(self):
        with RedisServer(password="s3cret-pw") as redis:
            pwfile = self.write("pw", "s3cret-pw\n")
            for how, extra, env in (
                    ("file", {"redis.password_file": pwfile}, None),
                    ("env", {}, {"FUNNELD_REDIS_PASSWORD": "s3cret-pw"})):
                cfg = harness.write_config(self.tmp / f"pw-{how}.yaml", {
                    "kafka.brokers": "embedded", "redis.url": redis.url,
                    "input.schema": fdtest.schema_path(),
                    "kafka.metrics_schema": METRICS_SCHEMA, "kafka.alerts_schema": ALERTS_SCHEMA, **extra})
                with Daemon(cfg, env=env) as d:
                    d.wait_for_log(r"partition=\d+ assigned, starting at offset", timeout=30)
                    self.assertNotIn("s3cret-pw", d.log_text())
                    self.assertEqual(d.terminate(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
