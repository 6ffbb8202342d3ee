#!/bin/bash
# e2e_hesctl.sh: hesctl, the operator's command-line tool, against the HES simulator and a
# real mosquitto: every subcommand (read, frozen read, history, relay, dcu list/add/remove),
# the three output formats, the config file reader, bad arguments, HES failures, silent
# meters, a dead broker, a HES that never pushes and pushes that are rejected, each with its
# documented exit code.
# Values are checked against `hes-sim --value`. Times are UTC (TZ) on both sides.
# Exit 0 pass, 1 fail (also when it cannot run: no mosquitto).
set -eu
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

HESCTL=${HESCTL_BIN:-$top_builddir/hesctl}
[ -x "$HESCTL" ] || fail "$HESCTL not built"
export TZ=UTC
M1=202407100001
OVERVOLTAGE=202407100002
SILENT=202407100003
RELAY_FAIL=202407100004
DCU=000000000077
OUT=$TEST_TMP/out
ERR=$TEST_TMP/err
ALL=$TEST_TMP/all # every output, checked for credentials at the end
FAIL_LOGS="$OUT $ERR"

require_cmd curl python3 script mosquitto_pub
start_mosquitto
SIM_ARGS=(--tenant "$SIM_TENANT" --username "$SIM_USER" --password "$SIM_PASSWORD"
  --secret-key "$SIM_SECRET" --silent-meters "$SILENT" --overvoltage-meter "$OVERVOLTAGE"
  --relay-fail-meters "$RELAY_FAIL" --push-delay-ms 100)
start_sim "${SIM_ARGS[@]}"
wait_for 10 sim_connected || fail "hes-sim did not connect to the broker"

export HES_PASSWORD=$SIM_PASSWORD HES_SECRET_KEY=$SIM_SECRET
FLAGS=(--url "$SIM_URL" --tenant "$SIM_TENANT" --username "$SIM_USER"
  --broker "127.0.0.1:$MQTT_PORT" --timeout 5)

# run <expected exit> <args...>: hesctl with stdin from /dev/null, output in $OUT and $ERR.
run() {
  local want=$1 rc=0
  shift
  "$HESCTL" "$@" >"$OUT" 2>"$ERR" </dev/null || rc=$?
  cat "$OUT" "$ERR" >>"$ALL"
  [ "$rc" = "$want" ] || fail "hesctl $*: exit $rc, expected $want"
}

# expect_err <fixed string>: $ERR holds it.
expect_err() {
  grep -qF -- "$1" "$ERR" || fail "stderr lacks '$1': $(cat "$ERR")"
}

# sim_value <meter> <cgcode> <ts_ms>: "value unit" as the simulator computes it.
sim_value() {
  local ov=()
  [ "$1" = "$OVERVOLTAGE" ] && ov=(--overvoltage)
  "$HES_SIM_BIN" --value "$1" "$2" "$3" "${ov[@]}"
}

# requests <endpoint>: requests of that endpoint in the simulator's log.
requests() {
  grep -c "\"endpoint\":\"$1\"" "$SIM_LOG" || true
}

# json_check <file> <python expression over d, the parsed document>: fails unless it holds.
json_check() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" ||
    fail "JSON check '$2' failed on $(cat "$1")"
}

# --- usage errors: exit 2, nothing sent -------------------------------------------------------
run 0 --help
grep -q '^usage: hesctl' "$OUT" || fail "--help: $(cat "$OUT")"
grep -q '3 HES or HTTP error' "$OUT" || fail "--help does not list the exit codes"
run 2
run 2 frobnicate "${FLAGS[@]}"
expect_err 'unknown command "frobnicate"'
run 2 read "$M1" "${FLAGS[@]}"
expect_err "read: --item is required"
run 2 read "$M1" --item voltageZ "${FLAGS[@]}"
expect_err "--item voltageZ: unknown item"
run 2 read "12;rm" --item voltageA "${FLAGS[@]}"
expect_err '"12;rm" is not a meter number'
run 2 read --item voltageA "${FLAGS[@]}"
expect_err "read: no meters given"
run 2 read "$M1" --item dailyBilling "${FLAGS[@]}"
expect_err "--from and --to are required"
run 2 read "$M1" --item voltageA --from 2026-01-01 --to 2026-01-02 "${FLAGS[@]}"
expect_err "for frozen items (and history) only"
run 2 read "$M1" --item dailyBilling --from 2026-13-01 --to 2026-01-02 "${FLAGS[@]}"
expect_err '--from "2026-13-01"'
run 2 history "$M1" --item voltageA --from 2025-01-01 --to 2026-01-01 "${FLAGS[@]}"
expect_err "--from 2025-01-01 00:00:00 --to 2026-01-01 23:59:59"
run 2 read "$M1" --item voltageA --timeout soon "${FLAGS[@]}"
expect_err "--timeout soon: expected a whole number"
run 2 read "$M1" --item voltageA --bogus "${FLAGS[@]}"
expect_err "unknown option --bogus"
run 2 read "$M1" --item "${FLAGS[@]}"
run 2 relay toggle "$M1" "${FLAGS[@]}"
expect_err "relay: expected open or close"
run 2 dcu list "$DCU" "$M1" "${FLAGS[@]}"
expect_err "dcu list: takes one DCU and no meters"
run 2 dcu add "$DCU" "${FLAGS[@]}"
expect_err "dcu: no meters given"
run 2 read "$M1" --item voltageA --yes "${FLAGS[@]}"
expect_err "--yes is for relay"
[ "$(requests readSingle)$(requests getToken)" = 00 ] || fail "a usage error reached the HES"
ok "usage errors: exit 2 with a clear message, nothing sent; --help lists the exit codes"

# --- configuration: flags, environment, the collectd config file ------------------------------
HES_PASSWORD= run 5 read "$M1" --item voltageA "${FLAGS[@]}"
expect_err "no Password (the environment variable HES_PASSWORD)"
HES_SECRET_KEY= run 5 read "$M1" --item voltageA --url "$SIM_URL" --tenant "$SIM_TENANT" \
  --username "$SIM_USER" --broker "127.0.0.1:$MQTT_PORT"
expect_err "no SecretKey (the environment variable HES_SECRET_KEY)"
# A secret on the command line shows in ps: there is no flag for it.
run 2 read "$M1" --item voltageA "${FLAGS[@]}" --secret-key "$SIM_SECRET"
expect_err "unknown option --secret-key"
run 5 read "$M1" --item voltageA --config "$TEST_TMP/nonexistent.conf"
expect_err "nonexistent.conf: No such file or directory"
CONF=$TEST_TMP/collectd.conf
{
  echo '# a collectd config with two servers, and things hesctl does not use'
  echo 'TypesDB "/usr/share/collectd/types.db" "/usr/share/collectd-hes/hes-types.db"'
  echo 'LoadPlugin hes'
  echo '<Plugin "csv">'
  echo '  DataDir "/nowhere"'
  echo '</Plugin>'
  echo '<Plugin hes>'
  server_block other 'Meter "1"' 'Item "voltageA"' |
    sed 's|URL ".*"|URL "http://127.0.0.1:1"  # a comment after a value|'
  server_block main 'Meter "1" "2"' 'Item "voltageA" \' '  "voltageB"' 'PlanTimeout 30'
  echo '  <Relay>'
  echo '    Server "main"'
  echo '    <Rule "r">'
  echo '      Severity "failure"'
  echo '      Action "open"'
  echo '    </Rule>'
  echo '  </Relay>'
  echo '</Plugin>'
} >"$CONF"
sed -i "s/Password \"$SIM_PASSWORD\"/Password \"wrong \\\\\"quoted\\\\\" one\"/" "$CONF"
grep -qF 'Password "wrong \"quoted\" one"' "$CONF" || fail "test setup: $(cat "$CONF")"
run 5 read "$M1" --item voltageA --config "$CONF"
expect_err "2 servers (\"other\", \"main\"): choose one with --server NAME"
run 5 read "$M1" --item voltageA --config "$CONF" --server nosuch
expect_err 'no <Server "nosuch">'
# The file's password is wrong: HES_PASSWORD (set) wins over it; unset, the HES refuses it.
run 0 read "$M1" --item voltageA --config "$CONF" --server main --timeout 5
grep -q "^$M1 .* ok\$" "$OUT" || fail "read with --config: $(cat "$OUT")"
HES_PASSWORD= run 3 read "$M1" --item voltageA --config "$CONF" --server main
expect_err "getToken: HES code 500: Invalid tenantCode, username, password or secretKey"
# The shipped snippet parses (its broker does not run here: exit 4, not 5).
run 4 read "$M1" --item voltageA --config "$top_srcdir/conf/hes.conf" --broker "127.0.0.1:$(free_port)" --timeout 1
expect_err "hesctl: MQTT broker 127.0.0.1:"
# Strict reader: each error names file:line.
bad_conf() {
  printf '%b' "$1" >"$TEST_TMP/bad.conf"
  run 5 read "$M1" --item voltageA --config "$TEST_TMP/bad.conf"
  expect_err "$TEST_TMP/bad.conf:$2"
}
bad_conf '<Plugin hes>\n  <Server "a">\n    URL "http://x\n  </Server>\n</Plugin>\n' '3: unterminated string'
bad_conf '<Plugin hes>\n  <Server "a">\n  </MQTT>\n</Plugin>\n' '3: </MQTT> does not close <Server> of line 2'
bad_conf '<Plugin hes>\n  <Server "a">\n' '3: <Server> of line 2 is not closed'
bad_conf '<Plugin hes>\n  <Server "a">\n    Colour "red"\n  </Server>\n</Plugin>\n' '3: Server "a": unknown option "Colour".'
bad_conf '<Plugin hes>\n  <Server "a">\n    VerifyPeer "yes"\n  </Server>\n</Plugin>\n' '3: Server "a": option "VerifyPeer" needs exactly one boolean argument (true or false), got "yes".'
bad_conf '<Plugin hes>\n  <Server "a">\n    <MQTT>\n      Port 70000\n    </MQTT>\n  </Server>\n</Plugin>\n' '4: <MQTT> of Server "a": option "Port" needs one number from 1 to 65535, got 70000.'
bad_conf '<Plugin hes>\n  <Server "a">\n    URL "a""b"\n  </Server>\n</Plugin>\n' '3: missing blank after a value of "URL"'
bad_conf '<Plugin hes>\n  <Server "a">\n    URL\n  </Server>\n</Plugin>\n' '3: "URL" needs a value'
bad_conf '<Plugin hes>\n  <Server "a">\n    URL "\001"\n  </Server>\n</Plugin>\n' '3: control character 0x01'
bad_conf '<Plugin other>\n</Plugin>\n' ' no <Plugin hes> block'
# check: the plugin's verdict, without a HES or a broker.
run 0 --config "$CONF" check
grep -qF "OK: $CONF: 2 server(s), a <Relay> block" "$OUT" || fail "check: $(cat "$OUT")"
run 5 --config "$TEST_TMP/bad.conf" check
expect_err "no <Plugin hes> block"
run 2 check
expect_err "check: usage: hesctl -c FILE check"
[ "$(requests readSingle)" = 1 ] || fail "config errors reached the HES: $(requests readSingle) readSingle"
ok "config: --config/--server, HES_PASSWORD over the file, strict reader errors at file:line (exit 5)"

# --- read: a single item ------------------------------------------------------------------------
run 1 read "$M1" "$OVERVOLTAGE" "$SILENT" --item voltageA --csv "${FLAGS[@]}"
[ "$(head -n 1 "$OUT" | tr -d '\r')" = "meter,time,timestamp_ms,item,channel,value,unit,status,latency_ms" ] ||
  fail "CSV header: $(head -n 1 "$OUT")"
[ "$(wc -l <"$OUT")" = 4 ] || fail "CSV rows: $(cat "$OUT")"
for m in "$M1" "$OVERVOLTAGE"; do
  line=$(grep "^$m," "$OUT" | tr -d '\r')
  IFS=, read -r _ time ts item channel value unit status latency <<<"$line"
  expect=$(sim_value "$m" 5050 "$ts")
  # SI volts are the pushed volts: "229.300" prints as 229.3
  [ "$(awk -v v="${expect% *}" 'BEGIN { printf "%.15g", v }') ${expect#* }" = "$value $unit" ] ||
    fail "$m: got '$value $unit', hes-sim --value says '$expect'"
  [ "$time" = "$(date -u -d "@$((ts / 1000))" '+%Y-%m-%d %H:%M:%S')" ] || fail "$m: time $time for $ts"
  [ "$item,$channel,$status" = "voltageA,,ok" ] || fail "$m: $line"
  # the simulator pushes 100 ms after its answer; hesctl waits 5 s at most
  awk -v l="$latency" 'BEGIN { exit !(l >= 90 && l < 5000) }' || fail "$m: latency_ms $latency"
done
[ "$(grep "^$SILENT," "$OUT" | tr -d '\r')" = "$SILENT,,,voltageA,,,,missing," ] ||
  fail "silent meter: $(cat "$OUT")"
# the table: same content, aligned, the silent meter missing
run 1 read "$M1" "$SILENT" --item 5050 "${FLAGS[@]}"
# (the VALUE column is as wide as its widest value: 229.3 or 229.317)
grep -Eqx "METER         TIME                 ITEM      VALUE {2,4}UNIT  STATUS" <(sed -n 1p "$OUT") ||
  fail "table header: $(cat "$OUT")"
grep -Eq "^$M1  20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9:]{8}  voltageA  [0-9.]+ +V     ok\$" "$OUT" ||
  fail "table row: $(cat "$OUT")"
grep -q "^$SILENT  -  *voltageA  -  *-     missing\$" "$OUT" || fail "table: $(cat "$OUT")"
# JSON; two items; energy in Wh
run 0 read "$M1" --item voltageA --item importActiveEnergy --json "${FLAGS[@]}"
json_check "$OUT" 'len(d) == 2 and [r["item"] for r in d] == ["voltageA", "importActiveEnergy"] and all(r["status"] == "ok" and r["meter"] == "'"$M1"'" and r["channel"] is None for r in d)'
# per meter, the latency of its reading: request sent to push arrived (the push comes 100 ms
# after the answer; 90 leaves room for the two processes' clocks and timers, seen at 99.5)
json_check "$OUT" 'all(isinstance(r["latency_ms"], float) and 90 <= r["latency_ms"] < 5000 for r in d)'
line=$(grep '"importActiveEnergy"' "$OUT")
ts=$(json_num "$line" timestamp_ms)
expect=$(sim_value "$M1" 5069 "$ts")
[ "${expect#* }" = kWh ] || fail "hes-sim unit for 5069: $expect"
wh=$(awk -v v="${expect% *}" 'BEGIN { printf "%.15g", v * 1000 }')
case $line in *"\"value\":$wh,\"unit\":\"Wh\",\"status\":\"ok\""*) ;; *) fail "energy: $line, expected $wh Wh" ;; esac
run 0 read "$M1" --item importActiveEnergy --json --raw "${FLAGS[@]}"
line=$(grep '"importActiveEnergy"' "$OUT")
expect=$(sim_value "$M1" 5069 "$(json_num "$line" timestamp_ms)")
case $line in *"\"value\":\"${expect% *}\",\"unit\":\"kWh\""*) ;; *) fail "--raw: $line, expected $expect" ;; esac
# batches: three meters, two per request
before=$(requests readSingle)
run 0 read "$M1" "$OVERVOLTAGE" "$RELAY_FAIL" --item currentA --batch-size 2 "${FLAGS[@]}"
[ "$(requests readSingle)" = $((before + 2)) ] || fail "--batch-size 2 sent $(($(requests readSingle) - before)) requests"
[ "$(grep -c ' ok$' "$OUT")" = 3 ] || fail "batches: $(cat "$OUT")"
# --meter-file: comments and blank lines; a meter listed twice is an error at file:line
printf '# meters\n%s\n\n%s  # the over-voltage one\n' "$M1" "$OVERVOLTAGE" >"$TEST_TMP/meters.list"
run 0 read --meter-file "$TEST_TMP/meters.list" --item voltageA "${FLAGS[@]}"
[ "$(grep -c " ok\$" "$OUT")" = 2 ] || fail "--meter-file: $(cat "$OUT")"
run 2 read "$M1" --meter-file "$TEST_TMP/meters.list" --item voltageA "${FLAGS[@]}"
expect_err "meters.list:2: a meter listed twice"
ok "read: values as hes-sim predicts in SI (or --raw), table/CSV/JSON, silent meter missing (exit 1), batches"

# --- read: frozen (dailyBilling), one row per meter x freeze time x channel ---------------------
run 1 read "$M1" "$SILENT" --item dailyBilling --from 2026-03-01 --to 2026-03-03 --csv "${FLAGS[@]}"
[ "$(grep -c "^$M1,.*,ok" "$OUT")" = 15 ] || fail "frozen: expected 3 days x 5 channels: $(cat "$OUT")"
# the silent meter: one missing row per freeze time
for day in 01 02 03; do
  ts=$(date -u -d "2026-03-$day 00:00:00" +%s)000
  grep -q "^$SILENT,2026-03-$day 00:00:00,$ts,dailyBilling,,,,missing" "$OUT" || fail "frozen missing: $(cat "$OUT")"
done
[ "$(grep -c "^$SILENT," "$OUT")" = 3 ] || fail "frozen missing: $(cat "$OUT")"
for day in 01 02 03; do
  ts=$(date -u -d "2026-03-$day 00:00:00" +%s)000
  line=$(grep "^$M1,2026-03-$day 00:00:00,$ts,dailyBilling,exportReactiveEnergy," "$OUT" | tr -d '\r') ||
    fail "no exportReactiveEnergy row for 2026-03-$day: $(cat "$OUT")"
  expect=$(sim_value "$M1" 5089 "$ts")
  [ "$(echo "$line" | cut -d, -f8)" = ok ] || fail "$line"
  value=$(echo "$line" | cut -d, -f6)
  [ "$value,$(echo "$line" | cut -d, -f7)" = "$(awk -v v="${expect% *}" 'BEGIN { printf "%.15g", v * 1000 }'),varh" ] ||
    fail "2026-03-$day: $line, hes-sim says $expect"
done
run 0 read "$M1" --item dailyBilling --from "2026-03-01 00:00:00" --to "2026-03-01 00:00:00" --raw --json "${FLAGS[@]}"
json_check "$OUT" 'len(d) == 8 and sorted(r["channel"] for r in d) == sorted(["importActiveEnergy", "exportActiveEnergy", "importReactiveEnergy", "exportReactiveEnergy", "activeMaxDemand", "5100", "5101", "5102"])'
[ "$(grep -c '"value":"[0-9.]*"' "$OUT")" = 8 ] || fail "--raw values are strings: $(cat "$OUT")"
# incomplete frozen data: the missing meter x day are named, and come on the second ask
sim_control "frozen-drop-rate?rate=0.5" >/dev/null
run 1 read "$M1" "$OVERVOLTAGE" --item dailyBilling --from 2026-04-01 --to 2026-04-10 --csv "${FLAGS[@]}"
missing=$(grep -c ',missing' "$OUT" || true)
[ "$missing" -ge 1 ] && [ "$missing" -le 19 ] || fail "drop rate 0.5 left $missing of 20 meter-days missing"
for m in "$M1" "$OVERVOLTAGE"; do
  for day in 01 02 03 04 05 06 07 08 09 10; do
    n_ok=$(grep -c "^$m,2026-04-$day 00:00:00,[0-9]*,dailyBilling,[A-Za-z]*,[0-9.]*,[A-Za-z]*,ok" "$OUT" || true)
    n_missing=$(grep -c "^$m,2026-04-$day 00:00:00,[0-9]*,dailyBilling,,,,missing" "$OUT" || true)
    [ "$n_ok,$n_missing" = "5,0" ] || [ "$n_ok,$n_missing" = "0,1" ] ||
      fail "$m 2026-04-$day: $n_ok ok and $n_missing missing rows: $(cat "$OUT")"
  done
done
run 0 read "$M1" "$OVERVOLTAGE" --item dailyBilling --from 2026-04-01 --to 2026-04-10 --csv "${FLAGS[@]}"
[ "$(grep -c ',ok' "$OUT")" = 100 ] || fail "second ask: $(cat "$OUT")"
sim_control "frozen-drop-rate?rate=0" >/dev/null
ok "frozen read: meter x freeze time x channel, values as predicted, vendor channels only with --raw"

# --- history ----------------------------------------------------------------------------------------
run 1 history "$M1" "$SILENT" --item voltageB --from "2026-03-01 00:00:00" --to "2026-03-01 01:00:00" --page-size 2 --csv "${FLAGS[@]}"
[ ! -s "$ERR" ] || fail "history wrote to stderr without a tty: $(cat "$ERR")"
[ "$(grep -c "^$M1," "$OUT")" = 5 ] || fail "history: 5 readings a quarter hour apart expected: $(cat "$OUT")"
for q in 00 15 30 45; do
  ts=$(date -u -d "2026-03-01 00:$q:00" +%s)000
  line=$(grep "^$M1,2026-03-01 00:$q:00,$ts,voltageB,," "$OUT" | tr -d '\r') || fail "no reading at 00:$q: $(cat "$OUT")"
  expect=$(sim_value "$M1" 5051 "$ts")
  [ "$(echo "$line" | cut -d, -f6-8)" = "$(awk -v v="${expect% *}" 'BEGIN { printf "%.15g", v }'),V,ok" ] ||
    fail "00:$q: $line, hes-sim says $expect"
done
grep -q "^$SILENT,,,voltageB,,,,missing" "$OUT" || fail "history: silent meter: $(cat "$OUT")"
[ "$(grep -c '"endpoint":"historySingle"' "$SIM_LOG")" = 3 ] || fail "page size 2: expected 3 pages"
run 0 history "$M1" --item monthlyBilling --from 2026-01-01 --to 2026-03-31 "${FLAGS[@]}"
[ "$(grep -c "^$M1  2026-0[123]-01 00:00:00  monthlyBilling  " "$OUT")" = 15 ] || fail "historyFrozen: $(cat "$OUT")"
# the progress indicator, on a terminal only
script -qec "$(printf '%q ' "$HESCTL" history "$M1" --item voltageB --from "2026-03-01 00:00:00" \
  --to "2026-03-01 01:00:00" --page-size 2 "${FLAGS[@]}")" /dev/null >"$OUT" 2>&1 </dev/null ||
  fail "history on a tty: $(cat "$OUT")"
grep -qF "hesctl: voltageB history: page 3, 5 of 5 entries" "$OUT" || fail "no progress on a tty: $(cat -v "$OUT")"
ok "history: pages, values as predicted, silent meter missing, progress on a tty only"

# --- relay ----------------------------------------------------------------------------------------
run 2 relay open "$M1" "${FLAGS[@]}"
expect_err "relay open: refusing without --yes: stdin is not a terminal"
[ "$(requests relay)" = 0 ] || fail "an unconfirmed relay command was sent"
run 1 relay open "$M1" "$RELAY_FAIL" "$SILENT" --yes "${FLAGS[@]}"
cat >"$TEST_TMP/expect" <<EOF
METER         ACTION  OUTCOME
$M1  open    ok
$RELAY_FAIL  open    failed
$SILENT  open    missing
EOF
diff "$TEST_TMP/expect" "$OUT" >&2 || fail "relay outcome table"
grep -qF "\"endpoint\":\"relay\",\"http\":200,\"code\":200,\"msg\":\"success\"" "$SIM_LOG" || fail "relay not logged"
grep -qF '"controlMode":1,"devList":["'"$M1"'","'"$RELAY_FAIL"'","'"$SILENT"'"]' "$SIM_LOG" || fail "relay devList"
run 0 relay close "$M1" --yes --json "${FLAGS[@]}"
[ "$(cat "$OUT")" = "$(printf '[\n  {"meter":"%s","action":"close","outcome":"ok"}\n]' "$M1")" ] || fail "relay --json: $(cat "$OUT")"
cmd=$(printf '%q ' "$HESCTL" relay close "$M1" "${FLAGS[@]}")
sent=$(requests relay)
rc=0
printf 'no\n' | script -qec "$cmd" /dev/null >"$OUT" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "answered no: exit $rc: $(cat "$OUT")"
grep -qF "Close (reconnect) the breaker of 1 meter ($M1)? Type yes to confirm:" "$OUT" || fail "prompt: $(cat "$OUT")"
grep -qF "not confirmed: nothing sent" "$OUT" || fail "no: $(cat "$OUT")"
[ "$(requests relay)" = "$sent" ] || fail "sent although answered no"
printf 'yes\n' | script -qec "$cmd" /dev/null >"$OUT" 2>&1 || fail "answered yes: $(cat "$OUT")"
grep -q "^$M1  close   ok" "$OUT" || fail "confirmed: $(cat "$OUT")"
[ "$(requests relay)" = $((sent + 1)) ] || fail "confirmed, but not sent once"
ok "relay: refused without --yes off a tty, confirmation on a tty, per-meter outcome (exit 1 on failed/missing)"

# --- dcu --------------------------------------------------------------------------------------------
run 0 dcu list "$DCU" "${FLAGS[@]}"
[ "$(cat "$OUT")" = "DCU  METER  ENABLED  COMM_TYPE  MODULE_NEXT" ] || fail "empty DCU: $(cat "$OUT")"
run 0 dcu add "$DCU" "$M1" "$OVERVOLTAGE" "${FLAGS[@]}"
cat >"$TEST_TMP/expect" <<EOF
DCU           METER         ACTION  OUTCOME
$DCU  $M1  add     ok
$DCU  $OVERVOLTAGE  add     ok
EOF
diff "$TEST_TMP/expect" "$OUT" >&2 || fail "dcu add"
run 0 dcu add "$DCU" "$SILENT" --disabled "${FLAGS[@]}"
run 0 dcu list "$DCU" --csv "${FLAGS[@]}"
printf 'dcu,meter,enabled,comm_type,module_next\r\n%s,%s,true,1,%s\r\n%s,%s,true,1,%s\r\n%s,%s,false,1,%s\r\n' \
  "$DCU" "$M1" "$M1" "$DCU" "$OVERVOLTAGE" "$M1" "$DCU" "$SILENT" "$M1" >"$TEST_TMP/expect"
cmp "$TEST_TMP/expect" "$OUT" || fail "dcu list --csv: $(cat -v "$OUT")"
run 0 dcu remove "$DCU" "$M1" --json "${FLAGS[@]}"
json_check "$OUT" 'd == [{"dcu": "'"$DCU"'", "meter": "'"$M1"'", "action": "remove", "outcome": "ok"}]'
run 0 dcu list "$DCU" --json "${FLAGS[@]}"
json_check "$OUT" '[(r["meter"], r["enabled"]) for r in d] == [("'"$OVERVOLTAGE"'", True), ("'"$SILENT"'", False)]'
ok "dcu: list (empty, CSV, JSON), add (enabled, --disabled), remove"

# --- HES failures: exit 3, the HES's msg on stderr ----------------------------------------------
sim_control "fail-rate?rate=1" >/dev/null
run 3 read "$M1" --item voltageA "${FLAGS[@]}"
expect_err "hesctl: readSingle: HES code 500: System busy, please try again later"
[ ! -s "$OUT" ] || fail "output after a refused request: $(cat "$OUT")"
run 3 relay open "$M1" --yes "${FLAGS[@]}"
expect_err "hesctl: relay: HTTP error: HTTP 500"
run 3 dcu add "$DCU" "$M1" "${FLAGS[@]}"
expect_err "hesctl: addArchive: HES code 500: System busy, please try again later"
run 3 read "$M1" --item dailyBilling --from 2026-03-01 --to 2026-03-01 "${FLAGS[@]}"
expect_err "hesctl: readFrozen: HTTP error: HTTP 500"
sim_control "fail-rate?rate=0" >/dev/null
HES_SECRET_KEY=00 run 3 history "$M1" --item voltageA --from 2026-03-01 --to 2026-03-01 "${FLAGS[@]}"
expect_err "hesctl: getToken: HES code 500: Invalid tenantCode, username, password or secretKey"
run 3 read "$M1" --item voltageA "${FLAGS[@]}" --url "http://127.0.0.1:1"
expect_err "hesctl: getToken: transport error:"
ok "HES failures: code 500 and HTTP 500 on every plan-making call, bad credentials, no HES: exit 3 with the msg"

# --- MQTT failures: exit 4 -------------------------------------------------------------------------
dead=$(free_port)
SECONDS=0
run 4 read "$M1" --item voltageA "${FLAGS[@]}" --broker "127.0.0.1:$dead" --timeout 2
expect_err "MQTT broker 127.0.0.1:$dead: not ready after 2 s"
[ "$SECONDS" -le 5 ] || fail "a dead broker took $SECONDS s"
# A HES that publishes elsewhere: the plan is made, no push ever comes.
start_sim "${SIM_ARGS[@]}" --broker-port "$dead"
FLAGS[1]=$SIM_URL
run 4 read "$M1" "$OVERVOLTAGE" --item voltageA "${FLAGS[@]}" --timeout 2
expect_err "no push within 2 s"
grep -q "^$M1  -  *voltageA  -  *-     missing\$" "$OUT" || fail "no push: $(cat "$OUT")"
# Ctrl-C while waiting: stop, print what came (the meters missing), exit 130.
sent=$(requests readSingle)
SECONDS=0
"$HESCTL" read "$M1" --item voltageA "${FLAGS[@]}" --timeout 60 >"$OUT" 2>"$ERR" </dev/null &
pid=$!
more_than() { [ "$(requests readSingle)" -gt "$1" ]; }
wait_for 10 more_than "$sent" || fail "hesctl sent nothing"
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 130 ] || fail "interrupted: exit $rc: $(cat "$ERR")"
[ "$SECONDS" -le 10 ] || fail "the interrupt took $SECONDS s"
expect_err "hesctl: interrupted"
grep -q "^$M1  -  *voltageA  -  *-     missing\$" "$OUT" || fail "interrupted: $(cat "$OUT")"
ok "MQTT: dead broker and a HES that never pushes: exit 4, meters printed missing; Ctrl-C: exit 130"

# --- a push that arrives before the HTTP answer: parked by plans, handed back ------------------
start_sim "${SIM_ARGS[@]}" --push-before-response
wait_for 10 sim_connected || fail "hes-sim did not connect to the broker"
FLAGS[1]=$SIM_URL
run 1 read "$M1" "$SILENT" --item voltageC --csv "${FLAGS[@]}"
[ "$(sim_stat pushes_acked)" = 1 ] || fail "the push was not sent before the answer: $(sim_stats)"
line=$(grep "^$M1," "$OUT" | tr -d '\r') || fail "early push lost: $(cat "$OUT")"
expect=$(sim_value "$M1" 5052 "$(echo "$line" | cut -d, -f3)")
[ "$(echo "$line" | cut -d, -f6,7)" = "$(awk -v v="${expect% *}" 'BEGIN { printf "%.15g", v }'),V" ] ||
  fail "early push: $line, hes-sim says $expect"
ok "a push before the HTTP answer is parked and handed back"

# --- untrusted pushes: a unit that does not fit, a value that is no number, terminal escapes ----
start_sim "${SIM_ARGS[@]}" --push-delay-ms 3000
wait_for 10 sim_connected || fail "hes-sim did not connect to the broker"
FLAGS[1]=$SIM_URL
"$HESCTL" read "$M1" "$OVERVOLTAGE" --item voltageA --csv "${FLAGS[@]}" --timeout 10 >"$OUT" 2>"$ERR" </dev/null &
pid=$!
more_than() { [ "$(requests readSingle)" -gt "$1" ]; }
wait_for 10 more_than 0 || fail "hesctl sent nothing"
plan=$(grep '"endpoint":"readSingle"' "$SIM_LOG" | sed -n 's/.*"planId":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -n "$plan" ] || fail "no planId in the simulator's log"
# ours comes before the simulator's (3 s later), so it is the one hesctl takes
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "/$SIM_TENANT/$plan" -m \
  "{\"planId\":\"$plan\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"$M1\",\"timestamp\":1700000000000,\"cgcode\":\"5050\",\"unit\":\"kWh\",\"value\":\"230.1\"},{\"devAddr\":\"$OVERVOLTAGE\",\"timestamp\":1700000000000,\"cgcode\":\"5050\",\"unit\":\"V\",\"value\":\"\\u001b[2J1e999\"}]}}" ||
  fail "mosquitto_pub"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 1 ] || fail "bad values: exit $rc: $(cat "$ERR")"
cat >"$TEST_TMP/expect" <<EOF
meter,time,timestamp_ms,item,channel,value,unit,status
$M1,2023-11-14 22:13:20,1700000000000,voltageA,,230.1,kWh,bad-unit
$OVERVOLTAGE,2023-11-14 22:13:20,1700000000000,voltageA,,?[2J1e999,V,bad-value
EOF
# (without latency_ms, the last column: it varies)
diff "$TEST_TMP/expect" <(tr -d '\r' <"$OUT" | cut -d, -f1-8) >&2 || fail "untrusted push"
ok "untrusted push: bad unit and bad value flagged (exit 1), escapes neutralised, the first answer counts"

# Rejected pushes are not "no push in time": a push that is no JSON and a relay result for
# the read plan come, the simulator's own comes after --timeout: exit 6, each one named.
sent=$(requests readSingle)
"$HESCTL" read "$M1" --item voltageA "${FLAGS[@]}" --timeout 2 >"$OUT" 2>"$ERR" </dev/null &
pid=$!
wait_for 10 more_than "$sent" || fail "hesctl sent nothing"
plan=$(grep '"endpoint":"readSingle"' "$SIM_LOG" | sed -n 's/.*"planId":"\([^"]*\)".*/\1/p' | tail -n 1)
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "/$SIM_TENANT/$plan" -m '{"planId":' ||
  fail "mosquitto_pub"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "/$SIM_TENANT/$plan" -m \
  "{\"planId\":\"$plan\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"$M1\",\"successful\":true}]}}" ||
  fail "mosquitto_pub"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 6 ] || fail "rejected pushes: exit $rc: $(cat "$ERR")"
expect_err "warning: rejected a push of 10 bytes"
expect_err "warning: plan $plan: a push of an unexpected kind"
expect_err "plan $plan: no usable push within 2 s: 2 push(es) were rejected"
grep -q "^$M1  -  *voltageA  -  *-     missing\$" "$OUT" || fail "rejected: $(cat "$OUT")"
ok "rejected pushes and no usable one: exit 6, each rejected push named, meters missing"

# --- no credential in any output ------------------------------------------------------------------
[ -s "$ALL" ] || fail "test setup: $ALL is empty"
if grep -qF -e "$SIM_PASSWORD" -e "$SIM_SECRET" -e 'wrong "quoted' "$ALL"; then
  fail "an output shows a credential: $(grep -F -e "$SIM_PASSWORD" -e "$SIM_SECRET" "$ALL" | head -n 3)"
fi
ok "no password or secret key in any output"
exit 0
