#!/bin/bash
# End to end, how the HES is doing: a slow HES (a proxy in front of the simulator that holds
# each readSingle answer 600 ms) makes every round of two requests outlast its 1 s Interval.
# The plugin must count the overruns, report round durations and HTTP latencies that show
# the delay, and push latencies from the request (not the answer) to the reading; after a
# broker restart it must count one MQTT reconnect.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

require_cmd python3
meters=(202407100001 202407100002)
collectd_setup
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --push-delay-ms 100
wait_for 10 sim_connected || fail "simulator not connected to the broker"

# The slow HES: forwards every request to the simulator, readSingle 600 ms late.
PROXY_PORT=$(free_port)
cat >"$TEST_TMP/slow_hes.py" <<'PY'
import http.server, sys, time, urllib.request
port, upstream, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/readSingle"):
            time.sleep(delay)
        hdr = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "hes_access_token")}
        with urllib.request.urlopen(urllib.request.Request(upstream + self.path, body, hdr)) as r:
            data, status = r.read(), r.status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
LIB_OUT=$TEST_TMP/slow_hes.out run_bg python3 "$TEST_TMP/slow_hes.py" "$PROXY_PORT" "$SIM_URL" 0.6
FAIL_LOGS="$FAIL_LOGS $TEST_TMP/slow_hes.out"
wait_for 10 port_open "$PROXY_PORT" || fail "the slow HES proxy did not start"

SIM_URL=http://127.0.0.1:$PROXY_PORT
collectd_conf "$(server_block e2e \
  "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "currentA"' \
  "Interval 1" "PlanTimeout 5")"
collectd_start

# csv_at_least <type-type_instance> <min>: the last value of the self-metric is >= min.
csv_at_least() {
  local v
  v=$(csv_last e2e-self "$1")
  [ -n "$v" ] && awk -v v="$v" -v m="$2" 'BEGIN { exit !(v + 0 >= m + 0) }'
}
wait_for 30 csv_at_least total_operations-round_overrun 2 ||
  fail "no round overruns counted: $(csv_last e2e-self total_operations-round_overrun)"
csv_at_least duration-round 1.2 || fail "duration-round $(csv_last e2e-self duration-round) < 1.2 s"
csv_at_least latency-http-max 0.6 || fail "latency-http-max $(csv_last e2e-self latency-http-max) < 0.6 s"
# the round's mean also holds the fast getToken, once: (0 + 0.6 + 0.6) / 3 at the least
csv_at_least latency-http 0.4 || fail "latency-http $(csv_last e2e-self latency-http) < 0.4 s"
# request sent, answered 600 ms later, pushed 100 ms after that: 0.7 s, less the
# histogram's 1/64 (a quantile is its bucket's middle); the max is exact
wait_for 10 csv_at_least latency-push-p50 0.688 ||
  fail "latency-push-p50 $(csv_last e2e-self latency-push-p50) < 0.688 s: not counted from the request"
csv_at_least latency-push-max 0.7 || fail "latency-push-max $(csv_last e2e-self latency-push-max)"
awk -v v="$(csv_last e2e-self latency-push-max)" 'BEGIN { exit !(v + 0 < 5) }' ||
  fail "latency-push-max beyond PlanTimeout"
[ "$(csv_last e2e-self total_operations-mqtt_reconnect)" = 0 ] || fail "a reconnect before any"
ok "slow HES: rounds overrun (counted), duration-round >= 1.2 s, HTTP and push latency show the delay"

restart_mosquitto
wait_for 30 csv_at_least total_operations-mqtt_reconnect 1 ||
  fail "no MQTT reconnect counted after the broker restart"
[ "$(csv_last e2e-self total_operations-mqtt_reconnect)" = 1 ] ||
  fail "mqtt_reconnect $(csv_last e2e-self total_operations-mqtt_reconnect) after one restart"
ok "broker restart: total_operations-mqtt_reconnect 1"

collectd_stop
collectd_log_clean
