#!/usr/bin/env bash
# demo.sh - funneld end to end in about 40 seconds, on this machine only.
#
# Starts a private redis-server (unix socket in a temp dir, no persistence)
# and funneld with its embedded Kafka mock cluster, streams 60,000 synthetic
# events through it with `funnelctl gen` while printing a live line, sends a
# few deliberately bad messages with kcat so the dead-letter path shows up,
# then prints the funnel read back from Redis and checks every user and every
# minute against the generator's ground truth.
#
# Nothing outside the temp dir is touched: no other Redis, no fixed ports.
# Everything started here is stopped by the EXIT trap, also on failure or
# Ctrl-C. The servers run in their own sessions (setsid) so that Ctrl-C
# reaches only this script, which then stops them in order: the generator,
# funneld (SIGTERM: drain and flush while Redis is still up), redis-server. Exit status: 0 when the demo ran and Redis matches the truth.
#
# Usage: tools/demo.sh            (make demo builds first, then runs this)
# Env:   FD_BUILD_DIR  build directory holding funneld and funnelctl (build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${FD_BUILD_DIR:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
FUNNELD=$BUILD/funneld
FUNNELCTL=$BUILD/funnelctl
SCHEMA=$ROOT/conf/schemas/event.avsc
PY=/usr/bin/python3
PREFIX="fd:v2:"

EVENTS=60000 USERS=5000 RATE=2000 SEED=42

for exe in "$FUNNELD" "$FUNNELCTL"; do
    [ -x "$exe" ] || { echo "demo: $exe not found; build first (make build)" >&2; exit 1; }
done
for tool in redis-server redis-cli kcat "$PY"; do
    command -v "$tool" >/dev/null || { echo "demo: $tool is missing (tools/setup.sh installs it)" >&2; exit 1; }
done

TTY=0
[ -t 1 ] && TTY=1
if [ $TTY = 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B='' G='' R='' N=''; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/funneld-demo.XXXXXX")
SOCK=$tmp/redis.sock
LOG=$tmp/funneld.log
redis_pid='' funneld_pid='' gen_pid='' failed=1 keep_log=0 interrupted=0

rcli() { redis-cli -s "$SOCK" --no-raw "$@" 2>/dev/null; }
rraw() { redis-cli -s "$SOCK" --raw "$@" 2>/dev/null; }

# SIGTERM a child of ours, SIGKILL it if it is not gone within $2 seconds.
stop_pid() {
    local pid=$1 secs=$2
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stop whatever is still running, in reverse order of start, then remove
# the temp dir. On failure, show where funneld's log was and its tail.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ $TTY = 1 ] && printf '\n' >&2 || true
    stop_pid "$gen_pid" 5
    stop_pid "$funneld_pid" 15
    stop_pid "$redis_pid" 5
    if [ "$interrupted" = 1 ]; then
        echo "demo interrupted; everything it started is stopped" >&2
    elif [ "$failed" = 1 ] || [ $rc -ne 0 ]; then
        [ $rc -eq 0 ] && rc=1
        if [ -s "$LOG" ]; then
            echo "${R}demo failed${N}; last lines of funneld's log ($LOG):" >&2
            tail -n 25 "$LOG" >&2
        else
            echo "${R}demo failed${N}" >&2
        fi
        [ -s "$tmp/gen.log" ] && { echo "funnelctl gen said:" >&2; tail -n 5 "$tmp/gen.log" >&2; }
        if [ -n "${FD_DEMO_KEEP:-}" ]; then
            keep_log=1
            echo "kept $tmp (FD_DEMO_KEEP is set)" >&2
        else
            echo "(removed; run with FD_DEMO_KEEP=1 to keep $tmp)" >&2
        fi
    fi
    [ $keep_log = 1 ] || rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT
trap 'interrupted=1; exit 143' TERM

die() { echo "${R}demo: $*${N}" >&2; exit 1; }

# funneld is gone while it should run: say how it ended (exit 0 means it was
# told to stop from outside, e.g. Ctrl-C reaching the whole process group).
funneld_gone() {
    local st=0
    wait "$funneld_pid" || st=$?
    funneld_pid=''
    if [ $st -eq 0 ]; then die "funneld stopped $1 (exit 0: interrupted?)"; fi
    die "funneld exited with status $st $1"
}

# ---- Redis: private, unix socket only, no persistence ----------------------
setsid redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --save "" \
    --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no &
redis_pid=$!
for _ in $(seq 50); do
    [ "$(rraw PING)" = PONG ] && break
    kill -0 "$redis_pid" 2>/dev/null || die "redis-server did not start (see $tmp/redis.log)"
    sleep 0.1
done
[ "$(rraw PING)" = PONG ] || die "redis-server did not answer on $SOCK"

# ---- funneld with the embedded Kafka mock cluster --------------------------
cat >"$tmp/funneld.yaml" <<EOF
# written by tools/demo.sh
kafka:
  brokers: embedded
  partitions: 4
  metrics_schema: $ROOT/conf/schemas/funnel_metrics.avsc
  alerts_schema: $ROOT/conf/schemas/churn_alert.avsc
redis:
  url: unix://$SOCK
  key_prefix: "$PREFIX"
  flush_interval_ms: 200ms
input:
  format: avro
  schema: $SCHEMA
  max_message_bytes: 64KiB
funnel:
  # the generated stream spans ~9 days of event time and the summary checks
  # every window against the generator's truth: keep them all
  retention: 30d
log:
  level: info
EOF
"$FUNNELD" --check-config -c "$tmp/funneld.yaml" >/dev/null || die "the demo config was refused"

setsid "$FUNNELD" -c "$tmp/funneld.yaml" >"$LOG" 2>&1 &
funneld_pid=$!
BOOT=''
for _ in $(seq 100); do
    BOOT=$(sed -n 's/.*embedded Kafka mock cluster listening at \([^ ]*\) .*/\1/p' "$LOG" | head -n 1)
    [ -n "$BOOT" ] && break
    kill -0 "$funneld_pid" 2>/dev/null || funneld_gone "during start-up"
    sleep 0.1
done
[ -n "$BOOT" ] || die "funneld did not report its embedded Kafka cluster within 10 s"

echo "${B}funneld demo${N}"
echo "  redis-server  unix socket $SOCK (private, no persistence)"
echo "  kafka         embedded mock cluster at $BOOT (4 partitions per topic)"
echo "  funneld       pid $funneld_pid, config $tmp/funneld.yaml"
echo "  generator     $EVENTS Avro events from $USERS users at $RATE events/s (seed $SEED)"
echo

# ---- the stream ------------------------------------------------------------
setsid "$FUNNELCTL" gen --brokers "$BOOT" --topic events --rate "$RATE" --events "$EVENTS" \
    --users "$USERS" --seed "$SEED" --truth "$tmp/truth.json" --schema "$SCHEMA" \
    -X message.timeout.ms=15000 >"$tmp/gen.log" 2>&1 &
gen_pid=$!

# Deliberately bad input, each message one file (kcat sends a file as one
# message): funneld must dead-letter them and keep going.
printf '{"event_id":"e1","user_id":"u1","ts":1767225600000,"type":"click"}' >"$tmp/bad-json"
printf '\xde\xad\xbe\xef\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage' >"$tmp/bad-bytes"
printf '\x0ae-bad\x04u1\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80' >"$tmp/bad-truncated"
head -c 100000 /dev/zero | tr '\0' 'x' >"$tmp/bad-huge"
BAD=4
sleep 1
timeout 30 kcat -P -b "$BOOT" -t events -k demo-bad "$tmp/bad-json" "$tmp/bad-bytes" "$tmp/bad-truncated" \
    "$tmp/bad-huge" 2>"$tmp/kcat.log" || die "kcat could not produce the bad messages: $(cat "$tmp/kcat.log")"
# One well-formed event stamped a day ahead of now: rejected as future_ts.
FUTURE=$(( ($(date +%s) + 86400) * 1000 ))
timeout 30 "$FUNNELCTL" gen --brokers "$BOOT" --topic events --events 1 --users 1 --seed 7 \
    --start "$FUTURE" --schema "$SCHEMA" -X message.timeout.ms=15000 >>"$tmp/kcat.log" 2>&1 || die "could not produce the future event"
BAD=$((BAD + 1))

stat_of() { local v; v=$(rraw HGET "${PREFIX}stats" "$1"); echo "${v:-0}"; }
count_users() { redis-cli -s "$SOCK" --scan --pattern "${PREFIX}user:*" 2>/dev/null | wc -l; }
live() {
    local ev dlq users rate
    ev=$(stat_of events) dlq=$(stat_of dlq) users=$(count_users)
    rate=$(( ev - ${last_ev:-0} ))
    last_ev=$ev
    local line
    line=$(printf '  %6ss  events %6d   dead letters %d   users %5d   %5d events/s' \
        "$SECONDS" "$ev" "$dlq" "$users" "$rate")
    if [ $TTY = 1 ]; then printf '\r%s ' "$line"; else printf '%s\n' "$line"; fi
}

SECONDS=0
last_ev=0
while kill -0 "$gen_pid" 2>/dev/null; do
    sleep 1
    kill -0 "$funneld_pid" 2>/dev/null || funneld_gone "while consuming"
    live
done
gen_rc=0
wait "$gen_pid" || gen_rc=$?
gen_pid=''
[ $gen_rc -eq 0 ] || die "funnelctl gen failed (exit $gen_rc): $(tail -n 3 "$tmp/gen.log")"
[ -s "$tmp/truth.json" ] || die "funnelctl gen wrote no truth file"
SENT=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$tmp/truth.json")

# Let funneld catch up: bounded wait until every event and dead letter is in Redis.
for _ in $(seq 200); do
    [ "$(stat_of events)" = "$SENT" ] && [ "$(stat_of dlq)" -ge "$BAD" ] && break
    kill -0 "$funneld_pid" 2>/dev/null || funneld_gone "while catching up"
    sleep 0.1
done
live
[ $TTY = 1 ] && printf '\n'
[ "$(stat_of events)" = "$SENT" ] ||
    die "funneld accepted $(stat_of events) events within 20 s, the generator sent $SENT"

# ---- stop funneld: SIGTERM drains, flushes, exits 0 -------------------------
kill -TERM "$funneld_pid"
frc=''
for _ in $(seq 150); do
    kill -0 "$funneld_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$funneld_pid" 2>/dev/null && die "funneld did not stop within 15 s of SIGTERM"
frc=0
wait "$funneld_pid" || frc=$?
funneld_pid=''
[ "$frc" -eq 0 ] || die "funneld exited with status $frc after SIGTERM (expected 0)"

# ---- summary, read back from Redis and checked against the truth -----------
echo
"$PY" - "$SOCK" "$PREFIX" "$tmp/truth.json" "$BAD" "$B" "$G" "$R" "$N" <<'PYEOF'
import json, sys
import redis

sock, prefix, truth_path, bad, B, G, R, N = sys.argv[1:9]
bad = int(bad)
r = redis.Redis(unix_socket_path=sock, decode_responses=True)
truth = json.load(open(truth_path))
TYPES = ("click", "cart", "purchase")

def scan(pattern):
    return list(r.scan_iter(match=prefix + pattern, count=2000))

def hgetall_many(keys):
    p = r.pipeline(transaction=False)
    for k in keys:
        p.hgetall(k)
    return p.execute()

def user_records(keys):
    # The user record (docs/REDIS_KEYS.md): "u1 <half-lives> <fields>", the
    # first five fields click cart purchase first_ts last_ts.
    p = r.pipeline(transaction=False)
    for k in keys:
        p.get(k)
    out = []
    for v in p.execute():
        tok = (v or "").split(" ")
        out.append(dict(zip(TYPES + ("first_ts", "last_ts"), tok[2:7])) if tok[0] == "u1" else {})
    return out

stats = r.hgetall(prefix + "stats")
user_keys = scan("user:*")
users = dict(zip((k[len(prefix) + 5:] for k in user_keys), user_records(user_keys)))
win_keys = [k for k in scan("funnel:1m:*") if k[len(prefix) + 10:].isdigit()]
wins = dict(zip((k[len(prefix) + 10:] for k in win_keys), hgetall_many(win_keys)))
STAGES = ("visit", "click", "cart", "purchase")
sess = {s: sum(int(w.get("sessions_" + s, 0)) for w in wins.values()) for s in STAGES}
closed = sum(1 for w in wins.values() if w.get("closed") == "1")

tot = {f: sum(int(w.get(f, 0)) for w in wins.values()) for f in TYPES + ("revenue_cents",)}
events = int(stats.get("events", 0))
dlq = int(stats.get("dlq", 0))

def pct(a, b):
    return "%5.1f %%" % (100.0 * a / b) if b else "    - "

print(B + "Summary (read back from Redis)" + N)
print("  events accepted   %9d   (the generator sent %d)" % (events, truth["events"]))
print("  users             %9d" % len(users))
print("  funnel over %d one-minute windows (%d closed, rates written):" % (len(wins), closed))
print("    %-9s %9s %9s" % ("stage", "sessions", "events"))
for s in STAGES:
    print("    %-9s %9d %9s" % (s, sess[s], tot[s] if s in tot else "-"))
print("  conversion        visit -> click %s   click -> cart %s   cart -> purchase %s"
      % (pct(sess["click"], sess["visit"]), pct(sess["cart"], sess["click"]),
         pct(sess["purchase"], sess["cart"])))
print("                    visit -> purchase %s" % pct(sess["purchase"], sess["visit"]))
print("  revenue           %12s" % "{:,.2f}".format(tot["revenue_cents"] / 100.0))
print("  dead letters      %9d" % dlq)
for k in sorted(stats):
    if k.startswith("dlq."):
        print("    %-18s%6s" % (k[4:], stats[k]))
if int(stats.get("data_loss_offsets", 0)):
    print("  %sdata loss: %s offsets%s" % (R, stats["data_loss_offsets"], N))

problems = []
tu = truth["users"]
bad_users = [u for u, t in tu.items()
             if {f: int(users.get(u, {}).get(f, -1)) for f in TYPES + ("first_ts", "last_ts")}
             != {f: t[f] for f in TYPES + ("first_ts", "last_ts")}]
extra_users = set(users) - set(tu)
if bad_users or extra_users:
    problems.append("%d users differ (e.g. %s), %d unexpected"
                    % (len(bad_users), bad_users[:3], len(extra_users)))
tm = truth["funnel"]["windows"]
FIELDS = TYPES + ("revenue_cents",) + tuple("sessions_" + s for s in STAGES)
bad_mins = [m for m, t in tm.items()
            if {f: int(wins.get(m, {}).get(f, 0)) for f in FIELDS} != {f: t[f] for f in FIELDS}]
extra_mins = set(wins) - set(tm)
if bad_mins or extra_mins:
    problems.append("%d minute windows differ (e.g. %s), %d unexpected"
                    % (len(bad_mins), bad_mins[:3], len(extra_mins)))
tt = truth["totals"]
if any(tot[f] != tt[f] for f in TYPES + ("revenue_cents",)):
    problems.append("totals %s != truth %s" % (tot, tt))
if events != truth["events"]:
    problems.append("events %d != %d" % (events, truth["events"]))
if dlq != bad:
    problems.append("dead letters %d, expected %d" % (dlq, bad))
print()
if problems:
    print(R + "Ground truth: MISMATCH" + N)
    for p in problems:
        print("  - " + p)
    sys.exit(1)
print(G + "Ground truth: every user (%d) and every minute window (%d: sessions by stage, events, "
      "revenue) matches, "
      "totals and revenue match, %d/%d bad messages dead-lettered." % (len(tu), len(tm), dlq, bad) + N)
PYEOF
echo "funneld stopped on SIGTERM with exit status 0; everything started by the demo is stopped and removed."
failed=0
