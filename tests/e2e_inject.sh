#!/bin/bash
# shellcheck disable=SC2015,SC2119 # "test && test || fail" is meant; start_mosquitto takes no $1 here
# Fault injection, end to end: one collectd with the plugin, the HES simulator and a real
# mosquitto, and one fault after the other:
#   a second <Server> whose URL is a closed port (HES unreachable), the HES answering slower
#   than Timeout, HTTP 500s and HES errors, the token dropped by the HES, malformed,
#   truncated, binary and oversized (17 MB, above the 16 MiB cap) pushes, a QoS 1
#   redelivery of a real push (at once, and after its plan id is forgotten), pushes of
#   unknown plans, and 10,000 pushes in a burst.
# After each: collectd is still running and the self-metric the fault belongs to moved by
# exactly what was injected. At the end the reads are stopped (every plan-creating call
# fails), the last plans expire, and every reading the simulator delivered is accounted for
# exactly once: dispatched + missing = the devList lengths of the readSingle calls the
# simulator answered with HTTP 200 code 200 in time (its request log).
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

require_cmd mosquitto_pub mosquitto_sub curl
meters=(202407100001 202407100002 202407100003 202407100004 202407100005 202407100006)
silent=202407100006
S=inject-self # the plugin instance of the main server's self-metrics
D=dead-self
BURST=${INJECT_BURST:-10000}

collectd_setup
start_mosquitto
# As README advises for large installations: the broker's default queue (1000 messages a
# client) would drop most of the burst below before the plugin read it. Same port, so
# restart_mosquitto would undo this: the test does not restart the broker.
stop_mosquitto
echo "max_queued_messages 0" >>"$MOSQUITTO_DIR/mosquitto.conf"
LIB_OUT=$MOSQUITTO_DIR/mosquitto.out run_bg "$MOSQUITTO_BIN" -c "$MOSQUITTO_DIR/mosquitto.conf"
MOSQUITTO_PID=$BG_PID
wait_for 5 port_open "$MQTT_PORT" || fail "mosquitto did not come back with max_queued_messages 0"
# shellcheck disable=SC2046
start_sim $(sim_credentials) --silent-meters "$silent" --push-delay-ms 100
wait_for 10 sim_connected || fail "simulator not connected to the broker"

# Every push on the tenant, "topic payload" a line, for the redelivery and unknown-plan cases.
CAPTURE=$TEST_TMP/pushes.txt
LIB_OUT=$CAPTURE run_bg mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "/$SIM_TENANT/#"

closed=$(free_port)
dead_block=$(server_block dead 'Meter "202407100001" "202407100002"' 'Item "voltageA"' \
  "Interval 2" "PlanTimeout 3" |
  sed -e "s|URL \".*\"|URL \"http://127.0.0.1:$closed\"|" \
    -e "s|TenantCode \".*\"|TenantCode \"1000000099\"|" -e "s|Timeout 900|Timeout 800|")
collectd_conf "$(server_block inject \
  "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "importActiveEnergy"' \
  "BatchSize 4" "Interval 2" "PlanTimeout 3" | sed 's/Timeout 900/Timeout 800/')
$dead_block"
collectd_start

# self <server-self> <type-instance>: the newest value of a self-metric as an integer.
self() {
  local v
  v=$(csv_last "$1" "$2")
  printf '%.0f\n' "${v:-0}"
}
# wait_self <server-self> <type-instance> <min> <timeout>
self_at_least() { [ "$(self "$1" "$2")" -ge "$3" ]; }
wait_self() {
  wait_for "$4" self_at_least "$1" "$2" "$3" || fail "$1 $2 stayed below $3 (it is $(self "$1" "$2"))"
}
# Waits for two more self-metric rows of the main server: values counted by now are in them.
settle() {
  local n
  n=$(csv_rows "$S" total_values-dispatched)
  wait_for 15 eval "[ \"\$(csv_rows $S total_values-dispatched)\" -ge $((n + 2)) ]" ||
    fail "no new self-metrics rows"
}
alive() {
  collectd_running || fail "collectd died after: $1"
  ok "collectd up after: $1"
}
pub() { # <payload file> [mosquitto_pub args]: one push on the tenant's topic, QoS 1
  local f=$1
  shift
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "/$SIM_TENANT/inject" -f "$f" "$@"
}

# Warm-up: values for every answering meter.
all_values() {
  local m
  for m in "${meters[@]}"; do
    [ "$m" = "$silent" ] && continue
    [ "$(csv_rows "$m" voltage-A)" -ge 1 ] && [ "$(csv_rows "$m" energy_wh-import)" -ge 1 ] ||
      return 1
  done
}
wait_for 30 all_values || fail "no values for every answering meter"
ok "values flow"
# The first pushes' plans ended by now: step 6b redelivers one once its id is forgotten.
first_plans_ended=$SECONDS

# 1. HES unreachable: the dead server counts failed requests and nothing else.
wait_self "$D" total_requests-http_failed 2 15
[ "$(self "$D" total_values-dispatched)" = 0 ] || fail "the dead server dispatched values"
alive "a Server whose URL is a closed port"

# 2. Slower than Timeout (800 ms): requests fail on the client side, the late answers' plans
#    are not ours any more (their pushes count as foreign), values resume afterwards.
failed0=$(self "$S" total_requests-http_failed)
sim_control "slow?ms=1500" >/dev/null
slow_seen() { [ "$(count_lines "$SIM_LOG" '"slow_ms":1500')" -ge 3 ]; }
wait_for 30 slow_seen || fail "no slow requests reached the simulator"
sim_control "slow?ms=0" >/dev/null
wait_self "$S" total_requests-http_failed "$((failed0 + 3))" 20
t=$(date +%s)
values_after() { awk -F, -v t="$2" '$1 ~ /^[0-9]/ && $1 > t { f = 1 } END { exit !f }' "$(csv_file "$1" voltage-A)"; }
wait_for 20 values_after 202407100001 "$((t + 1))" || fail "values did not resume after slow answers"
alive "answers slower than Timeout"

# 3. HTTP 500 (HTML bodies) and HES error answers, half of the calls.
failed0=$(self "$S" total_requests-http_failed)
injected0=$(sim_stat fail_injected)
sim_control "fail-rate?rate=0.5" >/dev/null
wait_for 30 eval "[ \"\$(sim_stat fail_injected)\" -ge $((injected0 + 4)) ]" || fail "no failures injected"
sim_control "fail-rate?rate=0" >/dev/null
wait_self "$S" total_requests-http_failed "$((failed0 + 4))" 20
t=$(date +%s)
wait_for 20 values_after 202407100002 "$((t + 1))" || fail "values did not resume after HTTP 500s"
alive "HTTP 500 with HTML bodies and HES errors"

# 4. Token dropped by the HES: one stale call, a new token, values go on.
sim_control expire-token >/dev/null
stale_seen() { [ "$(count_lines "$SIM_LOG" '"token_ok":false')" -ge 1 ]; }
wait_for 20 stale_seen || fail "the dropped token was never presented"
t=$(date +%s)
wait_for 20 values_after 202407100003 "$((t + 1))" || fail "values did not resume after token expiry"
alive "token expiry"

# 5. Malformed pushes: each one is rejected, and nothing else happens.
settle
rej0=$(self "$S" total_values-rejected)
# grep -a: the capture holds the binary pushes below as well.
real_pushes() { grep -a "^/$SIM_TENANT/P003_[0-9]* .*\"devAddr\":\"202407100001\"" "$CAPTURE"; }
# Not "| head -n 1": under pipefail, grep dies of SIGPIPE once it has more than a pipe
# buffer of matches to write after head is gone, and the test failed for that alone.
real=$(real_pushes | tail -n 1) || fail "no push captured"
[ -n "$real" ] || fail "no push captured"
real_payload=${real#* }
M=$TEST_TMP/malformed
mkdir -p "$M"
printf 'not json at all' >"$M/1"
printf '{"planId":' >"$M/2"
printf '%s' "${real_payload:0:$((${#real_payload} / 2))}" >"$M/3" # truncated
head -c 4096 /dev/urandom >"$M/4"
printf '{"planId":"P\xff\xfe","data":{"status":"00","list":[]}}' >"$M/5" # invalid UTF-8
printf '{"planId":"P1","data":"00"}' >"$M/6" # data of the wrong type
# Above the 16 MiB cap: a syntactically fine push with a 17 MB padding member.
{
  printf '{"planId":"P003_big","pad":"'
  head -c 17000000 /dev/zero | tr '\0' a
  printf '","data":{"status":"00","list":[]}}'
} >"$M/7"
for f in "$M"/*; do pub "$f"; done
wait_self "$S" total_values-rejected "$((rej0 + 7))" 20
settle
[ "$(self "$S" total_values-rejected)" = "$((rej0 + 7))" ] ||
  fail "rejected moved by $(($(self "$S" total_values-rejected) - rej0)), 7 malformed pushes were sent"
alive "malformed, truncated, binary, invalid UTF-8, wrongly typed and 17 MB pushes"

# 6. QoS 1 redelivery of a real push: the plan is finished, so it is a duplicate, and no
#    value is dispatched twice (checked by the final balance).
dup0=$(self "$S" total_values-duplicate)
late0=$(self "$S" total_values-late)
real=$(real_pushes | tail -n 1)
printf '%s' "${real#* }" >"$TEST_TMP/redeliver.json"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "${real%% *}" -f "$TEST_TMP/redeliver.json"
redelivered() { [ $(($(self "$S" total_values-duplicate) + $(self "$S" total_values-late))) -gt $((dup0 + late0)) ]; }
wait_for 15 redelivered || fail "a redelivered push was counted neither duplicate nor late"
alive "a QoS 1 redelivery"

# 6b. The same long after: a finished plan's id is remembered for 4 PlanTimeouts (12 s), not
#     for an hour (the memory of a busy server grew for its first hour), so a redelivery of
#     the first push is another instance's by now: foreign, once, and not a duplicate.
while [ $((SECONDS - first_plans_ended)) -lt $((4 * 3 + 2 + 3)) ]; do sleep 1; done
first=$(grep -a -m 1 "^/$SIM_TENANT/P003_[0-9]* .*\"devAddr\":\"202407100001\"" "$CAPTURE") ||
  fail "no first push captured"
printf '%s' "${first#* }" >"$TEST_TMP/redeliver-old.json"
[ "${first%% *}" != "${real%% *}" ] || fail "the first push is also the newest one"
settle
dup0=$(self "$S" total_values-duplicate)
late0=$(self "$S" total_values-late)
for0=$(self "$S" total_values-foreign)
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "${first%% *}" -f "$TEST_TMP/redeliver-old.json"
wait_self "$S" total_values-foreign "$((for0 + 1))" 40
settle
[ "$(self "$S" total_values-foreign)" = "$((for0 + 1))" ] &&
  [ "$(self "$S" total_values-duplicate)" = "$dup0" ] && [ "$(self "$S" total_values-late)" = "$late0" ] ||
  fail "an old redelivery: foreign +$(($(self "$S" total_values-foreign) - for0)), duplicate +$(($(self "$S" total_values-duplicate) - dup0)), late +$(($(self "$S" total_values-late) - late0)) (want 1, 0, 0)"
alive "a redelivery after the plan's id was forgotten"

# 7. Pushes of unknown plans (random planIds): foreign, exactly one each.
settle
for0=$(self "$S" total_values-foreign)
for i in 1 2 3; do
  printf '%s' "$real_payload" | sed "s/\"planId\":\"[^\"]*\"/\"planId\":\"P003_X$RANDOM$RANDOM$i\"/" >"$TEST_TMP/unknown.json"
  pub "$TEST_TMP/unknown.json"
done
settle
[ "$(self "$S" total_values-foreign)" = "$((for0 + 3))" ] ||
  fail "foreign moved by $(($(self "$S" total_values-foreign) - for0)) for 3 unknown-plan pushes"
alive "pushes of unknown plans"

# 8. A burst of pushes of unknown plans, one connection, one message per line.
settle
for0=$(self "$S" total_values-foreign)
rej0=$(self "$S" total_values-rejected)
one=$(printf '%s' "$real_payload" | tr -d '\n')
start=$(date +%s.%N)
for ((i = 0; i < BURST; i++)); do
  printf '%s\n' "${one/\"planId\":\"/\"planId\":\"B$i-}"
done | mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "/$SIM_TENANT/burst" -l
wait_self "$S" total_values-foreign "$((for0 + BURST))" 60
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
settle
got=$(($(self "$S" total_values-foreign) - for0))
[ "$got" = "$BURST" ] || fail "foreign moved by $got for a burst of $BURST"
[ "$(self "$S" total_values-rejected)" = "$rej0" ] || fail "burst pushes were rejected"
note "$BURST pushes published and counted in $secs s"
alive "$BURST pushes in a burst"

# The balance. Stop the reads (every plan-creating call fails from now on), let the last
# round's plans expire (PlanTimeout 3 s), and wait until the counters stand still.
sim_control "fail-rate?rate=1" >/dev/null
sleep 5
settle
prev=
for i in $(seq 1 20); do
  now="$(self "$S" total_values-dispatched) $(self "$S" total_values-missing)"
  [ "$now" = "$prev" ] && break
  prev=$now
  settle
done
[ "$now" = "$prev" ] || fail "dispatched and missing do not settle: $now"
read -r dispatched missing <<<"$now"
collectd_stop

expected=$(grep '"endpoint":"readSingle"' "$SIM_LOG" | grep '"http":200,"code":200,' |
  grep -v '"slow_ms"' | awk '{
    if (!match($0, /"devList":\[[^]]*\]/)) { print "no devList: " $0 > "/dev/stderr"; exit 1 }
    l = substr($0, RSTART, RLENGTH); n += gsub(/","/, "", l) + 1 } END { print n + 0 }')
slow=$(count_lines "$SIM_LOG" '"slow_ms"')
note "simulator delivered $expected readings (and $slow answers too late); dispatched $dispatched, missing $missing"
[ "$expected" -gt 0 ] || fail "no reading delivered: the balance proves nothing"
[ "$missing" -gt 0 ] || fail "the silent meter was never counted missing"
[ $((dispatched + missing)) = "$expected" ] ||
  fail "dispatched + missing = $((dispatched + missing)), the simulator delivered $expected"
[ "$(self "$D" total_values-dispatched)" = 0 ] && [ "$(self "$D" total_values-missing)" = 0 ] ||
  fail "the dead server counted values"
ok "every delivered reading dispatched exactly once or counted missing ($dispatched + $missing = $expected)"
