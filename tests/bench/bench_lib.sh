# shellcheck shell=bash disable=SC2034 # sets variables for the scripts that source it
# tests/bench/bench_lib.sh: what the collectd benchmarks (ingest.sh, paced.sh, soak.sh) share,
# sourced after tests/lib.sh with SRC (the source tree) and BUILD (a built tree) set.
#
#   bench_init [bench plugin...]   checks the tools, builds tests/bench/bench_<p>.c as collectd
#                                  plugins into $PLUGINS, copies hes.so and logfile.so there
#   meter_file <count> <file>      meter numbers, one a line, from METER_BASE
#   cd_conf <dir> <config>         a collectd.conf with logfile and bench_count (sampling once
#                                  a second into <dir>/count.txt), then <config>
#   cd_start <dir> / cd_stop       collectd -f on that config (CD_PID)
#   hes_conf <name> <url> <meter file> <interval> [extra lines]: the hes <Plugin> block
#   plugin_run <dir> <warmup> <window>: the plugin inside collectd, measured (sets P_*)
#   dispatch_run <name> <rate> <warmup> <window>: bench_dispatch instead of the plugin
#   mem_per_meter <meters>         collectd's resident bytes per configured meter (MEM_BPM)
# and the measuring helpers below. Figures come from the sampler inside collectd
# (bench_count), /proc/<pid>/stat and /proc/<pid>/task/*/{stat,schedstat,status}.

METER_BASE=202407100001
TENANT=1000000067
SECRET=55be0dc7ac554610165183db43991c50
ITEMS='"voltageA" "currentA" "activePowerTotal" "reactivePowerA" "powerFactorTotal"'
NITEMS=5
BATCH=1000
COLLECTD_BIN=${COLLECTD_BIN:-/usr/sbin/collectd}
STOCK_PLUGINS=${STOCK_PLUGINS:-/usr/lib/collectd}
HZ=$(getconf CLK_TCK)
B=$TEST_TMP/bin
PLUGINS=$TEST_TMP/plugins

bench_init() {
  require_cmd gcc
  [ -x "$COLLECTD_BIN" ] || cannot_run "collectd not found ($COLLECTD_BIN)"
  [ -f /usr/include/collectd/core/daemon/plugin.h ] || cannot_run "collectd-dev not installed"
  [ -f "$BUILD/.libs/hes.so" ] || fail "$BUILD/.libs/hes.so not built (run make in $BUILD)"
  [ -x "$BUILD/tests/sim/hes-sim" ] || fail "$BUILD/tests/sim/hes-sim not built"
  mkdir -p "$B" "$PLUGINS"
  # The collectd plugins get a minimal config.h of their own (collectd's headers need
  # -DHAVE_CONFIG_H; ours only has to come first with _GNU_SOURCE).
  printf '#define _GNU_SOURCE 1\n' >"$B/config.h"
  local p
  for p in "$@"; do
    gcc -O2 -std=gnu11 -Wall -Wextra -shared -fPIC -DHAVE_CONFIG_H -I"$B" -I/usr/include/collectd \
      "$SRC/tests/bench/bench_$p.c" -o "$PLUGINS/bench_$p.so" || fail "cannot build bench_$p.so"
  done
  # PluginDir rejects symlinks: copy. BENCH_HES_SO: another build of the plugin, for an A/B.
  cp "${BENCH_HES_SO:-$BUILD/.libs/hes.so}" "$PLUGINS/hes.so"
  cp "$STOCK_PLUGINS/logfile.so" "$PLUGINS/"
}

meter_file() { # meter_file <count> <file>
  awk -v n="$1" -v b="$METER_BASE" 'BEGIN { for (i = 0; i < n; i++) printf "%.0f\n", b + i }' >"$2"
}

# cd_conf <dir> <extra config> [period]: a config with logfile (info) and bench_count in <dir>.
cd_conf() {
  local d=$1
  mkdir -p "$d/var"
  cat >"$d/collectd.conf" <<CONF
Hostname "bench"
FQDNLookup false
BaseDir "$d/var"
PluginDir "$PLUGINS"
TypesDB "/usr/share/collectd/types.db" "$SRC/conf/hes-types.db"
Interval ${CD_INTERVAL:-1}
Timeout ${BENCH_TIMEOUT:-2}
${BENCH_GLOBAL:-}
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
  Period ${3:-1}
</Plugin>
$2
CONF
}

# hes_conf <name> <url> <meter file> <interval> [extra lines]: the plugin's configuration.
hes_conf() {
  printf 'LoadPlugin hes\n<Plugin hes>\n  <Server "%s">\n' "$1"
  printf '    URL "%s"\n    TenantCode "%s"\n    Username "kuangda"\n    Password "kd123456"\n' "$2" "$TENANT"
  printf '    SecretKey "%s"\n    <MQTT>\n      Host "127.0.0.1"\n      Port %s\n' "$SECRET" "$MQTT_PORT"
  printf '      ClientId "bench-%s-%s"\n    </MQTT>\n    MeterFile "%s"\n    Item %s\n' "$1" "$$" "$3" "$ITEMS"
  printf '    BatchSize %s\n    Interval %s\n%s  </Server>\n</Plugin>\n' "$BATCH" "$4" "${5:+$5
}"
}

CD_PID=
cd_start() { # cd_start <dir>
  : >"$1/collectd.log"
  # shellcheck disable=SC2086 # a list of VAR=value words
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

# proc_ticks <pid>: utime+stime of a process, in clock ticks (0 once it is gone).
proc_ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  s=${s##*) }
  awk '{ print $12 + $13 }' <<<"$s"
}

# ctx_switches <pid>: voluntary and involuntary context switches of all its threads so far.
# (/proc/<pid>/status alone counts the main thread only.)
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { print v + 0, n + 0 }'
}

# ctx_per_value <before> <after> <values>: "voluntary involuntary" switches per value.
ctx_per_value() {
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { split(a, x, " "); split(b, y, " ")
    printf "%.3f %.3f", (y[1] - x[1]) / n, (y[2] - x[2]) / n }'
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
    [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
    _lib_running "$CD_PID" || fail "collectd died"
    sleep 0.1
  done
  fail "no $2 samples in $1"
}

log_summary() { # log_summary <log>: counts of error/warning lines and "Value too old"
  printf 'errors=%s warnings=%s too_old=%s' "$(count_lines "$1" '[error]')" \
    "$(count_lines "$1" '[warning]')" "$(count_lines "$1" 'Value too old')"
}

cores() { # cores <ticks before> <ticks after> <seconds>
  awk -v a="$1" -v b="$2" -v s="$3" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz / s }'
}

# plugin_run <dir> <warmup> <window>: collectd with the plugin reading $METERS meters from the
# running simulator (SIM_URL) every $INTERVAL s, measured over <window> samples after
# <warmup>. Sets P_RATE P_US P_CORES P_FLT P_VALUES P_SECS P_RSS P_MED (see window),
# P_THREADS (cpu_split), P_CTX (voluntary involuntary switches per value), P_SIM_CORES,
# P_MQ_CORES, P_OTHER_CORES (everything else on the machine), P_SIM_RATE (readings/s the
# simulator published), P_LOG (log_summary) and P_SELF (the plugin's self-metrics).
plugin_run() {
  local d=$1 sim0 sim1 mq0 mq1 pub0 pub1 thr0 thr1 cd0 cd1 busy0 busy1 cs0 cs1 w
  cd_conf "$d" "$(hes_conf bench "$SIM_URL" "$TEST_TMP/meters.txt" "$INTERVAL" "    Timeout 900
    PlanTimeout 300")"
  cd_start "$d"
  wait_samples "$d/count.txt" "$2"
  sim0=$(proc_ticks "$SIM_PID") mq0=$(proc_ticks "$MOSQUITTO_PID") pub0=$(sim_stat pushes_published)
  thr0=$(thread_cpu "$CD_PID") cs0=$(ctx_switches "$CD_PID") cd0=$(proc_ticks "$CD_PID") busy0=$(busy_ticks)
  wait_samples "$d/count.txt" $(($2 + 1 + $3))
  sim1=$(proc_ticks "$SIM_PID") mq1=$(proc_ticks "$MOSQUITTO_PID") pub1=$(sim_stat pushes_published)
  thr1=$(thread_cpu "$CD_PID") cs1=$(ctx_switches "$CD_PID") cd1=$(proc_ticks "$CD_PID") busy1=$(busy_ticks)
  cd_stop
  w=$(window "$d/count.txt" "$2" "$3") || fail "($d): $w"
  read -r P_RATE P_US P_CORES P_FLT P_VALUES P_SECS P_RSS P_MED <<<"$w"
  P_THREADS=$(cpu_split "$thr0" "$thr1" "$P_VALUES" "$P_SECS")
  P_CTX=$(ctx_per_value "$cs0" "$cs1" "$P_VALUES")
  P_SIM_CORES=$(cores "$sim0" "$sim1" "$P_SECS")
  P_MQ_CORES=$(cores "$mq0" "$mq1" "$P_SECS")
  # Whatever else ran on the machine meanwhile (other tests, builds) skews the figures.
  P_OTHER_CORES=$(awk -v b="$((busy1 - busy0))" -v o="$((cd1 - cd0 + sim1 - sim0 + mq1 - mq0))" -v s="$P_SECS" -v hz="$HZ" 'BEGIN { x = (b - o) / hz / s; printf "%.2f", x < 0 ? 0 : x }')
  # If the simulator's rate is near the plugin's while the plugin has CPU to spare, the
  # simulator is the limit, not the plugin.
  P_SIM_RATE=$(awk -v a="$pub0" -v b="$pub1" -v s="$P_SECS" -v n="$BATCH" 'BEGIN { printf "%.0f", (b - a) * n / s }')
  P_LOG=$(log_summary "$d/collectd.log")
  # The plugin's self-metrics at the end (bench_count columns 6-11).
  P_SELF=$(tail -n 1 "$d/count.txt" | awk '{ printf "dispatched %d missing %d rejected %d foreign %d duplicate %d late %d", $6, $7, $8, $9, $10, $11 }')
}

# dispatch_run <name> <rate> <warmup> <window>: collectd's bare dispatch of the same
# identifiers (bench_dispatch; rate 0 = a tight loop). Prints the window line and leaves
# $TEST_TMP/<name>/{cpu_split,ctx,log_summary}.
dispatch_run() {
  local d=$TEST_TMP/$1 t0 t1 w b0 b1 k0 k1 cs0 cs1
  cd_conf "$d" "<LoadPlugin bench_dispatch>
  Globals true
</LoadPlugin>
<Plugin bench_dispatch>
  Meters $METERS
  MeterBase $METER_BASE
  Burst $BATCH
  Rate $2
  MaxInFlight 20000
  Work ${BENCH_DISPATCH_WORK:-0}
</Plugin>"
  cd_start "$d"
  wait_samples "$d/count.txt" "$3"
  t0=$(thread_cpu "$CD_PID") cs0=$(ctx_switches "$CD_PID") b0=$(busy_ticks) k0=$(proc_ticks "$CD_PID")
  wait_samples "$d/count.txt" $(($3 + 1 + $4))
  t1=$(thread_cpu "$CD_PID") cs1=$(ctx_switches "$CD_PID") b1=$(busy_ticks) k1=$(proc_ticks "$CD_PID")
  cd_stop
  w=$(window "$d/count.txt" "$3" "$4") || fail "($1): bad window: $w"
  echo "$w"
  local values secs
  read -r _ _ _ _ values secs _ <<<"$w"
  cpu_split "$t0" "$t1" "$values" "$secs" >"$d/cpu_split"
  awk -v b="$((b1 - b0 - (k1 - k0)))" -v s="$secs" -v hz="$HZ" 'BEGIN { x = b / hz / s; printf "; other processes %.2f cores", x < 0 ? 0 : x }' >>"$d/cpu_split"
  ctx_per_value "$cs0" "$cs1" "$values" >"$d/ctx"
  log_summary "$d/collectd.log" >"$d/log_summary"
}

# mem_per_meter <meters>: collectd's resident bytes per configured meter, into MEM_BPM: VmRSS
# with <meters> meters (MEM_MANY kB) minus VmRSS with 1 (MEM_ONE kB), over <meters> - 1. No
# HES traffic: the URL is a closed port (the token request fails at once), the read interval
# is a day; the broker is real, so both runs hold the same MQTT session.
mem_per_meter() {
  local n d rss=()
  meter_file "$1" "$TEST_TMP/mem_many.txt"
  meter_file 1 "$TEST_TMP/mem_one.txt"
  for n in many one; do
    d=$TEST_TMP/mem_$n
    cd_conf "$d" "$(hes_conf "mem$n" http://127.0.0.1:1 "$TEST_TMP/mem_$n.txt" 86400)"
    cd_start "$d"
    sleep 2
    rss+=("$(awk '/^VmRSS:/ { print $2 }' "/proc/$CD_PID/status")")
    cd_stop
  done
  MEM_MANY=${rss[0]} MEM_ONE=${rss[1]}
  MEM_BPM=$(awk -v a="$MEM_MANY" -v b="$MEM_ONE" -v n="$1" 'BEGIN { printf "%.1f", (a - b) * 1024 / (n - 1) }')
}

median3() { # median3 a b c
  printf '%s\n' "$@" | sort -g | sed -n 2p
}
