"""harness.py - helpers for funneld's integration tests (Debian's /usr/bin/python3).

Every process a test starts here is private to it (own temp dir, own free
loopback port) and is stopped when its context exits, and in any case at
interpreter exit, so a failing test never leaves a redis-server, broker or
funneld behind.

    from harness import RedisServer, Broker, Daemon, write_config, wait_until

    with RedisServer(appendonly=True) as redis, Broker(partitions=4) as kafka:
        cfg = write_config(tmp / "funneld.yaml", {
            "kafka.brokers": kafka.bootstrap,
            "redis.url": redis.url,
            "kafka.properties": {"fetch.wait.max.ms": 50},
        })
        with Daemon(cfg) as d:
            d.wait_for_log(r"ready")

Timeouts given to the helpers are multiplied by SLOW (3 when FD_SANITIZE is
set: sanitizer builds run several times slower), so tests state the timeout
they would want on a plain build.

Environment: FD_BUILD_DIR (default <repo>/build), FD_SOURCE_DIR (default
the repo this file lives in), FD_SANITIZE.
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

SLOW = 3 if os.environ.get("FD_SANITIZE") else 1

__all__ = [
    "SLOW", "build_dir", "source_dir", "free_port", "wait_until",
    "RedisServer", "Broker", "Daemon", "write_config", "config_yaml",
    "read_framed", "write_framed", "produce_framed", "consume_all",
]


# ---- paths and small helpers ------------------------------------------------

def source_dir():
    """The repository root: $FD_SOURCE_DIR, else two levels above this file."""
    env = os.environ.get("FD_SOURCE_DIR")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def build_dir():
    """The build tree holding funneld and funnelctl: $FD_BUILD_DIR, else <repo>/build."""
    env = os.environ.get("FD_BUILD_DIR")
    if env:
        return Path(env).resolve()
    return source_dir() / "build"


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, interval=0.1, what="condition"):
    """Call pred() until it returns a truthy value, which is returned.

    Raises AssertionError naming `what` when it has not within timeout*SLOW
    seconds. Exceptions from pred propagate.
    """
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout * SLOW:.1f} s waiting for {what}")
        time.sleep(interval)


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# Everything still running at exit is killed; temp dirs are removed.
_LIVE = set()
_TMPDIRS = set()


def _cleanup_all():
    for obj in list(_LIVE):
        try:
            obj._force_cleanup()
        except Exception as e:  # keep cleaning the others
            print(f"harness: cleanup of {obj!r} failed: {e}", file=sys.stderr)
    for d in list(_TMPDIRS):
        shutil.rmtree(d, ignore_errors=True)
        _TMPDIRS.discard(d)


atexit.register(_cleanup_all)


def _mkdtemp(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    _TMPDIRS.add(d)
    return Path(d)


def _rmtemp(d):
    shutil.rmtree(d, ignore_errors=True)
    _TMPDIRS.discard(str(d))


def _stop_process(proc, timeout, sig=signal.SIGTERM):
    """Send sig, wait up to timeout; SIGKILL if it does not exit. Returns the code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# ---- redis-server -------------------------------------------------------------

class RedisServer:
    """A private redis-server on 127.0.0.1:<free port>, data in a temp dir.

    RedisServer(appendonly=False, password=None, extra_args=())
      .start()   start (again: same port and dir, so AOF data survives)
      .stop()    SIGTERM and wait (AOF is flushed)
      .kill()    SIGKILL and wait (no shutdown work)
      .url       "redis://127.0.0.1:PORT/0"; .url_for(db) for another db
      .client(db=0)  redis.Redis(decode_responses=True)
      .port, .dir, .log_path, .running
    Context manager: starts on enter (if not running), stops and removes the
    dir on exit.
    """

    def __init__(self, appendonly=False, password=None, extra_args=(), start=True):
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(extra_args)
        self.dir = _mkdtemp("fd-redis-")
        self.port = free_port()
        self.log_path = self.dir / "redis.log"
        self.proc = None
        self._log = None
        _LIVE.add(self)
        if start:
            self.start()

    @property
    def url(self):
        return self.url_for(0)

    def url_for(self, db):
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def client(self, db=0, **kw):
        import redis  # python3-redis

        kw.setdefault("socket_timeout", 5 * SLOW)
        kw.setdefault("decode_responses", True)
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password, **kw)

    def start(self, timeout=10):
        if self.running:
            return self
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.appendonly else "no",
                "--protected-mode", "no"]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.dir)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}:\n"
                                     + _tail(self.log_path))
            try:
                c = self.client(socket_timeout=1)
                try:
                    return c.ping()
                finally:
                    c.close()
            except Exception:
                return False

        wait_until(up, timeout, 0.05, f"redis-server on port {self.port} to answer PING")
        return self

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def stop(self, timeout=10):
        """SIGTERM (redis shuts down cleanly, flushing the AOF) and wait."""
        code = _stop_process(self.proc, timeout * SLOW)
        self._close_log()
        return code

    def kill(self):
        """SIGKILL and wait: a crash, no shutdown work."""
        code = _stop_process(self.proc, 10 * SLOW, signal.SIGKILL)
        self._close_log()
        return code

    def _force_cleanup(self):
        _stop_process(self.proc, 5, signal.SIGKILL)
        self._close_log()
        _rmtemp(self.dir)
        _LIVE.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self._force_cleanup()
        return False

    def __repr__(self):
        return f"RedisServer(port={self.port}, dir={self.dir})"


# ---- Kafka broker (funnelctl broker) -----------------------------------------

class Broker:
    """`funnelctl broker`: a Kafka-protocol mock cluster on loopback.

    Broker(partitions=4, topics=(), extra_args=(), timeout=10, control=False)
      .bootstrap   "127.0.0.1:PORT" (the first line funnelctl prints)
      .control(cmd, timeout=10) -> str
                   (control=True only: `funnelctl broker --control`) send one
                   command line ("errors API_KEY COUNT ERR_CODE", "down ID",
                   "up ID", "rtt ID MS", "quit") and return the broker's
                   one-line answer, "ok" or "error: <why>"
      .stop()      SIGTERM and wait; returns the exit code
      .log_path    its stderr (and stdout after the first line)
    Context manager: started by the constructor, stopped on exit.
    """

    def __init__(self, partitions=4, topics=(), extra_args=(), timeout=10, binary=None,
                 control=False):
        self.dir = _mkdtemp("fd-broker-")
        self.log_path = self.dir / "broker.log"
        self.bootstrap = None
        import queue  # only the Broker uses it

        self._control = control
        self._answers = queue.Queue()
        self._control_lock = threading.Lock()
        exe = Path(binary) if binary else build_dir() / "funnelctl"
        if not exe.exists():
            raise AssertionError(f"{exe} not found (set FD_BUILD_DIR or build first)")
        args = [str(exe), "broker", "--partitions", str(partitions)]
        for t in topics:
            args += ["--topic", t]
        if control:
            args.append("--control")
        args += list(extra_args)
        self._log = open(self.log_path, "ab")
        _LIVE.add(self)
        self.proc = subprocess.Popen(args,
                                     stdin=subprocess.PIPE if control else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._log, cwd=self.dir)
        first = self._read_first_line(timeout * SLOW)
        if not re.fullmatch(r"\S+:\d+(,\S+:\d+)*", first):
            self._force_cleanup(keep_log=True)
            raise AssertionError(f"funnelctl broker printed {first!r}, not host:port\n"
                                 + _tail(self.log_path))
        self.bootstrap = first
        # Keep draining stdout so the broker never blocks on a full pipe;
        # with control, each line is also the answer to a command.
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()

    def _read_first_line(self, timeout):
        box = {}

        def reader():
            box["line"] = self.proc.stdout.readline()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive() or not box.get("line"):
            code = self.proc.poll()
            self._force_cleanup(keep_log=True)
            raise AssertionError(
                f"funnelctl broker gave no address within {timeout:.0f} s (exit {code}):\n"
                + _tail(self.log_path))
        return box["line"].decode(errors="replace").strip()

    def _drain_stdout(self):
        try:
            for line in self.proc.stdout:
                if self._control:
                    self._answers.put(line.decode(errors="replace").rstrip("\n"))
                log = self._log
                if log:
                    log.write(line)
                    log.flush()
        except (ValueError, OSError):
            pass

    def control(self, cmd, timeout=10):
        """Send one control command and return the broker's answer line.

        Raises AssertionError if the broker was not started with control=True,
        has exited, or gives no answer within timeout*SLOW seconds.
        """
        import queue

        if not self._control:
            raise AssertionError("Broker(control=True) is needed for .control()")
        if "\n" in cmd:
            raise ValueError(f"one command per call, got {cmd!r}")
        with self._control_lock:
            if self.proc.poll() is not None:
                raise AssertionError(f"funnelctl broker exited with {self.proc.returncode}:\n"
                                     + _tail(self.log_path))
            try:
                self.proc.stdin.write(cmd.encode() + b"\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as e:
                raise AssertionError(f"funnelctl broker control channel closed: {e}") from e
            try:
                return self._answers.get(timeout=timeout * SLOW)
            except queue.Empty:
                raise AssertionError(f"funnelctl broker gave no answer to {cmd!r} within "
                                     f"{timeout * SLOW:.0f} s:\n" + _tail(self.log_path)) from None

    def stop(self, timeout=10):
        code = _stop_process(self.proc, timeout * SLOW)
        self._finish()
        return code

    def _finish(self):
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def _force_cleanup(self, keep_log=False):
        _stop_process(self.proc, 5, signal.SIGKILL)
        self._finish()
        if not keep_log:
            _rmtemp(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        _rmtemp(self.dir)
        return False

    def __repr__(self):
        return f"Broker(bootstrap={self.bootstrap})"


# ---- funneld ------------------------------------------------------------------

class Daemon:
    """`funneld -c CONFIG` with stdout+stderr captured to a log file.

    Daemon(config, args=(), env=None, binary=None)
      .terminate(timeout=10) SIGTERM, wait, return the exit code (AssertionError
                             after SIGKILL if it did not exit in time)
      .kill()                SIGKILL, wait, return the exit code
      .wait(timeout)         exit code, or None while it still runs
      .log_text()            everything it logged so far
      .wait_for_log(regex, timeout=10, start=0) -> re.Match (searched in the
                             log from character offset `start`); raises with
                             the log tail on timeout or when funneld exits
      .log_path, .pid, .running
    Context manager: started by the constructor; on exit SIGTERM (then
    SIGKILL) if still running.
    """

    def __init__(self, config, args=(), env=None, binary=None):
        self.config = Path(config)
        self.dir = _mkdtemp("fd-daemon-")
        self.log_path = self.dir / "funneld.log"
        exe = Path(binary) if binary else build_dir() / "funneld"
        if not exe.exists():
            raise AssertionError(f"{exe} not found (set FD_BUILD_DIR or build first)")
        full_env = dict(os.environ)
        full_env.pop("JOURNAL_STREAM", None)  # timestamped log lines, not <N> prefixes
        if env:
            full_env.update({k: str(v) for k, v in env.items()})
        self._log = open(self.log_path, "ab")
        _LIVE.add(self)
        self.proc = subprocess.Popen([str(exe), "-c", str(self.config), *map(str, args)],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=full_env)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, regex, timeout=10, start=0):
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout * SLOW
        while True:
            m = pat.search(self.log_text(), start)
            if m:
                return m
            if not self.running:
                m = pat.search(self.log_text(), start)
                if m:
                    return m
                raise AssertionError(f"funneld exited with {self.proc.returncode} before "
                                     f"logging /{regex}/:\n{_tail(self.log_path)}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"funneld did not log /{regex}/ within "
                                     f"{timeout * SLOW:.0f} s:\n{_tail(self.log_path)}")
            time.sleep(0.05)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close()
                raise AssertionError(f"funneld did not exit within {timeout * SLOW:.0f} s "
                                     f"of SIGTERM:\n{_tail(self.log_path)}")
        self._close()
        return self.proc.returncode

    def kill(self):
        code = _stop_process(self.proc, 10 * SLOW, signal.SIGKILL)
        self._close()
        return code

    def _close(self):
        if self._log:
            self._log.close()
            self._log = None

    def _force_cleanup(self):
        _stop_process(self.proc, 10, signal.SIGTERM)
        self._close()
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._force_cleanup()
        if exc[0] is not None:
            print(f"--- funneld log ({self.log_path}) ---\n{_tail(self.log_path, 80)}",
                  file=sys.stderr)
        else:
            _rmtemp(self.dir)
        return False

    def __repr__(self):
        return f"Daemon(pid={self.proc.pid}, config={self.config})"


# ---- config ---------------------------------------------------------------------

# Below these dotted prefixes the rest of the key is one literal key
# ("kafka.properties.fetch.wait.max.ms" -> kafka: properties: fetch.wait.max.ms).
_LITERAL_PREFIXES = ("kafka.properties", "input.schema_ids")


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as a YAML scalar")


def _emit(node, indent, out):
    pad = "  " * indent
    for k, v in node.items():
        key = _scalar(k) if not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(k)) else str(k)
        if isinstance(v, dict):
            if v:
                out.append(f"{pad}{key}:")
                _emit(v, indent + 1, out)
            else:
                out.append(f"{pad}{key}: {{}}")
        elif isinstance(v, (list, tuple)):
            out.append(f"{pad}{key}: [{', '.join(_scalar(x) for x in v)}]")
        else:
            out.append(f"{pad}{key}: {_scalar(v)}")


def config_yaml(overrides):
    """YAML text for a dict of dotted keys -> values (nested mappings out).

    Dict values become mappings with their keys as given (so
    {"kafka.properties": {"fetch.wait.max.ms": 50}} keeps the dots); lists
    become flow sequences; strings are double-quoted.
    """
    tree = {}
    for dotted, value in overrides.items():
        parts = None
        for pre in _LITERAL_PREFIXES:
            if dotted.startswith(pre + "."):
                parts = pre.split(".") + [dotted[len(pre) + 1:]]
        if parts is None:
            parts = dotted.split(".")
        node = tree
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"config key {dotted}: {p} is already a scalar")
            node = nxt
        leaf = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = dict(value) if isinstance(value, dict) else value
    out = ["# written by tests/integration/harness.py"]
    _emit(tree, 0, out)
    return "\n".join(out) + "\n"


def write_config(path, overrides=None, **kw):
    """Write config_yaml({**overrides, **kw}) to path; returns the Path.

    Dotted keys do not fit Python keywords, so pass a dict (positionally or
    as **{"redis.url": ...}).
    """
    merged = dict(overrides or {})
    merged.update(kw)
    # tests run side by side: each funneld's HTTP listener on a port of its
    # own (logged: "http: listening on ... (port N)"), unless a test says
    merged.setdefault("http.listen", "127.0.0.1:0")
    # the default 10 s to write the last state at SIGTERM is for an optimised
    # build; the sanitizer builds run ~3x slower (a fresh-clone ASan run of
    # test_faults' rebalance test took longer with five daemons on 2 cores)
    if SLOW > 1:
        merged.setdefault("engine.shutdown_timeout_ms", 10000 * SLOW)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_yaml(merged))
    return path


# ---- framed files and Kafka clients -----------------------------------------

def read_framed(path):
    """Records of a framed file: (key bytes, value bytes) for each
    u32 BE key length, key, u32 BE value length, value."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"{path}: truncated key length at byte {pos}")
        (klen,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + klen + 4 > len(data):
            raise ValueError(f"{path}: truncated record at byte {pos - 4}")
        key = data[pos:pos + klen]
        pos += klen
        (vlen,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + vlen > len(data):
            raise ValueError(f"{path}: truncated value at byte {pos - 4}")
        out.append((key, data[pos:pos + vlen]))
        pos += vlen
    return out


def write_framed(path, records):
    """Write (key, value) pairs (bytes or str) as a framed file."""
    with open(path, "wb") as f:
        for k, v in records:
            k = k.encode() if isinstance(k, str) else k
            v = v.encode() if isinstance(v, str) else v
            f.write(struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v)


def produce_framed(bootstrap, topic, path, timeout=60, config=None):
    """Produce every record of a framed file to topic (key = record key,
    lz4, acks=all) and wait for all delivery reports. Returns the count;
    raises RuntimeError on any delivery error or if not all were delivered."""
    from confluent_kafka import Producer

    conf = {"bootstrap.servers": bootstrap, "compression.codec": "lz4", "acks": "all",
            "linger.ms": 20, "batch.num.messages": 10000,
            "queue.buffering.max.messages": 200000}
    conf.update(config or {})
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))

    p = Producer(conf)
    n = 0
    for key, value in read_framed(path):
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        n += 1
        if n % 1000 == 0:
            p.poll(0)
    left = p.flush(timeout * SLOW)
    if errors:
        raise RuntimeError(f"produce to {topic}: {len(errors)} failed, first: {errors[0]}")
    if left:
        raise RuntimeError(f"produce to {topic}: {left} of {n} not delivered in time")
    return n


def consume_all(bootstrap, topic, timeout=60, idle=2.0, config=None):
    """Every message of topic from the beginning, with a fresh group id.

    Partitions are assigned directly (no group rebalance to wait for). Stops
    once every partition was read up to its high watermark as read at the
    start (a partition whose first fetch is slow, e.g. after a broker came
    back, is waited for), or, where the watermark could not be read, once
    no message arrived for `idle` seconds; after timeout*SLOW in all. Returns [(key, value, headers, partition, offset)] sorted by
    (partition, offset); key/value are bytes (or None), headers a dict
    str -> bytes (a repeated header keeps its last value).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    conf = {"bootstrap.servers": bootstrap, "group.id": f"fd-harness-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": False}
    conf.update(config or {})
    c = Consumer(conf)
    try:
        deadline = time.monotonic() + timeout * SLOW

        def partitions():
            md = c.list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                return None
            return sorted(t.partitions)

        parts = wait_until(partitions, 15, 0.2, f"metadata of topic {topic}")
        high = {}
        for p in parts:
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                if hi > lo:
                    high[p] = hi
            except KafkaException:
                high = None
                break
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out = []
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline or (high == {}) or (high is None and now - last >= idle):
                break
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                continue
            hdrs = {k: v for k, v in (msg.headers() or [])}
            out.append((msg.key(), msg.value(), hdrs, msg.partition(), msg.offset()))
            last = time.monotonic()
            if high and msg.partition() in high and msg.offset() + 1 >= high[msg.partition()]:
                del high[msg.partition()]
        if high:
            # what is missing, for the caller's assertion to show
            print(f"consume_all({topic}): partitions {sorted(high)} not read to their end "
                  f"within {timeout * SLOW:.0f} s", file=sys.stderr)
        out.sort(key=lambda m: (m[3], m[4]))
        return out
    finally:
        c.close()
