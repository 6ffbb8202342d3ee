#!/bin/bash
# shellcheck disable=SC2015,SC2119 # "test && test || fail" is meant; start_mosquitto takes no $1 here
# test_sim.sh: the HES simulator's own behaviour, beyond what integration.sh checks: value
# ranges and --value, token lifetime and renewal, frozen reads (freeze times in the
# simulator's zone, --frozen-drop-rate, status 00/01/02), history paging and the half-year
# rule, relay and DCU calls, the /sim/ runtime controls, injected failures, bounded bodies,
# a broker restart, load (1000 plans, a 1000-meter devList) and a clean exit on SIGTERM.
# Exit 0 pass, 1 fail (also when it cannot run: no mosquitto).
set -eu
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

TENANT=2000000001
CREDS='"tenantCode":"2000000001","username":"u","password":"p","secretKey":"k"'
A=100000000001
B=100000000002
C=100000000003
SILENT=100000000009
RELAY_FAIL=100000000008
export TZ=Asia/Shanghai

require_cmd curl mosquitto_sub seq paste

# --- --value: no broker needed ---------------------------------------------------------------
SIM=$HES_SIM_BIN
[ -x "$SIM" ] || fail "$SIM not built"
read -r v u < <("$SIM" --value "$A" 5046 1720540800000)
[ -z "${u:-}" ] || fail "power factor unit '$u'"
case $v in 0.[89][0-9][0-9] | 1.000) ;; *) fail "power factor $v" ;; esac
for ts in 1720540800000 1720627200000 1735689600000; do
  for m in "$A" "$B" "$C" 7 123456789012345; do
    for cg in 5050 5051 5052; do
      read -r v u < <("$SIM" --value "$m" "$cg" "$ts")
      [ "$u" = V ] && [ "${v%.*}" -ge 225 ] && [ "${v%.*}" -lt 235 ] || fail "$m $cg $ts: $v $u"
    done
    read -r v u < <("$SIM" --value "$m" 5050 "$ts" --overvoltage)
    [ "${v%.*}" -ge 258 ] && [ "${v%.*}" -le 266 ] || fail "over-voltage $v"
    read -r v u < <("$SIM" --value "$m" 5053 "$ts")
    [ "$u" = A ] && [ "${v%.*}" -ge 0 ] && [ "${v%.*}" -lt 20 ] || fail "current $v $u"
  done
done
prev=0
for ts in 1704067200000 1710000000000 1720540800000 1720540800001 1730000000000; do
  read -r v u < <("$SIM" --value "$A" 5069 "$ts")
  [ "$u" = kWh ] || fail "energy unit $u"
  # compare as integers of thousandths
  cur=${v/./}
  cur=$((10#$cur))
  [ "$cur" -ge "$prev" ] || fail "energy not monotonic at $ts: $v"
  prev=$cur
done
for cg in 5022:kW 5030:kvar 5038:kVA 5074:kWh 5084:kvarh 5089:kvarh 5099:kW 5100:kW 5104:kvar; do
  read -r v u < <("$SIM" --value "$A" "${cg%:*}" 1720540800000)
  [ "$u" = "${cg#*:}" ] || fail "unit of ${cg%:*}: $u"
done
rc=0
"$SIM" --value "$A" 4999 0 >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "--value with an unknown cgcode exited $rc"
rc=0
"$SIM" --value "$A" 5050 >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--value without TS_MS exited $rc"
rc=0
"$SIM" --fail-rate 2 >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--fail-rate 2 accepted"
ok "--value: units, ranges, monotonic energy, exit codes"

# --- the simulator ---------------------------------------------------------------------------
start_mosquitto
SIM_ARGS=(--tenant "$TENANT" --username u --password p --secret-key k
  --silent-meters "$SILENT" --relay-fail-meters "$RELAY_FAIL" --frozen-drop-rate 0.5 --seed 7)
start_sim "${SIM_ARGS[@]}" --token-lifetime 3
wait_for 10 sim_connected || fail "no broker connection"
SUB=$TEST_TMP/sub.txt
LIB_OUT=$SUB run_bg mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "/$TENANT/#"
FAIL_LOGS=$SUB
wait_for 5 grep -q "/$TENANT/#" "$MOSQUITTO_LOG" || true

token() {
  json_str "$(hes_post getToken "{$CREDS}")" token
}
# call <endpoint> <json members>: with the current token in the body.
call() {
  hes_post "$1" "{$2,\"token\":\"$TOKEN\"}"
}
# push_of <planId>: waits for the plan's push and prints its payload.
push_of() {
  wait_for 5 grep -qF "/$TENANT/$1 {" "$SUB" || fail "no push for $1"
  grep -F "/$TENANT/$1 {" "$SUB" | head -n 1 | cut -d' ' -f2-
}
sim_disconnected() {
  sim_stats | grep -q '"mqtt_connected":false'
}
expect_code() { # expect_code <code> <answer> <what>
  [ "$(json_num "$2" code)" = "$1" ] || fail "$3: $2"
}
# entries <payload>: how many devAddr it lists.
entries() {
  printf '%s' "$1" | grep -o '"devAddr"' | wc -l
}

# --- token lifetime --------------------------------------------------------------------------
TOKEN=$(token)
[ ${#TOKEN} -ge 16 ] || fail "token '$TOKEN'"
answer=$(hes_post getToken "{$CREDS,\"password\":1}")
[ "$answer" = '{"code":500,"msg":"Field password must be a string"}' ] || fail "password 1: $answer"
sleep 1.5
[ "$(token)" = "$TOKEN" ] || fail "renewal gave a new token"
sleep 2 # 3.5 s after the first getToken, 2 s after the renewal
expect_code 200 "$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"5050\"")" "renewed token"
sleep 3.2
expect_code 500 "$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"5050\"")" "expired token"
NEW=$(token)
[ -n "$NEW" ] && [ "$NEW" != "$TOKEN" ] || fail "no new token after expiry"
TOKEN=$NEW
ok "token: renewed when asked again, refused after the lifetime, then a new one"
# The rest with the default lifetime, so a slow machine does not see tokens expire.
start_sim "${SIM_ARGS[@]}"
wait_for 10 sim_connected || fail "no broker connection"

# --- frozen reads ----------------------------------------------------------------------------
TOKEN=$(token)
FROZEN="\"devList\":\"$A,$B,$C,$SILENT\",\"cgcode\":\"1\",\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-03 00:00:00\""
hist=$(call meter/historyFrozen "$FROZEN,\"curPage\":1,\"pageSize\":100")
expect_code 200 "$hist" historyFrozen
h1=$(json_num "$hist" total)
[ "$h1" -lt 9 ] || fail "history before any read has all $h1 entries (drop rate 0.5)"
p1=$(json_str "$(call meter/readFrozen "$FROZEN")" planId)
first=$(push_of "$p1")
n1=$(entries "$first")
case $first in *'"status":"01"'*) ;; *) fail "first frozen read: $first" ;; esac
[ "$n1" -lt 9 ] || fail "first frozen read answered all entries"
p2=$(json_str "$(call meter/readFrozen "$FROZEN")" planId)
second=$(push_of "$p2")
[ "$(entries "$second")" = 9 ] || fail "second frozen read: $second"
case $second in *'"status":"01"'*) ;; *) fail "silent meter: status should stay 01: $second" ;; esac
case $second in *"$SILENT"*) fail "the silent meter answered" ;; esac
# freeze times: local midnights of Asia/Shanghai (UTC+8)
for ts in 1719763200000 1719849600000 1719936000000; do
  [ "$(printf '%s' "$second" | grep -o "\"timestamp\":$ts," | wc -l)" = 3 ] || fail "freeze time $ts: $second"
done
entry=$(printf '%s' "$second" | grep -o "{\"devAddr\":\"$B\",\"timestamp\":1719849600000,\"channelData\":\[[^]]*\]}")
for ch in 5069 5074 5084 5089 5099 5100 5101 5102; do
  read -r v u < <("$SIM" --value "$B" "$ch" 1719849600000)
  case $entry in *"{\"unit\":\"$u\",\"value\":\"$v\",\"cgcode\":\"$ch\"}"*) ;; *) fail "$B $ch: want $v $u in $entry" ;; esac
done
total=$(json_num "$(call meter/historyFrozen "$FROZEN,\"curPage\":1,\"pageSize\":100")" total)
[ "$total" = 9 ] || fail "history after the reads: total $total"
seen=""
for page in 1 2 3; do
  hist=$(call meter/historyFrozen "$FROZEN,\"curPage\":$page,\"pageSize\":4")
  [ "$(json_num "$hist" total)" = 9 ] || fail "page $page: $hist"
  seen="$seen$(printf '%s' "$hist" | grep -o '"devAddr":"[0-9]*","timestamp":[0-9]*' | tr '\n' ' ')"
done
[ "$(echo "$seen" | wc -w)" = 9 ] || fail "pages 1-3 of 4: $seen"
[ "$(echo "$seen" | tr ' ' '\n' | sort -u | grep -c .)" = 9 ] || fail "pages repeat entries: $seen"
hist=$(call meter/historyFrozen "$FROZEN,\"curPage\":4,\"pageSize\":4")
[ "$(entries "$hist")" = 0 ] || fail "page past the end: $hist"
ok "frozen: drop rate (first read partial, second complete), freeze times, values, history paging"

TOKEN=$(token)
p=$(json_str "$(call meter/readFrozen "\"devList\":\"$SILENT\",\"cgcode\":\"1\",\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-01 00:00:00\"")" planId)
[ "$(push_of "$p")" = "{\"planId\":\"$p\",\"data\":{\"status\":\"02\",\"list\":[]}}" ] || fail "all silent: $(push_of "$p")"
# monthly: midnight of each 1st in range; load profile: every 15 minutes, both ends included
p=$(json_str "$(call meter/readFrozen "\"devList\":\"$C\",\"cgcode\":\"2\",\"start\":\"2024-01-15 00:00:00\",\"end\":\"2024-06-01 00:00:00\"")" planId)
p2=$(json_str "$(call meter/readFrozen "\"devList\":\"$C\",\"cgcode\":\"2\",\"start\":\"2024-01-15 00:00:00\",\"end\":\"2024-06-01 00:00:00\"")" planId)
months=$(push_of "$p2" | grep -o '"timestamp":[0-9]*' | tr '\n' ' ')
[ "$months" = '"timestamp":1706716800000 "timestamp":1709222400000 "timestamp":1711900800000 "timestamp":1714492800000 "timestamp":1717171200000 ' ] ||
  fail "monthly freeze times: $months"
p=$(json_str "$(call meter/readFrozen "\"devList\":\"$C\",\"cgcode\":\"3\",\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-01 01:00:00\"")" planId)
p2=$(json_str "$(call meter/readFrozen "\"devList\":\"$C\",\"cgcode\":\"3\",\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-01 01:00:00\"")" planId)
[ "$(push_of "$p2" | grep -o '"timestamp":[0-9]*' | sed 's/.*://' | tr '\n' ' ')" = "1719763200000 1719764100000 1719765000000 1719765900000 1719766800000 " ] ||
  fail "load profile freeze times: $(push_of "$p2")"
ok "frozen: all silent gives 02, monthly and load-profile freeze times"

# --- history and validation ------------------------------------------------------------------
TOKEN=$(token)
SINGLE="\"devList\":\"$A,$SILENT\",\"cgcode\":\"5069\""
hist=$(call meter/historySingle "$SINGLE,\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-01 01:00:00\",\"curPage\":1,\"pageSize\":2")
[ "$(json_num "$hist" total)" = 5 ] && [ "$(entries "$hist")" = 2 ] || fail "historySingle: $hist"
read -r v u < <("$SIM" --value "$A" 5069 1719763200000)
case $hist in *"{\"devAddr\":\"$A\",\"timestamp\":1719763200000,\"cgcode\":\"5069\",\"unit\":\"$u\",\"value\":\"$v\"}"*) ;; *) fail "historySingle value: $hist" ;; esac
expect_code 200 "$(call meter/historySingle "$SINGLE,\"start\":\"2024-01-01 00:00:00\",\"end\":\"2024-07-03 00:00:00\",\"curPage\":1,\"pageSize\":1")" "184 days"
answer=$(call meter/historySingle "$SINGLE,\"start\":\"2024-01-01 00:00:00\",\"end\":\"2024-07-03 00:00:01\",\"curPage\":1,\"pageSize\":1")
[ "$answer" = '{"code":500,"msg":"Time range must be within half a year"}' ] || fail "184 days + 1 s: $answer"
answer=$(call meter/historySingle "$SINGLE,\"start\":\"2024-07-02 00:00:00\",\"end\":\"2024-07-01 00:00:00\",\"curPage\":1,\"pageSize\":1")
[ "$answer" = '{"code":500,"msg":"end time is before start time"}' ] || fail "end before start: $answer"
answer=$(call meter/historySingle "$SINGLE,\"start\":\"2024-02-30 00:00:00\",\"end\":\"2024-07-01 00:00:00\",\"curPage\":1,\"pageSize\":1")
[ "$answer" = '{"code":500,"msg":"Invalid start time, expected YYYY-MM-DD HH:mm:ss"}' ] || fail "30 February: $answer"
answer=$(call meter/historySingle "$SINGLE,\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-01 00:00:00\",\"curPage\":0,\"pageSize\":1")
[ "$answer" = '{"code":500,"msg":"Field curPage out of range [1, 1000000000]"}' ] || fail "curPage 0: $answer"
answer=$(call meter/historySingle "$SINGLE,\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-01 00:00:00\",\"curPage\":1,\"pageSize\":\"20\"")
[ "$answer" = '{"code":500,"msg":"Field pageSize must be an integer"}' ] || fail "pageSize string: $answer"
answer=$(call meter/readSingle "\"devList\":\"$A,,$B\",\"cgcode\":\"5050\"")
[ "$answer" = '{"code":500,"msg":"devList has an empty or too long meter number at position 2"}' ] || fail "empty meter: $answer"
answer=$(call meter/readSingle "\"devList\":\"$A;x\",\"cgcode\":\"5050\"")
[ "$answer" = '{"code":500,"msg":"devList has an invalid meter number at position 1"}' ] || fail "bad meter: $answer"
answer=$(call meter/readSingle "\"cgcode\":\"5050\"")
[ "$answer" = '{"code":500,"msg":"Missing field: devList"}' ] || fail "no devList: $answer"
answer=$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"1\"")
[ "$answer" = '{"code":500,"msg":"Unsupported cgcode: 1"}' ] || fail "frozen cgcode in readSingle: $answer"
answer=$(call meter/relay "\"devList\":\"$A\",\"controlMode\":3")
[ "$answer" = '{"code":500,"msg":"Field controlMode out of range [1, 2]"}' ] || fail "controlMode 3: $answer"
answer=$(hes_post meter/readSingle '[1,2,3]')
[ "$answer" = '{"code":500,"msg":"Invalid JSON body"}' ] || fail "array body: $answer"
answer=$(hes_post meter/readSingle "{\"devList\":\"$A\",\"cgcode\":\"5050\",\"token\":\"$TOKEN\"} trailing")
[ "$answer" = '{"code":500,"msg":"Invalid JSON body"}' ] || fail "trailing garbage: $answer"
status=$(curl -sS -o /dev/null -w '%{http_code}' "$SIM_URL/apis/openapi/meter/readSingle")
[ "$status" = 405 ] || fail "GET: HTTP $status"
status=$(curl -sS -o /dev/null -w '%{http_code}' -d '{}' "$SIM_URL/apis/openapi/meter/nothing")
[ "$status" = 404 ] || fail "unknown endpoint: HTTP $status"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$TEST_TMP/big.json"
status=$(curl -sS -o "$TEST_TMP/big.out" -w '%{http_code}' --data-binary @"$TEST_TMP/big.json" "$SIM_URL/apis/openapi/meter/readSingle")
[ "$status" = 413 ] && grep -q '"code":500' "$TEST_TMP/big.out" || fail "1.1 MB body: HTTP $status"
ok "history: paging, 184-day rule; validation of fields, bodies and methods"

# --- relay, DCU ------------------------------------------------------------------------------
TOKEN=$(token)
p=$(json_str "$(call meter/relay "\"devList\":\"$RELAY_FAIL\",\"controlMode\":2")" planId)
[ "$(push_of "$p")" = "{\"planId\":\"$p\",\"data\":{\"status\":\"02\",\"list\":[{\"devAddr\":\"$RELAY_FAIL\",\"successful\":false}]}}" ] ||
  fail "relay failing: $(push_of "$p")"
answer=$(call dcu/addArchive "\"dcuNo\":\"2211000051\",\"archives\":[{\"devAddr\":\"$A\",\"status\":\"1\"},{\"devAddr\":\"$B\",\"status\":\"0\"}]")
p=$(json_str "$answer" planId)
[ "$(json_str "$answer" topic)" = "/$TENANT/$p/" ] || fail "addArchive: $answer"
[ "$(push_of "$p")" = "{\"planId\":\"$p\",\"data\":{\"status\":\"00\"}}" ] || fail "addArchive push"
answer=$(hes_post dcu/removeArchive "{\"dcuNo\":\"2211000051\",\"archives\":[\"$A\"]}" -H "HES_Access_Token: $TOKEN")
p=$(json_str "$answer" planId)
[ "$(push_of "$p")" = "{\"planId\":\"$p\",\"data\":{\"status\":\"00\"}}" ] || fail "removeArchive: $answer"
answer=$(hes_post dcu/removeArchive "{\"dcuNo\":\"2211000051\",\"archives\":[{\"devAddr\":\"$A\"}]}" -H "HES_Access_Token: $TOKEN")
[ "$answer" = '{"code":500,"msg":"archives[0]: invalid meter number"}' ] || fail "removeArchive with objects: $answer"
p=$(json_str "$(call dcu/readArchive "\"dcuNo\":\"2211000051\"")" planId)
[ "$(push_of "$p")" = "{\"planId\":\"$p\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"$B\",\"status\":\"0\",\"commType\":\"1\",\"moduleNext\":\"$B\"}]}}" ] ||
  fail "readArchive: $(push_of "$p")"
ok "relay: failing meter gives 02; DCU: add, remove (header token), read"

# --- runtime controls and injected failures --------------------------------------------------
TOKEN=$(token)
sim_control "silence?meter=$A" >/dev/null
sim_control "overvoltage?meter=$B&on=1" >/dev/null
p=$(json_str "$(call meter/readSingle "\"devList\":\"$A,$B\",\"cgcode\":\"5051\"")" planId)
push=$(push_of "$p")
case $push in *"\"devAddr\":\"$A\""*) fail "silenced meter answered: $push" ;; esac
case $push in *'"status":"01"'*) ;; *) fail "status: $push" ;; esac
v=$(printf '%s' "$push" | sed 's/.*"value":"\([0-9]*\)\..*/\1/')
[ "$v" -ge 258 ] || fail "overvoltage on: $push"
sim_control "unsilence?meter=$A" >/dev/null
sim_control "overvoltage?meter=$B&on=0" >/dev/null
p=$(json_str "$(call meter/readSingle "\"devList\":\"$A,$B\",\"cgcode\":\"5051\"")" planId)
push=$(push_of "$p")
[ "$(entries "$push")" = 2 ] || fail "unsilenced: $push"
case $push in *'"value":"2'[56]*) fail "overvoltage off: $push" ;; esac
[ "$(sim_control "silence?meter=a;b")" = '{"ok":false,"error":"missing or invalid meter"}' ] || fail "bad control meter"
sim_control "fail-rate?rate=1" >/dev/null
answer=$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"5050\"")
[ "$answer" = '{"code":500,"msg":"System busy, please try again later"}' ] || fail "injected: $answer"
status=$(curl -sS -o "$TEST_TMP/html" -w '%{http_code} %{content_type}' -d "{\"devList\":\"$A\",\"cgcode\":\"5050\",\"token\":\"$TOKEN\"}" "$SIM_URL/apis/openapi/meter/readSingle")
[ "$status" = "500 text/html;charset=UTF-8" ] && grep -q '<h1>500' "$TEST_TMP/html" || fail "injected HTTP 500: $status"
expect_code 200 "$(call meter/historySingle "$SINGLE,\"start\":\"2024-07-01 00:00:00\",\"end\":\"2024-07-01 00:00:00\",\"curPage\":1,\"pageSize\":1")" "history with fail-rate 1"
sim_control "fail-rate?rate=0.5" >/dev/null
fails=0
for i in $(seq 1 40); do
  answer=$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"5050\"" 2>/dev/null || true)
  case $answer in *'"code":200'*) ;; *) fails=$((fails + 1)) ;; esac
done
[ "$fails" -ge 8 ] && [ "$fails" -le 32 ] || fail "fail-rate 0.5: $fails of 40 failed"
sim_control "fail-rate?rate=0" >/dev/null
[ "$(sim_stat fail_injected)" = $((fails + 2)) ] || fail "stats fail_injected: $(sim_stats)"
ok "controls: silence, overvoltage, fail-rate (HES answer and HTML page alternate)"
# kind=busy / kind=http: one kind of failure only (the chaos soak's windows)
sim_control "fail-rate?rate=1&kind=busy" >/dev/null
for i in 1 2 3; do
  answer=$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"5050\"")
  [ "$answer" = '{"code":500,"msg":"System busy, please try again later"}' ] || fail "kind=busy: $answer"
done
sim_control "fail-rate?rate=1&kind=http" >/dev/null
for i in 1 2 3; do
  status=$(curl -sS -o /dev/null -w '%{http_code}' -d "{\"devList\":\"$A\",\"cgcode\":\"5050\",\"token\":\"$TOKEN\"}" "$SIM_URL/apis/openapi/meter/readSingle")
  [ "$status" = 500 ] || fail "kind=http: HTTP $status"
done
sim_control "fail-rate?rate=0.5&kind=other" | grep -q 'kind must be' || fail "kind=other accepted"
sim_control "fail-rate?rate=0" >/dev/null
ok "fail-rate kind=busy and kind=http: one kind of failure"

# --- load ------------------------------------------------------------------------------------
TOKEN=$(token)
meters=$(seq -f '5%011g' 1 100 | paste -sd, -)
cfg=$TEST_TMP/load.cfg
for i in $(seq 1 1000); do
  [ "$i" = 1 ] || echo next
  echo "url = \"$SIM_URL/apis/openapi/meter/readSingle\""
  echo "data = \"{\\\"devList\\\":\\\"$meters\\\",\\\"cgcode\\\":\\\"5050\\\",\\\"token\\\":\\\"$TOKEN\\\"}\""
  echo "output = \"/dev/null\""
done >"$cfg"
plans=$(sim_stat plans)
published=$(sim_stat pushes_published)
curl -sS --no-progress-meter -Z --parallel-max 8 -K "$cfg" 2>"$TEST_TMP/load.err" || fail "load: curl failed: $(head -c 300 "$TEST_TMP/load.err")"
[ "$(sim_stat plans)" = $((plans + 1000)) ] || fail "load: $(sim_stats)"
wait_for 10 sim_stat_is pushes_published $((published + 1000)) || fail "load pushes: $(sim_stats)"
big=$(seq -f '6%011g' 1 1000 | paste -sd, -)
p=$(json_str "$(call meter/readSingle "\"devList\":\"$big\",\"cgcode\":\"5069\"")" planId)
[ "$(entries "$(push_of "$p")")" = 1000 ] || fail "1000-meter push"
ok "load: 1000 plans of 100 meters, a 1000-meter devList"

# --- broker restart --------------------------------------------------------------------------
connects=$(sim_stat mqtt_connects)
restart_mosquitto
wait_for 10 sim_stat_is mqtt_connects $((connects + 1)) || fail "no reconnect: $(sim_stats)"
published=$(sim_stat pushes_published)
expect_code 200 "$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"5050\"")" "after restart"
wait_for 5 sim_stat_is pushes_published $((published + 1)) || fail "no push after the restart"
# A push that falls due while the broker is down waits for it.
stop_mosquitto
wait_for 5 sim_disconnected || fail "the simulator did not notice the broker stop"
expect_code 200 "$(call meter/readSingle "\"devList\":\"$A\",\"cgcode\":\"5050\"")" "broker down"
sleep 0.5
[ "$(sim_stat pushes_pending)" = 1 ] || fail "push not kept while the broker is down: $(sim_stats)"
restart_mosquitto
wait_for 10 sim_stat_is pushes_published $((published + 2)) || fail "kept push not sent: $(sim_stats)"
ok "broker restart: reconnects; a push due while it is down is sent afterwards"

# A simulator started before its broker connects once the broker is there.
stop_mosquitto
start_sim "${SIM_ARGS[@]}"
sleep 0.5
sim_disconnected || fail "connected to a broker that is not there"
restart_mosquitto
wait_for 10 sim_connected || fail "a simulator started before the broker never connected"
ok "broker down at start: connects when it comes"

# --- clean exit --------------------------------------------------------------------------------
kill -TERM "$SIM_PID"
rc=0
wait "$SIM_PID" || rc=$?
_lib_forget "$SIM_PID"
SIM_PID=
[ "$rc" = 0 ] || fail "SIGTERM: exit $rc"
grep -q 'signal 15, exiting' "$SIM_OUT" || fail "no exit message"
ok "SIGTERM: exit 0"
