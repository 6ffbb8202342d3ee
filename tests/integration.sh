#!/bin/bash
# shellcheck disable=SC2015,SC2119 # "test && test || fail" is meant; start_mosquitto takes no $1 here
# integration.sh: the HES simulator against a real mosquitto, then the C programs that need
# them: tests/test_api_sim (the api module against the simulator) and tests/test_mqtt (the
# mqtt module; it starts its own broker). The simulator checks here are the contract the
# other tests rely on: a token, a readSingle whose push arrives on /<tenant>/<planId> with
# the value hes-sim --value predicts, a bad token and a too-long devList refused, and
# --push-before-response publishing (PUBACK included) before the HTTP answer.
# Exit 0 pass, 1 fail (also when it cannot run: no mosquitto).
set -eu
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

TENANT=1000000067
USER_NAME=kuangda
PASSWORD=kd123456
SECRET=55be0dc7ac554610165183db43991c50
M1=202407100001
OVERVOLTAGE=202407100002
SILENT=202407100003
RELAY_FAIL=202407100004

require_cmd curl mosquitto_sub
start_mosquitto
SIM_ARGS=(--tenant "$TENANT" --username "$USER_NAME" --password "$PASSWORD" --secret-key "$SECRET"
  --silent-meters "$SILENT" --overvoltage-meter "$OVERVOLTAGE" --relay-fail-meters "$RELAY_FAIL"
  --max-devlist 100)
# The delay is long enough to see that the answer comes first, even on a loaded machine.
start_sim "${SIM_ARGS[@]}" --push-delay-ms 1000
wait_for 10 sim_connected || fail "hes-sim did not connect to the broker"

SUB=$TEST_TMP/sub.txt
LIB_OUT=$SUB run_bg mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "/$TENANT/#"
SUB_PID=$BG_PID
FAIL_LOGS=$SUB
# The subscription is in place once the broker has logged it.
wait_for 5 grep -q "/$TENANT/#" "$MOSQUITTO_LOG" || sleep 0.5

# --- getToken ------------------------------------------------------------------------------
TOKEN=$(hes_token "$TENANT" "$USER_NAME" "$PASSWORD" "$SECRET")
[ -n "$TOKEN" ] || fail "no token"
TOKEN2=$(hes_token "$TENANT" "$USER_NAME" "$PASSWORD" "$SECRET")
[ "$TOKEN" = "$TOKEN2" ] || fail "a second getToken within the lifetime gave another token"
answer=$(hes_post getToken "{\"tenantCode\":\"$TENANT\",\"username\":\"$USER_NAME\",\"password\":\"wrong\",\"secretKey\":\"$SECRET\"}")
[ "$(json_num "$answer" code)" = 500 ] || fail "wrong password accepted: $answer"
case $answer in *"$TOKEN"*) fail "a refused getToken shows the token" ;; esac
ok "getToken: token, same token when asked again, wrong password refused"

# --- readSingle and its push ---------------------------------------------------------------
answer=$(hes_post meter/readSingle "{\"devList\":\"$M1,$OVERVOLTAGE,$SILENT\",\"cgcode\":\"5050\",\"token\":\"$TOKEN\"}")
[ "$(json_num "$answer" code)" = 200 ] || fail "readSingle: $answer"
PLAN=$(json_str "$answer" planId)
TOPIC=$(json_str "$answer" topicId)
case $PLAN in P003_[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;;
*) fail "planId $PLAN is not P003_<14 digits><6 digits>" ;;
esac
[ "$TOPIC" = "/$TENANT/$PLAN" ] || fail "topicId $TOPIC"
[ "$(count_lines "$SUB" "$PLAN")" = 0 ] || fail "the push came before --push-delay-ms"
wait_for 5 grep -qF "/$TENANT/$PLAN {" "$SUB" || fail "no push for $PLAN on /$TENANT/$PLAN"
push=$(grep -F "/$TENANT/$PLAN {" "$SUB")
case $push in *"\"planId\":\"$PLAN\""*'"status":"01"'*) ;; *) fail "push: $push" ;; esac
case $push in *"\"devAddr\":\"$SILENT\""*) fail "the silent meter answered: $push" ;; esac
for meter in "$M1" "$OVERVOLTAGE"; do
  entry=$(printf '%s' "$push" | grep -o "{\"devAddr\":\"$meter\",[^}]*}") || fail "no reading for $meter: $push"
  ts=$(json_num "$entry" timestamp)
  value=$(json_str "$entry" value)
  unit=$(json_str "$entry" unit)
  ov=()
  [ "$meter" = "$OVERVOLTAGE" ] && ov=(--overvoltage)
  expect=$("$HES_SIM_BIN" --value "$meter" 5050 "$ts" "${ov[@]}")
  [ "$value $unit" = "$expect" ] || fail "$meter: pushed '$value $unit', hes-sim --value says '$expect'"
done
v=${value%.*}
[ "$v" -ge 255 ] && [ "$v" -le 270 ] || fail "over-voltage meter reads $value V"
now_ms=$(($(date +%s) * 1000))
[ $((ts - now_ms)) -lt 5000 ] && [ $((now_ms - ts)) -lt 10000 ] || fail "push timestamp $ts is not the push time"
ok "readSingle: push on $TOPIC, values as predicted, silent meter missing, status 01"

# --- refusals --------------------------------------------------------------------------------
answer=$(hes_post meter/readSingle "{\"devList\":\"$M1\",\"cgcode\":\"5050\",\"token\":\"not-the-token\"}")
[ "$answer" = '{"code":500,"msg":"Token invalid or expired"}' ] || fail "bad token: $answer"
answer=$(hes_post meter/readSingle "{\"devList\":\"$M1\",\"cgcode\":\"5050\"}")
[ "$answer" = '{"code":500,"msg":"Token invalid or expired"}' ] || fail "no token: $answer"
answer=$(hes_post meter/readSingle "{\"devList\":\"$M1\",\"cgcode\":\"5050\"}" -H "HES_Access_Token: $TOKEN")
[ "$(json_num "$answer" code)" = 200 ] || fail "token in the header refused: $answer"
long=$(seq -f '3000%08g' 1 101 | paste -sd, -)
answer=$(hes_post meter/readSingle "{\"devList\":\"$long\",\"cgcode\":\"5050\",\"token\":\"$TOKEN\"}")
case $answer in '{"code":500,"msg":"devList too long'*) ;; *) fail "101 meters accepted: $answer" ;; esac
answer=$(hes_post meter/readSingle '{"devList":"1",')
[ "$answer" = '{"code":500,"msg":"Invalid JSON body"}' ] || fail "broken JSON: $answer"
ok "bad or missing token, a too-long devList, broken JSON: code 500"

# --- the request log -------------------------------------------------------------------------
grep -qF "\"endpoint\":\"readSingle\",\"http\":200,\"code\":200,\"msg\":\"success\",\"planId\":\"$PLAN\",\"cgcode\":\"5050\",\"controlMode\":null,\"devList\":[\"$M1\",\"$OVERVOLTAGE\",\"$SILENT\"],\"token_ok\":true" "$SIM_LOG" ||
  fail "no log line for $PLAN"
[ "$(grep -cF '"msg":"Token invalid or expired","planId":null,"cgcode":"5050","controlMode":null,"devList":["'"$M1"'"],"token_ok":false' "$SIM_LOG")" = 2 ] ||
  fail "expected two refused-token lines in the log"
if grep -qF -e "$TOKEN" -e "$PASSWORD" -e "$SECRET" "$SIM_LOG"; then
  fail "the request log shows a credential"
fi
ok "request log: one JSON line per request, no credentials"

# --- push ordering -----------------------------------------------------------------------------
# Without --push-before-response the answer comes first: nothing published yet.
wait_for 5 sim_stat_is pushes_published "$(sim_stat plans)" || fail "pushes stay pending: $(sim_stats)"
published=$(sim_stat pushes_published)
answer=$(hes_post meter/readSingle "{\"devList\":\"$M1\",\"cgcode\":\"5069\",\"token\":\"$TOKEN\"}")
[ "$(sim_stat pushes_published)" = "$published" ] || fail "pushed before the answer without --push-before-response"
# With it (and a push delay it must ignore), the broker has acknowledged the push when the
# answer arrives.
start_sim "${SIM_ARGS[@]}" --push-before-response --push-delay-ms 60000
wait_for 10 sim_connected || fail "hes-sim did not connect to the broker"
TOKEN=$(hes_token "$TENANT" "$USER_NAME" "$PASSWORD" "$SECRET")
answer=$(hes_post meter/readSingle "{\"devList\":\"$M1\",\"cgcode\":\"5069\",\"token\":\"$TOKEN\"}")
PLAN=$(json_str "$answer" planId)
[ -n "$PLAN" ] || fail "readSingle: $answer"
[ "$(sim_stat pushes_acked)" = 1 ] || fail "answered before the broker acknowledged the push: $(sim_stats)"
wait_for 3 grep -qF "/$TENANT/$PLAN {" "$SUB" || fail "no push for $PLAN"
answer=$(hes_post meter/relay "{\"devList\":\"$M1,$RELAY_FAIL\",\"controlMode\":1,\"token\":\"$TOKEN\"}")
PLAN=$(json_str "$answer" planId)
[ "$(json_str "$answer" topic)" = "/$TENANT/$PLAN/" ] || fail "relay topic: $answer"
wait_for 3 grep -qF "/$TENANT/$PLAN {\"planId\":\"$PLAN\",\"data\":{\"status\":\"01\",\"list\":[{\"devAddr\":\"$M1\",\"successful\":true},{\"devAddr\":\"$RELAY_FAIL\",\"successful\":false}]}}" "$SUB" ||
  fail "relay push for $PLAN"
ok "--push-before-response: published and acknowledged before the answer; relay push"
stop_sim
stop_bg "$SUB_PID"
FAIL_LOGS=

# --- the C programs ----------------------------------------------------------------------------
start_sim "${SIM_ARGS[@]}"
wait_for 10 sim_connected || fail "hes-sim did not connect to the broker"
export HES_SIM_URL=$SIM_URL HES_SIM_LOG=$SIM_LOG HES_MQTT_PORT=$MQTT_PORT HES_TENANT=$TENANT
export HES_USER=$USER_NAME HES_PASSWORD=$PASSWORD HES_SECRET=$SECRET
export HES_SILENT_METER=$SILENT HES_OVERVOLTAGE_METER=$OVERVOLTAGE HES_RELAY_FAIL_METER=$RELAY_FAIL
export HES_SIM_BIN
export HES_SIM_PUSH_DELAY_MS=50

# run_program <name>: runs tests/<name>, at most 150 s. A program that could not run (77)
# fails, as any test here that cannot run.
run_program() {
  local prog=$top_builddir/tests/$1 rc=0
  [ -x "$prog" ] || fail "$prog not built"
  timeout -k 5 150 "$prog" >"$TEST_TMP/$1.out" 2>&1 || rc=$?
  case $rc in
  0) ok "$1" ;;
  77) cannot_run "$1: $(grep -m1 SKIP "$TEST_TMP/$1.out")" ;;
  124 | 137)
    FAIL_LOGS=$TEST_TMP/$1.out
    fail "$1 did not finish within 150 s"
    ;;
  *)
    FAIL_LOGS=$TEST_TMP/$1.out
    fail "$1 exited with $rc"
    ;;
  esac
}
run_program test_api_sim
stop_sim
run_program test_mqtt
exit 0
