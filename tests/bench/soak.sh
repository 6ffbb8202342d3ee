#!/bin/bash
# shellcheck disable=SC2015,SC2119,SC2153 # "test && test || fail" is meant; start_mosquitto takes no $1 here; SIM_* come from lib.sh
# tests/bench/soak.sh [MINUTES [BUILD_DIR]]: the soak test (not part of make check).
#
# collectd with the plugin reads 10,000 meters x 6 items every 10 s from the HES simulator
# through a real mosquitto for MINUTES (default 10; a fraction such as 0.5 works), with a
# no-op writer (bench_count.so, which also samples collectd's VmRSS and CPU every 10 s).
# Pass criteria:
#   - resident memory flat after warm-up: the highest VmRSS of the last minute minus the
#     VmRSS at the end of warm-up (2 minutes, or a third of a shorter run; under chaos the
#     first full cycle of faults, below) is below 1 MiB;
#   - no missing readings: at the end the reads are stopped (every plan-creating call fails),
#     the last plans expire, and dispatched = the devList lengths of every readSingle the
#     simulator answered with 200/200, missing = rejected = 0;
#   - collectd exits normally.
# Reported: the RSS series, malloc's live and free bytes (in use: a leak or a queue; free:
# fragmentation), CPU per reading (collectd's utime+stime over the run after
# warm-up / readings dispatched meanwhile), the simulator's and mosquitto's CPU.
# collectd runs with the environment the Debian package gives its service
# (conf/systemd/collectd-hes.conf: MALLOC_ARENA_MAX=1, one malloc arena).
# Knobs: SOAK_METERS (10000), SOAK_INTERVAL (10), SOAK_BATCH (1000), SOAK_COLLECTD_ENV
# (collectd's environment instead of the service's; empty: glibc's defaults), SOAK_GLOBAL
# (lines for collectd.conf's top level, e.g. "WriteQueueLimitHigh 100000"), SOAK_HES (lines
# for the Server block, e.g. "Spread 0"),
# SOAK_PLUGIN=dispatch (no hes plugin: bench_dispatch dispatches the same values, a round of
# bursts at the start of every Interval; the baseline for RSS; no balance then).
# SOAK_CHAOS=1 (tests/bench/chaos.sh) adds faults, see chaos_tick. KEEP_TMP=1 keeps logs.
# Also reported: collectd's open file descriptors and threads, after warm-up and at the end.
set -euo pipefail

MINUTES=${1:-10}
BUILD=$(cd "${2:-$PWD}" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export top_srcdir=$SRC top_builddir=$BUILD
# shellcheck source=tests/lib.sh disable=SC1091
. "$SRC/tests/lib.sh"

# shellcheck source=tests/bench/bench_lib.sh disable=SC1091
. "$SRC/tests/bench/bench_lib.sh"

METERS=${SOAK_METERS:-10000}
INTERVAL=${SOAK_INTERVAL:-10}
BATCH=${SOAK_BATCH:-1000}
PLAN_TIMEOUT=15
ITEMS='"voltageA" "currentA" "activePowerTotal" "reactivePowerA" "powerFactorTotal" "importActiveEnergy"'
NITEMS=6
DURATION=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
CHAOS=${SOAK_CHAOS:-0}
# Warm-up: 2 minutes (a third of a shorter run). Under chaos, one full cycle of faults when
# the run is at least three times as long: every kind of fault once, the first meter list
# swap and half a restart period after it included (CHAOS_SWAP + CHAOS_RESTART, 900 s). Each
# kind sets its own high-water mark of collectd's heap once (the first swap the largest: the
# joiners' value cache entries live before the leavers' expire, +5 MB at the soak's load),
# and a process that has not yet seen a fault has not yet needed its memory; what must not
# grow is what comes after. SOAK_WARMUP (seconds) overrides.
WARMUP=$((DURATION >= 360 ? 120 : DURATION / 3))
CHAOS_CYCLE_END=$((${CHAOS_SWAP:-600} + ${CHAOS_RESTART:-300}))
[ "$CHAOS" = 1 ] && [ "$DURATION" -ge $((3 * CHAOS_CYCLE_END)) ] && WARMUP=$CHAOS_CYCLE_END
WARMUP=${SOAK_WARMUP:-$WARMUP}

[ "$DURATION" -ge 30 ] || fail "a soak of at least 0.5 minutes, please"
SOAK_PLUGIN=${SOAK_PLUGIN:-hes}
if [ "$SOAK_PLUGIN" = dispatch ]; then bench_init count dispatch; else bench_init count; fi
D=$TEST_TMP/collectd
mkdir -p "$D/var"
meter_file "$METERS" "$TEST_TMP/meters.txt"

SIM_EXTRA=()
[ "$CHAOS" = 1 ] && SIM_EXTRA=(--token-lifetime "${CHAOS_TOKEN_LIFETIME:-300}")
start_mosquitto
# The broker queues a round's pushes (60 with the defaults) while the plugin reads them.
# shellcheck disable=SC2046
start_sim --tenant 1000000067 --username kuangda --password kd123456 \
  --secret-key 55be0dc7ac554610165183db43991c50 --push-delay-ms 0 --max-devlist "$BATCH" \
  "${SIM_EXTRA[@]}"
wait_for 10 sim_connected || fail "simulator not connected to the broker"
CHAOS_BLOCK=
if [ "$CHAOS" = 1 ]; then
  # Billing on a second <Server> with a second simulator (its own tenant, so its own topic):
  # the first server's balance stays the readSingle one. Its history store is slow throughout.
  BILL_METERS=${CHAOS_BILLING_METERS:-200}
  awk -v n="$BILL_METERS" 'BEGIN { for (i = 0; i < n; i++) printf "%.0f\n", 202407200001 + i }' \
    >"$TEST_TMP/billing-meters.txt"
  LIB_OUT=$TEST_TMP/simb.out run_bg "$HES_SIM_BIN" --http-port 0 --port-file "$TEST_TMP/simb.port" \
    --broker-host 127.0.0.1 --broker-port "$MQTT_PORT" --log "$TEST_TMP/simb.log" \
    --tenant 1000000068 --username kuangda --password kd123456 \
    --secret-key 55be0dc7ac554610165183db43991c50 --token-lifetime "${CHAOS_TOKEN_LIFETIME:-300}"
  wait_for 10 test -s "$TEST_TMP/simb.port" || fail "the billing simulator did not start"
  SIMB_URL=http://127.0.0.1:$(cat "$TEST_TMP/simb.port")
  curl -sS --max-time 5 -X POST "$SIMB_URL/sim/slow?ms=${CHAOS_HISTORY_MS:-1500}&endpoint=history" \
    >/dev/null || fail "cannot slow the billing simulator's history"
  mkdir -p "$D/state"
  CHAOS_BLOCK="StateDir \"$D/state\"
  <Server \"billing\">
    URL \"$SIMB_URL\"
    TenantCode \"1000000068\"
    Username \"kuangda\"
    Password \"kd123456\"
    SecretKey \"55be0dc7ac554610165183db43991c50\"
    Timeout 5000
    <MQTT>
      Host \"127.0.0.1\"
      Port $MQTT_PORT
      ClientId \"soak-billing-$$\"
    </MQTT>
    MeterFile \"$TEST_TMP/billing-meters.txt\"
    Item \"dailyBilling\"
    BatchSize 100
    Interval 60
    PlanTimeout 30
    RetryInterval 120
  </Server>"
fi

cat >"$D/collectd.conf" <<CONF
Hostname "soak"
FQDNLookup false
BaseDir "$D/var"
PluginDir "$PLUGINS"
TypesDB "/usr/share/collectd/types.db" "$SRC/conf/hes-types.db"
Interval $INTERVAL
${SOAK_GLOBAL:-}
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$D/collectd.log"
  Timestamp true
  PrintSeverity true
</Plugin>
<LoadPlugin bench_count>
  Globals true
</LoadPlugin>
<Plugin bench_count>
  File "$D/count.txt"
  Period 10
  Server "soak"
  Heap true
</Plugin>
LoadPlugin hes
<Plugin hes>
  <Server "soak">
    URL "$SIM_URL"
    TenantCode "1000000067"
    Username "kuangda"
    Password "kd123456"
    SecretKey "55be0dc7ac554610165183db43991c50"
    Timeout 5000
    <MQTT>
      Host "127.0.0.1"
      Port $MQTT_PORT
      ClientId "soak-$$"
    </MQTT>
    MeterFile "$TEST_TMP/meters.txt"
    Item $ITEMS
    BatchSize $BATCH
    Interval $INTERVAL
    PlanTimeout $PLAN_TIMEOUT
${SOAK_HES:-}
  </Server>
$CHAOS_BLOCK
</Plugin>
CONF
if [ "$SOAK_PLUGIN" = dispatch ]; then
  # the same identifiers, values and round shape, without the plugin
  sed -i '/^LoadPlugin hes$/,$d' "$D/collectd.conf"
  cat >>"$D/collectd.conf" <<CONF
<LoadPlugin bench_dispatch>
  Globals true
</LoadPlugin>
<Plugin bench_dispatch>
  Meters $METERS
  Burst $BATCH
  Period $INTERVAL
  Items $NITEMS
</Plugin>
CONF
fi
FAIL_LOGS="${FAIL_LOGS:-} $D/collectd.log $D/collectd.out"
CD_ENV=${SOAK_COLLECTD_ENV-$(sed -n 's/^Environment=//p' "$SRC/conf/systemd/collectd-hes.conf")}
CD_ENV_SHOWN=${CD_ENV:-none, glibc defaults}
# shellcheck disable=SC2086 # a list of VAR=value words
LIB_OUT=$D/collectd.out run_bg env $CD_ENV "$COLLECTD_BIN" -f -C "$D/collectd.conf"
CD_PID=$BG_PID
wait_for 20 grep -q 'Initialization complete' "$D/collectd.log" || fail "collectd did not start"
note "soak: $METERS meters x $NITEMS items every $INTERVAL s for $DURATION s (warm-up $WARMUP s); collectd's environment: $CD_ENV_SHOWN"

# ---- chaos (SOAK_CHAOS=1) --------------------------------------------------------------------
# From collectd's start, every CHAOS_RESTART (300) s the broker is restarted; every
# CHAOS_CYCLE (600) s there is a CHAOS_WINDOW (60) s window of 30% HTTP 500 answers at 60 s
# into the cycle and one of 30% "System busy" answers at 360 s (scaled with the cycle); the
# tokens live 300 s; the billing server's history answers are slow throughout; the meter
# list is swapped (renamed over) every CHAOS_SWAP (600) s (CHAOS_METER_SWAP=0: not).
CHAOS_RESTART=${CHAOS_RESTART:-300}
CHAOS_CYCLE=${CHAOS_CYCLE:-600}
CHAOS_WINDOW=${CHAOS_WINDOW:-60}
CHAOS_SWAP=${CHAOS_SWAP:-600}
chaos_next_restart=$CHAOS_RESTART
# Swaps fall half a restart period after a broker restart: a meter that leaves while a plan
# for it waits on a push the restart lost is neither dispatched nor missing (its open plans
# stop waiting for it), so a swap right after a restart would break the balance by design.
chaos_next_swap=$((CHAOS_SWAP + CHAOS_RESTART / 2))
chaos_fault=none
chaos_restarts=0 chaos_windows=0 chaos_swaps=0
chaos_t0=$SECONDS
chaos_log() { echo "$((SECONDS - chaos_t0)) $*" >>"$D/chaos.txt"; }
chaos_fail_rate() { # <rate> <kind>
  sim_control "fail-rate?rate=$1&kind=$2" >/dev/null || fail "cannot set the fail rate"
}
if [ "$CHAOS" = 1 ] && [ "${CHAOS_METER_SWAP:-1}" = 1 ]; then
  # the same number of meters: the last 10% replaced by others
  awk -v n="$METERS" 'BEGIN { k = int(n * 0.9)
    for (i = 0; i < k; i++) printf "%.0f\n", 202407100001 + i
    for (i = 0; i < n - k; i++) printf "%.0f\n", 202407300001 + i }' >"$TEST_TMP/meters-b.txt"
  cp "$TEST_TMP/meters.txt" "$TEST_TMP/meters-a.txt"
elif [ "$CHAOS" = 1 ]; then
  note "chaos: meter list swap off (CHAOS_METER_SWAP=0)"
fi
chaos_tick() {
  local t=$((SECONDS - chaos_t0)) c want=none
  if [ "$t" -ge "$chaos_next_restart" ]; then
    chaos_log "broker restart"
    restart_mosquitto
    chaos_restarts=$((chaos_restarts + 1))
    chaos_next_restart=$((chaos_next_restart + CHAOS_RESTART))
  fi
  c=$((t % CHAOS_CYCLE))
  if [ "$c" -ge $((CHAOS_CYCLE / 10)) ] && [ "$c" -lt $((CHAOS_CYCLE / 10 + CHAOS_WINDOW)) ]; then
    want=http
  elif [ "$c" -ge $((CHAOS_CYCLE * 6 / 10)) ] && [ "$c" -lt $((CHAOS_CYCLE * 6 / 10 + CHAOS_WINDOW)) ]; then
    want=busy
  fi
  if [ "$want" != "$chaos_fault" ]; then
    chaos_log "faults: $want"
    if [ "$want" = none ]; then chaos_fail_rate 0 mixed; else
      chaos_fail_rate 0.3 "$want"
      chaos_windows=$((chaos_windows + 1))
    fi
    chaos_fault=$want
  fi
  if [ "${CHAOS_METER_SWAP:-1}" = 1 ] && [ "$t" -ge "$chaos_next_swap" ]; then
    local next=a
    [ $((chaos_swaps % 2)) = 0 ] && next=b
    cp "$TEST_TMP/meters-$next.txt" "$TEST_TMP/meters.new" && mv "$TEST_TMP/meters.new" "$TEST_TMP/meters.txt"
    chaos_log "meter list: $next"
    chaos_swaps=$((chaos_swaps + 1))
    chaos_next_swap=$((chaos_next_swap + CHAOS_SWAP))
  fi
}
# collectd's open descriptors and threads, every 10 s: <s> <fds> <threads>
proc_next=0
proc_sample() {
  [ "$SECONDS" -ge "$proc_next" ] || return 0
  proc_next=$((SECONDS + 10))
  local fds threads
  fds=$(find "/proc/$CD_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  threads=$(find "/proc/$CD_PID/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "$SECONDS $fds $threads" >>"$D/proc.txt"
}

# samples: <monotonic s> <values> <ticks> <minflt> <rss kB> <dispatched missing rejected ...>
samples() { wc -l <"$D/count.txt" 2>/dev/null || echo 0; }
soak_wait() { # <n>: until count.txt has n samples, sampling /proc and ticking the chaos
  local i
  for ((i = 0; i < 10 * ($1 * 10 + 60); i++)); do
    [ "$(samples)" -ge "$1" ] && return 0
    _lib_running "$CD_PID" || fail "collectd died"
    proc_sample
    [ "$CHAOS" = 1 ] && [ "${CHAOS_STOP:-0}" = 0 ] && chaos_tick
    sleep 0.1
  done
  fail "no $1 samples"
}
n_warm=$((WARMUP / 10))
n_end=$((DURATION / 10))
soak_wait "$n_warm"
read -r _ fds_warm threads_warm < <(tail -n 1 "$D/proc.txt")
sim0=$(proc_ticks "$SIM_PID")
mq0=$(proc_ticks "$MOSQUITTO_PID")
soak_wait "$n_end"
sim1=$(proc_ticks "$SIM_PID")
mq1=$(proc_ticks "$MOSQUITTO_PID")

# the highest of the last minute, as for VmRSS: a descriptor that leaks stays
read -r fds_end threads_end < <(tail -n 6 "$D/proc.txt" | awk '$2 > f { f = $2 } $3 > t { t = $3 } END { print f, t }')
# Stop the reads and let the last plans expire before the balance.
CHAOS_STOP=1
sim_control "fail-rate?rate=1" >/dev/null
soak_wait $((n_end + (PLAN_TIMEOUT + 3 * INTERVAL) / 10 + 1))
_lib_running "$CD_PID" || fail "collectd died"
kill -INT "$CD_PID"
rc=0
wait "$CD_PID" || rc=$?
_lib_forget "$CD_PID"
[ "$rc" = 0 ] || fail "collectd exited with status $rc"

# ---- figures -------------------------------------------------------------------------------
S=$D/count.txt
note "VmRSS (kB) every 10 s: $(awk '{ printf "%s%d", (NR > 1 ? " " : ""), $5 }' "$S")"
read -r rss_warm rss_last rss_growth rss_2min < <(awk -v w="$n_warm" -v e="$n_end" '
  NR == w { warm = $5 } NR == 12 { two = $5 }
  NR > e - 6 && NR <= e { if ($5 > last) last = $5 }
  END { print warm, last, last - warm, two }' "$S")
read -r values secs cpu_us cores < <(awk -v w="$n_warm" -v e="$n_end" -v hz="$HZ" '
  NR == w { t0 = $1; v0 = $2; k0 = $3 } NR == e { t1 = $1; v1 = $2; k1 = $3 }
  END { v = v1 - v0; s = t1 - t0; c = (k1 - k0) / hz
        printf "%d %.1f %.2f %.3f\n", v, s, (v > 0 ? c * 1e6 / v : 0), c / s }' "$S")
read -r dispatched missing rejected foreign duplicate late < <(tail -n 1 "$S" | awk '{ print $6, $7, $8, $9, $10, $11 }')
expected=$(grep '"endpoint":"readSingle"' "$SIM_LOG" | grep '"http":200,"code":200,' | awk '{
    if (!match($0, /"devList":\[[^]]*\]/)) exit 1
    l = substr($0, RSTART, RLENGTH); n += gsub(/","/, "", l) + 1 } END { print n + 0 }')
sim_cores=$(awk -v a="$sim0" -v b="$sim1" -v s="$secs" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz / s }')
mq_cores=$(awk -v a="$mq0" -v b="$mq1" -v s="$secs" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz / s }')
rate=$(awk -v v="$values" -v s="$secs" 'BEGIN { printf "%.0f", v / s }')
errors=$(count_lines "$D/collectd.log" '[error]')
# The injected faults' errors: HTTP 500, "System busy" (HES code 500), and the stop phase's
# failures, where every request fails and the plugin says it will not retry them.
injected='HES code 500|HTTP 500|Internal Server Error|status 500|failed this round; not retrying'
other_errors=$(grep -F '[error]' "$D/collectd.log" | grep -c -v -E "$injected" || true)

echo
echo "hes soak, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $METERS meters x $NITEMS items every $INTERVAL s, $DURATION s (warm-up $WARMUP s), collectd's environment: $CD_ENV_SHOWN"
echo "  VmRSS: $rss_warm kB after warm-up, highest of the last minute $rss_last kB: growth $rss_growth kB (limit 1024)"
[ "$WARMUP" -le 120 ] || echo "  VmRSS at 2 minutes: $rss_2min kB (growth from there $((rss_last - rss_2min)) kB: the first cycle's marks included)"
# Live heap and the holes in it (bench_count's Heap, columns 12 and 13): a leak or a queue
# grows the first, fragmentation the second; VmRSS counts both.
read -r heap_used_warm heap_free_warm heap_used_end heap_free_end < <(awk -v w="$n_warm" -v e="$n_end" '
  NR == w { u = $12; f = $13 } NR == e { print u, f, $12, $13 }' "$S")
echo "  malloc: in use $heap_used_warm kB after warm-up, $heap_used_end kB at the end; free inside its heaps $heap_free_warm kB, $heap_free_end kB (series every 10 s, in use/free: $(awk '{ printf "%s%d/%d", (NR > 1 ? " " : ""), $12, $13 }' "$S"))"
# Under chaos, the highest VmRSS of each fault cycle after warm-up: a heap that settles
# repeats its peak, one that grows raises it every cycle.
[ "$CHAOS" = 1 ] && echo "  VmRSS highest in each ${CHAOS_CYCLE} s fault cycle after warm-up (kB): $(awk -v w="$n_warm" -v e="$n_end" -v c=$((CHAOS_CYCLE / 10)) '
  NR > w && NR <= e { k = int((NR - w - 1) / c); if ($5 > p[k]) p[k] = $5; if (k > m) m = k }
  END { for (i = 0; i <= m; i++) printf "%s%d", (i ? " " : ""), p[i] }' "$S")"
echo "  readings after warm-up: $values in $secs s = $rate/s; collectd CPU $cpu_us us/reading ($cores cores); simulator $sim_cores cores, mosquitto $mq_cores cores"
echo "  file descriptors: $fds_warm after warm-up, highest of the last minute $fds_end; threads: $threads_warm, $threads_end (series: $(awk '{ printf "%s%d/%d", (NR > 1 ? " " : ""), $2, $3 }' "$D/proc.txt"))"
[ "$CHAOS" = 1 ] && echo "  chaos: $chaos_restarts broker restarts, $chaos_windows fault windows, $chaos_swaps meter list swaps, tokens of ${CHAOS_TOKEN_LIFETIME:-300} s, billing history answers ${CHAOS_HISTORY_MS:-1500} ms late; [error] lines other than the injected faults': $other_errors"
echo "  balance: simulator delivered $expected, dispatched $dispatched, missing $missing, rejected $rejected (foreign $foreign, duplicate $duplicate, late $late); collectd [error] lines: $errors (the stop phase's HTTP failures)"

status=0
if [ "$SOAK_PLUGIN" = dispatch ]; then
  dispatched=$expected # no plugin, no balance
  [ "$rss_growth" -lt 1024 ] && echo "soak (dispatch baseline): PASS" ||
    echo "soak (dispatch baseline): VmRSS grew by $rss_growth kB after warm-up"
  exit 0
fi
[ "$rss_growth" -lt 1024 ] || {
  echo "FAIL: VmRSS grew by $rss_growth kB after warm-up" >&2
  status=1
}
# A reading for a meter that left the list while its plan was open is rejected, by design;
# nothing else may be.
[ "$rejected" = 0 ] || [ "$chaos_swaps" -gt 0 ] || {
  echo "FAIL: $rejected rejected" >&2
  status=1
}
if [ "$CHAOS" = 1 ]; then
  # Lost pushes (a broker restart) are counted missing; nothing may come twice.
  [ "$expected" -gt 0 ] && [ $((dispatched + missing + rejected)) = "$expected" ] || {
    echo "FAIL: dispatched $dispatched + missing $missing + rejected $rejected, the simulator delivered $expected" >&2
    status=1
  }
  [ "$other_errors" = 0 ] || {
    grep -F '[error]' "$D/collectd.log" | grep -v -E "$injected" | sort | uniq -c | sort -rn | head >&2
    echo "FAIL: $other_errors [error] lines besides the injected faults'" >&2
    status=1
  }
else
  [ "$missing" = 0 ] || {
    echo "FAIL: $missing missing" >&2
    status=1
  }
  [ "$expected" -gt 0 ] && [ "$dispatched" = "$expected" ] || {
    echo "FAIL: dispatched $dispatched, the simulator delivered $expected" >&2
    status=1
  }
fi
# HTTP and MQTT connections come and go (a broker restart, a billing round): a few
# descriptors of slack; a leak per round or per restart exceeds it within minutes.
[ "$threads_end" -le "$threads_warm" ] && [ "$fds_end" -le $((fds_warm + 4)) ] || {
  echo "FAIL: file descriptors $fds_warm -> $fds_end, threads $threads_warm -> $threads_end" >&2
  status=1
}
[ "$status" = 0 ] && echo "soak: PASS" || fail "soak failed"
