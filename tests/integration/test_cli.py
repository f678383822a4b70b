"""test_cli.py - funneld's command line and start-up, from outside:
--version/--help, --check-config with positioned errors (YAML and
librdkafka properties), --print-config redaction, the embedded Kafka
cluster (kcat produces to the address funneld logs; redis-cli reads the
result), and the Redis password from a file and from the environment.
"""

import json
import os
import time
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

    def test_progress_bar_on_a_terminal_lines_otherwise(self):
        """Long-running commands (gen here; replay, eval and bench share the
        helper) draw a bar on a terminal and print plain lines to a pipe."""
        ctl = str(build_dir() / "funnelctl")
        out = self.tmp / "g.bin"
        args = [ctl, "gen", "--events", "200000", "--users", "500", "--out", str(out)]
        piped = subprocess.run(args, capture_output=True, text=True, timeout=120)
        self.assertEqual(piped.returncode, 0, piped.stderr)
        self.assertNotIn("\r", piped.stderr)
        self.assertRegex(piped.stderr, r"(?m)^gen: 200000/200000 events \(100%\)")
        # a terminal: script(1) gives it a pty
        tty = subprocess.run(["script", "-qec", " ".join(args), "/dev/null"],
                             capture_output=True, timeout=120)
        self.assertEqual(tty.returncode, 0, tty.stdout + tty.stderr)
        self.assertRegex(tty.stdout, rb"\rgen \[#{30}\] 100%  200000/200000 events")

    def test_check_config_shipped_file(self):
        # as shipped it refuses to run until the brokers are named (a fresh
        # install must not consume from an in-process mock and look healthy)
        shipped = source_dir() / "conf" / "funneld.yaml"
        r = run("--check-config", "-c", str(shipped))
        self.assertEqual(r.returncode, 1)
        line = next(i for i, ln in enumerate(shipped.read_text().splitlines(), 1)
                    if ln.strip() == "brokers: SET-ME")
        self.assertRegex(r.stderr, rf"funneld\.yaml:{line}:12: kafka\.brokers: .*replace SET-ME")
        self.assertEqual(run("-c", str(shipped)).returncode, 1, "the start refuses it too")
        # the same file with brokers named: valid (schemas resolve beside it)
        named = self.tmp / "conf" / "funneld.yaml"
        shutil.copytree(shipped.parent, named.parent)
        named.write_text(shipped.read_text().replace("brokers: SET-ME",
                                                     "brokers: kafka1:9092,kafka2:9092"))
        r = run("--check-config", "-c", str(named))
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

    def test_redis_acl_user_and_unix_socket(self):
        """redis.username: a Redis 6 ACL user (AUTH user password), here over
        the unix socket; a wrong password and a user without one are refused
        with the key's position, the password never printed."""
        sock = self.tmp / "redis.sock"
        with RedisServer(extra_args=["--unixsocket", str(sock), "--unixsocketperm", "700"]) as redis:
            r = redis.client()
            r.execute_command("ACL", "SETUSER", "funneld", "on", ">acl-pw-9", "~*", "+@all")
            pwfile = self.write("aclpw", "acl-pw-9\n")
            base = {"kafka.brokers": "embedded", "redis.url": f"unix://{sock}?db=0",
                    "redis.username": "funneld", "redis.password_file": pwfile,
                    "input.schema": fdtest.schema_path(),
                    "kafka.metrics_schema": METRICS_SCHEMA, "kafka.alerts_schema": ALERTS_SCHEMA}
            cfg = harness.write_config(self.tmp / "acl.yaml", base)
            chk = run("--check-config", "-c", str(cfg))
            self.assertEqual(chk.returncode, 0, chk.stderr)
            with Daemon(cfg) as d:
                d.wait_for_log(r"partition=\d+ assigned, starting at offset", timeout=30)
                self.assertNotIn("acl-pw-9", d.log_text())
                self.assertEqual(d.terminate(), 0)
            # it connected as funneld: the ACL log of the server says who
            clients = [c for c in r.client_list() if c.get("user") == "funneld"]
            self.assertEqual(clients, [], "its connections closed at exit")
            self.assertGreater(r.dbsize(), 0, "funneld wrote its state")
            # the wrong password: refused at --check-config, named by its key
            wrong = self.write("wrongpw", "nope\n")
            bad = harness.write_config(self.tmp / "acl-bad.yaml",
                                       {**base, "redis.password_file": wrong})
            with Daemon(bad) as d:  # refused at connect: it exits at once, saying why
                self.assertEqual(d.wait(20), 1)
                self.assertRegex(d.log_text(), r"error main: .*AUTH rejected: WRONGPASS")
                self.assertNotIn("nope", d.log_text())
            # SIGTERM during the start-up wait for Redis (down) ends it
            down = harness.write_config(self.tmp / "acl-down.yaml",
                                        {**base, "redis.url": f"unix://{self.tmp}/none.sock"})
            with Daemon(down) as d:
                d.wait_for_log(r"redis: .*none\.sock", timeout=20)
                t0 = time.monotonic()
                self.assertEqual(d.terminate(), 1)
                self.assertLess(time.monotonic() - t0, 5 * harness.SLOW)
                self.assertIn("stopped while connecting", d.log_text())
            # a user and no password at all
            nopw = {k: v for k, v in base.items() if k != "redis.password_file"}
            bad = harness.write_config(self.tmp / "acl-nopw.yaml",
                                       {**nopw, "redis.password_env": "FD_TEST_NO_SUCH_VAR"})
            chk = run("--check-config", "-c", str(bad))
            self.assertNotEqual(chk.returncode, 0)
            self.assertRegex(chk.stderr, r"acl-nopw\.yaml:\d+:\d+: redis\.username: ACL user "
                                         r"\"funneld\" \(redis\.username\) has no password")


if __name__ == "__main__":
    unittest.main(verbosity=2)
