#!/bin/bash
# End to end: one thread per duty. Voltage every 2 s and dailyBilling's 4.1 loop on one
# <Server>, with every history page answered 1.2 s late (/sim/slow?endpoint=history). The
# billing loop has dozens of pages to read; while it reads them, the voltage rounds go on at
# their Interval, and the billing loop still makes progress. With both duties on one thread
# the voltage rounds stall until the history is read (11.6 s in issue 12's measurement).
# Then readSingle is slowed instead: rounds stop at their Interval and resume where they
# stopped, so no batch starves.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

meters=()
for i in $(seq 1 10); do meters+=("$(printf '2024071001%02d' "$i")"); done
zone=Asia/Shanghai

collectd_setup
start_mosquitto
# shellcheck disable=SC2046
TZ=$zone start_sim $(sim_credentials) --seed 5
wait_for 10 sim_connected || fail "simulator not connected to the broker"
sim_control "slow?ms=1200&endpoint=history" >/dev/null
sim_control "slow?ms=1200&endpoint=nosuch" | grep -q 'endpoint must' ||
  fail "the simulator took an unknown endpoint name"

mkdir -p "$CD_DIR/state"
# Timeout above the 1.2 s of a history page (and below the Interval): pages are slow, not lost.
collectd_conf "$(server_block duties "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "dailyBilling"' 'BatchSize 2' 'Interval 2' 'PlanTimeout 3' \
  'BackfillPeriods 10' 'RetryInterval 60' "TimeZone \"$zone\"" | sed 's/Timeout 900/Timeout 1900/')
  StateDir \"$CD_DIR/state\""
collectd_start

slow_pages() { grep -c '"endpoint":"historyFrozen".*"slow_ms":1200' "$SIM_LOG" || true; }
pages_at_least() { [ "$(slow_pages)" -ge "$1" ]; }
volt_rows() { csv_rows "${meters[0]}" voltage-A; }

wait_for 20 pages_at_least 2 || fail "the billing loop asked no slow history page"
r0=$(volt_rows)
p0=$(slow_pages)
# Eight more pages: at least 9.6 s spent waiting for history.
wait_for 40 pages_at_least $((p0 + 8)) || fail "the billing loop stopped asking history pages"
r1=$(volt_rows)
p1=$(slow_pages)
# Four rounds in 9.6 s is well below the 2 s Interval's pace, and far above a stalled read
# thread's (none).
[ $((r1 - r0)) -ge 4 ] ||
  fail "voltage: $((r1 - r0)) value(s) while $((p1 - p0)) history pages were answered 1.2 s late"
if grep -q 'read round took longer' "$CD_LOG"; then
  fail "a read round overran its Interval while only history was slow"
fi
ok "voltage went on ($((r1 - r0)) values of ${meters[0]}) while $((p1 - p0)) history pages took 1.2 s each"

# The billing duty is slowed, not stopped: periods come in (history, then real-time reads).
sim_control "slow?ms=0" >/dev/null
collected() { [ "$(csv_last duties-self gauge-periods_collected | cut -d. -f1)" -ge 1 ]; }
wait_for 60 collected || fail "no billing period collected"
ok "the billing loop collected periods meanwhile"

# A read round has a deadline too: with every readSingle answered 0.9 s late, a round of five
# batches (4.5 s) does not fit in the 2 s Interval. Each round stops when its Interval is up
# and the next one starts with the batch it did not send, so the last batch's meters get
# values as well as the first's.
sim_control "slow?ms=900&endpoint=readSingle" >/dev/null
overran() { grep -q 'read round took longer than the Interval' "$CD_LOG"; }
wait_for 20 overran || fail "no read round stopped at its Interval"
first=$(csv_rows "${meters[0]}" voltage-A)
last=$(csv_rows "${meters[9]}" voltage-A)
grown() { [ "$(csv_rows "${meters[0]}" voltage-A)" -ge $((first + 2)) ] &&
  [ "$(csv_rows "${meters[9]}" voltage-A)" -ge $((last + 2)) ]; }
wait_for 40 grown || fail "a batch starved: ${meters[0]} $first -> $(csv_rows "${meters[0]}" voltage-A), ${meters[9]} $last -> $(csv_rows "${meters[9]}" voltage-A)"
sim_control "slow?ms=0" >/dev/null
collectd_stop
collectd_log_clean
ok "rounds stopped at their Interval and resumed with the next batch: the first and the last meters both read"
