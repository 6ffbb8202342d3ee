#!/bin/bash
# End to end into Prometheus: collectd's write_prometheus (conf/examples/write_prometheus.conf)
# exports the plugin's readings (simulator + mosquitto), Debian's prometheus scrapes it with
# conf/examples/prometheus.yml, and its HTTP API must give back exactly the simulator's
# phase-A voltages, each at the reading's own timestamp. Every query of
# conf/examples/grafana-dashboard.json must return series. The health self-metrics carry the
# names conf/examples/hes-alerts.yml uses, and with the broker stopped its
# HESBrokerDisconnected alert goes pending or firing (the test's copy of the rules waits
# seconds, not rounds).
# Installs prometheus (and write_prometheus's libraries) with apt-get when absent and root;
# fails (cannot_run) when it cannot.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
EXAMPLES=$top_srcdir/conf/examples

require_cmd curl
collectd_setup
wp=$STOCK_PLUGINS/write_prometheus.so
[ -f "$wp" ] || cannot_run "$wp not found"
if ldd "$wp" | grep -q 'not found'; then
  apt_install libprotobuf-c1 libmicrohttpd12
  ldd "$wp" | grep -q 'not found' && cannot_run "write_prometheus.so lacks libraries: $(ldd "$wp" | grep 'not found')"
fi
[ -x "$PROMETHEUS_BIN" ] || apt_install prometheus
[ -x "$PROMETHEUS_BIN" ] || cannot_run "$PROMETHEUS_BIN not found"
cp "$wp" "$CD_DIR/plugins/"

meters=(202407100001 202407100002)
m=${meters[0]}
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --push-delay-ms 100
wait_for 10 sim_connected || fail "simulator not connected to the broker"

# The examples as shipped, with the ports moved.
WP_PORT=$(free_port)
wp_conf=$(sed "s/^\( *Port \)\"9103\"/\1\"$WP_PORT\"/" "$EXAMPLES/write_prometheus.conf")
grep -q "Port \"$WP_PORT\"" <<<"$wp_conf" || fail "no Port line in write_prometheus.conf"
collectd_conf "$(server_block e2e \
  "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "voltageB" "voltageC" "currentA" "currentB" "currentC"' \
  'Item "activePowerTotal" "powerFactorTotal" "importActiveEnergy" "exportActiveEnergy"' \
  "Interval 2" "PlanTimeout 3")" "$wp_conf"
collectd_start
wait_for 10 port_open "$WP_PORT" || fail "write_prometheus does not listen on $WP_PORT"

PROM_DIR=$TEST_TMP/prometheus
mkdir -p "$PROM_DIR/data"
sed -e "s/127\.0\.0\.1:9103/127.0.0.1:$WP_PORT/" -e 's/\(scrape_interval: \)30s/\11s/' \
  "$EXAMPLES/prometheus.yml" >"$PROM_DIR/prometheus.yml"
grep -q "127.0.0.1:$WP_PORT" "$PROM_DIR/prometheus.yml" || fail "no target in prometheus.yml"
# The alert rules as shipped, with every "for" cut to 2 s and evaluated every second.
sed -e 's/^\( *for: \).*/\12s/' "$EXAMPLES/hes-alerts.yml" >"$PROM_DIR/hes-alerts.yml"
grep -q 'for: 2s' "$PROM_DIR/hes-alerts.yml" || fail "no for: line in hes-alerts.yml"
sed -i 's/\(evaluation_interval: \)30s/\11s/' "$PROM_DIR/prometheus.yml"
printf 'rule_files: ["%s"]\n' "$PROM_DIR/hes-alerts.yml" >>"$PROM_DIR/prometheus.yml"
FAIL_LOGS="$FAIL_LOGS $PROM_DIR/prometheus.out"
for attempt in 1 2 3; do
  PROM_PORT=$(free_port)
  LIB_OUT=$PROM_DIR/prometheus.out run_bg "$PROMETHEUS_BIN" \
    --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn
  PROM_PID=$BG_PID
  PROM_URL=http://127.0.0.1:$PROM_PORT
  wait_for 20 curl -sf "$PROM_URL/-/ready" && break
  stop_bg "$PROM_PID"
  [ "$attempt" != 3 ] || fail "prometheus did not start"
done

# prom_query <promql>: the API's JSON answer (instant query, now).
prom_query() {
  curl -sS --max-time 5 -G --data-urlencode "query=$1" "$PROM_URL/api/v1/query"
}
# samples <json>: "<time> <value>" lines of a matrix answer
samples() {
  grep -o '\[[0-9.]*,"[^"]*"\]' <<<"$1" | sed -e 's/[]["]//g' -e 's/,/ /'
}

sel="collectd_hes_voltage{hes=\"$m\",type=\"A\"}"
enough() {
  [ "$(samples "$(prom_query "${sel}[5m]")" | wc -l)" -ge 4 ]
}
wait_for 40 enough || fail "Prometheus has fewer than 4 samples of $sel: $(prom_query "${sel}[5m]")"
collectd_running || fail "collectd died"

# Each sample is exactly the simulator's reading at the sample's own timestamp: the meter's
# time went through write_prometheus to Prometheus, not the scrape time.
answer=$(prom_query "${sel}[5m]")
grep -q '"exported_instance":"e2ehost"' <<<"$answer" ||
  fail "no exported_instance=\"e2ehost\" label: $answer"
grep -q '"job":"collectd-hes"' <<<"$answer" || fail "no job=\"collectd-hes\" label: $answer"
n=0
while read -r t v; do
  ms=$(awk -v t="$t" 'BEGIN { printf "%.0f", t * 1000 }')
  read -r want unit < <("$HES_SIM_BIN" --value "$m" 5050 "$ms")
  awk -v a="$v" -v b="$want" 'BEGIN { exit !(a + 0 == b + 0) }' ||
    fail "Prometheus has $v V at $ms ms, the simulator's value then is $want $unit"
  n=$((n + 1))
done < <(samples "$answer")
[ "$n" -ge 4 ] || fail "only $n samples"
note "first sample: $(samples "$answer" | head -n 1), scrape interval 1 s"
ok "$n phase-A voltage samples in Prometheus equal the simulator's readings at their timestamps"

# Self-metrics, under the names the dashboard uses.
v=$(prom_query 'collectd_hes_gauge{hes="e2e-self",type="mqtt_connected"}')
grep -q '"value":\[[0-9.]*,"1"\]' <<<"$v" || fail "mqtt_connected is not 1: $v"
v=$(prom_query 'collectd_hes_total_values_total{hes="e2e-self",type="dispatched"} > 0')
grep -q '"resultType":"vector","result":\[{' <<<"$v" || fail "dispatched is not > 0: $v"
ok "self-metrics: mqtt_connected 1, dispatched > 0"

# The health self-metrics, under the names the alert rules and the dashboard use.
for q in 'collectd_hes_latency{hes="e2e-self",type="http"}' \
  'collectd_hes_latency{hes="e2e-self",type="http-max"}' \
  'collectd_hes_latency{hes="e2e-self",type="push-p50"}' \
  'collectd_hes_latency{hes="e2e-self",type="push-p95"}' \
  'collectd_hes_latency{hes="e2e-self",type="push-max"}' \
  'collectd_hes_duration_seconds{hes="e2e-self",type="round"}' \
  'collectd_hes_total_operations_total{hes="e2e-self",type="round_overrun"}' \
  'collectd_hes_total_operations_total{hes="e2e-self",type="mqtt_reconnect"}'; do
  v=$(prom_query "$q")
  grep -q '"result":\[{' <<<"$v" || fail "no series $q: $v"
done
# The simulator pushes 100 ms after its answer: the push latency is at least that (less the
# 1/64 of a quantile's histogram bucket).
v=$(prom_query 'collectd_hes_latency{hes="e2e-self",type="push-p50"} >= 0.098')
grep -q '"result":\[{' <<<"$v" || fail "push-p50 is below the simulator's 100 ms push delay: $v"
ok "health self-metrics: latency http/push, duration round, round_overrun, mqtt_reconnect"

# Every query of the Grafana dashboard, with its variables set, returns at least one series;
# the variables' own queries list the meter and the server.
dash=$EXAMPLES/grafana-dashboard.json
exprs=$(grep -o '"expr": "\([^"\\]\|\\.\)*"' "$dash" | sed -e 's/^"expr": "//' -e 's/"$//' -e 's/\\"/"/g')
[ "$(wc -l <<<"$exprs")" -ge 10 ] || fail "too few exprs found in $dash"
while IFS= read -r e; do
  q=$(sed -e "s/\$meter/$m/g" -e 's/\$server/e2e-self/g' -e 's/\$__rate_interval/1m/g' \
    -e 's/\$__range/5m/g' <<<"$e")
  case $q in *'$'*) fail "unknown variable in dashboard query: $e" ;; esac
  v=$(prom_query "$q")
  grep -q '"status":"success"' <<<"$v" || fail "dashboard query failed: $q: $v"
  grep -q '"result":\[{' <<<"$v" || fail "dashboard query has no series: $q: $v"
done <<<"$exprs"
ok "all $(wc -l <<<"$exprs") dashboard queries return series"
lv=$(grep -o '"definition": "label_values(\([^"\\]\|\\.\)*"' "$dash" | sed -e 's/^"definition": "label_values(//' -e 's/, hes)"$//' -e 's/\\"/"/g')
[ "$(wc -l <<<"$lv")" = 2 ] || fail "expected two label_values variables in $dash, found: $lv"
for want in "$m" e2e-self; do
  hit=0
  while IFS= read -r s; do
    curl -sS --max-time 5 -G --data-urlencode "match[]=$s" "$PROM_URL/api/v1/label/hes/values" |
      grep -q "\"$want\"" && hit=1
  done <<<"$lv"
  [ "$hit" = 1 ] || fail "no dashboard variable lists $want"
done
ok "the dashboard's variables list meter $m and server e2e-self"

# Stop the broker: the plugin reports mqtt_connected 0 each round, and the alert follows.
alerts() {
  curl -sS --max-time 5 "$PROM_URL/api/v1/alerts"
}
a=$(alerts)
grep -q '"alertname":"HESBrokerDisconnected"' <<<"$a" && fail "broker alert before the broker stopped: $a"
stop_mosquitto
broker_alert() {
  alerts | grep -q '"alertname":"HESBrokerDisconnected".*"hes":"e2e-self".*"state":"\(pending\|firing\)"'
}
wait_for 30 broker_alert || fail "no HESBrokerDisconnected alert 30 s after the broker stopped: $(alerts)"
note "alert: $(alerts | grep -o '"state":"[a-z]*"' | head -n 1)"
ok "broker stopped: HESBrokerDisconnected is pending or firing in Prometheus"

stop_bg "$PROM_PID"
collectd_stop
# write_prometheus of collectd 5.12 with libmicrohttpd >= 0.9.71 logs one harmless
# "MHD_OPTION_EXTERNAL_LOGGER is not the first option" error at start: not ours.
errors=$(grep '\[error\]' "$CD_LOG" | grep -v 'write_prometheus plugin: MHD_OPTION_EXTERNAL_LOGGER is not the first option' || true)
[ -z "$errors" ] || fail "collectd logged errors: $errors"
