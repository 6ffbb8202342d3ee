#!/bin/bash
# Bad configurations are refused before anything runs: `collectd -T -C conf` (config, init,
# one read, exit) exits non-zero and the log names the offending key and block. A good one
# passes. (Debian 12's `collectd -t` does not run plugin config callbacks: it cannot check.)
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

collectd_setup
# Nothing listens here: the good config's one read must still succeed.
SIM_URL=http://127.0.0.1:9
MQTT_PORT=$(free_port)

# check_config <expect: ok|fail> <log pattern> <hes plugin body>
check_config() {
  local expect=$1 pattern=$2 rc=0
  collectd_conf "$3"
  : >"$CD_LOG"
  timeout 60 "$COLLECTD_BIN" -T -C "$CD_CONF" >"$CD_DIR/collectd.out" 2>&1 || rc=$?
  if [ "$expect" = ok ]; then
    [ "$rc" = 0 ] || fail "a good config was refused (exit $rc): $(grep -h error "$CD_LOG" "$CD_DIR/collectd.out" | head -n 3)"
  else
    [ "$rc" != 0 ] || fail "collectd -T accepted a config with $pattern"
    grep -F -- "$pattern" "$CD_LOG" >/dev/null ||
      fail "the log does not say: $pattern; it says: $(grep -h error "$CD_LOG" | head -n 3)"
  fi
  ok "$expect: $pattern"
}

check_config ok "a good config" "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA" 5051')"

check_config fail 'Server "cfg": option "Item": unknown item "voltageX"' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageX"')"
check_config fail 'Server "cfg": option "TenantCode" is required' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA"' | grep -v TenantCode)"
check_config fail 'Server "cfg": option "BatchSize" needs one number from 1 to 10000, got "many"' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA"' 'BatchSize "many"')"
check_config fail 'Server "cfg": option "BatchSize" needs one number from 1 to 10000, got 0' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA"' 'BatchSize 0')"
check_config fail 'Server "cfg": option "MeterFile": cannot read "/nonexistent/meters.list"' \
  "$(server_block cfg 'MeterFile "/nonexistent/meters.list"' 'Item "voltageA"')"
printf '202407100001\n2024 0710 0002\n' >"$TEST_TMP/bad.list"
check_config fail "option \"MeterFile\": \"$TEST_TMP/bad.list\" line 2" \
  "$(server_block cfg "MeterFile \"$TEST_TMP/bad.list\"" 'Item "voltageA"')"
check_config fail 'option "Meter": "2024,0710" is not a valid meter number' \
  "$(server_block cfg 'Meter "2024,0710"' 'Item "voltageA"')"
check_config fail 'option "Meter": meter "202407100001" is listed twice' \
  "$(server_block cfg 'Meter "202407100001" "202407100001"' 'Item "voltageA"')"
check_config fail 'Server "cfg": unknown option "Intervall"' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA"' 'Intervall 10')"
check_config fail '<MQTT> of Server "cfg": option "QoS" needs one number from 0 to 2, got 3' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA"' | sed 's/<MQTT>/<MQTT>\n      QoS 3/')"
check_config fail 'Server "cfg": at least one "Meter", "MeterFile" or "DCU" is required' \
  "$(server_block cfg 'Item "voltageA"')"
check_config fail 'Server "cfg": at least one "Item" is required' \
  "$(server_block cfg 'Meter "202407100001"')"
check_config fail 'option "URL" must start with http:// or https://' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA"' | sed 's|URL ".*"|URL "ftp://x"|')"
check_config fail '<Plugin hes>: at least one <Server> block is required' ""
# A malformed credential is refused without being written to the log.
check_config fail 'Server "cfg": option "SecretKey" needs exactly one string argument, got (a value, not shown)' \
  "$(server_block cfg 'Meter "202407100001"' 'Item "voltageA"' | sed "s|SecretKey \".*\"|SecretKey \"$SIM_SECRET\" \"second\"|")"
grep -F "$SIM_SECRET" "$CD_LOG" >/dev/null && fail "the secret key reached the log"
ok "a malformed SecretKey is refused and not logged"

# A type the plugin dispatches must be known at init, with the fix in the log.
collectd_conf "$(server_block cfg 'Meter "202407100001"' 'Item "powerFactorA"')"
sed -i 's|^TypesDB .*|TypesDB "/usr/share/collectd/types.db"|' "$CD_CONF"
rc=0
timeout 60 "$COLLECTD_BIN" -T -C "$CD_CONF" >"$CD_DIR/collectd.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "collectd -T accepted a config without the plugin's types"
grep -F 'the type "power_factor" is not defined' "$CD_LOG" | grep -F 'hes-types.db' >/dev/null ||
  fail "no hint to load hes-types.db: $(grep error "$CD_LOG" | head -n 3)"
ok "fail: a missing type names the TypesDB line to add"
