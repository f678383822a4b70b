#!/bin/bash
# bench_ab.sh - variants of `funnelctl bench` in alternation, so that every
# variant sees the same drift of the machine (it moves up to 2x between
# hours here): round 1 runs each variant once, then round 2, ...
#
#   tools/bench_ab.sh ROUNDS "NAME|BENCH ARGS" ["NAME|BENCH ARGS" ...]
#
# e.g. tools/bench_ab.sh 2 "glibc|" \
#        "jemalloc|--preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
#      tools/bench_ab.sh 2 "new|" "old|--funneld /tmp/old/funneld"
#
# Every run is `funnelctl bench --no-kcat --json --reps 1 ARGS` (FUNNELCTL,
# default build/funnelctl); one line per run with the figures BENCHMARKS.md
# tabulates; each run's JSON and stderr stay in OUT (default a temp dir).
set -u
if [ $# -lt 2 ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
rounds=$1
shift
cd "$(dirname "$0")/.."
fc=${FUNNELCTL:-build/funnelctl}
out=${OUT:-$(mktemp -d /tmp/bench_ab.XXXXXX)}
echo "bench_ab: $rounds round(s) of ${#@} variant(s); runs kept in $out" >&2
for r in $(seq 1 "$rounds"); do
    for spec in "$@"; do
        name=${spec%%|*}
        args=${spec#*|}
        # shellcheck disable=SC2086 # ARGS are words on purpose
        "$fc" bench --no-kcat --json --reps 1 $args >"$out/$name.$r.json" 2>"$out/$name.$r.err"
        /usr/bin/python3 - "$out/$name.$r.json" "$name" "$r" <<'PY'
import json, sys
path, name, rnd = sys.argv[1:4]
try:
    d = json.load(open(path))
except Exception as e:  # the run failed: its stderr says why
    print(f"{name} {rnd} FAILED ({e}); see {path[:-5]}.err", flush=True)
    sys.exit(0)
print(f"{name} {rnd} steady_ratio={d['steady_ratio']:.3f}"
      f" funneld_steady={d['steady_events_per_s']:.0f} raw_steady={d['raw_steady_events_per_s']:.0f}"
      f" funneld_cpu_s_per_M={d['funneld_cpu_s_per_million_events']:.2f}"
      f" redis_cpu_s_per_M={d['redis_cpu_s_per_million_events']:.2f}"
      f" cmds_per_event={d['redis_commands_per_event']:.3f}"
      f" peak_rss_MiB={d['peak_rss_bytes'] / 2**20:.0f}"
      f" counted={d['funneld_events_counted']}", flush=True)
PY
    done
done
