#!/bin/bash
# tests/bench/ingest.sh [BUILD_DIR]: the hes plugin's ingest benchmark (not part of make check).
#
# Measures in one run, on this machine (see /work/shared/notes/performance-facts.md for why
# the figures are taken this way):
#  (a) parse: the push parser + item conversion alone (bench_parse.c) on the very pushes the
#      simulator sends (captured from the broker), readings/s on one core;
#  (b) collectd's bare dispatch (bench_dispatch.c: plugin_dispatch_values for the same
#      identifiers as the plugin), in a tight loop and paced like the plugin (bursts of 1000
#      at the rate measured in (c)): values/s and collectd CPU per value;
#  (c) the plugin inside collectd, reading from the simulator through a real mosquitto:
#      values/s counted by a no-op writer (bench_count.c) over a steady window after warm-up,
#      and collectd CPU per value;
#  (d) resident memory per configured meter: collectd's VmRSS with 100,000 meters minus with
#      1 meter, no HES traffic.
# Values are counted by bench_count, a no-op write plugin: no real writer is loaded.
# collectd runs unpinned with the default WriteThreads.
#
# BUILD_DIR (default $PWD) is a configured and built tree (hes.so, tests/sim/hes-sim,
# config.h). Needs gcc, pkg-config json-c, collectd-dev, collectd-core, mosquitto,
# mosquitto-clients. Knobs (environment): BENCH_METERS (20000), BENCH_INTERVAL (1),
# BENCH_WARMUP (10 s), BENCH_WINDOW (20 s), BENCH_DISPATCH_WINDOW (10 s), BENCH_PARSE_SECONDS
# (4), BENCH_MEM_METERS (100000), BENCH_COLLECTD_ENV (e.g. GLIBC_TUNABLES=... for an
# experiment), BENCH_TIMEOUT (collectd's Timeout, default 2 as in collectd: when values of
# an identifier come less often than every 2 intervals, collectd's main thread evicts and
# re-creates its cache entry, which costs CPU in (b paced) and (c) alike). BENCH_SIM_ARGS
# (default --bench-reuse: the simulator renders each readSingle list once and then only
# rewrites its timestamps, so it does not take the CPU the plugin is measured on; set it
# empty to have every reading rendered as in the tests). KEEP_TMP=1 keeps the logs. About 2 minutes.
set -euo pipefail

BUILD=$(cd "${1:-$PWD}" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export top_srcdir=$SRC top_builddir=$BUILD
# shellcheck source=tests/lib.sh disable=SC1091
. "$SRC/tests/lib.sh"

METERS=${BENCH_METERS:-20000}
INTERVAL=${BENCH_INTERVAL:-1}
WARMUP=${BENCH_WARMUP:-10}
WINDOW=${BENCH_WINDOW:-20}
DWINDOW=${BENCH_DISPATCH_WINDOW:-10}
PARSE_SECONDS=${BENCH_PARSE_SECONDS:-4}
MEM_METERS=${BENCH_MEM_METERS:-100000}
BATCH=1000
ITEMS='"voltageA" "currentA" "activePowerTotal" "reactivePowerA" "powerFactorTotal"'
NITEMS=5
METER_BASE=202407100001
TENANT=1000000067
COLLECTD_BIN=${COLLECTD_BIN:-/usr/sbin/collectd}
STOCK_PLUGINS=${STOCK_PLUGINS:-/usr/lib/collectd}
HZ=$(getconf CLK_TCK)

require_cmd gcc pkg-config mosquitto_sub
[ -x "$COLLECTD_BIN" ] || skip "collectd not found ($COLLECTD_BIN)"
[ -f /usr/include/collectd/core/daemon/plugin.h ] || skip "collectd-dev not installed"
[ -f "$BUILD/.libs/hes.so" ] || fail "$BUILD/.libs/hes.so not built (run make in $BUILD)"
[ -x "$BUILD/tests/sim/hes-sim" ] || fail "$BUILD/tests/sim/hes-sim not built"
[ -f "$BUILD/config.h" ] || fail "$BUILD/config.h missing: is $BUILD a configured build?"

B=$TEST_TMP/bin
PLUGINS=$TEST_TMP/plugins
mkdir -p "$B" "$PLUGINS"

# ---- build -------------------------------------------------------------------------------
# The collectd plugins get a minimal config.h of their own (collectd's headers need
# -DHAVE_CONFIG_H; our config.h only has to come first with _GNU_SOURCE).
printf '#define _GNU_SOURCE 1\n' >"$B/config.h"
for p in count dispatch; do
  gcc -O2 -std=gnu11 -Wall -Wextra -shared -fPIC -DHAVE_CONFIG_H -I"$B" -I/usr/include/collectd \
    "$SRC/tests/bench/bench_$p.c" -o "$PLUGINS/bench_$p.so" || fail "cannot build bench_$p.so"
done
# shellcheck disable=SC2046
gcc -O2 -std=c11 -Wall -Wextra -I"$BUILD" -I"$SRC/src/lib" "$SRC/tests/bench/bench_parse.c" \
  "$SRC/src/lib/push.c" "$SRC/src/lib/items.c" $(pkg-config --cflags --libs json-c) -lm -lpthread \
  -o "$B/bench_parse" || fail "cannot build bench_parse"
# PluginDir rejects symlinks: copy.
cp "$BUILD/.libs/hes.so" "$PLUGINS/hes.so"
cp "$STOCK_PLUGINS/logfile.so" "$PLUGINS/"

meter_file() { # meter_file <count> <file>
  awk -v n="$1" -v b="$METER_BASE" 'BEGIN { for (i = 0; i < n; i++) printf "%.0f\n", b + i }' >"$2"
}
meter_file "$METERS" "$TEST_TMP/meters.txt"

# ---- collectd helpers --------------------------------------------------------------------
# cd_conf <dir> <extra config>: a config with logfile (info) and bench_count in <dir>.
cd_conf() {
  local d=$1
  mkdir -p "$d/var"
  cat >"$d/collectd.conf" <<CONF
Hostname "bench"
FQDNLookup false
BaseDir "$d/var"
PluginDir "$PLUGINS"
TypesDB "/usr/share/collectd/types.db" "$SRC/conf/hes-types.db"
Interval 1
Timeout ${BENCH_TIMEOUT:-2}
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$d/collectd.log"
  Timestamp true
  PrintSeverity true
</Plugin>
<LoadPlugin bench_count>
  Globals true
</LoadPlugin>
<Plugin bench_count>
  File "$d/count.txt"
  Period 1
</Plugin>
$2
CONF
}

CD_PID=
cd_start() { # cd_start <dir>
  : >"$1/collectd.log"
  # shellcheck disable=SC2086
  LIB_OUT=$1/collectd.out run_bg env ${BENCH_COLLECTD_ENV:-} "$COLLECTD_BIN" -f -C "$1/collectd.conf"
  CD_PID=$BG_PID
  FAIL_LOGS="${FAIL_LOGS:-} $1/collectd.log $1/collectd.out"
  local i
  for ((i = 0; i < 200; i++)); do
    grep -q 'Initialization complete' "$1/collectd.log" && return 0
    _lib_running "$CD_PID" || fail "collectd exited at start"
    sleep 0.1
  done
  fail "collectd did not start"
}

cd_stop() {
  kill -INT "$CD_PID" 2>/dev/null || fail "collectd died"
  local rc=0
  wait "$CD_PID" || rc=$?
  _lib_forget "$CD_PID"
  CD_PID=
  [ "$rc" = 0 ] || fail "collectd exited with status $rc"
}

# busy_ticks: CPU ticks the whole machine spent busy (all CPUs), from /proc/stat.
busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# proc_ticks <pid>: utime+stime of a process, in clock ticks.
proc_ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  s=${s##*) }
  awk '{ print $12 + $13 }' <<<"$s"
}

# thread_cpu <pid>: per thread group of collectd (the producer: the hes MQTT thread or
# bench_dispatch's; the writer threads; the reader threads; the rest): "<group> <utime+stime ticks> <on-CPU ns> <runqueue wait ns>".
# The ticks are /proc/<pid>/task/*/stat (sampled at each clock tick); the ns are the
# scheduler's exact accounting (schedstat), which the tick sampling misses when a thread
# switches tens of thousands of times a second.
thread_cpu() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s\t%s %s\n' "$(cat "$t/comm" 2>/dev/null)" \
      "$(cut -d')' -f2- "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }')" \
      "$(cat "$t/schedstat" 2>/dev/null)"
  done | awk -F'\t' '{
      g = $1 ~ /^writer/ ? "writers" : $1 ~ /^reader/ ? "readers" : $1 ~ /mqtt|bench_disp/ ? "producer" : "other"
      split($2, f, " "); k[g] += f[1]; r[g] += f[2]; w[g] += f[3] }
    END { printf "producer %.0f %.0f %.0f writers %.0f %.0f %.0f readers %.0f %.0f %.0f other %.0f %.0f %.0f\n",
      k["producer"], r["producer"], w["producer"], k["writers"], r["writers"], w["writers"],
      k["readers"], r["readers"], w["readers"], k["other"], r["other"], w["other"] }'
}

# cpu_split <before> <after> <values> <seconds>: per group, "us on CPU per value (ticks
# figure)" and the share of the window spent waiting for a CPU; then the schedstat total.
cpu_split() {
  awk -v a="$1" -v b="$2" -v v="$3" -v s="$4" -v hz="$HZ" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); tot = 0
    for (i = 1; i < n; i += 4) {
      run = (y[i + 2] - x[i + 2]) / 1e3 / v; tot += run
      printf "%s%s %.2f (%.2f) wait %.0f%%", (i > 1 ? ", " : ""), x[i], run,
        (y[i + 1] - x[i + 1]) / hz * 1e6 / v, (y[i + 3] - x[i + 3]) / 1e7 / s }
    printf "; total %.2f", tot }'
}

# window <count file> <skip> <n>: from the sample lines (t count ticks minflt rss_kb), the
# window of n seconds after skipping <skip> samples. Prints:
#   rate(values/s) cpu_us_per_value cpu_cores minflt_per_value values seconds rss_kB median_rate
window() {
  awk -v skip="$2" -v n="$3" -v hz="$HZ" '
    NR == skip + 1 { t0 = $1; c0 = $2; k0 = $3; f0 = $4 }
    NR > skip + 1 && NR <= skip + 1 + n {
      r[++m] = ($2 - pc) / ($1 - pt); t1 = $1; c1 = $2; k1 = $3; f1 = $4; rss = $5 }
    { pt = $1; pc = $2 }
    END {
      if (m < n || c1 == c0) { print "error: " m " samples, " c1 - c0 " values"; exit 1 }
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (r[j] < r[i]) { x = r[i]; r[i] = r[j]; r[j] = x }
      med = (m % 2) ? r[(m + 1) / 2] : (r[m / 2] + r[m / 2 + 1]) / 2
      v = c1 - c0; s = t1 - t0; cpu = (k1 - k0) / hz
      printf "%.0f %.2f %.2f %.4f %d %.2f %d %.0f\n", v / s, cpu * 1e6 / v, cpu / s, (f1 - f0) / v, v, s, rss, med
    }' "$1"
}

# wait_samples <count file> <n>: until the file has n sample lines.
wait_samples() {
  local i
  for ((i = 0; i < 10 * ($2 + 30); i++)); do
    [ "$(wc -l <"$1")" -ge "$2" ] && return 0
    _lib_running "$CD_PID" || fail "collectd died"
    sleep 0.1
  done
  fail "no $2 samples in $1"
}

log_summary() { # log_summary <log>: counts of error/warning lines and "Value too old"
  printf 'errors=%s warnings=%s too_old=%s' "$(count_lines "$1" '[error]')" \
    "$(count_lines "$1" '[warning]')" "$(count_lines "$1" 'Value too old')"
}

# ---- (c) the plugin inside collectd ------------------------------------------------------
start_mosquitto
# shellcheck disable=SC2046
start_sim $(printf -- '--tenant %s --username kuangda --password kd123456 --secret-key %s' \
  "$TENANT" 55be0dc7ac554610165183db43991c50) --push-delay-ms 0 ${BENCH_SIM_ARGS---bench-reuse}
wait_for 10 sim_connected || fail "simulator not connected to the broker"

D=$TEST_TMP/plugin
cd_conf "$D" "LoadPlugin hes
<Plugin hes>
  <Server \"bench\">
    URL \"$SIM_URL\"
    TenantCode \"$TENANT\"
    Username \"kuangda\"
    Password \"kd123456\"
    SecretKey \"55be0dc7ac554610165183db43991c50\"
    Timeout 900
    <MQTT>
      Host \"127.0.0.1\"
      Port $MQTT_PORT
      ClientId \"bench-$$\"
    </MQTT>
    MeterFile \"$TEST_TMP/meters.txt\"
    Item $ITEMS
    BatchSize $BATCH
    Interval $INTERVAL
    PlanTimeout 300
  </Server>
</Plugin>"
# The pushes for (a): the first 25 the simulator publishes, as the plugin receives them.
LIB_OUT=$TEST_TMP/pushes.txt run_bg mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "/$TENANT/#" -C 25 -W 60
SUB_PID=$BG_PID
note "(c) plugin: $METERS meters x $NITEMS items, BatchSize $BATCH, Interval $INTERVAL s: warm-up ${WARMUP} s, window ${WINDOW} s"
cd_start "$D"
PLUGIN_PID=$CD_PID
wait_samples "$D/count.txt" "$WARMUP"
sim0=$(proc_ticks "$SIM_PID")
mq0=$(proc_ticks "$MOSQUITTO_PID")
pub0=$(sim_stat pushes_published)
thr0=$(thread_cpu "$PLUGIN_PID")
cd0=$(proc_ticks "$PLUGIN_PID")
busy0=$(busy_ticks)
wait_samples "$D/count.txt" $((WARMUP + 1 + WINDOW))
sim1=$(proc_ticks "$SIM_PID")
mq1=$(proc_ticks "$MOSQUITTO_PID")
pub1=$(sim_stat pushes_published)
thr1=$(thread_cpu "$PLUGIN_PID")
cd1=$(proc_ticks "$PLUGIN_PID")
busy1=$(busy_ticks)
cd_stop
C=$(window "$D/count.txt" "$WARMUP" "$WINDOW") || fail "(c): $C"
read -r c_rate c_us c_cores c_flt c_values c_secs c_rss c_med <<<"$C"
# collectd's CPU per value by thread group: where the plugin's cost sits.
c_threads=$(cpu_split "$thr0" "$thr1" "$c_values" "$c_secs")
sim_cores=$(awk -v a="$sim0" -v b="$sim1" -v s="$c_secs" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz / s }')
# Whatever else ran on the machine meanwhile (other tests, builds) skews the figures.
other_cores=$(awk -v b="$((busy1 - busy0))" -v o="$((cd1 - cd0 + sim1 - sim0 + mq1 - mq0))" -v s="$c_secs" -v hz="$HZ" 'BEGIN { x = (b - o) / hz / s; printf "%.2f", x < 0 ? 0 : x }')
mq_cores=$(awk -v a="$mq0" -v b="$mq1" -v s="$c_secs" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz / s }')
c_log=$(log_summary "$D/collectd.log")
# The plugin's self-metrics at the end (bench_count columns 6-11).
c_self=$(tail -n 1 "$D/count.txt" | awk '{ printf "dispatched %d missing %d rejected %d foreign %d duplicate %d late %d", $6, $7, $8, $9, $10, $11 }')
offered=$((METERS * NITEMS / INTERVAL))
# What the simulator actually published over the window (readings/s): if it is near the
# plugin's rate while the plugin has CPU to spare, the simulator is the limit, not the plugin.
sim_rate=$(awk -v a="$pub0" -v b="$pub1" -v s="$c_secs" -v n="$BATCH" 'BEGIN { printf "%.0f", (b - a) * n / s }')
note "(c) $c_rate values/s (median second $c_med; offered $offered, published by the simulator $sim_rate), $c_us us CPU/value, collectd $c_cores cores, sim $sim_cores, mosquitto $mq_cores, other processes $other_cores; $c_log"
note "(c) by thread, us on CPU per value from schedstat (from ticks): $c_threads"
note "(c) $c_flt minor faults/value, VmRSS at the end $c_rss kB; self-metrics: $c_self"
stop_bg "$SUB_PID"
stop_sim
pushes=$(grep -c '^{' "$TEST_TMP/pushes.txt" || true)
[ "$pushes" -ge 5 ] || fail "captured only $pushes pushes from the simulator"

# ---- (a) parse only ----------------------------------------------------------------------
"$B/bench_parse" "$TEST_TMP/pushes.txt" "$PARSE_SECONDS" >"$TEST_TMP/parse.txt" || fail "bench_parse failed"
read -r _ a_rate a_us a_flt a_pushes a_per < <(grep '^parse ' "$TEST_TMP/parse.txt")
read -r _ ah_rate ah_us ah_flt _ < <(grep '^heap ' "$TEST_TMP/parse.txt")
note "(a) parse: $a_rate readings/s, $a_us us/reading, $a_flt minor faults/reading ($a_pushes pushes of $a_per readings)"
note "(a) parse on a collectd-like heap: $ah_rate readings/s, $ah_us us/reading, $ah_flt minor faults/reading"

# ---- (b) bare dispatch -------------------------------------------------------------------
dispatch_run() { # dispatch_run <name> <rate>: prints the window line
  local d=$TEST_TMP/$1
  cd_conf "$d" "<LoadPlugin bench_dispatch>
  Globals true
</LoadPlugin>
<Plugin bench_dispatch>
  Meters $METERS
  MeterBase $METER_BASE
  Burst $BATCH
  Rate $2
  MaxInFlight 20000
</Plugin>"
  cd_start "$d"
  wait_samples "$d/count.txt" 3
  local t0 t1 w b0 b1 k0 k1
  t0=$(thread_cpu "$CD_PID")
  b0=$(busy_ticks)
  k0=$(proc_ticks "$CD_PID")
  wait_samples "$d/count.txt" $((3 + 1 + DWINDOW))
  t1=$(thread_cpu "$CD_PID")
  b1=$(busy_ticks)
  k1=$(proc_ticks "$CD_PID")
  cd_stop
  w=$(window "$d/count.txt" 3 "$DWINDOW") || fail "($1): bad window: $w"
  echo "$w"
  read -r _ _ _ _ values secs _ <<<"$w"
  cpu_split "$t0" "$t1" "$values" "$secs" >"$d/cpu_split"
  awk -v b="$((b1 - b0 - (k1 - k0)))" -v s="$secs" -v hz="$HZ" 'BEGIN { x = b / hz / s; printf "; other processes %.2f cores", x < 0 ? 0 : x }' >>"$d/cpu_split"
  log_summary "$d/collectd.log" >"$d/log_summary"
}
B_TIGHT=$(dispatch_run tight 0)
read -r bt_rate bt_us bt_cores bt_flt _ _ _ bt_med <<<"$B_TIGHT"
note "(b) tight loop: $bt_rate values/s (median $bt_med), $bt_us us CPU/value, $bt_cores cores, $bt_flt faults/value; $(cat "$TEST_TMP/tight/log_summary")"
note "(b) tight, by thread: $(cat "$TEST_TMP/tight/cpu_split")"
B_PACED=$(dispatch_run paced "$c_rate")
read -r bp_rate bp_us bp_cores bp_flt _ <<<"$B_PACED"
note "(b) paced at $c_rate/s: $bp_rate values/s, $bp_us us CPU/value, $bp_cores cores, $bp_flt faults/value; $(cat "$TEST_TMP/paced/log_summary")"
note "(b) paced, by thread: $(cat "$TEST_TMP/paced/cpu_split")"

# ---- (d) memory per configured meter -----------------------------------------------------
# No HES traffic: the URL is a closed port (the token request fails at once), the read
# interval is a day. The broker is real, so both runs hold the same MQTT session.
meter_file "$MEM_METERS" "$TEST_TMP/mem_meters.txt"
meter_file 1 "$TEST_TMP/mem_one.txt"
mem_run() { # mem_run <name> <meter file>: prints VmRSS in kB
  local d=$TEST_TMP/$1
  cd_conf "$d" "LoadPlugin hes
<Plugin hes>
  <Server \"mem\">
    URL \"http://127.0.0.1:1\"
    TenantCode \"$TENANT\"
    Username \"kuangda\"
    Password \"kd123456\"
    SecretKey \"55be0dc7ac554610165183db43991c50\"
    <MQTT>
      Host \"127.0.0.1\"
      Port $MQTT_PORT
      ClientId \"bench-mem-$1-$$\"
    </MQTT>
    MeterFile \"$2\"
    Item $ITEMS
    BatchSize $BATCH
    Interval 86400
  </Server>
</Plugin>"
  cd_start "$d"
  sleep 2
  awk '/^VmRSS:/ { print $2 }' "/proc/$CD_PID/status"
  cd_stop
}
rss_many=$(mem_run mem_many "$TEST_TMP/mem_meters.txt")
rss_one=$(mem_run mem_one "$TEST_TMP/mem_one.txt")
d_bpm=$(awk -v a="$rss_many" -v b="$rss_one" -v n="$MEM_METERS" 'BEGIN { printf "%.1f", (a - b) * 1024 / (n - 1) }')
note "(d) VmRSS $rss_many kB with $MEM_METERS meters, $rss_one kB with 1: $d_bpm bytes/meter"

# ---- table -------------------------------------------------------------------------------
ratio_rate=$(awk -v c="$c_rate" -v b="$bt_rate" 'BEGIN { printf "%.2f", c / b }')
eff=$(awk -v c="$c_us" -v b="$bp_us" 'BEGIN { printf "%.2f", b / c }')
verdict() { awk -v x="$1" -v t="$2" -v op="$3" 'BEGIN { ok = op == ">=" ? x >= t : x <= t; print ok ? "ok" : "MISSED" }'; }
echo
echo "hes ingest benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "collectd $("$COLLECTD_BIN" -h 2>&1 | sed -n 's/^collectd \([0-9.a-z]*\).*/\1/p' | head -n 1), writer: bench_count (no-op), WriteThreads default, unpinned"
printf '| %-58s | %14s | %12s | %s\n' "measure" "values/s" "us CPU/value" "notes"
printf '|%s|%s|%s|%s\n' "$(printf -- '-%.0s' {1..60})" "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..14})" "---"
printf '| %-58s | %14s | %12s | %s\n' "(a) parse + convert only (bench_parse, 1 core)" "$a_rate" "$a_us" "$a_flt minor faults/reading"
printf '| %-58s | %14s | %12s | %s\n' "(a) the same, on a collectd-like heap (see bench_parse.c)" "$ah_rate" "$ah_us" "$ah_flt minor faults/reading"
printf '| %-58s | %14s | %12s | %s\n' "(b) bare dispatch, tight loop" "$bt_rate" "$bt_us" "collectd $bt_cores cores"
printf '| %-58s | %14s | %12s | %s\n' "(b) bare dispatch, paced (bursts of $BATCH at c's rate)" "$bp_rate" "$bp_us" "collectd $bp_cores cores"
printf '| %-58s | %14s | %12s | %s\n' "(c) plugin: sim -> mosquitto -> hes.so -> no-op writer" "$c_rate" "$c_us" "offered $offered/s, sim published $sim_rate/s; cores: collectd $c_cores, sim $sim_cores, mosquitto $mq_cores, other processes $other_cores"
printf '| %-58s | %14s | %12s | %s\n' "(c)/(b tight) rate" "$ratio_rate" "" "target >= 0.8: $(verdict "$ratio_rate" 0.8 '>=')"
printf '| %-58s | %14s | %12s | %s\n' "efficiency: (b paced) CPU/value / (c) CPU/value" "$eff" "" "target >= 0.8: $(verdict "$eff" 0.8 '>=')"
printf '| %-58s | %14s | %12s | %s\n' "(d) resident bytes per configured meter" "$d_bpm" "" "$rss_many - $rss_one kB over $MEM_METERS meters; target <= 200: $(verdict "$d_bpm" 200 '<=')"
echo "CPU by thread, us on CPU per value (schedstat; ticks in brackets), and time spent waiting for a CPU:"
echo "  (b) paced: $(cat "$TEST_TMP/paced/cpu_split")"
echo "  (c) plugin: $c_threads"
if awk -v x="$other_cores" 'BEGIN { exit !(x > 0.2) }'; then
  echo "WARNING: other processes used $other_cores cores during (c): the machine was not quiet, so the"
  echo "  rates are low and noisy; the CPU cost per value and the thread split are the robust figures."
fi
