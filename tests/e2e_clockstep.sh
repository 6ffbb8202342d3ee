#!/bin/bash
# End to end: the billing thread schedules its rounds on the monotonic clock. Under
# tests/clock_step.c, the billing thread's wall clock goes back an hour a few seconds after
# start (a VM resumed, a manual `date`, a bad NTP start); collectd's own threads keep the true
# time. One meter never answers, so every RetryInterval (2 s) a round asks the simulator for
# its daily periods again. Rounds scheduled on the wall clock stopped for the hour the clock
# went back (now - last round < 0); they must keep coming, and the voltage readings too.
# Then the clock goes forward an hour instead: the billing thread's wait must not be on the
# wall clock either (under the shim, whose step the kernel does not see, a wait on
# CLOCK_REALTIME computed from the stepped clock lasts the hour; a real step forward would cut
# it short instead).
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

shim=$top_builddir/tests/.libs/clock_step.so
[ -f "$shim" ] || fail "$shim not built"
meters=(202407100101 202407100102 202407100103)
silent=${meters[2]}
zone=Asia/Shanghai

collectd_setup
start_mosquitto
# shellcheck disable=SC2046
TZ=$zone start_sim $(sim_credentials) --silent-meters "$silent" --seed 3
wait_for 10 sim_connected || fail "simulator not connected to the broker"
mkdir -p "$CD_DIR/state"
collectd_conf "$(server_block step "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "dailyBilling"' 'Interval 1' 'PlanTimeout 1' 'BackfillPeriods 2' \
  'RetryInterval 2' "TimeZone \"$zone\"")
  StateDir \"$CD_DIR/state\""

# step <seconds>: collectd under the shim, the billing thread's wall clock stepped by
# <seconds> 6 s after start; checks the rounds and readings over the 9 s that follow.
step() {
  local by=$1 mark=$CD_DIR/stepped$1 a0 a1 v0 v1
  # collectd names the plugin's threads (plugin_thread_create): "hes billing" is the 4.1 loop's.
  CLOCK_STEP_BY=$by CLOCK_STEP_AFTER=6 CLOCK_STEP_THREAD="hes billing" CLOCK_STEP_MARK=$mark
  LD_PRELOAD=$shim
  export LD_PRELOAD CLOCK_STEP_BY CLOCK_STEP_AFTER CLOCK_STEP_THREAD CLOCK_STEP_MARK
  collectd_start
  unset LD_PRELOAD CLOCK_STEP_BY CLOCK_STEP_AFTER CLOCK_STEP_THREAD CLOCK_STEP_MARK
  a0=$(asks)
  wait_for 10 asks_at_least $((a0 + 1)) || fail "no billing round before the clock step"
  wait_for 20 test -f "$mark" ||
    fail "the billing thread never read the stepped clock (is it named \"hes billing\"?)"
  a0=$(asks)
  v0=$(volt_rows)
  sleep 9 # four RetryIntervals and a half
  a1=$(asks)
  v1=$(volt_rows)
  # A round asks once per missing day (BackfillPeriods 2), every 2 s: eight asks in 9 s. At
  # least 6 (three rounds) leaves room for a slow machine; rounds scheduled on the wall clock
  # make none until the hour is over.
  [ $((a1 - a0)) -ge 6 ] ||
    fail "$((a1 - a0)) history ask(s) in 9 s after the wall clock stepped by $by s (2 a round, RetryInterval 2)"
  [ $((v1 - v0)) -ge 5 ] || fail "voltage: $((v1 - v0)) value(s) in 9 s (Interval 1)"
  collectd_stop
  collectd_log_clean
  ok "billing rounds went on after a $by s step ($((a1 - a0)) history asks in 9 s, 2 a round), voltage too ($((v1 - v0)) values)"
}

# Every round asks the history for the silent meter's missing days (then reads it in real time).
asks() { count_lines "$SIM_LOG" '"endpoint":"historyFrozen"'; }
asks_at_least() { [ "$(asks)" -ge "$1" ]; }
volt_rows() { csv_rows "${meters[0]}" voltage-A; }

step -3600
step 3600
