#!/bin/bash
# Scaling out the collectd way: two collectd instances share one tenant, each with its own
# MeterFile. Both see every push on /<TenantCode>/#; each dispatches only its own plans'
# readings, counts the other's pushes as foreign, and rejects or misses nothing.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --push-before-response
wait_for 10 sim_connected || fail "simulator not connected to the broker"

declare -A pid
for name in a b; do
  collectd_instance "$name"
  collectd_setup
  if [ "$name" = a ]; then first=1; else first=6; fi
  for i in $(seq "$first" $((first + 4))); do printf '20240710%04d\n' "$i"; done \
    >"$CD_DIR/meters.list"
  collectd_conf "$(server_block "$name" "MeterFile \"$CD_DIR/meters.list\"" \
    'Item "voltageA" "currentA"' 'BatchSize 3' 'Interval 1' 'PlanTimeout 3')"
  collectd_start
  pid[$name]=$CD_PID
done

has_all() { # <instance>: 3 rows for each of its meters
  local m
  collectd_instance "$1"
  while read -r m; do
    [ "$(csv_rows "$m" voltage-A)" -ge 3 ] && [ "$(csv_rows "$m" current-A)" -ge 3 ] || return 1
  done <"$CD_DIR/meters.list"
}
wait_for 30 has_all a || fail "instance a lacks values"
wait_for 30 has_all b || fail "instance b lacks values"

for name in a b; do
  collectd_instance "$name"
  CD_PID=${pid[$name]}
  collectd_stop
  collectd_log_clean
  dirs=$(ls "$CD_CSV/$CD_HOST" | grep -v -- '-self$' | sed 's/^hes-//' | sort)
  [ "$dirs" = "$(sort "$CD_DIR/meters.list")" ] ||
    fail "instance $name dispatched other meters: $(echo $dirs)"
  foreign=$(csv_last "$name-self" total_values-foreign)
  [ "${foreign%%.*}" -gt 0 ] || fail "instance $name counted no foreign pushes"
  [ "$(csv_last "$name-self" total_values-rejected)" = 0 ] || fail "instance $name rejected values"
  [ "$(csv_last "$name-self" total_values-missing)" = 0 ] || fail "instance $name missed values"
  note "instance $name: foreign pushes $foreign"
done
ok "two instances on one tenant: each its own meters, the other's pushes counted foreign"
