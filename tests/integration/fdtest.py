"""fdtest.py - what funneld's integration tests share beyond harness.py:
generating input with `funnelctl gen`, reading the Kafka end offsets with an
independent client, waiting for funneld to store them in Redis, and
comparing Redis with the generator's ground truth.
"""

import base64
import json
import struct
import subprocess
import threading
import time

import harness
from harness import SLOW, build_dir, source_dir, wait_until

PREFIX = "fd:v2:"


def schema_path():
    return str(source_dir() / "conf" / "schemas" / "event.avsc")


def metrics_schema_path():
    return str(source_dir() / "conf" / "schemas" / "funnel_metrics.avsc")


def alerts_schema_path():
    return str(source_dir() / "conf" / "schemas" / "churn_alert.avsc")


def gen(out, truth, events=50000, users=5000, seed=7, fmt="avro", extra=()):
    """Write a framed file and its truth with funnelctl gen; returns the truth."""
    cmd = [str(build_dir() / "funnelctl"), "gen", "--seed", str(seed), "--events", str(events),
           "--users", str(users), "--format", fmt, "--schema", schema_path(),
           "--out", str(out), "--truth", str(truth), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(truth) as f:
        return json.load(f)


def end_offsets(bootstrap, topic):
    """{partition: (low, high)} read with confluent_kafka (not funneld)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fd-test-watermarks"})
    try:
        md = c.list_topics(topic, timeout=10)
        out = {}
        for p in sorted(md.topics[topic].partitions):
            out[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        return out
    finally:
        c.close()


def stored_offsets(r, topic, partitions):
    out = {}
    for p in partitions:
        v = r.hget(f"{PREFIX}part:{topic}:{p}", "offset")
        out[p] = int(v) if v is not None else -1
    return out


def wait_consumed(r, bootstrap, topic, timeout=120, daemon=None):
    """Wait until the offsets funneld stored in Redis reach the end of every
    partition. Checks that the broker kept the whole log (low watermark 0)."""
    ends = end_offsets(bootstrap, topic)
    for p, (lo, hi) in ends.items():
        assert lo == 0, f"broker deleted data of partition {p} (low watermark {lo})"

    seen = []

    def done():
        if daemon is not None and not daemon.running:
            raise AssertionError(f"funneld exited early:\n{daemon.log_text()[-3000:]}")
        s = stored_offsets(r, topic, ends)
        seen[:] = [s]
        return all(s[p] >= hi for p, (lo, hi) in ends.items())
    try:
        wait_until(done, timeout, 0.2, f"funneld to store the end offsets {ends}")
    except AssertionError as e:
        raise AssertionError(f"{e}; stored at the end: {seen[0] if seen else None}, "
                             f"stats {r.hgetall(PREFIX + 'stats')}") from None
    return ends


# The user record (docs/REDIS_KEYS.md): "u1 <half-lives> <field>...", the
# fixed fields, then five decayed values per half-life. Decoded here from
# the document, not from funneld's code.
USER_FIXED_FIELDS = ("click", "cart", "purchase", "first_ts", "last_ts", "revenue_cents",
                     "last_cart_ts", "last_purchase_ts", "sessions", "session_gap_sum_ms",
                     "items_sketch", "categories_sketch", "session_id_hash", "session_start",
                     "session_last", "session_stage", "abandoned", "carted")
USER_DECAYED = ("click", "cart", "purchase", "revenue", "sessions")


def parse_user_record(value):
    """A user record (str or bytes) -> {field name: text value}."""
    if isinstance(value, bytes):
        value = value.decode()
    # the recommendation model's suffix " f FACTORS RECS_MIN" (RECS.md):
    # base64 of the user's factors as little-endian bfloat16
    factors = None
    if " f " in value:
        value, rest = value.split(" f ", 1)
        parts = rest.split(" ")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            raise ValueError(f"bad mf suffix: {rest!r}")
        # the last purchases' item ids as FNV-1a 32 hashes, hex, newest first
        bought = [int(h, 16) for h in parts[2].split(",")] if len(parts) == 3 else []
        raw = base64.b64decode(parts[0], validate=True)
        factors = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        if not all(abs(x) <= 16 for x in factors):
            raise ValueError(f"mf factors out of range: {factors}")
    # the churn model's suffix " m RISK_Q NEXT_CP FLAGS ALERT_TS" (CHURN.md)
    model = None
    if " m " in value:
        value, rest = value.split(" m ", 1)
        model = rest.split(" ")
        if len(model) != 4:
            raise ValueError(f"bad churn suffix: {rest!r}")
    tokens = value.split(" ")
    if len(tokens) < 2 or tokens[0] != "u1":
        raise ValueError(f"not a u1 user record: {value[:40]!r}")
    hls = tokens[1].split(",")
    names = list(USER_FIXED_FIELDS) + [f"{d}_{h}" for h in hls for d in USER_DECAYED]
    if len(tokens) - 2 != len(names):
        raise ValueError(f"{len(tokens) - 2} fields, want {len(names)}: {value[:60]!r}")
    rec = dict(zip(names, tokens[2:]))
    if model is not None:
        rec.update(zip(("churn_risk_q", "churn_next_cp", "churn_flags", "churn_alert_ts"), model))
    if factors is not None:
        rec["mf_factors"] = factors
        rec["mf_recs_min"] = parts[1]
        rec["mf_bought"] = bought
    return rec


def user_records(r, uids, prefix=PREFIX):
    """[{field: text} or None] of the users, one pipelined GET each."""
    pipe = r.pipeline(transaction=False)
    for uid in uids:
        pipe.get(prefix + "user:" + uid)
    return [None if v is None else parse_user_record(v) for v in pipe.execute()]


# What the churn model learned is the same in every run of the same events
# (the examples and labels: CHURN.md), but the weights, and so every risk
# and alert, depend on how the shards' replicas were merged (the number of
# workers and the epochs' boundaries). redis_state keeps the former.
MODEL_EXACT_FIELDS = ("examples", "churned", "reactivated", "horizon_s")
# Fields of PREFIX stats that depend on the model's weights (the alerts it
# decided), which depend on the merge order: compared approximately, by the
# fault tests, not by redis_state().
STATS_MODEL_FIELDS = ("churn_alerts",)


def fnv1a32(s):
    """FNV-1a, 32 bits, of a str's UTF-8 bytes (the user record's bought items)."""
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


# Of the recommendation model (RECS.md) the same holds: the positives
# learned and the items are the same in every run, the factors (of items
# and users) and so every recommendation depend on the merges.
MF_EXACT_FIELDS = ("k", "items", "positives")


def _user_value(v):
    """A user record without the model-dependent part of its churn suffix
    (risk, alert time, the alert flags): the episode state stays; and of
    its recommendation suffix only that it is there."""
    if isinstance(v, bytes):
        v = v.decode()
    if " f " in v:
        v = v.split(" f ", 1)[0] + " f"
    if " m " not in v:
        return v
    head, tail = v.split(" m ", 1)
    factors = tail.endswith(" f")
    _risk, next_cp, flags, _alert_ts = tail.removesuffix(" f").split(" ")
    return f"{head} m - {next_cp} {int(flags) & 0x03} -" + (" f" if factors else "")


def redis_state(r):
    """Every funneld key -> its value, for exact comparisons between runs:
    hashes as dicts, HyperLogLogs as their PFCOUNT (the encoding may depend
    on the order of PFADDs, the set does not), sorted sets as lists, sets
    sorted; of the churn model, what must not depend on the merge order
    (MODEL_EXACT_FIELDS, the risk ranking's members; the stats without
    STATS_MODEL_FIELDS); of the recommendation model likewise
    (MF_EXACT_FIELDS, the item ids, that a user has recommendations)."""
    out = {}
    for k in r.scan_iter(match=PREFIX + "*", count=1000):
        t = r.type(k)
        t = t.decode() if isinstance(t, bytes) else t
        ks = k.decode() if isinstance(k, bytes) else k
        if t == "hash" and ks.endswith(":model:churn"):
            h = {(f.decode() if isinstance(f, bytes) else f): v for f, v in r.hgetall(k).items()}
            out[k] = {f: h.get(f) for f in MODEL_EXACT_FIELDS}
        elif t == "hash" and ks.endswith(":model:mf"):
            h = {(f.decode() if isinstance(f, bytes) else f): v for f, v in r.hgetall(k).items()}
            out[k] = {f: h.get(f) for f in MF_EXACT_FIELDS}
        elif t == "hash" and ks.endswith(":mf:item"):
            out[k] = ("items", sorted(r.hkeys(k)))
        elif t == "hash" and ks == PREFIX + "stats":
            h = r.hgetall(k)
            out[k] = {f: v for f, v in h.items()
                      if (f.decode() if isinstance(f, bytes) else f) not in STATS_MODEL_FIELDS}
        elif t == "hash":
            out[k] = r.hgetall(k)
        elif t == "string" and ks.endswith(":mf:ring"):
            # which positives are the last 4096 depends on how the shards'
            # epochs merged; how many does not
            out[k] = ("ring", len(r.get(k).split("\n")))
        elif t == "string" and ":recs:" in ks:
            out[k] = ("recs", len(json.loads(r.get(k))) > 0)
        elif t == "string" and ":user:" in ks:
            out[k] = ("user", _user_value(r.get(k)))
        elif t == "string":
            out[k] = ("pfcount", r.pfcount(k))
        elif t == "zset" and ks.endswith(":churn:risk"):
            out[k] = ("zset members", sorted(r.zrange(k, 0, -1)))
        elif t == "zset":
            out[k] = ("zset", r.zrange(k, 0, -1, withscores=True))
        elif t == "set":
            out[k] = ("set", sorted(r.smembers(k)))
        else:
            out[k] = (t,)
    return out


def state_diff(got, want, limit=5):
    """A short human description of how two redis_state() dicts differ."""
    lines = []
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            lines.append(f"  {k}: got {got.get(k)} want {want.get(k)}")
    head = "\n".join(lines[:limit])
    return f"{len(lines)} key(s) differ:\n{head}" if lines else "identical"


def metrics_by_id(test, bootstrap, topic="funnel-metrics"):
    """The funnel-metrics messages deduplicated by id (the message key):
    {id: value bytes}. Copies of one id (at-least-once delivery, e.g. after
    a crash) must be byte for byte the same message."""
    out = {}
    for key, value, *_ in harness.consume_all(bootstrap, topic):
        k = key.decode()
        if k in out:
            test.assertEqual(out[k], value, f"two different messages with id {k}")
        out[k] = value
    return out


def compare_with_truth(test, r, truth):
    """Redis equals the generator's ground truth: every user's counters and
    sessions exactly, every funnel window and hour exactly (unique users
    within HyperLogLog error), the late events, the events counted."""
    users = truth["users"]
    bad = []
    names = list(users)
    fields = ("click", "cart", "purchase", "first_ts", "last_ts")
    for uid, h in zip(names, user_records(r, names)):
        h = h or {}
        want = {f: users[uid][f] for f in fields}
        got = {f: int(h.get(f, -1)) for f in fields}
        if got != want:
            bad.append((uid, got, want))
    test.assertEqual(bad[:5], [], f"{len(bad)} users differ from the truth")
    n_user_keys = sum(1 for _ in r.scan_iter(match=PREFIX + "user:*", count=1000))
    test.assertEqual(n_user_keys, len(users), "user keys in Redis vs users in the truth")
    compare_user_sessions(test, r, truth)
    compare_funnel_with_truth(test, r, truth)
    test.assertEqual(int(r.hget(PREFIX + "stats", "events") or 0), truth["events"])


FUNNEL_COUNTERS = ("sessions_visit", "sessions_click", "sessions_cart", "sessions_purchase",
                   "click", "cart", "purchase", "revenue_cents")
FUNNEL_STAGES = ("visit", "click", "cart", "purchase")
USER_SESSION_FIELDS = ("sessions", "revenue_cents", "last_cart_ts", "last_purchase_ts")


def window_name(ms):
    """The config spelling of a duration in key names: 60000 -> "1m",
    300000 -> "5m", 3600000 -> "1h", 30000 -> "30s"."""
    for unit, n in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms % n == 0:
            return f"{ms // n}{unit}"
    return f"{ms}ms"


def _num(v):
    """A Redis hash value as an int (absent = 0); a non-integer comes back as
    the raw string so that it shows up as a difference."""
    if v is None:
        return 0
    if isinstance(v, bytes):
        v = v.decode()
    try:
        return int(v)
    except ValueError:
        try:
            f = float(v)
            return int(f) if f.is_integer() else v
        except ValueError:
            return v


def _hashes(r, keys, fields):
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.hmget(k, fields)
    return [dict(zip(fields, map(_num, vals))) for vals in pipe.execute()]


def _keys(r, pattern):
    return {k.decode() if isinstance(k, bytes) else k
            for k in r.scan_iter(match=pattern, count=1000)}


def compare_funnel_with_truth(test, r, truth, prefix=PREFIX, hll_tolerance=0.05):
    """Redis funnel windows, hours and categories equal truth["funnel"] of
    `funnelctl gen --truth`: counters exactly (an absent field is 0), the
    same set of window and hour hashes, the distinct users per stage
    (HyperLogLog) within hll_tolerance relative (or 3 for small sets; the standard error is
    0.81 %, and hundreds of windows are compared),
    and the stats field late_events. Extra hash fields (rates, closed) are
    ignored."""
    f = truth["funnel"]
    wname = window_name(f["window_ms"])
    ucount_bad = []

    def check_level(name, level, entries):
        base = f"{prefix}funnel:{level}:"
        starts = list(entries)
        bad = []
        for st, got in zip(starts, _hashes(r, [base + st for st in starts], FUNNEL_COUNTERS)):
            want = {c: entries[st][c] for c in FUNNEL_COUNTERS}
            if got != want:
                bad.append((st, got, want))
        test.assertEqual(bad[:5], [], f"{len(bad)} of {len(starts)} {name} differ from the truth")
        # users per stage
        pipe = r.pipeline(transaction=False)
        for st in starts:
            for stage in FUNNEL_STAGES:
                pipe.pfcount(f"{base}{st}:users:{stage}")
        counts = iter(pipe.execute())
        for st in starts:
            for stage in FUNNEL_STAGES:
                got, want = next(counts), entries[st]["users_" + stage]
                # HyperLogLog: 0.81 % standard error, and off by one or
                # two even for small sets (register collisions, rounding)
                ok = abs(got - want) <= max(3, hll_tolerance * want)
                if not ok:
                    ucount_bad.append((name, st, stage, got, want))
        # the same set of hashes: funnel:<level>:<digits>, nothing more
        present = {k[len(base):] for k in _keys(r, base + "*")
                   if k[len(base):].isdigit()}
        test.assertEqual(sorted(present - set(starts))[:5], [],
                         f"{name} in Redis that the truth does not have")
        test.assertEqual(len(present), len(starts), f"{name} hashes in Redis vs the truth")

    check_level("windows", wname, f["windows"])
    check_level("hours", "1h", f["hours"])
    test.assertEqual(ucount_bad[:5], [],
                     f"{len(ucount_bad)} distinct-user counts off by more than {hll_tolerance:.0%}")

    cats = f.get("categories", {})
    keys, wants = [], []
    for st, per_cat in cats.items():
        for cat, want in per_cat.items():
            keys.append(f"{prefix}funnel:{wname}:{st}:cat:{cat}")
            wants.append(want)
    bad = [(k, got, want) for k, got, want in zip(keys, _hashes(r, keys, FUNNEL_COUNTERS), wants)
           if got != {c: want[c] for c in FUNNEL_COUNTERS}]
    test.assertEqual(bad[:5], [], f"{len(bad)} of {len(keys)} category breakdowns differ")
    present = _keys(r, f"{prefix}funnel:{wname}:*:cat:*")
    test.assertEqual(sorted(present - set(keys))[:5], [],
                     "category hashes in Redis that the truth does not have")

    test.assertEqual(_num(r.hget(prefix + "stats", "late_events")), f["late_events"],
                     "stats late_events vs the truth")


def compare_user_sessions(test, r, truth, prefix=PREFIX):
    """Per user hash fields sessions, revenue_cents, last_cart_ts and
    last_purchase_ts equal the truth (an absent field is 0)."""
    users = truth["users"]
    names = list(users)
    bad = []
    recs = user_records(r, names, prefix)
    got_all = [{f: _num((rec or {}).get(f)) for f in USER_SESSION_FIELDS} for rec in recs]
    for uid, got in zip(names, got_all):
        want = {k: users[uid][k] for k in USER_SESSION_FIELDS}
        if got != want:
            bad.append((uid, got, want))
    test.assertEqual(bad[:5], [], f"{len(bad)} of {len(names)} users' sessions differ from the truth")


def daemon_config(path, bootstrap, redis_url, **extra):
    overrides = {"kafka.brokers": bootstrap, "redis.url": redis_url,
                 "input.schema": schema_path(),
                 "kafka.metrics_schema": str(source_dir() / "conf" / "schemas" /
                                             "funnel_metrics.avsc"),
                 "kafka.alerts_schema": str(source_dir() / "conf" / "schemas" /
                                            "churn_alert.avsc"),
                 # generated streams cover days of event time in seconds: keep
                 # every window (retention is in event time)
                 "funnel.retention": "3650d",
                 "kafka.properties": {"fetch.wait.max.ms": 50}}
    overrides.update(extra)
    return harness.write_config(path, overrides)


def retrying_config(path, bootstrap, redis_url, backoff_min_ms, backoff_max_ms, **extra):
    """daemon_config for tests where Redis stops taking writes: flush every
    50 ms and retry with the given backoff."""
    return daemon_config(path, bootstrap, redis_url,
                         **{"redis.flush_interval_ms": 50,
                            "redis.backoff_min_ms": backoff_min_ms,
                            "redis.backoff_max_ms": backoff_max_ms, **extra})


def start_until_events(test, r, producer, events, timeout=60):
    """Start a RateProducer and wait (asserting) until stats events > events."""
    producer.start()
    test.assertTrue(sleep_until(
        lambda: int(r.hget(PREFIX + "stats", "events") or 0) > events, timeout),
        f"stats events did not pass {events}")


def produce_positions(bootstrap, topic, msgs, **producer_conf):
    """Produce msgs [(key, value)] with confluent_kafka (acks=all, 20 MiB
    messages allowed; producer_conf adds or overrides properties) and return
    each message's delivery position [(partition, offset)], in order."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 20 * 1024 * 1024,
                  "acks": "all", **producer_conf})
    out = [None] * len(msgs)
    errors = []

    def cb(i):
        def on_delivery(err, m):
            if err:
                errors.append(err)
            else:
                out[i] = (m.partition(), m.offset())
        return on_delivery
    for i, (key, value) in enumerate(msgs):
        p.produce(topic, key=key, value=value, on_delivery=cb(i))
        p.poll(0)
    assert p.flush(60) == 0 and not errors, f"produce failed: {errors}"
    return out


def sleep_until(pred, timeout):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


class RateProducer:
    """Produces a framed file to a topic at a bounded rate from a thread, so
    a test can interrupt funneld while the stream is still arriving."""

    def __init__(self, bootstrap, topic, path, rate=5000):
        self.records = list(harness.read_framed(path))
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.errors = []
        self.sent = 0
        self._stop = False
        self._go = threading.Event()  # cleared: production waits
        self._go.set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def pause(self):
        """Hold production (e.g. while no funneld runs) until resume()."""
        self._go.clear()

    def resume(self):
        self._go.set()

    @property
    def started(self):
        return self._thread.ident is not None

    def start(self):
        self._thread.start()

    def _run(self):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bootstrap, "compression.codec": "lz4",
                      "linger.ms": 5, "acks": "all"})

        def on_delivery(err, msg):
            if err is not None:
                self.errors.append(str(err))
        chunk = max(1, self.rate // 20)
        t0 = time.monotonic()
        for i in range(0, len(self.records), chunk):
            if not self._go.is_set():
                paused = time.monotonic()
                while not self._go.wait(0.05) and not self._stop:
                    p.poll(0)
                t0 += time.monotonic() - paused  # the pause does not count
            if self._stop:
                break
            for key, value in self.records[i:i + chunk]:
                while True:
                    try:
                        p.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
                        break
                    except BufferError:
                        p.poll(0.05)
            self.sent = i + chunk
            p.poll(0)
            ahead = t0 + (i + chunk) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        left = p.flush(60)
        if left:
            self.errors.append(f"{left} messages not delivered")

    def join(self, timeout=120):
        self._thread.join(timeout * SLOW)
        if self._thread.is_alive():
            raise AssertionError("producer thread did not finish")
        if self.errors:
            raise AssertionError(f"produce errors: {self.errors[:3]}")

    def stop(self):
        self._stop = True
        self._go.set()
        if self._thread.is_alive():
            self._thread.join(30)
