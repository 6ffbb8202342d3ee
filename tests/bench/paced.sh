#!/bin/bash
# tests/bench/paced.sh [BUILD_DIR]: the plugin's CPU per value at the steady rate a utility
# runs, against collectd's own dispatch paced the same way (issue 14; not part of make check).
#
# The setup: $METERS meters x 5 items, BatchSize 1000, Interval 1 s, so 100,000 values/s are
# offered in pushes of 1,000 readings per plan (QoS 1), counted by a no-op writer
# (bench_count.c), WriteThreads at its default, collectd unpinned. RUNS times (default 3),
# one after the other:
#  (plugin)   hes-sim --bench-reuse -> mosquitto -> hes.so inside collectd: collectd's CPU
#             (utime+stime) over a steady window, divided by the values counted at the writer;
#  (baseline) bench_dispatch.c inside collectd: plugin_dispatch_values from its own thread
#             for the same identifiers, in the same bursts of 1,000, at the rate the plugin
#             run just measured; same measure.
# Efficiency = baseline us/value / plugin us/value, per run; the median of the runs is the
# figure (the README's headline). Also printed: CPU by thread group (schedstat), context
# switches per value (voluntary, involuntary; all threads), and resident bytes per
# configured meter at MEM_METERS meters (target <= 64).
#
# Knobs: PACED_METERS (20000), PACED_RUNS (3), PACED_WARMUP (10 s), PACED_WINDOW (15 s),
# PACED_MEM_METERS (100000), BENCH_HES_SO (another hes.so, for an A/B), BENCH_COLLECTD_ENV,
# BENCH_TIMEOUT, BENCH_GLOBAL (lines for collectd.conf's top level, e.g. "WriteThreads 1"),
# BENCH_SIM_ARGS (as in ingest.sh), BENCH_DISPATCH_WORK (us of busy work the
# baseline does before each value: an experiment). KEEP_TMP=1 keeps the logs. About 2.5
# minutes with the defaults.
set -euo pipefail

BUILD=$(cd "${1:-$PWD}" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export top_srcdir=$SRC top_builddir=$BUILD
# shellcheck source=tests/lib.sh disable=SC1091
. "$SRC/tests/lib.sh"
# shellcheck source=tests/bench/bench_lib.sh disable=SC1091
. "$SRC/tests/bench/bench_lib.sh"

METERS=${PACED_METERS:-20000}
RUNS=${PACED_RUNS:-3}
WARMUP=${PACED_WARMUP:-10}
WINDOW=${PACED_WINDOW:-15}
MEM_METERS=${PACED_MEM_METERS:-100000}
INTERVAL=1
OFFERED=$((METERS * NITEMS / INTERVAL))

bench_init count dispatch
meter_file "$METERS" "$TEST_TMP/meters.txt"
# shellcheck disable=SC2119 # start_mosquitto takes no $1 here
start_mosquitto
# shellcheck disable=SC2086 # BENCH_SIM_ARGS is a list of words
start_sim --tenant "$TENANT" --username kuangda --password kd123456 --secret-key "$SECRET" \
  --push-delay-ms 0 ${BENCH_SIM_ARGS---bench-reuse}
wait_for 10 sim_connected || fail "simulator not connected to the broker"

load0=$(cut -d' ' -f1-3 /proc/loadavg)
effs=()
rows=()
for ((r = 1; r <= RUNS; r++)); do
  plugin_run "$TEST_TMP/plugin$r" "$WARMUP" "$WINDOW"
  note "run $r plugin: $P_RATE values/s (offered $OFFERED, simulator published $P_SIM_RATE), $P_US us/value, collectd $P_CORES cores, sim $P_SIM_CORES, mosquitto $P_MQ_CORES, other processes $P_OTHER_CORES; $P_LOG; $P_SELF"
  note "run $r plugin by thread (us/value, schedstat (ticks)): $P_THREADS; ctx switches/value (vol invol): $P_CTX"
  # The plugin kept up or not: the baseline dispatches at the rate the writer counted.
  w=$(dispatch_run "paced$r" "$P_RATE" 3 "$WINDOW")
  read -r b_rate b_us b_cores _ <<<"$w"
  note "run $r baseline: $b_rate values/s, $b_us us/value, collectd $b_cores cores; $(cat "$TEST_TMP/paced$r/log_summary")"
  note "run $r baseline by thread: $(cat "$TEST_TMP/paced$r/cpu_split"); ctx switches/value: $(cat "$TEST_TMP/paced$r/ctx")"
  eff=$(awk -v b="$b_us" -v p="$P_US" 'BEGIN { printf "%.2f", b / p }')
  effs+=("$eff")
  rows+=("$(printf '| %d | %9s | %8s | %9s | %8s | %5s | %-11s | %-11s | %s' "$r" "$P_RATE" "$P_US" "$b_rate" "$b_us" \
    "$eff" "$P_CTX" "$(cat "$TEST_TMP/paced$r/ctx")" "$P_OTHER_CORES")")
  rows+=("|   plugin by thread: $P_THREADS")
  rows+=("|   baseline by thread: $(cat "$TEST_TMP/paced$r/cpu_split")")
done
stop_sim

mem_per_meter "$MEM_METERS"

if [ "$RUNS" -ge 3 ]; then
  med=$(printf '%s\n' "${effs[@]}" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
else
  med=${effs[0]}
fi
verdict() { awk -v x="$1" -v t="$2" -v op="$3" 'BEGIN { ok = op == ">=" ? x >= t : x <= t; print ok ? "met" : "MISSED" }'; }
echo
echo "hes paced benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load average at start $load0, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$METERS meters x $NITEMS items, BatchSize $BATCH, Interval $INTERVAL s: $OFFERED values/s offered; QoS 1;"
echo "writer bench_count (no-op), WriteThreads default, unpinned; window $WINDOW s (plugin after $WARMUP s warm-up)"
echo "| run | plugin v/s | us/value | paced v/s | us/value | eff. | ctx/v plugin | ctx/v paced | other cores"
echo "|---|---:|---:|---:|---:|---:|---|---|---:"
printf '%s\n' "${rows[@]}"
echo "efficiency (paced us/value / plugin us/value): ${effs[*]}; median $med (target >= 0.9: $(verdict "$med" 0.9 '>='), floor 0.8: $(verdict "$med" 0.8 '>='))"
echo "resident bytes per configured meter: $MEM_BPM ($MEM_MANY - $MEM_ONE kB over $MEM_METERS meters; target <= 64: $(verdict "$MEM_BPM" 64 '<='))"
