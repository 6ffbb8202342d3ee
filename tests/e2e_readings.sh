#!/bin/bash
# End to end: a real collectd with the plugin, the HES simulator and a real mosquitto.
# Every configured meter x item must arrive as CSV values equal to the simulator's
# deterministic readings after unit conversion, stamped with the push's time; a meter that
# never answers is counted as missing; requests per round and token fetches are as designed.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

meters=(202407100001 202407100002 202407100003 202407100004 202407100005 202407100006)
silent=202407100006
# name cgcode collectd-type-instance factor-to-SI
items=(
  "voltageA 5050 voltage-A 1"
  "currentA 5053 current-A 1"
  "activePowerTotal 5022 power-total 1000"
  "reactivePowerA 5031 reactive_power-A 1000"
  "powerFactorTotal 5046 power_factor-total 1"
  "importActiveEnergy 5069 energy_wh-import 1000"
)

collectd_setup
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --silent-meters "$silent" --push-delay-ms 100
wait_for 10 sim_connected || fail "simulator not connected to the broker"

names=()
for it in "${items[@]}"; do names+=("\"${it%% *}\""); done
collectd_conf "$(server_block e2e \
  "Meter $(printf '"%s" ' "${meters[@]}")" \
  "Item ${names[*]}" \
  "BatchSize 4" "Interval 2" "PlanTimeout 3")"
collectd_start

# Three rounds' worth of values for every answering meter x item.
have_rows() {
  local m it
  for m in "${meters[@]}"; do
    [ "$m" = "$silent" ] && continue
    for it in "${items[@]}"; do
      read -r _ _ ti _ <<<"$it"
      [ "$(csv_rows "$m" "$ti")" -ge 3 ] || return 1
    done
  done
}
wait_for 30 have_rows || fail "not every meter x item reached 3 CSV rows"
# The silent meter's plans expire after PlanTimeout: wait for them to be counted.
wait_for 15 awk -F, 'END { exit !($2 >= 6) }' "$(csv_file e2e-self total_values-missing)" ||
  fail "the silent meter was not counted as missing"
collectd_stop
collectd_log_clean

# Every CSV row equals the simulator's reading at that row's timestamp, converted to SI.
# The simulator's values move with time (voltages by about 0.003 V a second, printed to the
# mV), so this also proves each value carries the push's timestamp, not collectd's clock.
checked=0
for m in "${meters[@]}"; do
  [ "$m" = "$silent" ] && continue
  for it in "${items[@]}"; do
    read -r name cg ti factor <<<"$it"
    f=$(csv_file "$m" "$ti")
    head -n 1 "$f" | grep -qx 'epoch,value' || fail "$f: bad header"
    while IFS=, read -r epoch value; do
      ms=$(awk -v e="$epoch" 'BEGIN { printf "%.0f", e * 1000 }')
      read -r want unit < <("$HES_SIM_BIN" --value "$m" "$cg" "$ms")
      awk -v got="$value" -v want="$want" -v f="$factor" 'BEGIN {
        w = want * f; d = got - w; if (d < 0) d = -d
        exit !(d <= 1e-6 * (w < 0 ? -w : w) + 1e-6) }' ||
        fail "$m $name at $epoch: CSV has $value, the simulator sent $want $unit (x$factor)"
      checked=$((checked + 1))
    done < <(grep '^[0-9]' "$f")
  done
done
[ -z "$(ls "$CD_CSV/$CD_HOST" | grep "hes-$silent")" ] || fail "values for the silent meter"
note "$checked values equal to the simulator's"
ok "every meter x item arrived with the simulator's values"

# Requests: every request a batch of 4 or the remaining 2 meters, the same number of requests
# per item (within one round), and one token for the whole run.
tokens=$(count_lines "$SIM_LOG" '"endpoint":"getToken"')
[ "$tokens" = 1 ] || fail "expected 1 getToken, the simulator saw $tokens"
for it in "${items[@]}"; do
  read -r name cg _ _ <<<"$it"
  n=$(grep '"endpoint":"readSingle"' "$SIM_LOG" | grep -c "\"cgcode\":\"$cg\"" || true)
  echo "$n"
done | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { exit !(lo >= 4 && hi - lo <= 2) }' ||
  fail "requests per item are uneven or too few"
bad=$(grep '"endpoint":"readSingle"' "$SIM_LOG" | grep -v -e '"devList":\["202407100001","202407100002","202407100003","202407100004"\]' -e '"devList":\["202407100005","202407100006"\]' | head -n 1 || true)
[ -z "$bad" ] || fail "a request with an unexpected devList: $bad"
ok "requests per round = items x ceil(meters / BatchSize), one token"

# Self-metrics.
[ "$(csv_last e2e-self gauge-mqtt_connected)" = "1.000000" ] || fail "mqtt_connected is not 1"
awk -F, 'END { exit !($2 > 0) }' "$(csv_file e2e-self total_values-dispatched)" ||
  fail "dispatched is 0"
[ "$(csv_last e2e-self total_values-rejected)" = 0 ] || fail "values were rejected"
[ "$(csv_last e2e-self total_requests-retried)" = 0 ] || fail "requests to a healthy HES were retried"
ok "self-metrics"

# How the HES is doing: the simulator pushes 100 ms after its answer, so every reading's
# push latency lies between that (less the 1/64 of a quantile's bucket) and PlanTimeout (3 s);
# the rounds fit their Interval (2 s).
# in_range <plugin_instance> <type-type_instance> <low> <high>: the last value lies there.
in_range() {
  local v
  v=$(csv_last "$1" "$2")
  [ -n "$v" ] || fail "no $2 value"
  awk -v v="$v" -v lo="$3" -v hi="$4" 'BEGIN { exit !(v + 0 >= lo && v + 0 <= hi) }' ||
    fail "$2 is $v, not in [$3, $4]"
}
in_range e2e-self latency-push-p50 0.098 3
in_range e2e-self latency-push-p95 0.098 3
in_range e2e-self latency-push-max 0.1 3
in_range e2e-self latency-http 0.000001 1
in_range e2e-self latency-http-max 0.000001 1
in_range e2e-self duration-round 0.000001 2
[ "$(csv_last e2e-self total_operations-round_overrun)" = 0 ] || fail "rounds overran"
[ "$(csv_last e2e-self total_operations-mqtt_reconnect)" = 0 ] || fail "MQTT reconnected"
ok "health self-metrics: push latency in [0.1, 3] s, HTTP latency, round duration < Interval"
