"""test_notify.py - systemd's notify protocol, spoken from systemd's side.

The test binds the NOTIFY_SOCKET datagram socket itself, starts funneld with
WATCHDOG_USEC set and checks what arrives: READY=1 (once the group assigned
the partitions) before any WATCHDOG=1, STATUS= lines with the event rate and
lag, keep-alives every half interval, none while a shard is made to hang
(the test-only FUNNELD_TEST_HANG_FILE hook) and again once it goes on, and
STOPPING=1 on SIGTERM.
"""

import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdtest  # noqa: E402
from harness import SLOW, Broker, Daemon, RedisServer  # noqa: E402

TOPIC = "events"
WATCHDOG_USEC = 2000000  # pings every 1 s; a shard stuck for 1 s stops them


class Listener:
    """The NOTIFY_SOCKET side: every datagram with its arrival time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.msgs = []  # (monotonic time, field lines)
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.msgs.append((time.monotonic(), data.decode().splitlines()))

    def close(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()

    def times(self, field):
        return [t for t, lines in list(self.msgs) if field in lines]

    def index(self, prefix):
        for i, (_, lines) in enumerate(list(self.msgs)):
            if any(ln.startswith(prefix) for ln in lines):
                return i
        return -1

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {self.msgs[-10:]}")


class Notify(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-notify-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_ready_status_watchdog_stopping(self):
        framed = self.tmp / "events.bin"
        fdtest.gen(framed, self.tmp / "truth.json", events=60000, users=3000, seed=3)
        hang = self.tmp / "hang"
        listener = Listener(self.tmp / "notify.sock")
        self.addCleanup(listener.close)
        with RedisServer() as redis, Broker(partitions=4) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url)
            env = {"NOTIFY_SOCKET": str(self.tmp / "notify.sock"),
                   "WATCHDOG_USEC": WATCHDOG_USEC, "FUNNELD_TEST_HANG_FILE": hang}
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=3000)
            with Daemon(cfg, env=env) as d:
                try:
                    listener.wait(lambda: listener.index("READY=1") >= 0, 40, "READY=1")
                    producer.start()
                    ready_at = listener.times("READY=1")[0]
                    listener.wait(lambda: len([t for t in listener.times("WATCHDOG=1")
                                               if t > ready_at]) >= 3, 20, "three keep-alives")
                    # READY came first, with a STATUS line; then keep-alives
                    first_ping = listener.index("WATCHDOG=1")
                    self.assertLess(listener.index("READY=1"), first_ping)
                    statuses = [ln for _, lines in listener.msgs for ln in lines
                                if ln.startswith("STATUS=")]
                    self.assertTrue(any("events/s" in s and "lag" in s for s in statuses),
                                    statuses[:3])
                    pings = listener.times("WATCHDOG=1")
                    gaps = [b - a for a, b in zip(pings, pings[1:])]
                    self.assertLess(max(gaps), 2.0 * SLOW, f"keep-alive gaps {gaps}")
                    # shard 0 hangs while it has work: the pings stop
                    self.assertTrue(fdtest.sleep_until(lambda: producer.sent > 5000, 30))
                    hang.touch()
                    hung_at = time.monotonic()
                    d.wait_for_log(r"shard 0 has had work queued and finished nothing",
                                   timeout=15)
                    time.sleep(3 * SLOW)
                    late = [t for t in listener.times("WATCHDOG=1") if t > hung_at + 1.5 * SLOW]
                    self.assertEqual(late, [], "keep-alives went on while a shard hung")
                    self.assertTrue(d.running)
                    # it goes on: so do the pings
                    hang.unlink()
                    back = time.monotonic()
                    listener.wait(lambda: any(t > back for t in listener.times("WATCHDOG=1")),
                                  20, "keep-alives after the shard went on")
                    producer.join()
                    r = redis.client()
                    fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                finally:
                    if hang.exists():
                        hang.unlink()
                    producer.stop()
                self.assertEqual(d.terminate(), 0)
        listener.wait(lambda: listener.index("STOPPING=1") >= 0, 10, "STOPPING=1")
        self.assertGreater(listener.index("STOPPING=1"), listener.index("READY=1"))
        # nothing after STOPPING but the end
        self.assertEqual([ln for _, lines in listener.msgs[listener.index("STOPPING=1") + 1:]
                          for ln in lines if ln == "WATCHDOG=1"], [])

    def test_stop_with_a_hung_shard_says_what_it_waited_for(self):
        """A stop that cannot write the last state in engine.shutdown_timeout_ms
        exits non-zero and names what was still pending (here: the epoch
        waiting for the hung shard); nothing past the stored offsets is lost."""
        framed = self.tmp / "events.bin"
        fdtest.gen(framed, self.tmp / "truth.json", events=20000, users=1000, seed=5)
        hang = self.tmp / "hang"
        with RedisServer() as redis, Broker(partitions=2) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"engine.shutdown_timeout_ms": 2000})
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=5000)
            r = redis.client()
            with Daemon(cfg, env={"FUNNELD_TEST_HANG_FILE": hang}) as d:
                try:
                    d.wait_for_log(r"partition=\d+ assigned, starting at", timeout=30)
                    producer.start()
                    self.assertTrue(fdtest.sleep_until(
                        lambda: int(r.hget(fdtest.PREFIX + "stats", "events") or 0) > 2000, 30))
                    hang.touch()
                    time.sleep(1.5 * SLOW)  # shard 0 takes its next batch, and hangs on it
                    code = d.terminate(timeout=30)
                finally:
                    if hang.exists():
                        hang.unlink()
                    producer.stop()
                log = d.log_text()
            self.assertNotEqual(code, 0, "a stop that left state unwritten is not clean")
            self.assertRegex(log, r"shutdown: could not write all state within 2000 ms "
                                  r"\(engine\.shutdown_timeout_ms\); it will be reprocessed "
                                  r"from the stored offsets \(.*epoch \d+ waits for shard=0 "
                                  r"\(\d+ item\(s\) queued")

    def test_progress_lines(self):
        """log.progress_interval: a running funneld logs, at info level,
        what it did since the last line; the lines add up to the stream."""
        framed = self.tmp / "events.bin"
        fdtest.gen(framed, self.tmp / "truth.json", events=20000, users=1000, seed=4)
        bad = 7
        with RedisServer() as redis, Broker(partitions=2) as kafka:
            cfg = fdtest.daemon_config(self.tmp / "fd.yaml", kafka.bootstrap, redis.url,
                                       **{"log.progress_interval": "1s"})
            producer = fdtest.RateProducer(kafka.bootstrap, TOPIC, framed, rate=5000)
            with Daemon(cfg) as d:
                try:
                    d.wait_for_log(r"partition=\d+ assigned, starting at", timeout=30)
                    producer.start()
                    producer.join(60 * SLOW)
                    from confluent_kafka import Producer
                    p = Producer({"bootstrap.servers": kafka.bootstrap})
                    for i in range(bad):
                        p.produce(TOPIC, key=f"bad{i}", value=b"\x00\x01not avro")
                    self.assertEqual(p.flush(30), 0)
                    r = redis.client()
                    fdtest.wait_consumed(r, kafka.bootstrap, TOPIC, daemon=d)
                    self.assertTrue(fdtest.sleep_until(
                        lambda: int(r.hget(fdtest.PREFIX + "stats", "dlq") or 0) == bad, 30))
                    # one more line after everything was done: the sums are complete
                    n = len(re.findall(r"progress: ", d.log_text()))
                    self.assertTrue(fdtest.sleep_until(
                        lambda: len(re.findall(r"progress: ", d.log_text())) > n + 1, 10))
                finally:
                    producer.stop()
                log = d.log_text()
                self.assertEqual(d.terminate(), 0)
        line = re.compile(r"info  main: progress: (\d+) events in (\d+) s \((\d+)/s\), "
                          r"(\d+) dead letters, lag (\d+|unknown), (\d+) writes "
                          r"\(avg (\d+) ms, last (\d+) ms\), (\d+) partition\(s\)")
        found = line.findall(log)
        self.assertGreaterEqual(len(found), 3, log[-2000:])
        self.assertEqual(sum(int(f[0]) for f in found), 20000 + bad, "events (messages) in all")
        self.assertEqual(sum(int(f[3]) for f in found), bad, "dead letters in all")
        self.assertGreater(sum(int(f[5]) for f in found), 0, "writes")
        self.assertTrue(all(f[1] in ("1", "2") or SLOW > 1 for f in found), found)
        self.assertEqual(found[-1][8], "2", "both partitions")
        self.assertIn("lag 0,", log[log.rindex("progress: "):], "caught up at the end")


if __name__ == "__main__":
    unittest.main(verbosity=2)
