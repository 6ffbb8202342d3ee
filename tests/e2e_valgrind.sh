#!/bin/bash
# The plugin inside a real collectd under valgrind memcheck: readings, a failing HES answer,
# a broker restart and a relay command, then a clean shutdown. Any memory error, or a
# definite leak, fails the test (collectd exits 99 under --error-exitcode).
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"
require_cmd valgrind

meters=(202407100001 202407100002 202407100003 202407100004)
collectd_setup
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --overvoltage-meter "${meters[2]}" --silent-meters "${meters[3]}" \
  --push-before-response
wait_for 10 sim_connected || fail "simulator not connected to the broker"
collectd_conf "$(server_block vg "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "importActiveEnergy" "powerFactorTotal"' 'BatchSize 3' 'Interval 1' \
  'PlanTimeout 3')
  StateDir \"$CD_DIR/var\"
  <Relay>
    Holdoff 60
    MaxPerMinute 5
    <Rule \"overvoltage\">
      Type \"voltage\"
      Severity \"failure\"
      Action \"open\"
    </Rule>
  </Relay>" "LoadPlugin threshold
<Plugin threshold>
  <Plugin \"hes\">
    <Type \"voltage\">
      FailureMax 255
    </Type>
  </Plugin>
</Plugin>"

VG_LOG=$CD_DIR/valgrind.log
FAIL_LOGS="$FAIL_LOGS $VG_LOG"
: >"$CD_LOG"
LIB_OUT=$CD_DIR/collectd.out run_bg valgrind --leak-check=full --errors-for-leak-kinds=definite \
  --error-exitcode=99 --log-file="$VG_LOG" "$COLLECTD_BIN" -f -C "$CD_CONF"
CD_PID=$BG_PID
wait_for 60 grep -q 'Initialization complete' "$CD_LOG" || fail "collectd did not start under valgrind"
has_values() { [ "$(csv_rows "${meters[0]}" voltage-A)" -ge 3 ]; }
wait_for 60 has_values || fail "no values under valgrind"
wait_for 30 grep -q 'relay audit: .* outcome success' "$CD_LOG" || fail "no relay command"
# Failing HES answers (HTML 500s and code 500) for a few rounds.
sim_control "fail-rate?rate=0.5" >/dev/null
sleep 3
sim_control "fail-rate?rate=0" >/dev/null
restart_mosquitto
restarted=$(date +%s)
resumed() {
  local f
  f=$(csv_file "${meters[0]}" voltage-A)
  awk -F, -v t="$restarted" '$1 ~ /^[0-9]/ && $1 > t + 1 { found = 1 } END { exit !found }' "$f"
}
wait_for 60 resumed || fail "values did not resume after the broker restart under valgrind"
sleep 4 # a plan or two expire (the silent meter)
kill -INT "$CD_PID"
rc=0
wait "$CD_PID" || rc=$?
_lib_forget "$CD_PID"
CD_PID=
if [ "$rc" != 0 ]; then
  grep -A30 -E 'Invalid|uninitialised|definitely lost' "$VG_LOG" | head -n 80 >&2 || true
  fail "collectd under valgrind exited with $rc"
fi
grep -q 'ERROR SUMMARY: 0 errors' "$VG_LOG" || fail "valgrind reported errors"
ok "valgrind memcheck: no error, no definite leak (readings, early pushes, failures, broker restart, relay)"
