#!/bin/bash
# End to end into RRD files: collectd's rrdtool plugin, configured from
# conf/examples/rrdtool.conf, writes the plugin's readings (simulator + mosquitto); the last
# update of an RRD is exactly the simulator's reading, and conf/examples/rrd-graph.sh draws
# a PNG of the meter's phase voltages and import energy from the files.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

require_cmd rrdtool curl
meters=(202407100001 202407100002)
m=${meters[0]}
collectd_setup
[ -f "$CD_DIR/plugins/rrdtool.so" ] || cannot_run "rrdtool.so not in $STOCK_PLUGINS"
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --push-delay-ms 100
wait_for 10 sim_connected || fail "simulator not connected to the broker"

RRD_DIR=$TEST_TMP/rrd
mkdir -p "$RRD_DIR"
# The example as shipped, with the data directory moved into the test's.
rrd_conf=$(sed "s|^\( *DataDir \).*|\1\"$RRD_DIR\"|" "$top_srcdir/conf/examples/rrdtool.conf")
grep -q "DataDir \"$RRD_DIR\"" <<<"$rrd_conf" || fail "no DataDir line in rrdtool.conf"
collectd_conf "$(server_block e2e \
  "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "voltageB" "voltageC" "importActiveEnergy" "powerFactorTotal"' \
  "Interval 2" "PlanTimeout 3")" "$rrd_conf"
collectd_start

host_dir=$RRD_DIR/$CD_HOST
# rrdtool creates a file on the first value and updates it from the second on.
updated() {
  local f
  for f in voltage-A voltage-B voltage-C energy_wh-import power_factor-total; do
    [ "$(csv_rows "$m" "$f")" -ge 4 ] || return 1
    [ -f "$host_dir/hes-$m/$f.rrd" ] || return 1
  done
}
wait_for 40 updated || fail "no RRD files or too few values for meter $m"
collectd_stop
collectd_log_clean
ok "RRD files for every item of meter $m"

# The last update of each file is exactly one of the readings collectd wrote (CSV), and
# that reading is the simulator's value at its timestamp.
checks=("voltage-A 5050 1" "voltage-C 5052 1" "power_factor-total 5046 1"
  "energy_wh-import 5069 1000")
for c in "${checks[@]}"; do
  read -r ti cg factor <<<"$c"
  f=$host_dir/hes-$m/$ti.rrd
  last=$(rrdtool lastupdate "$f") || fail "rrdtool lastupdate $f"
  # "<time>: <value>" after a header line and a blank one
  read -r t v < <(printf '%s\n' "$last" | tail -n 1 | tr -d ':')
  [ -n "${v:-}" ] || fail "$f: no last update in: $last"
  hit=
  while IFS=, read -r epoch value; do
    # collectd hands rrdtool the time rounded to whole seconds
    awk -v e="$epoch" -v t="$t" 'BEGIN { exit !(e - t < 1 && t - e < 1) }' || continue
    awk -v a="$value" -v b="$v" 'BEGIN { exit !(a + 0 == b + 0) }' || continue
    ms=$(awk -v e="$epoch" 'BEGIN { printf "%.0f", e * 1000 }')
    read -r want _ < <("$HES_SIM_BIN" --value "$m" "$cg" "$ms")
    awk -v got="$v" -v w="$want" -v f="$factor" 'BEGIN { exit !(got + 0 == w * f) }' ||
      fail "$ti: rrdtool has $v at $t, the simulator sent $want (x$factor) at $ms ms"
    hit=$epoch
  done < <(grep '^[0-9]' "$(csv_file "$m" "$ti")")
  [ -n "$hit" ] || fail "$ti: rrdtool's last update $t: $v is none of the CSV rows"
  note "$ti: lastupdate $t $v = the reading at $hit"
done
ok "rrdtool lastupdate equals the simulator's readings"

png=$TEST_TMP/meter.png
"$top_srcdir/conf/examples/rrd-graph.sh" "$RRD_DIR" "$m" "$png" end-3min ||
  fail "rrd-graph.sh failed"
[ -s "$png" ] || fail "empty PNG"
magic=$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')
[ "$magic" = 89504e470d0a1a0a ] || fail "not a PNG (magic $magic)"
# Both forms of the first argument: the DataDir and the host directory.
"$top_srcdir/conf/examples/rrd-graph.sh" "$host_dir" "$m" "$TEST_TMP/host.png" end-3min ||
  fail "rrd-graph.sh with the host directory failed"
[ -s "$TEST_TMP/host.png" ] || fail "empty PNG from the host directory"
if "$top_srcdir/conf/examples/rrd-graph.sh" "$RRD_DIR" 999999999999 "$TEST_TMP/x.png" 2>/dev/null; then
  fail "rrd-graph.sh drew a meter without files"
fi
[ ! -e "$TEST_TMP/x.png" ] || fail "rrd-graph.sh left a PNG for a meter without files"
[ -z "${RRD_PNG_KEEP:-}" ] || cp "$png" "$RRD_PNG_KEEP"
ok "rrd-graph.sh draws a $(stat -c %s "$png")-byte PNG"
