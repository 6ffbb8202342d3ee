#!/bin/bash
# One set of rules for the plugin and hesctl (interface.md 1): every tests/data/conf/*.conf
# goes through the plugin (`collectd -T -C`: config, init, one read, exit) and through
# `hesctl -c FILE check`, and both must give the verdict and the one-line message its .expect
# file holds ("OK", or the message after "hes plugin: "). @DIR@ in the files stands for the
# directory they are copied to. Nothing listens at the URL or the broker port: a good config's
# one read must still pass.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"

collectd_setup
HESCTL=$top_builddir/hesctl
[ -x "$HESCTL" ] || fail "$HESCTL not built"
DATA=$TEST_TMP/conf
cp -r "$top_srcdir/tests/data/conf" "$DATA"
mkdir -p "$DATA/state"
find "$DATA" -type f -exec sed -i "s|@DIR@|$DATA|g" {} +

header() {
  cat <<CONF
Hostname "$CD_HOST"
FQDNLookup false
BaseDir "$CD_DIR/var"
PluginDir "$CD_DIR/plugins"
TypesDB "/usr/share/collectd/types.db" "$top_srcdir/conf/hes-types.db"
Interval 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$CD_LOG"
  Timestamp true
  PrintSeverity true
</Plugin>
LoadPlugin hes
CONF
}

files=0 accepted=0
for conf in "$DATA"/*.conf; do
  name=$(basename "$conf" .conf)
  [ -f "$DATA/$name.expect" ] || fail "$name.conf has no $name.expect"
  want=$(cat "$DATA/$name.expect")
  { header; cat "$conf"; } >"$CD_CONF"

  : >"$CD_LOG"
  rc=0
  timeout 60 "$COLLECTD_BIN" -T -C "$CD_CONF" >"$CD_DIR/collectd.out" 2>&1 || rc=$?
  plugin_msg=$(sed -n 's/^.*\[error\] hes plugin: //p' "$CD_LOG" | head -n 1)
  if [ "$rc" = 0 ]; then plugin=OK; else plugin=${plugin_msg:-"(exit $rc, no hes plugin error)"}; fi

  rc=0
  "$HESCTL" -c "$CD_CONF" check >"$TEST_TMP/out" 2>"$TEST_TMP/err" </dev/null || rc=$?
  case $rc in
  0) hesctl=OK ;;
  5) hesctl=$(sed -n '1s/^hesctl: \/[^:]*\(:[0-9][0-9]*\)\{0,1\}: //p' "$TEST_TMP/err") ;;
  *) fail "$name: hesctl check exited $rc: $(cat "$TEST_TMP/err")" ;;
  esac
  [ "$rc" != 0 ] || grep -q '^OK: ' "$TEST_TMP/out" || fail "$name: hesctl check printed: $(cat "$TEST_TMP/out")"

  [ "$plugin" = "$want" ] || fail "$name: the plugin says: $plugin
  expected: $want
  log: $(grep -h error "$CD_LOG" "$CD_DIR/collectd.out" | head -n 3)"
  [ "$hesctl" = "$want" ] || fail "$name: hesctl says: $hesctl
  expected: $want"
  files=$((files + 1))
  [ "$want" != OK ] || accepted=$((accepted + 1))
  ok "$name: both $([ "$want" = OK ] && echo accept || echo "refuse: $want")"
done
[ "$files" -ge 45 ] || fail "only $files golden configs"
ok "$files configs ($accepted accepted), the same verdict and message from the plugin and hesctl"
