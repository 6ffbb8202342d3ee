#!/bin/bash
# The demo (README's first command), on a fresh Debian 12 as root: installs what it needs,
# builds, starts a local mosquitto, the HES simulator with 36 meters and collectd with the
# plugin, and shows the readings as they arrive. Ctrl-C stops everything; the collected CSV
# files and collectd's log stay in the directory it names.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh tests/install-deps.sh
if [ ! -x _build/config.status ]; then
  autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
  mkdir -p _build
  (cd _build && ../configure -q)
fi
make -C _build -j"$(nproc)" -s >/dev/null

export top_srcdir=$top top_builddir=$top/_build KEEP_TMP=1
cd "$top_builddir"
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

meters=()
for i in $(seq 1 36); do meters+=("$(printf '2024071000%02d' "$i")"); done
overvoltage=${meters[6]}
silent=${meters[35]}
interval=${DEMO_INTERVAL:-5}

collectd_setup
start_mosquitto
# shellcheck disable=SC2046
start_sim $(sim_credentials) --overvoltage-meter "$overvoltage" --silent-meters "$silent"
wait_for 10 sim_connected || fail "the simulator did not reach the broker"
collectd_conf "$(server_block demo \
  "Meter $(printf '"%s" ' "${meters[@]}")" \
  'Item "voltageA" "voltageB" "voltageC" "currentA" "activePowerTotal" "powerFactorTotal" "importActiveEnergy"' \
  "BatchSize 12" "Interval $interval" "PlanTimeout $((interval * 3))")" \
  "$(sed "s|^\( *DataDir \).*|\1\"$CD_DIR/rrd\"|" "$top_srcdir/conf/examples/rrdtool.conf")"
collectd_start
started=$(date +%s)

demo_stop() {
  trap - INT TERM
  collectd_stop || true
  echo
  local png=$TEST_TMP/${overvoltage}.png span
  span=$(($(date +%s) - started + 60))
  if bash "$top_srcdir/conf/examples/rrd-graph.sh" "$CD_DIR/rrd" "$overvoltage" "$png" \
    "end-${span}s" >/dev/null 2>&1; then
    echo "Graph of meter $overvoltage (phase voltages, import energy): $png"
  else
    echo "No graph: too few readings for rrdtool yet (run the demo a little longer)."
  fi
  echo "Stopped. collectd's log: $CD_LOG"
  echo "CSV files: $CD_CSV/$CD_HOST/hes-<meter>/"
  echo "RRD files: $CD_DIR/rrd/$CD_HOST/hes-<meter>/"
  exit 0
}
trap demo_stop INT TERM

# One table of the newest value of every meter x value, read in one pass over the CSV files.
table() {
  awk -F, -v host="$CD_CSV/$CD_HOST/" '
    FNR > 1 { last[FILENAME] = $2 }
    END {
      for (f in last) {
        rel = substr(f, length(host) + 1)           # hes-<meter>/<type>-<instance>-<date>
        split(rel, part, "/")
        meter = substr(part[1], 5)
        part[2] = substr(part[2], 1, length(part[2]) - 11)   # drop -YYYY-MM-DD
        v[meter, part[2]] = last[f]; seen[meter] = 1
      }
      n = split("voltage-A voltage-B voltage-C current-A power-total power_factor-total energy_wh-import", col, " ")
      for (meter in seen) {
        if (meter ~ /-self$/) continue
        printf "%-14s", meter
        for (c = 1; c <= n; c++) {
          x = ((meter, col[c]) in v) ? v[meter, col[c]] : ""
          fmt = (c == 7) ? " %14.0f" : (c == 6 ? " %6.3f" : (c == 5 ? " %9.1f" : (c == 4 ? " %7.2f" : " %8.2f")))
          if (x == "") printf (c == 7 ? " %14s" : " %8s"), "-"; else printf fmt, x
        }
        printf "\n"
      }
      s = "demo-self"
      printf "~self: requests %s, failed %s, values %s, missing %s, mqtt_connected %s\n",
        v[s, "total_requests-http"], v[s, "total_requests-http_failed"],
        v[s, "total_values-dispatched"], v[s, "total_values-missing"], v[s, "gauge-mqtt_connected"]
    }' $(find "$CD_CSV/$CD_HOST" -type f 2>/dev/null) /dev/null | sort | sed 's/^~/\n/'
}

while collectd_running; do
  out=$(table)
  clear 2>/dev/null || true
  echo "collectd-hes demo: 36 meters from the HES simulator, every ${interval}s (Ctrl-C stops)"
  echo "meter $overvoltage runs at about 262 V; meter $silent never answers (counted missing)"
  echo
  printf '%-14s %8s %8s %8s %7s %9s %6s %14s\n' meter "U_A V" "U_B V" "U_C V" "I_A A" "P W" pf \
    "import Wh"
  echo "$out"
  echo "collectd's log ($CD_LOG):"
  tail -n 3 "$CD_LOG"
  sleep "$interval" &
  wait $! || true
done
fail "collectd stopped on its own"
