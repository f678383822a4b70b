"""test_config_check.py - `--check-config` agrees with the start, from any
directory, and no secret is ever printed (issue 10, parts 7 and 8).

1. From a working directory that is not the config file's, `--check-config`
   and the start fail with the same message (naming FILE:LINE:COL: KEY, or
   FILE: KEY (default)) for a missing schema, a missing password file, and
   pass and start for a config whose relative paths (written or default)
   resolve against the file's directory.
2. Secrets planted in kafka.properties (librdkafka's sensitive ones, a
   kinit command with --password=, a URL with credentials, a jaas entry)
   and in redis.url appear in none of: --print-config, --check-config, a
   config error, the log of a short run at log.level debug.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Daemon, RedisServer  # noqa: E402

SCHEMAS = harness.source_dir() / "conf" / "schemas"


def funneld(*args, cwd):
    p = subprocess.run([str(harness.build_dir() / "funneld"), *map(str, args)], cwd=cwd,
                       capture_output=True, timeout=60 * harness.SLOW)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


class ConfigCheck(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-cfgchk-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.etc = self.tmp / "etc"      # where the config lives
        self.elsewhere = self.tmp / "cwd"  # where funneld is started
        self.etc.mkdir()
        self.elsewhere.mkdir()

    def both(self, cfg):
        """(check rc, check output, start rc, start output), from elsewhere."""
        rc1, out1 = funneld("--check-config", "-c", cfg, cwd=self.elsewhere)
        rc2, out2 = funneld("-c", cfg, cwd=self.elsewhere)
        return rc1, out1, rc2, out2

    def assert_same_refusal(self, cfg, expect):
        rc1, out1, rc2, out2 = self.both(cfg)
        self.assertEqual(rc1, 1, out1)
        self.assertEqual(rc2, 1, out2)
        self.assertIn(expect, out1)
        self.assertIn(expect, out2, "the start refuses with the check's message")
        self.assertNotIn(": OK", out1)

    def test_check_and_start_agree_from_another_directory(self):
        cfg = self.etc / "fd.yaml"
        # schema paths left at their defaults; no schemas/ beside the file
        cfg.write_text("redis:\n  url: redis://127.0.0.1:1/0\n")
        self.assert_same_refusal(cfg, f"{cfg}: input.schema (default): input: "
                                      f"{self.etc}/schemas/event.avsc: cannot open")
        # a path written in the file: its position is named
        cfg.write_text("redis:\n  url: redis://127.0.0.1:1/0\ninput:\n  schema: s/missing.avsc\n")
        self.assert_same_refusal(cfg, f"{cfg}:4:11: input.schema: input: "
                                      f"{self.etc}/s/missing.avsc: cannot open")
        # the metrics schema too (the start used to find this one only later)
        shutil.copytree(SCHEMAS, self.etc / "schemas")
        (self.etc / "schemas" / "funnel_metrics.avsc").unlink()
        cfg.write_text("redis:\n  url: redis://127.0.0.1:1/0\n")
        self.assert_same_refusal(cfg, f"{cfg}: kafka.metrics_schema (default): ")
        shutil.copy(SCHEMAS / "funnel_metrics.avsc", self.etc / "schemas")
        # a password file relative to the file's directory, missing
        cfg.write_text("redis:\n  url: redis://127.0.0.1:1/0\n  password_file: pw\n")
        self.assert_same_refusal(cfg, f"{cfg}:3:18: redis.password_file: ")
        (self.etc / "pw").write_text("sesame\n")
        rc, out = funneld("--check-config", "-c", cfg, cwd=self.elsewhere)
        self.assertEqual((rc, out.strip()), (0, f"{cfg}: OK"))
        # and the good config starts from elsewhere (embedded broker, real Redis)
        with RedisServer() as redis:
            cfg.write_text(f"redis:\n  url: {redis.url}\nkafka:\n  partitions: 1\n")
            rc, out = funneld("--check-config", "-c", cfg, cwd=self.elsewhere)
            self.assertEqual((rc, out.strip()), (0, f"{cfg}: OK"))
            old = os.getcwd()
            os.chdir(self.elsewhere)
            try:
                d = Daemon(cfg)
            finally:
                os.chdir(old)
            with d:
                d.wait_for_log(r"assigned, starting at offset", timeout=30)
                self.assertEqual(d.terminate(), 0)

    def test_secrets_are_never_printed(self):
        secrets = {"ssl.key.pem": "-----BEGIN PRIVATE KEY-----PEMSECRET1",
                   "ssl.key.password": "KEYPWSECRET2",
                   "sasl.password": "SASLSECRET3",
                   "sasl.kerberos.kinit.cmd": "kinit --password=KINITSECRET4 -k",
                   "client.id": "https://cid:URLSECRET5@idp/token"}
        planted = ["PEMSECRET1", "KEYPWSECRET2", "SASLSECRET3", "KINITSECRET4", "URLSECRET5"]

        def clean(text, what):
            for s in planted + ["REDISSECRET6", "JAASSECRET7"]:
                self.assertNotIn(s, text, f"{s} printed by {what}")
        with RedisServer() as redis:
            cfg = harness.write_config(self.etc / "fd.yaml", {
                "redis.url": redis.url, "kafka.partitions": 1, "log.level": "debug",
                "input.schema": str(SCHEMAS / "event.avsc"),
                "kafka.metrics_schema": str(SCHEMAS / "funnel_metrics.avsc"),
                "kafka.alerts_schema": str(SCHEMAS / "churn_alert.avsc"),
                "kafka.properties": secrets})
            rc, out = funneld("--print-config", "-c", cfg, cwd=self.elsewhere)
            self.assertEqual(rc, 0, out)
            clean(out, "--print-config")
            self.assertGreaterEqual(out.count("<redacted>"), 5, out)
            self.assertIn("https://<redacted>@idp/token", out)
            rc, out = funneld("--check-config", "-c", cfg, cwd=self.elsewhere)
            self.assertEqual(rc, 0, out)
            clean(out, "--check-config")
            with Daemon(cfg) as d:
                d.wait_for_log(r"assigned, starting at offset", timeout=30)
                self.assertEqual(d.terminate(), 0)
                clean(d.log_text(), "the daemon's log")
        # config errors: a password in redis.url, a property librdkafka refuses
        bad = self.etc / "bad.yaml"
        bad.write_text("redis:\n  url: redis://admin:REDISSECRET6@db:6379\n")
        for args in (("--check-config", "-c", bad), ("--print-config", "-c", bad), ("-c", bad)):
            rc, out = funneld(*args, cwd=self.elsewhere)
            self.assertEqual(rc, 1)
            self.assertIn(f"{bad}:2:8: redis.url: invalid value 'redis://<redacted>@db:6379'", out)
            clean(out, f"funneld {args[0]} on a bad redis.url")
        bad.write_text("kafka:\n  properties:\n    sasl.jaas.config: \"x password=JAASSECRET7\"\n"
                       "    ssl.key.password: 12\n    bogus.url: \"http://u:URLSECRET5@h\"\n")
        rc, out = funneld("--check-config", "-c", bad, cwd=self.elsewhere)
        self.assertEqual(rc, 1)
        self.assertIn("kafka.properties.sasl.jaas.config", out)
        clean(out, "a refused property")


if __name__ == "__main__":
    unittest.main(verbosity=2)
