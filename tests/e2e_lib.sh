# tests/e2e_lib.sh: a real collectd running the built plugin, for the end-to-end tests.
# Sourced after tests/lib.sh (bash).
#
#   collectd_setup            a PluginDir with hes.so and the stock plugins the tests use
#   collectd_conf <extra>     writes $CD_CONF: logfile, csv, the plugin; <extra> is appended
#   collectd_start / collectd_stop (checks the exit status and the log)
#   csv_file <meter> <type-instance>   one value's CSV rows, every day's file joined

COLLECTD_BIN=${COLLECTD_BIN:-/usr/sbin/collectd}
CD_DIR=$TEST_TMP/collectd
CD_CONF=$CD_DIR/collectd.conf
CD_LOG=$CD_DIR/collectd.log
CD_CSV=$CD_DIR/csv
CD_HOST=e2ehost
CD_PID=
FAIL_LOGS="${FAIL_LOGS:-} $CD_LOG"
STOCK_PLUGINS=${STOCK_PLUGINS:-/usr/lib/collectd}

# collectd_instance <name>: the paths of a second (third...) collectd of the same test.
collectd_instance() {
  CD_DIR=$TEST_TMP/collectd-$1
  CD_CONF=$CD_DIR/collectd.conf
  CD_LOG=$CD_DIR/collectd.log
  CD_CSV=$CD_DIR/csv
  CD_PID=
  FAIL_LOGS="$FAIL_LOGS $CD_LOG"
}

collectd_setup() {
  [ -x "$COLLECTD_BIN" ] || cannot_run "collectd not found ($COLLECTD_BIN): install collectd-core"
  local so=$top_builddir/.libs/hes.so p
  [ -f "$so" ] || fail "$so not built"
  mkdir -p "$CD_DIR/plugins" "$CD_DIR/var" "$CD_CSV"
  # PluginDir rejects symlinks: copy.
  cp "$so" "$CD_DIR/plugins/hes.so"
  for p in logfile csv threshold unixsock rrdtool; do
    [ -f "$STOCK_PLUGINS/$p.so" ] && cp "$STOCK_PLUGINS/$p.so" "$CD_DIR/plugins/"
  done
  return 0
}

# collectd_conf <plugin hes body> [<more config>]: the whole config file.
collectd_conf() {
  cat >"$CD_CONF" <<CONF
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
LoadPlugin csv
<Plugin csv>
  DataDir "$CD_CSV"
</Plugin>
LoadPlugin hes
<Plugin hes>
$1
</Plugin>
${2:-}
CONF
}

# The <Server> block most tests use: the simulator and the broker of lib.sh.
server_block() {
  local name=$1
  shift
  cat <<BLOCK
  <Server "$name">
    URL "$SIM_URL"
    TenantCode "$SIM_TENANT"
    Username "$SIM_USER"
    Password "$SIM_PASSWORD"
    SecretKey "$SIM_SECRET"
    Timeout 900
    <MQTT>
      Host "127.0.0.1"
      Port $MQTT_PORT
      ClientId "e2e-$name-$$"
    </MQTT>
$(printf '    %s\n' "$@")
  </Server>
BLOCK
}

SIM_TENANT=1000000067
SIM_USER=kuangda
SIM_PASSWORD=kd123456
SIM_SECRET=55be0dc7ac554610165183db43991c50
sim_credentials() {
  printf -- '--tenant %s --username %s --password %s --secret-key %s' \
    "$SIM_TENANT" "$SIM_USER" "$SIM_PASSWORD" "$SIM_SECRET"
}

collectd_start() {
  : >"$CD_LOG"
  LIB_OUT=$CD_DIR/collectd.out run_bg "$COLLECTD_BIN" -f -C "$CD_CONF"
  CD_PID=$BG_PID
  FAIL_LOGS="$FAIL_LOGS $CD_DIR/collectd.out"
  wait_for 10 grep -q 'Initialization complete' "$CD_LOG" ||
    fail "collectd did not start"
}

# Stops collectd with SIGINT and checks it exits 0 ("Exiting normally").
collectd_stop() {
  [ -n "$CD_PID" ] || return 0
  kill -INT "$CD_PID" 2>/dev/null || fail "collectd is not running any more"
  local rc=0
  wait "$CD_PID" || rc=$?
  _lib_forget "$CD_PID"
  CD_PID=
  [ "$rc" = 0 ] || fail "collectd exited with status $rc"
}

collectd_running() {
  [ -n "$CD_PID" ] && _lib_running "$CD_PID"
}

# csv_file <plugin_instance> <type-type_instance>: one value's CSV rows as one file. collectd's
# csv plugin starts a file a day (named by the local date when it writes), so a test that
# runs across midnight has two: they are joined, in date order, into a file under TEST_TMP
# (each part keeps its header line). Nothing when there is no file yet.
csv_file() {
  local parts out
  parts=$(ls -1 "$CD_CSV/$CD_HOST/hes-$1/$2"-* 2>/dev/null) || return 0
  [ -n "$parts" ] || return 0
  out=$TEST_TMP/csv-joined/hes-$1/$2
  mkdir -p "${out%/*}"
  # shellcheck disable=SC2086 # one path a line, no spaces in them
  cat $parts >"$out.$$" && mv "$out.$$" "$out"
  echo "$out"
}

# csv_rows <plugin_instance> <type-type_instance>: data rows (0 without a file).
csv_rows() {
  local f
  f=$(csv_file "$1" "$2")
  if [ -n "$f" ]; then
    grep -c '^[0-9]' "$f" || true
  else
    echo 0
  fi
}

# csv_last <plugin_instance> <type-type_instance>: the last value of a self-metric.
csv_last() {
  local f
  f=$(csv_file "$1" "$2")
  [ -n "$f" ] && tail -n 1 "$f" | cut -d, -f2
}

# Fails when the collectd log has a line at ERROR level (plugin config errors aside).
collectd_log_clean() {
  if grep -E '\[error\]' "$CD_LOG" >/dev/null; then
    grep -E '\[error\]' "$CD_LOG" | head -n 10 >&2
    fail "collectd logged errors"
  fi
}
