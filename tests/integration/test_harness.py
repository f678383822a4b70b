"""test_harness.py - self-test of harness.py's RedisServer and config writer.

Needs only redis-server and python3-redis (not funnelctl or funneld), so it
can run before the rest of the tree builds.
"""

import os
import signal
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class RedisServerTest(unittest.TestCase):
    def test_start_write_stop_start_keeps_aof_data(self):
        with harness.RedisServer(appendonly=True) as rs:
            self.assertRegex(rs.url, r"^redis://127\.0\.0\.1:\d+/0$")
            port, d = rs.port, rs.dir
            c = rs.client()
            c.set("fd:selftest:k", "v1")
            c.hset("fd:selftest:h", mapping={"a": "1", "b": "2"})
            c.close()

            self.assertEqual(rs.stop(), 0)
            self.assertFalse(rs.running)
            rs.start()
            self.assertEqual((rs.port, rs.dir), (port, d))
            c = rs.client()
            self.assertEqual(c.get("fd:selftest:k"), "v1")
            self.assertEqual(c.hgetall("fd:selftest:h"), {"a": "1", "b": "2"})
            c.close()
            pid = rs.proc.pid
        # Context exit: the process is gone and the dir removed.
        self.assertFalse(pid_alive(pid))
        self.assertFalse(Path(d).exists())

    def test_without_appendonly_data_is_lost_on_restart(self):
        with harness.RedisServer() as rs:
            c = rs.client()
            c.set("k", "v")
            c.close()
            rs.stop()
            rs.start()
            c = rs.client()
            self.assertIsNone(c.get("k"))
            c.close()

    def test_kill_and_restart(self):
        with harness.RedisServer(appendonly=True) as rs:
            c = rs.client()
            c.set("k", "before-crash")  # appendfsync always: on disk at reply
            c.close()
            self.assertEqual(rs.kill(), -signal.SIGKILL)
            rs.start()
            c = rs.client(db=0)
            self.assertEqual(c.get("k"), "before-crash")
            c.close()

    def test_password(self):
        with harness.RedisServer(password="pw-selftest") as rs:
            c = rs.client()
            self.assertTrue(c.ping())
            c.close()

    def test_two_servers_get_distinct_ports(self):
        with harness.RedisServer() as a, harness.RedisServer() as b:
            self.assertNotEqual(a.port, b.port)
            a.client().set("only", "a")
            self.assertIsNone(b.client().get("only"))


class HelpersTest(unittest.TestCase):
    def test_wait_until(self):
        self.assertEqual(harness.wait_until(lambda: 42, 1), 42)
        with self.assertRaisesRegex(AssertionError, "the impossible"):
            harness.wait_until(lambda: False, 0.2, 0.05, what="the impossible")

    def test_config_yaml(self):
        text = harness.config_yaml({
            "kafka.brokers": "127.0.0.1:1234",
            "kafka.properties": {"fetch.wait.max.ms": 50, "enable.idempotence": True},
            "kafka.properties.linger.ms": 5,
            "redis.url": "redis://127.0.0.1:6379/0",
            "redis.connect_timeout_ms": 500,
            "input.schema": Path("/x/event.avsc"),
        })
        self.assertIn('kafka:\n  brokers: "127.0.0.1:1234"\n  properties:\n', text)
        self.assertIn("    fetch.wait.max.ms: 50\n", text)
        self.assertIn("    enable.idempotence: true\n", text)
        self.assertIn("    linger.ms: 5\n", text)
        self.assertIn('redis:\n  url: "redis://127.0.0.1:6379/0"\n  connect_timeout_ms: 500\n',
                      text)
        self.assertIn('input:\n  schema: "/x/event.avsc"\n', text)
        try:
            import yaml  # python3-yaml, when present: the output parses as intended
        except ImportError:
            return
        doc = yaml.safe_load(text)
        self.assertEqual(doc["kafka"]["properties"],
                         {"fetch.wait.max.ms": 50, "enable.idempotence": True, "linger.ms": 5})
        self.assertEqual(doc["redis"]["connect_timeout_ms"], 500)

    def test_framed_roundtrip(self):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "x.framed"
            recs = [(b"u1", b"\x00\x01"), (b"", b"empty-key"), ("u2", "")]
            harness.write_framed(p, recs)
            self.assertEqual(harness.read_framed(p),
                             [(b"u1", b"\x00\x01"), (b"", b"empty-key"), (b"u2", b"")])
            p.write_bytes(p.read_bytes()[:-3] + b"\x00\x00\x00\x09ab")
            with self.assertRaises(ValueError):
                harness.read_framed(p)

    def test_dirs(self):
        self.assertTrue((harness.source_dir() / "CMakeLists.txt").exists())
        self.assertTrue(str(harness.build_dir()))


if __name__ == "__main__":
    unittest.main()
