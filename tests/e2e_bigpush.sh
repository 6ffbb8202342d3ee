#!/bin/bash
# End to end: pushes larger than the plugin's conversion chunk (src/plugin/read.c converts
# HES_READ_CHUNK = 1024 readings, then dispatches them), with values that are not numbers
# among the good ones. 2,100 meters in one batch (BatchSize 2100, one item), three of which
# send "n/a": positions 2, 1500 and 2100, so a push's 2,097 good readings span three chunks
# (1024, 1024, 49). Every good meter arrives with the simulator's value and the push's time,
# no bad one is dispatched, every bad reading is counted rejected, and a push's dispatched
# readings are counted whole.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

N=2100
GOOD=2097
meter() { printf '20240711%04d' "$1"; }
bad=("$(meter 2)" "$(meter 1500)" "$(meter 2100)")
# Around the chunk boundaries, in good-reading order: good reading 1023 is position 1025,
# 1024 is 1026, 2047 is 2050, 2048 is 2051; and around the bad ones.
probe=(1 3 4 1024 1025 1026 1027 1499 1501 2049 2050 2051 2052 2099)

collectd_setup
# shellcheck disable=SC2119 # start_mosquitto takes no $1 here
start_mosquitto
for ((i = 1; i <= N; i++)); do meter "$i" && echo; done >"$CD_DIR/meters.list"
# shellcheck disable=SC2046
start_sim $(sim_credentials) --max-devlist 0 --push-delay-ms 100 \
  --bad-value-meters "$(IFS=,; echo "${bad[*]}")"
wait_for 10 sim_connected || fail "simulator not connected to the broker"

collectd_conf "$(server_block big "MeterFile \"$CD_DIR/meters.list\"" 'Item "voltageA"' \
  "BatchSize $N" "Interval 2" "PlanTimeout 3")"
collectd_start

# self <type-instance>: the newest value of a self-metric as an integer.
self() {
  local v
  v=$(csv_last big-self "$1")
  printf '%.0f\n' "${v:-0}"
}
pushes_done() { [ "$(self total_values-dispatched)" -ge $((3 * GOOD)) ]; }
wait_for 40 pushes_done || fail "fewer than 3 pushes' values dispatched ($(self total_values-dispatched))"
collectd_stop
collectd_log_clean

# Exactly the good meters have values.
dirs=$(for d in "$CD_CSV/$CD_HOST"/hes-*; do
  d=${d##*/hes-}
  [[ $d == *-self ]] || echo "$d"
done | sort)
want=$(grep -vxF -f <(printf '%s\n' "${bad[@]}") "$CD_DIR/meters.list" | sort)
[ "$(wc -l <<<"$want")" = "$GOOD" ] || fail "test setup: $(wc -l <<<"$want") good meters, not $GOOD"
[ "$dirs" = "$want" ] ||
  fail "dispatched meters differ from the good ones: $(diff <(echo "$want") <(echo "$dirs") | head -n 5 | tr '\n' ' ')"
ok "all $GOOD good meters of a $N-reading push dispatched, none of the 3 bad ones"

# Around the chunk boundaries: each value is the simulator's for that meter at that time.
checked=0
for p in "${probe[@]}"; do
  m=$(meter "$p")
  f=$(csv_file "$m" voltage-A)
  [ -n "$f" ] || fail "no values for meter $m (position $p)"
  while IFS=, read -r epoch value; do
    ms=$(awk -v e="$epoch" 'BEGIN { printf "%.0f", e * 1000 }')
    read -r want_v _ < <("$HES_SIM_BIN" --value "$m" 5050 "$ms")
    awk -v got="$value" -v w="$want_v" 'BEGIN { d = got - w; if (d < 0) d = -d; exit !(d <= 1e-6 * w + 1e-6) }' ||
      fail "meter $m (position $p) at $epoch: CSV has $value, the simulator sent $want_v"
    checked=$((checked + 1))
  done < <(grep '^[0-9]' "$f")
done
note "$checked values checked around the chunk boundaries"
ok "values around the chunk boundaries are the simulator's, at the push's time"

# Counting: a push's dispatched readings are added at once (every row a multiple of 2,097);
# three rejected per push, within one push of slack (the two counters are read one after
# the other while a push may be in flight).
awk -F, -v g="$GOOD" '$1 ~ /^[0-9]/ && ($2 + 0) % g != 0 { exit 1 }' \
  "$(csv_file big-self total_values-dispatched)" || fail "a dispatched count that is not whole pushes"
d=$(self total_values-dispatched)
r=$(self total_values-rejected)
p=$((d / GOOD))
if [ "$r" -lt $((3 * p - 3)) ] || [ "$r" -gt $((3 * p + 3)) ]; then
  fail "rejected is $r after $p pushes of 3 bad readings each"
fi
[ "$(self total_values-missing)" = 0 ] || fail "values counted missing"
grep -q "dropped voltageA value \"n/a\" unit \"V\": not a finite number" "$CD_LOG" ||
  fail "no log line for a dropped reading"
note "dispatched $d ($p pushes), rejected $r"
ok "rejected counted per bad reading, dispatched per whole push"
