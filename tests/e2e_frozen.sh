#!/bin/bash
# End to end: daily billing through the seed's 4.1 loop. The simulator's history lacks 20% of
# meter x day on the first ask; the plugin reads those meters in real time and takes the
# pushes. Every meter ends with every daily value of the covered days exactly once, at the
# freeze time, in time order; a restart dispatches nothing twice.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

meters=()
for i in $(seq 1 10); do meters+=("$(printf '2024071001%02d' "$i")"); done
days=3
zone=Asia/Shanghai

collectd_setup
start_mosquitto
# The simulator freezes at local midnight of its own zone: the HES's zone, as the plugin's
# TimeZone says.
# shellcheck disable=SC2046
TZ=$zone start_sim $(sim_credentials) --frozen-drop-rate 0.2 --seed 11
wait_for 10 sim_connected || fail "simulator not connected to the broker"
mkdir -p "$CD_DIR/state"
conf() {
  collectd_conf "$(server_block frozen "Meter $(printf '"%s" ' "${meters[@]}")" \
    'Item "dailyBilling"' 'BatchSize 4' 'Interval 1' 'PlanTimeout 3' \
    "BackfillPeriods $days" 'RetryInterval 2' "TimeZone \"$zone\"")
  StateDir \"$CD_DIR/state\""
}
conf
collectd_start

# The freeze times: the latest $days local midnights in $zone (no DST there).
midnight=$(TZ=$zone date -d 'today 00:00' +%s)
freezes=()
for ((k = days - 1; k >= 0; k--)); do freezes+=($((midnight - k * 86400))); done

complete() {
  local m
  for m in "${meters[@]}"; do
    [ "$(csv_rows "$m" energy_wh-daily-import)" -ge "$days" ] || return 1
  done
}
wait_for 60 complete || fail "not every meter has $days daily values"
sleep 3 # one more retry round: nothing more may come

check_series() { # every meter: exactly the freeze times, in order, with the simulator's values
  local m f got want
  for m in "${meters[@]}"; do
    for ti in "energy_wh-daily-import 5069" "power-daily-max_demand 5099"; do
      read -r series cg <<<"$ti"
      f=$(csv_file "$m" "$series")
      got=$(grep '^[0-9]' "$f" | cut -d, -f1 | sed 's/\..*//' | tr '\n' ' ')
      [ "$got" = "${freezes[*]} " ] || fail "$m $series: times '$got', expected '${freezes[*]} '"
      while IFS=, read -r epoch value; do
        read -r want _ < <("$HES_SIM_BIN" --value "$m" "$cg" "${epoch%.*}000")
        awk -v g="$value" -v w="$want" 'BEGIN { d = g - w * 1000; exit !(d < 1e-6 && d > -1e-6) }' ||
          fail "$m $series at $epoch: $value, the simulator has $want k"
      done < <(grep '^[0-9]' "$f")
    done
  done
}
check_series
reads=$(count_lines "$SIM_LOG" '"endpoint":"readFrozen"')
hist=$(count_lines "$SIM_LOG" '"endpoint":"historyFrozen"')
[ "$hist" -ge 1 ] || fail "history was never asked"
[ "$reads" -ge 1 ] || fail "no real-time read: the 20% history gap was not chased"
[ "$(csv_last frozen-self gauge-periods_missing)" = "0.000000" ] || fail "periods still missing"
[ "$(csv_last frozen-self gauge-periods_collected)" = "$((days * ${#meters[@]})).000000" ] ||
  fail "periods_collected is not $((days * ${#meters[@]}))"
collectd_stop
collectd_log_clean
ok "every meter x day exactly once, at the freeze time, in order ($hist history and $reads real-time requests)"

# Restart: the state in StateDir says what was dispatched; nothing goes out twice.
before=$(count_lines "$SIM_LOG" '"endpoint":"readFrozen"')
collectd_start
sleep 5
collectd_stop
check_series
after=$(count_lines "$SIM_LOG" '"endpoint":"readFrozen"')
[ "$after" = "$before" ] || fail "the restart read frozen data again ($before -> $after requests)"
ok "a restart dispatches nothing twice and asks for nothing already collected"

# Spacing: a meter whose periods all come from the history in one round. collectd's csv
# plugin creates a new file with stat() then fopen("w"), so two write threads on one
# identifier can truncate each other's row; tests/slow_csv.c holds that creation 200 ms,
# which makes the loss certain for values dispatched closer than that (the round used to
# dispatch after each freeze time, milliseconds apart) and impossible for values an Interval
# apart (take_gap: half the Interval). Every period must reach the CSV files.
shim=$top_builddir/tests/.libs/slow_csv.so
[ -f "$shim" ] || fail "$shim not built"
# shellcheck disable=SC2046
TZ=$zone start_sim $(sim_credentials) --frozen-drop-rate 0 --seed 11 # the history has all
wait_for 10 sim_connected || fail "simulator not connected to the broker"
collectd_instance spacing
collectd_setup
mkdir -p "$CD_DIR/state"
collectd_conf "$(server_block spacing "Meter \"${meters[0]}\"" \
  'Item "dailyBilling"' 'Interval 2' 'PlanTimeout 3' "BackfillPeriods $days" \
  'RetryInterval 4' "TimeZone \"$zone\"")
  StateDir \"$CD_DIR/state\"" 'WriteThreads 16' # a free write thread for every value
LD_PRELOAD=$shim
export LD_PRELOAD
collectd_start
unset LD_PRELOAD
dispatched() { [ "$(csv_last spacing-self gauge-periods_collected)" = "$days.000000" ]; }
wait_for 30 dispatched || fail "the plugin did not dispatch the $days periods"
sleep 1 # the write threads' last rows
collectd_stop
series=("$CD_CSV/$CD_HOST/hes-${meters[0]}"/*-daily-*)
if [ ! -f "${series[0]}" ] || [ "${#series[@]}" -lt 2 ]; then fail "no daily series in $CD_CSV"; fi
for f in "${series[@]}"; do
  got=$({ grep '^[0-9]' "$f" || true; } | cut -d, -f1 | sed 's/\..*//' | tr '\n' ' ')
  [ "$got" = "${freezes[*]} " ] || fail "$(basename "$f"): times '$got', expected '${freezes[*]} '"
done
collectd_log_clean
ok "a meter's periods from one history round reach a slow csv plugin apart, none lost"
