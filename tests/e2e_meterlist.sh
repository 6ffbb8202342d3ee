#!/bin/bash
# e2e_meterlist.sh: the meter list follows the utility's records (issue 15), end to end with
# the HES simulator, a real mosquitto and a real `collectd -f`.
#
# Part 1 (the simulator): a DCU archive seeded with --archive is listed by
#   readArchive, and `hesctl dcu add` / `dcu remove` change it while the simulator runs.
# Part 2 (the plugin):
#   - a meter added to a DCU with `hesctl dcu add` has values within DCURefresh + Interval;
#     removed, its values stop, gauge-meters and meters_added/_removed say so, and no relay
#     command is sent for it although it is over voltage;
#   - a MeterFile replaced by rename gives the same; a broken one keeps the old list with one
#     error line naming the file and the line;
#   - with the HES down at start, the DCU list kept in StateDir is the list;
#   - frozen items follow the list: a joiner gets its BackfillPeriods days, a leaver's periods go;
#   - hesctl -c FILE read --all reads the same meters;
#   - a DCU-only server with frozen items starts with an empty StateDir (HES up, and HES down
#     until later): the first refresh that succeeds brings the meters and their days.
# Exit 0 pass, 1 fail (also when it cannot run: no mosquitto, collectd or curl).
set -euo pipefail
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

HESCTL=${HESCTL_BIN:-$top_builddir/hesctl}
[ -x "$HESCTL" ] || fail "$HESCTL not built"
require_cmd curl

DCU=2211000051
M1=202407100001
M2=202407100002
JOINER=202407100003 # over voltage: a relay rule would open it if it were still listed
FILE_M=202407100004
REFRESH=2 # DCURefresh
INTERVAL=1
OUT=$TEST_TMP/out
ERR=$TEST_TMP/err
FAIL_LOGS="$OUT $ERR"

printf '# seeded archive\n%s\n%s\n' "$M1" "$M2" >"$TEST_TMP/archive.list"
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --overvoltage-meter "$JOINER" --push-delay-ms 50 \
  --archive "$DCU=$TEST_TMP/archive.list"
wait_for 10 sim_connected || fail "hes-sim did not connect to the broker"

export HES_PASSWORD=$SIM_PASSWORD HES_SECRET_KEY=$SIM_SECRET
FLAGS=(--url "$SIM_URL" --tenant "$SIM_TENANT" --username "$SIM_USER"
  --broker "127.0.0.1:$MQTT_PORT" --timeout 5)

hesctl() {
  local want=$1 rc=0
  shift
  "$HESCTL" "$@" >"$OUT" 2>"$ERR" </dev/null || rc=$?
  [ "$rc" = "$want" ] || fail "hesctl $*: exit $rc, expected $want"
}

# archive_meters: the enabled meters of $DCU, one a line, sorted.
archive_meters() {
  hesctl 0 dcu list "$DCU" --csv "${FLAGS[@]}"
  tr -d '\r' <"$OUT" | awk -F, 'NR > 1 && $3 == "true" { print $2 }' | sort
}

# --- part 1: the simulator's archives change while it runs ------------------------------------
[ "$(archive_meters | tr '\n' ' ')" = "$M1 $M2 " ] || fail "seeded archive: $(cat "$OUT")"
hesctl 0 dcu add "$DCU" "$JOINER" "${FLAGS[@]}"
[ "$(archive_meters | tr '\n' ' ')" = "$M1 $M2 $JOINER " ] || fail "after add: $(cat "$OUT")"
hesctl 0 dcu remove "$DCU" "$JOINER" "${FLAGS[@]}"
[ "$(archive_meters | tr '\n' ' ')" = "$M1 $M2 " ] || fail "after remove: $(cat "$OUT")"
ok "simulator: --archive seeds a DCU; dcu add/remove change it while it runs"

# --- part 2: the plugin -------------------------------------------------------------------------
collectd_setup
STATE=$CD_DIR/state
mkdir -p "$STATE"
METER_FILE=$CD_DIR/meters.list
printf '%s\n' "$M1" >"$METER_FILE"

write_conf() {
  collectd_conf "$(server_block ml "DCU \"$DCU\"" "DCURefresh $REFRESH" \
    "MeterFile \"$METER_FILE\"" 'Item "voltageA"' "Interval $INTERVAL" 'PlanTimeout 3')
  StateDir \"$STATE\"
  <Relay>
    Holdoff 1
    MaxPerMinute 100
    <Rule \"overvoltage\">
      Plugin \"hes\"
      Type \"voltage\"
      TypeInstance \"A\"
      Severity \"failure\"
      Action \"open\"
    </Rule>
  </Relay>" "LoadPlugin threshold
<Plugin threshold>
  <Plugin \"hes\">
    <Type \"voltage\">
      Instance \"A\"
      FailureMax 255
    </Type>
  </Plugin>
</Plugin>"
}
write_conf
: >"$CD_LOG"
timeout 60 "$COLLECTD_BIN" -T -C "$CD_CONF" >"$OUT" 2>&1 ||
  fail "collectd -T refused the config: $(grep -h error "$CD_LOG" "$OUT" | head -n 3)"

# relay_requests_for <meter>: relay requests naming it in the simulator's log.
relay_requests_for() {
  grep '"endpoint":"relay"' "$SIM_LOG" | grep -c "$1" || true
}
self_last() {
  csv_last ml-self "$1"
}
self_is() {
  [ "$(self_last "$1" | cut -d. -f1)" = "$2" ]
}
has_values() {
  [ "$(csv_rows "$1" voltage-A)" -gt 0 ]
}
rows_grow() {
  local before
  before=$(csv_rows "$1" voltage-A)
  sleep $((REFRESH + 2 * INTERVAL))
  [ "$(csv_rows "$1" voltage-A)" -gt "$before" ]
}

collectd_start
wait_for 10 has_values "$M1" || fail "no values for $M1"
wait_for 10 has_values "$M2" || fail "no values for $M2 (from the DCU archive)"
wait_for 10 self_is gauge-meters 2 || fail "gauge-meters is $(self_last gauge-meters), expected 2"
[ "$(csv_rows ml-self total_requests-archive)" -gt 0 ] || fail "no total_requests-archive"

# A meter joins the DCU: values within DCURefresh + Interval (plus a push's delay).
hesctl 0 dcu add "$DCU" "$JOINER" "${FLAGS[@]}"
wait_for $((REFRESH + INTERVAL + 3)) has_values "$JOINER" || fail "no values for the joiner"
wait_for 5 self_is gauge-meters 3 || fail "gauge-meters is $(self_last gauge-meters), expected 3"
wait_for 5 self_is total_operations-meters_added 1 || fail "meters_added is not 1"
joiner_commanded() {
  [ "$(relay_requests_for "$JOINER")" -gt 0 ]
}
wait_for 10 joiner_commanded || fail "no relay command for the joiner, which is over voltage"

# ... and leaves: its values stop, and no relay command is sent for it from then on.
hesctl 0 dcu remove "$DCU" "$JOINER" "${FLAGS[@]}"
wait_for $((REFRESH + INTERVAL + 3)) self_is gauge-meters 2 || fail "the leaver is still listed"
wait_for 5 self_is total_operations-meters_removed 1 || fail "meters_removed is not 1"
sleep 1 # a plan requested just before the swap may still answer
relays=$(relay_requests_for "$JOINER")
! rows_grow "$JOINER" || fail "values for $JOINER after it left"
[ "$(relay_requests_for "$JOINER")" = "$relays" ] || fail "a relay command for a meter that left"
ok "DCU: a joiner is read within DCURefresh + Interval and commanded; a leaver stops, with no relay command"

# MeterFile replaced by rename: the new meter is read; broken, the old list stays.
printf '%s\n%s\n' "$M1" "$FILE_M" >"$METER_FILE.new"
mv "$METER_FILE.new" "$METER_FILE"
wait_for $((INTERVAL + 5)) has_values "$FILE_M" || fail "no values for the MeterFile's new meter"
printf '%s\nnot a meter\n' "$M1" >"$METER_FILE.new"
mv "$METER_FILE.new" "$METER_FILE"
sleep $((3 * INTERVAL))
[ "$(grep -c "MeterFile \"$METER_FILE\": line 2" "$CD_LOG")" = 1 ] ||
  fail "expected one error line naming the file and line 2"
rows_grow "$FILE_M" || fail "a broken MeterFile dropped $FILE_M"
ok "MeterFile: a rename is read next round; a broken file keeps the list, one error line"
collectd_stop
# At start a broken MeterFile is a configuration error (there is no previous list): mend it.
printf '%s\n%s\n' "$M1" "$FILE_M" >"$METER_FILE.new"
mv "$METER_FILE.new" "$METER_FILE"

# The HES down at start: the DCU list kept in StateDir is the list.
ls "$STATE"/hes-dcu-ml-"$DCU".list >/dev/null || fail "no DCU list in StateDir"
stop_sim
collectd_start
wait_for 10 self_is gauge-meters 3 || fail "gauge-meters is $(self_last gauge-meters) with the HES down, expected 3 ($M1, $M2, $FILE_M)"
# shellcheck disable=SC2046
start_sim $(sim_credentials) --http-port "$SIM_PORT" --push-delay-ms 50 \
  --archive "$DCU=$TEST_TMP/archive.list" # the HES back, with the DCU as before
wait_for 10 sim_connected || fail "hes-sim did not come back"
before=$(csv_rows "$M2" voltage-A)
m2_grew() {
  [ "$(csv_rows "$M2" voltage-A)" -gt "$before" ]
}
wait_for 15 m2_grew || fail "no values for $M2 from the kept list"
collectd_stop
ok "StateDir: with the HES down at start, the kept DCU list is read"

# hesctl reads the plugin's list: Meter, MeterFile, the kept DCU lists refreshed once.
hesctl 0 -c "$CD_CONF" read --all --item voltageA --csv --timeout 10
cp "$OUT" "$TEST_TMP/all.csv"
for m in "$M1" "$M2" "$FILE_M"; do
  grep -q "$m" "$TEST_TMP/all.csv" || fail "read --all: no row for $m: $(cat "$TEST_TMP/all.csv")"
done
! grep -q "$JOINER" "$TEST_TMP/all.csv" || fail "read --all read $JOINER, which left"
hesctl 2 -c "$CD_CONF" read --all "$M1" --item voltageA
ok "hesctl -c FILE read --all reads the plugin's meters"

# Frozen items follow the list: a joiner gets its BackfillPeriods latest days as at a first
# start; a leaver's periods are dropped (neither expected nor missing any more).
BILL_FILE=$CD_DIR/bill.list
printf '%s\n%s\n' "$M1" "$M2" >"$BILL_FILE"
STATE2=$CD_DIR/state2
mkdir -p "$STATE2"
collectd_conf "$(server_block bill "MeterFile \"$BILL_FILE\"" 'Item "dailyBilling"' \
  "Interval $INTERVAL" 'PlanTimeout 3' 'BackfillPeriods 2' 'RetryInterval 2')
  StateDir \"$STATE2\""
collectd_start
days_of() {
  [ "$(csv_rows "$1" energy_wh-daily-import)" -ge 2 ]
}
bill_is() {
  [ "$(csv_last bill-self "gauge-$1" | cut -d. -f1)" = "$2" ]
}
wait_for 30 days_of "$M1" || fail "no daily values for $M1"
wait_for 30 days_of "$M2" || fail "no daily values for $M2"
printf '%s\n%s\n%s\n' "$M1" "$M2" "$FILE_M" >"$BILL_FILE.new"
mv "$BILL_FILE.new" "$BILL_FILE"
wait_for 30 days_of "$FILE_M" || fail "the joiner's BackfillPeriods days never came"
wait_for 10 bill_is periods_expected 6 || fail "periods_expected is $(csv_last bill-self gauge-periods_expected), expected 6"
printf '%s\n%s\n' "$M1" "$FILE_M" >"$BILL_FILE.new"
mv "$BILL_FILE.new" "$BILL_FILE"
wait_for 10 bill_is periods_expected 4 || fail "periods_expected is $(csv_last bill-self gauge-periods_expected) after a leaver, expected 4"
wait_for 10 bill_is periods_missing 0 || fail "periods_missing is $(csv_last bill-self gauge-periods_missing), expected 0"
collectd_stop
ok "frozen items: a joiner's BackfillPeriods days are collected, a leaver's periods dropped"


# A DCU-only server with frozen items at its first start (nothing kept in StateDir): it starts
# with no meters and says so once; the archive refresh at start brings the DCU's meters,
# each with its BackfillPeriods days, as at a first start. (The books used to refuse the
# empty list: collectd's init failed.)
collectd_instance dcufirst
collectd_setup
dcu_bill_conf() { # dcu_bill_conf <state dir>
  collectd_conf "$(server_block dcubill "DCU \"$DCU\"" "DCURefresh $REFRESH" \
    'Item "dailyBilling"' "Interval $INTERVAL" 'PlanTimeout 3' 'BackfillPeriods 2' \
    'RetryInterval 2')
  StateDir \"$1\""
}
dcubill_is() {
  [ "$(csv_last dcubill-self "gauge-$1" | cut -d. -f1)" = "$2" ]
}
no_meters_lines() {
  grep -c 'Server "dcubill": no meters yet' "$CD_LOG" || true
}
STATE3=$CD_DIR/state3
mkdir -p "$STATE3"
dcu_bill_conf "$STATE3"
timeout 60 "$COLLECTD_BIN" -T -C "$CD_CONF" >"$OUT" 2>&1 ||
  fail "collectd -T refused the DCU-only config: $(cat "$OUT")"
rm -rf "${STATE3:?}"/* # -T ran a round: its refresh kept the DCU list; start without it
collectd_start
wait_for 30 days_of "$M1" || fail "DCU-only first start: no daily values for $M1"
wait_for 30 days_of "$M2" || fail "DCU-only first start: no daily values for $M2"
wait_for 10 dcubill_is meters 2 || fail "gauge-meters is $(csv_last dcubill-self gauge-meters), expected 2"
wait_for 10 dcubill_is periods_expected 4 ||
  fail "periods_expected is $(csv_last dcubill-self gauge-periods_expected), expected 4"
wait_for 10 dcubill_is periods_missing 0 ||
  fail "periods_missing is $(csv_last dcubill-self gauge-periods_missing), expected 0"
[ "$(no_meters_lines)" = 1 ] || fail "expected one 'no meters yet' line, got $(no_meters_lines)"
collectd_stop
collectd_log_clean
ok "DCU-only server with frozen items, empty StateDir: starts, the refresh brings the meters and their days"

# The same with the HES down at that first start: collectd runs with no meters, and the first
# refresh after the HES is back brings them and their days.
collectd_instance dcudown
collectd_setup
STATE4=$CD_DIR/state4
mkdir -p "$STATE4"
dcu_bill_conf "$STATE4"
stop_sim
collectd_start
sleep $((REFRESH + 2 * INTERVAL)) # a refresh or two fail
collectd_running || fail "collectd exited with the HES down and no meters"
[ "$(no_meters_lines)" = 1 ] || fail "expected one 'no meters yet' line, got $(no_meters_lines)"
wait_for 5 dcubill_is meters 0 || fail "gauge-meters is $(csv_last dcubill-self gauge-meters) with the HES down, expected 0"
[ "$(csv_rows "$M1" energy_wh-daily-import)" = 0 ] || fail "daily values for $M1 with the HES down"
# shellcheck disable=SC2046
start_sim $(sim_credentials) --http-port "$SIM_PORT" --push-delay-ms 50 \
  --archive "$DCU=$TEST_TMP/archive.list"
wait_for 10 sim_connected || fail "hes-sim did not come back"
wait_for 30 days_of "$M1" || fail "HES back: no daily values for $M1"
wait_for 30 days_of "$M2" || fail "HES back: no daily values for $M2"
wait_for 10 dcubill_is meters 2 || fail "gauge-meters is $(csv_last dcubill-self gauge-meters), expected 2"
collectd_stop
ok "DCU-only server with frozen items, HES down at first start: runs, and the meters come with the HES"
