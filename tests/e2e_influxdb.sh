#!/bin/bash
# End to end into InfluxDB 1.x: collectd's network plugin (conf/examples/network-influxdb.conf)
# sends the plugin's readings (simulator + mosquitto) to the [[collectd]] input of Debian's
# influxd (conf/examples/influxdb-collectd.conf, typesdb with hes-types.db), and InfluxQL
# over the HTTP API must give back exactly the simulator's readings at their timestamps:
# phase-A voltage (a stock type) and the power factor (a type of hes-types.db).
# Installs influxdb with apt-get when absent and root; fails (cannot_run) when it cannot.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

INFLUXD_BIN=${INFLUXD_BIN:-/usr/bin/influxd}
EXAMPLES=$top_srcdir/conf/examples

# A UDP port nothing is bound to now (free_port checks TCP only).
free_udp_port() {
  local p _
  for _ in $(seq 1 50); do
    p=$(free_port) || return 1
    ss -lunH "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

require_cmd curl ss
collectd_setup
[ -f "$STOCK_PLUGINS/network.so" ] || cannot_run "network.so not in $STOCK_PLUGINS"
cp "$STOCK_PLUGINS/network.so" "$CD_DIR/plugins/"
[ -x "$INFLUXD_BIN" ] || apt_install influxdb
[ -x "$INFLUXD_BIN" ] || cannot_run "$INFLUXD_BIN not found"

# influxd with everything in the test directory; the [[collectd]] section is the example's,
# with the ports, the types directory and a short batch timeout.
IX=$TEST_TMP/influxdb
mkdir -p "$IX/types"
cp /usr/share/collectd/types.db "$top_srcdir/conf/hes-types.db" "$IX/types/"
FAIL_LOGS="$FAIL_LOGS $IX/influxd.out"
for attempt in 1 2 3; do
  HTTP_PORT=$(free_port)
  RPC_PORT=$(free_port)
  UDP_PORT=$(free_udp_port)
  {
    cat <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$RPC_PORT"
[meta]
  dir = "$IX/meta"
[data]
  dir = "$IX/data"
  wal-dir = "$IX/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$HTTP_PORT"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
CONF
    sed -e "s|^\( *bind-address = \).*|\1\"127.0.0.1:$UDP_PORT\"|" \
      -e "s|^\( *typesdb = \).*|\1\"$IX/types\"|" \
      -e "s|^\( *batch-timeout = \).*|\1\"200ms\"|" "$EXAMPLES/influxdb-collectd.conf"
  } >"$IX/influxdb.conf"
  grep -q "127.0.0.1:$UDP_PORT" "$IX/influxdb.conf" || fail "no bind-address in influxdb-collectd.conf"
  LIB_OUT=$IX/influxd.out run_bg "$INFLUXD_BIN" run -config "$IX/influxdb.conf"
  IX_PID=$BG_PID
  IX_URL=http://127.0.0.1:$HTTP_PORT
  wait_for 20 curl -sf "$IX_URL/ping" && break
  stop_bg "$IX_PID"
  [ "$attempt" != 3 ] || fail "influxd did not start"
done

meters=(202407100001 202407100002)
m=${meters[0]}
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --push-delay-ms 100
wait_for 10 sim_connected || fail "simulator not connected to the broker"

net_conf=$(sed "s/^\( *Server \"127\.0\.0\.1\" \)\"25826\"/\1\"$UDP_PORT\"/" "$EXAMPLES/network-influxdb.conf")
grep -q "\"$UDP_PORT\"" <<<"$net_conf" || fail "no Server line in network-influxdb.conf"
collectd_conf "$(server_block e2e \
  "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "powerFactorTotal" "importActiveEnergy"' \
  "Interval 2" "PlanTimeout 3")" "$net_conf"
collectd_start

# influx_query <influxql>: JSON rows [<ns>,<value>] of database "collectd".
influx_query() {
  curl -sS --max-time 5 -G --data-urlencode db=collectd --data-urlencode epoch=ns \
    --data-urlencode "q=$1" "$IX_URL/query"
}
rows() {
  grep -o '\[[0-9]*,[-0-9.e+]*\]' <<<"$1" | sed -e 's/[][]//g' -e 's/,/ /'
}
q_of() { # q_of <type> <type_instance>
  echo "SELECT value FROM hes_value WHERE host = '$CD_HOST' AND instance = '$m' AND type = '$1' AND type_instance = '$2'"
}
enough() {
  [ "$(rows "$(influx_query "$(q_of voltage A)")" | wc -l)" -ge 4 ] &&
    [ "$(rows "$(influx_query "$(q_of power_factor total)")" | wc -l)" -ge 4 ]
}
wait_for 40 enough ||
  fail "InfluxDB has fewer than 4 points of voltage-A or power_factor-total (hes-types.db not in its typesdb?): $(influx_query "$(q_of power_factor total)")"
collectd_stop
collectd_log_clean

# Every reading the CSV writer saw reaches InfluxDB (after its batch timeout).
same_count() { # same_count <type> <type_instance>
  [ "$(rows "$(influx_query "$(q_of "$1" "$2")")" | wc -l)" = "$(csv_rows "$m" "$1-$2")" ]
}
wait_for 5 same_count voltage A && wait_for 5 same_count power_factor total ||
  fail "InfluxDB has other numbers of points than the CSV files"

# Exactly the simulator's reading at each point's time (ns, rounded to the reading's ms).
for c in "voltage A 5050" "power_factor total 5046"; do
  read -r type ti cg <<<"$c"
  answer=$(influx_query "$(q_of "$type" "$ti")")
  n=0
  while read -r ns v; do
    ms=$(((ns + 500000) / 1000000))
    read -r want unit < <("$HES_SIM_BIN" --value "$m" "$cg" "$ms")
    awk -v a="$v" -v b="$want" 'BEGIN { exit !(a + 0 == b + 0) }' ||
      fail "InfluxDB has $type-$ti $v at $ns ns, the simulator's value at $ms ms is $want $unit"
    n=$((n + 1))
  done < <(rows "$answer")
  [ "$n" -ge 4 ] || fail "only $n points of $type-$ti"
  note "$type-$ti: $n points, first $(rows "$answer" | head -n 1)"
done
ok "InfluxDB points equal the simulator's readings at their timestamps (voltage, power_factor)"

# The tags the example documents, and no "unknown type" complaint from the collectd input.
tags=$(curl -sS --max-time 5 -G --data-urlencode db=collectd \
  --data-urlencode "q=SHOW TAG KEYS FROM hes_value" "$IX_URL/query")
for k in host instance type type_instance; do
  grep -q "\"$k\"" <<<"$tags" || fail "tag $k missing: $tags"
done
self=$(influx_query "SELECT last(value) FROM hes_value WHERE instance = 'e2e-self' AND type = 'gauge' AND type_instance = 'mqtt_connected'")
grep -q ',1\]' <<<"$self" || fail "mqtt_connected is not 1 in InfluxDB: $self"
if grep 'unable to find .* in TypesDB' "$IX/influxd.out" >&2; then
  fail "InfluxDB's collectd input lacks types"
fi
ok "tags host, instance, type, type_instance; self-metrics arrive too; InfluxDB knew every type"
stop_bg "$IX_PID"
