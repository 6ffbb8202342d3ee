#!/bin/bash
# End to end: a readSingle request that fails is tried once more within its round.
# Four meters, BatchSize 1, Interval 4, Spread 0.5: a round is four requests over its first
# 2 s; a failed one is retried in the next second (Interval x (1 - Spread) / 2), so its
# meter still has a value that round.
#   1. the simulator answers the next two requests "System busy": each of those meters is
#      asked again within the Interval, answered, and its value reaches collectd's CSV; the
#      log has warnings ("retry pending"), no error;
#   2. the same with an HTTP 500 page;
#   3. a slow HES leaves no time after the round: nothing is retried past the round's end,
#      and the log says so;
#   4. a retry that fails too is an error ("(retried)");
#   5. every request fails for a while (more than half a round): nothing is retried, each
#      batch is asked once a round, and the log says why.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"
require_cmd python3

meters=(202407100101 202407100102 202407100103 202407100104)
INTERVAL_MS=4000

collectd_setup
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --seed 7
wait_for 10 sim_connected || fail "simulator not connected to the broker"
collectd_conf "$(server_block retry "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA"' 'BatchSize 1' 'Interval 4' 'PlanTimeout 3' 'Spread 0.5')"
collectd_start

readsingle() { grep -c '"endpoint":"readSingle"' "$SIM_LOG" || true; }
failed_readsingle() { grep '"endpoint":"readSingle"' "$SIM_LOG" | grep -vc '"code":200' || true; }
all_seen() {
  local m
  for m in "${meters[@]}"; do [ "$(csv_rows "$m" voltage-A)" -ge 1 ] || return 1; done
}
wait_for 30 all_seen || fail "no values for every meter before the faults"

# check_retried <first line of the sim log to look at> <what>: every readSingle that failed
# from that line on was asked again for the same meter within the Interval, that request
# was answered (200/200), and the meter's CSV has a value from its push.
check_retried() {
  local csv_dir=$CD_CSV/$CD_HOST
  python3 - "$SIM_LOG" "$1" "$INTERVAL_MS" "$csv_dir" <<'PY' || fail "$2: a failed request was not retried"
import glob, json, sys
log, first, interval, csv_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
reqs = [json.loads(l) for i, l in enumerate(open(log), 1) if i >= first]
reqs = [r for r in reqs if r.get("endpoint") == "readSingle"]
failed = [r for r in reqs if r["code"] != 200]
if not failed:
    sys.exit("no failed request in the log")
for f in failed:
    m = f["devList"]
    again = [r for r in reqs if r["devList"] == m and f["time_ms"] < r["time_ms"] < f["time_ms"] + interval]
    ok = [r for r in again if r["code"] == 200 and r["http"] == 200]
    if not ok:
        sys.exit("meter %s: failed at %d (%s), no successful request within %d ms" % (m, f["time_ms"], f["msg"], interval))
    t = ok[0]["time_ms"] / 1000.0
    rows = []
    for path in glob.glob("%s/hes-%s/voltage-A-*" % (csv_dir, m[0])):
        rows += [float(l.split(",")[0]) for l in open(path) if l[:1].isdigit()]
    if not any(t - 1 <= x <= t + 4 for x in rows):
        sys.exit("meter %s: the retry at %.3f was answered but no value reached collectd" % (m, t))
    print("meter %s: failed (%s), retried after %d ms, value in collectd" % (m[0], f["msg"], ok[0]["time_ms"] - f["time_ms"]))
PY
}

# wait_requests <n>: until the simulator has seen n more readSingle requests than now.
wait_requests() {
  local target=$(($(readsingle) + $1))
  reached() { [ "$(readsingle)" -ge "$target" ]; }
  wait_for 30 reached || fail "the plugin stopped asking (wanted $target readSingle requests)"
}

# 1. "System busy"
from=$(($(wc -l <"$SIM_LOG") + 1))
sim_control "fail-next?n=2&kind=busy" >/dev/null
wait_requests 12 # the failures, their retries, and the next round whole
check_retried "$from" '"System busy"'
[ "$(failed_readsingle)" = 2 ] || fail "expected 2 failed requests, the simulator saw $(failed_readsingle)"
grep -q '\[warning\].*readSingle: voltageA for 1 meter(s) from .* (retry pending): HES code 500: System busy' "$CD_LOG" ||
  fail "no warning about the request to retry"
collectd_log_clean
retried_at_least() { awk -F, -v n="$1" 'END { exit !($2 >= n) }' "$(csv_file retry-self total_requests-retried)"; }
wait_for 10 retried_at_least 2 || fail "total_requests-retried did not count the 2 retries"
ok "\"System busy\": both failed requests were retried within the round, their values arrived, total_requests-retried counts them"

# 2. HTTP 500
from=$(($(wc -l <"$SIM_LOG") + 1))
sim_control "fail-next?n=1&kind=http" >/dev/null
wait_requests 8
check_retried "$from" "HTTP 500"
collectd_log_clean
ok "an HTTP 500 page: the request was retried within the round and its value arrived"

# 3. A slow HES (every answer 0.8 s late): a round's four requests take 3.2 s of its 4, and
# a retry that may take as long as its first try would overrun it.
sim_control "slow?ms=800&endpoint=readSingle" >/dev/null
sleep 4 # the round in progress ends
sim_control "fail-next?n=1&kind=busy" >/dev/null
no_time() { grep -q 'no time left in the round to retry 1 failed request(s)' "$CD_LOG"; }
wait_for 20 no_time || fail "no log line about the retry the round had no time for"
sim_control "slow?ms=0" >/dev/null
sleep 4 # the slow round ends
! grep -q 'read-function of the `hes-retry. plugin took' "$CD_LOG" ||
  fail "a round overran its Interval: $(grep -m1 'read-function' "$CD_LOG")"
ok "a slow HES: no retry past the round's end (collectd saw no round overrun), and the log says so"

# 4. One batch fails twice: the retry's failure is an error (before 5, whose errors use up
# the log's budget for the minute).
sim_control "fail-next?n=2&kind=busy&meter=${meters[2]}" >/dev/null
retried() { grep -q '\[error\].*readSingle: voltageA for 1 meter(s) from .* (retried): HES code 500: System busy' "$CD_LOG"; }
wait_for 20 retried || fail "no error line for a failed retry"
ok "a failed retry is an error"

# 5. Every request fails (a HES down or overloaded): no retries, which would only add load;
# each batch is asked once a round (a plugin that retried would ask about 8 (rounds + 1)).
rounds_now() { csv_rows retry-self gauge-plans_pending; }
r0=$(rounds_now)
q0=$(readsingle)
sim_control "fail-rate?rate=1&kind=busy" >/dev/null
sleep 24
sim_control "fail-rate?rate=0" >/dev/null
q1=$(readsingle)
r1=$(rounds_now)
rounds=$((r1 - r0))
asked=$((q1 - q0))
[ "$rounds" -ge 5 ] || fail "only $rounds rounds in 24 s"
[ "$asked" -ge $((4 * (rounds - 1) - 2)) ] && [ "$asked" -le $((4 * (rounds + 1))) ] ||
  fail "$asked requests in $rounds rounds of 4 batches: each batch should be asked once a round"
grep -q '\[error\].* 4 of 4 request(s) failed this round; not retrying them' "$CD_LOG" ||
  fail "no error line about the retries left out"
ok "while every request fails: $asked requests in $rounds rounds of 4 batches (once each), and the log says why"

collectd_running || fail "collectd died"
collectd_stop
