#!/bin/bash
# End to end: Spread. Ten meters, BatchSize 1: a read round is ten readSingle requests. With
# Spread 0.9 and Interval 5, request k of a round waits until 4.5 s x k/10 after the round's
# start, so the ten requests of one round span at least 4.05 s (minus the token request before
# the first one); the simulator's log has each request's time. With Spread 0 they go out back
# to back: ten local requests in well under a second, so the test allows three.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

meters=()
for i in $(seq 1 10); do meters+=("$(printf '2024071001%02d' "$i")"); done

collectd_setup
start_mosquitto

# round_span <sim log>: the ms between the first and the last request of the second round
# (requests 11 to 20: the first round may have waited for the broker).
round_span() {
  grep '"endpoint":"readSingle"' "$1" | grep -o '"time_ms":[0-9]*' | cut -d: -f2 |
    awk 'NR == 11 { a = $1 } NR == 20 { print $1 - a; exit }'
}
# run <spread>: one simulator and one collectd until two rounds were asked; sets SPAN.
run() {
  # shellcheck disable=SC2046
  start_sim $(sim_credentials) --seed 7
  wait_for 10 sim_connected || fail "simulator not connected to the broker"
  collectd_instance "spread-$1"
  mkdir -p "$CD_DIR/plugins" "$CD_DIR/var"
  cp "$top_builddir/.libs/hes.so" "$STOCK_PLUGINS/logfile.so" "$STOCK_PLUGINS/csv.so" "$CD_DIR/plugins/"
  collectd_conf "$(server_block spread "Meter $(printf '"%s" ' "${meters[@]}")" \
    'Item "voltageA"' 'BatchSize 1' 'Interval 5' 'PlanTimeout 4' "Spread $1")"
  collectd_start
  asked() { [ "$(grep -c '"endpoint":"readSingle"' "$SIM_LOG" || true)" -ge 20 ]; }
  wait_for 40 asked ||
    fail "Spread $1: $(grep -c '"endpoint":"readSingle"' "$SIM_LOG") readSingle requests in 40 s"
  collectd_stop
  collectd_log_clean
  SPAN=$(round_span "$SIM_LOG")
}

run 0.9
span=$SPAN
[ "$span" -ge 3000 ] || fail "Spread 0.9: a round's ten requests went out within $span ms"
ok "Spread 0.9: a round's ten requests spread over $span ms of the 5 s Interval"
run 0 # start_sim stops the first simulator: a fresh log
span=$SPAN
[ "$span" -lt 3000 ] || fail "Spread 0: a round's ten requests took $span ms"
ok "Spread 0: a round's ten requests went out within $span ms"
