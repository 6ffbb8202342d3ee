#!/bin/bash
# End to end: collectd's threshold plugin on the meters' voltages, the plugin's <Relay>
# rules, the simulator's breaker endpoint. Exactly the over-voltage meter is opened, once; it
# is closed after it recovers; a flood of 1,000 notifications yields at most MaxPerMinute
# commands with Holdoff per meter; unknown meters, silent meters (collectd's missing-value
# FAILURE) and a restart with healthy voltages send nothing; DryRun sends nothing; a failed
# or missing result becomes a FAILURE notification.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"
require_cmd socat

m=(202407100001 202407100002 202407100003 202407100004 202407100005 202407100006 202407100007 202407100008)
high=${m[2]}      # over-voltage
fails=${m[3]}     # its breaker commands fail
silenced=${m[6]}  # stops reporting mid-run
unknown=209999999999
SOCK=$CD_DIR/var/collectd.sock

collectd_setup
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --overvoltage-meter "$high" --relay-fail-meters "$fails"
wait_for 10 sim_connected || fail "simulator not connected to the broker"

# relay_conf <Holdoff> <MaxPerMinute> <DryRun>
relay_conf() {
  collectd_conf "$(server_block relay "Meter $(printf '"%s" ' "${m[@]}")" 'Item "voltageA"' \
    'Interval 1' 'PlanTimeout 3')
  StateDir \"$CD_DIR/state\"
  <Relay>
    Holdoff $1
    MaxPerMinute $2
    DryRun $3
    <Rule \"overvoltage\">
      Plugin \"hes\"
      Type \"voltage\"
      TypeInstance \"A\"
      Severity \"failure\"
      Action \"open\"
    </Rule>
    <Rule \"recovered\">
      Plugin \"hes\"
      Type \"voltage\"
      TypeInstance \"A\"
      Severity \"okay\"
      Action \"close\"
    </Rule>
  </Relay>" "LoadPlugin threshold
<Plugin threshold>
  <Plugin \"hes\">
    <Type \"voltage\">
      Instance \"A\"
      FailureMax 255
    </Type>
  </Plugin>
</Plugin>
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile \"$SOCK\"
  SocketGroup \"root\"
</Plugin>"
}
mkdir -p "$CD_DIR/state"

relay_requests() { grep '"endpoint":"relay"' "$SIM_LOG" | grep '"http":200' || true; }
relay_count() { relay_requests | grep -c . || true; }
relays_for() { # <meter> <controlMode>
  relay_requests | grep "\"devList\":\[\"$1\"\]" | grep -c "\"controlMode\":$2" || true
}
has_relay() { # <meter> <controlMode>: at least one such request (wait_for re-evaluates it)
  [ "$(relays_for "$1" "$2")" -ge 1 ]
}
notified() { # <severity> <message part>
  grep -F "Notification: severity = $1" "$CD_LOG" | grep -F "$2" >/dev/null
}

# --- run A: open, close, flood ---------------------------------------------------------------
relay_conf 6 6 false
collectd_start
wait_for 20 has_relay "$high" 1 || fail "the over-voltage meter was not opened"
opened=$(date +%s)
sim_control "silence?meter=$silenced" >/dev/null
wait_for 20 grep -q "hes-$silenced/voltage-A has not been updated" "$CD_LOG" ||
  fail "collectd raised no missing-value notification for the silenced meter"
sleep 2
[ "$(relay_count)" = 1 ] || fail "expected 1 relay request, got $(relay_count): $(relay_requests)"
[ "$(relays_for "$high" 1)" = 1 ] || fail "the over-voltage meter was not the one opened"
wait_for 10 grep -q "relay audit: rule \"overvoltage\" meter $high action open planId .* outcome success" "$CD_LOG" ||
  fail "no audit line with the outcome"
grep -q "relay audit: rule \"overvoltage\" meter $high action open value 26[0-9.]* threshold FailureMax 255 planId P" "$CD_LOG" ||
  fail "the audit line lacks the value and threshold"
wait_for 10 notified OKAY "breaker open on meter $high: success" || fail "no OKAY relay notification"
ok "exactly the over-voltage meter was opened, once; a silent meter was not"

# Recovery after Holdoff: the OKAY closes it.
while [ $(($(date +%s) - opened)) -le 6 ]; do sleep 0.5; done
sim_control "overvoltage?meter=$high&on=0" >/dev/null
wait_for 20 has_relay "$high" 2 || fail "the recovered meter was not closed"
ok "the recovered meter was closed (controlMode 2)"

# 1,000 notifications, cycling over 7 meters and one unknown meter: MaxPerMinute 6 leaves room
# for 4 more commands; the first 4 distinct meters in order get one each.
now=$(date +%s)
flood=("$silenced" "$fails" "${m[0]}" "${m[1]}" "${m[4]}" "${m[5]}" "${m[7]}" "$unknown")
for i in $(seq 0 999); do
  t=${flood[$((i % ${#flood[@]}))]}
  echo "PUTNOTIF severity=failure time=$now host=$CD_HOST plugin=hes plugin_instance=$t type=voltage type_instance=A s:CurrentValue=300 message=\"injected $i\""
done | socat -t 30 - UNIX-CONNECT:"$SOCK" >"$TEST_TMP/putnotif.out"
[ "$(grep -c '^0 Success' "$TEST_TMP/putnotif.out")" = 1000 ] || fail "unixsock refused notifications"
sleep 5
[ "$(relay_count)" = 6 ] || fail "expected 6 relay requests in the minute, got $(relay_count): $(relay_requests)"
for t in "$silenced" "$fails" "${m[0]}" "${m[1]}"; do
  [ "$(relays_for "$t" 1)" = 1 ] || fail "meter $t: expected exactly one open"
done
for t in "${m[4]}" "${m[5]}" "${m[7]}" "$unknown"; do
  [ "$(relay_requests | grep -c "\"$t\"")" = 0 ] || fail "meter $t got a command"
done
grep -q "not sending open to meter .*: over MaxPerMinute" "$CD_LOG" || fail "the cap was not logged"
grep -q "not sending open to meter $unknown: not one of the configured meters" "$CD_LOG" ||
  fail "the unknown meter was not logged"
grep -q "not sending open to meter ${m[0]}: it got a command less than Holdoff" "$CD_LOG" ||
  fail "holdoff skips were not logged"
ok "1,000 notifications: 4 commands (MaxPerMinute 6 in all), one per meter, none to unknown meters"

wait_for 10 notified FAILURE "breaker open on meter $fails: the HES reports the operation failed" ||
  fail "no FAILURE notification for a failed command"
wait_for 10 notified FAILURE "breaker open on meter $silenced: no result" ||
  fail "no FAILURE notification for a command without result"
ok "failed and missing results became FAILURE notifications"
collectd_stop
last_command=$(date +%s)

# --- run B: a restart with healthy voltages sends nothing ------------------------------------
sim_control "unsilence?meter=$silenced" >/dev/null
before=$(relay_count)
relay_conf 1 100 false
collectd_start
sleep 6
[ "$(relay_count)" = "$before" ] || fail "a restart with healthy voltages sent commands: $(relay_requests | tail -n 3)"
grep -q 'Notification: severity = OKAY.*plugin = hes, plugin_instance = 202407100001, type = voltage' "$CD_LOG" ||
  fail "the threshold plugin sent no first OKAY (the test would prove nothing)"
collectd_stop
ok "a restart with healthy voltages sent nothing (first OKAYs ignored)"

# --- run C: DryRun ---------------------------------------------------------------------------
sim_control "overvoltage?meter=$high&on=1" >/dev/null
relay_conf 1 100 true
collectd_start
wait_for 20 grep -q "relay audit: rule \"overvoltage\" meter $high action open .* outcome dry run" "$CD_LOG" ||
  fail "DryRun did not audit the command"
wait_for 10 notified OKAY "breaker open on meter $high: dry run" || fail "no dry-run notification"
sleep 1
[ "$(relay_count)" = "$before" ] || fail "DryRun sent a command"
collectd_stop
ok "DryRun logs and notifies, sends nothing"

# --- run D: the holdoff state cannot be saved: nothing is sent, a FAILURE says why -----------
# A directory where the state file's temporary copy goes makes every save fail, for root too.
mkdir -p "$CD_DIR/state/hes-relay-relay.state.tmp/in-the-way"
before=$(relay_count)
relay_conf 1 100 false
collectd_start
wait_for 20 notified FAILURE "breaker open on meter $high: not sent: the holdoff state could not be saved" ||
  fail "no FAILURE notification for a command whose holdoff state could not be saved"
grep -q "not sending open to meter $high: the holdoff state could not be saved" "$CD_LOG" ||
  fail "the unsaved state was not logged"
sleep 2
[ "$(relay_count)" = "$before" ] || fail "a command was sent although its holdoff state was not saved"
collectd_stop
rm -rf "$CD_DIR/state/hes-relay-relay.state.tmp"
ok "a command whose holdoff state cannot be saved is not sent; a FAILURE notification says why"
