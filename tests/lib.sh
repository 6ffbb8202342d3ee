# tests/lib.sh: what every shell test of collectd-hes sources (bash).
#
# It gives each test a temporary directory, a broker (start_mosquitto), the HES simulator
# (start_sim), polling (wait_for), small HTTP helpers for the simulator, and a trap that kills
# every process the test started (each runs in its own process group) and removes the
# directory unless KEEP_TMP=1. fail() prints the logs of the broker and the simulator.
# Exit codes follow automake: 0 pass, 1 fail. A test that cannot run (a missing tool,
# package or port) fails too and says why (cannot_run): a skipped test did not run. Only
# inside the Debian package build (HES_DEB_BUILD, set by debian/rules), whose build
# dependencies leave out the servers and which has no root, does cannot_run skip (77).
#
#   . "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
#
# Paths: $top_srcdir and $top_builddir come from make check; by hand they default to the
# directory above this file and the current directory.

if [ -z "${BASH_VERSION:-}" ]; then
  echo "tests/lib.sh needs bash" >&2
  exit 99
fi

: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${top_builddir:=$(pwd)}"
export top_srcdir top_builddir

HES_SIM_BIN=${HES_SIM_BIN:-$top_builddir/tests/sim/hes-sim}
TEST_NAME=$(basename "$0" .sh)
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/hes-$TEST_NAME.XXXXXX")
export TEST_TMP

# Process-group leaders this test started, and the files fail() shows.
_LIB_PGIDS=()
MOSQUITTO_PID=
MOSQUITTO_LOG=
SIM_PID=
SIM_OUT=

note() {
  echo "# $*"
}

# True while the process runs (a zombie, exited but not yet reaped, does not count).
_lib_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# Kills one process group (TERM; KILL for what is left once the leader exited, or after
# 3 s) and reaps its leader.
_lib_kill_group() {
  local pgid=$1 i
  kill -TERM -- "-$pgid" 2>/dev/null || return 0
  for i in $(seq 1 30); do
    _lib_running "$pgid" || break
    sleep 0.05
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  wait "$pgid" 2>/dev/null || true
}

_lib_forget() {
  local pgid=$1 keep=() p
  for p in "${_LIB_PGIDS[@]}"; do
    [ "$p" = "$pgid" ] || keep+=("$p")
  done
  _LIB_PGIDS=("${keep[@]}")
}

_lib_cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${_LIB_PGIDS[@]}"; do
    _lib_kill_group "$p"
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    note "kept $TEST_TMP"
  else
    rm -rf "$TEST_TMP"
  fi
  exit "$rc"
}
trap _lib_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in its own session and process group, in the background; its output goes to
# the file $LIB_OUT (default /dev/null). Sets BG_PID (= its process group id).
run_bg() {
  setsid "$@" >"${LIB_OUT:-/dev/null}" 2>&1 </dev/null &
  BG_PID=$!
  _LIB_PGIDS+=("$BG_PID")
}

# Stops a process started with run_bg.
stop_bg() {
  [ -n "${1:-}" ] || return 0
  _lib_kill_group "$1"
  _lib_forget "$1"
}

# Prints the message and the logs, then exits 1.
fail() {
  local f
  echo "FAIL: $*" >&2
  for f in "$MOSQUITTO_LOG" "$SIM_OUT" "${SIM_LOG:-}" ${FAIL_LOGS:-}; do
    if [ -z "$f" ] || [ ! -f "$f" ]; then continue; fi
    echo "---- $f (last 40 lines, cut at 500 characters)" >&2
    tail -n 40 "$f" | cut -c1-500 >&2
  done
  exit 1
}

# cannot_run <why>: the test cannot run here. Fails, saying why and what to install;
# skips (77) only inside the package build (HES_DEB_BUILD).
cannot_run() {
  if [ -n "${HES_DEB_BUILD:-}" ]; then
    echo "SKIP: $* (inside the Debian package build)"
    exit 77
  fi
  echo "FAIL: cannot run: $* (tests/install-deps.sh --test installs what the suite needs)" >&2
  exit 1
}

ok() {
  echo "ok - $*"
}

# wait_for <timeout_s> <command...>: runs the command every 0.1 s until it succeeds.
wait_for() {
  local timeout=$1 i n
  shift
  n=$((timeout * 10))
  for ((i = 0; i <= n; i++)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# True when something listens on 127.0.0.1:<port> (bash's /dev/tcp: no other tool needed).
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port in 20000-60000 that nothing listens on now. Racy by nature: callers retry when the
# bind fails. The simulator itself uses --http-port 0 instead.
free_port() {
  local port i
  for i in $(seq 1 50); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if command -v ss >/dev/null 2>&1; then
      ss -ltnH "sport = :$port" 2>/dev/null | grep -q . && continue
    fi
    port_open "$port" && continue
    echo "$port"
    return 0
  done
  echo "free_port: no free port found" >&2
  return 1
}

require_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || cannot_run "$c not found"
  done
}

# start_mosquitto [dir]: a broker on 127.0.0.1:$MQTT_PORT (chosen unless already set),
# anonymous, no persistence, logging to $MOSQUITTO_LOG. cannot_run without mosquitto.
start_mosquitto() {
  local dir=${1:-$TEST_TMP} attempt
  MOSQUITTO_BIN=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
  if [ ! -x "$MOSQUITTO_BIN" ]; then
    cannot_run "mosquitto not found (MOSQUITTO_BIN=$MOSQUITTO_BIN): install the Debian package mosquitto"
  fi
  mkdir -p "$dir"
  MOSQUITTO_DIR=$dir
  MOSQUITTO_LOG=$dir/mosquitto.log
  for attempt in 1 2 3 4 5; do
    [ -n "${MQTT_PORT:-}" ] || MQTT_PORT=$(free_port)
    _lib_start_mosquitto_on "$MQTT_PORT" && return 0
    note "mosquitto did not start on port $MQTT_PORT (attempt $attempt)"
    MQTT_PORT=
  done
  fail "cannot start mosquitto"
}

_lib_start_mosquitto_on() {
  local port=$1
  cat >"$MOSQUITTO_DIR/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest file $MOSQUITTO_LOG
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
connection_messages true
EOF
  # As root, mosquitto drops to the user "mosquitto", which cannot write into $TEST_TMP
  # (mode 0700): keep root, it is a throw-away broker on 127.0.0.1.
  if [ "$(id -u)" = 0 ]; then
    echo "user root" >>"$MOSQUITTO_DIR/mosquitto.conf"
  fi
  LIB_OUT=$MOSQUITTO_DIR/mosquitto.out run_bg "$MOSQUITTO_BIN" -c "$MOSQUITTO_DIR/mosquitto.conf"
  MOSQUITTO_PID=$BG_PID
  if wait_for 5 port_open "$port" && kill -0 "$MOSQUITTO_PID" 2>/dev/null; then
    export MQTT_PORT
    return 0
  fi
  stop_bg "$MOSQUITTO_PID"
  MOSQUITTO_PID=
  return 1
}

stop_mosquitto() {
  stop_bg "$MOSQUITTO_PID"
  MOSQUITTO_PID=
}

# Same port, so clients reconnect to it.
restart_mosquitto() {
  local attempt
  stop_mosquitto
  for attempt in 1 2 3 4 5; do
    _lib_start_mosquitto_on "$MQTT_PORT" && return 0
    sleep 0.5
  done
  fail "cannot restart mosquitto on port $MQTT_PORT"
}

# start_sim [hes-sim options...]: the simulator on a free port (the kernel picks it), talking
# to the broker of start_mosquitto. Exports SIM_PID, SIM_PORT, SIM_URL, SIM_LOG (its request
# log) and SIM_OUT (its stderr). A second call stops the first simulator.
start_sim() {
  [ -x "$HES_SIM_BIN" ] || fail "$HES_SIM_BIN not built"
  stop_sim
  SIM_SEQ=$((${SIM_SEQ:-0} + 1))
  local base=$TEST_TMP/sim$SIM_SEQ
  rm -f "$base.port"
  SIM_LOG=$base.log
  SIM_OUT=$base.out
  LIB_OUT=$SIM_OUT run_bg "$HES_SIM_BIN" --http-port 0 --port-file "$base.port" \
    --broker-host 127.0.0.1 --broker-port "${MQTT_PORT:-1883}" --log "$SIM_LOG" "$@"
  SIM_PID=$BG_PID
  wait_for 10 test -s "$base.port" || fail "hes-sim did not start"
  SIM_PORT=$(cat "$base.port")
  SIM_URL=http://127.0.0.1:$SIM_PORT
  export SIM_PID SIM_PORT SIM_URL SIM_LOG SIM_OUT
}

stop_sim() {
  stop_bg "${SIM_PID:-}"
  SIM_PID=
}

# True once the simulator reports a broker connection.
sim_connected() {
  sim_stats | grep -q '"mqtt_connected":true'
}

sim_stats() {
  curl -sS --max-time 5 "$SIM_URL/sim/stats"
}

# sim_stat <name>: one number of /sim/stats.
sim_stat() {
  sim_stats | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# sim_stat_is <name> <value>: for wait_for.
sim_stat_is() {
  [ "$(sim_stat "$1")" = "$2" ]
}

# sim_control <path?query>: POST /sim/<path>.
sim_control() {
  curl -sS --max-time 5 -X POST "$SIM_URL/sim/$1"
}

# hes_post <endpoint> <json> [curl args...]: POST /apis/openapi/<endpoint>, prints the body.
hes_post() {
  local ep=$1 body=$2
  shift 2
  curl -sS --max-time 10 -H 'Content-Type: application/json;charset=UTF-8' "$@" \
    --data-binary "$body" "$SIM_URL/apis/openapi/$ep"
}

# hes_token <tenant> <user> <password> <secret>: prints the token, or fails.
hes_token() {
  local answer
  answer=$(hes_post getToken "{\"tenantCode\":\"$1\",\"username\":\"$2\",\"password\":\"$3\",\"secretKey\":\"$4\"}")
  json_str "$answer" token
}

# json_str <json> <key>: the string member <key> (the last one if several; the simulator
# writes plain JSON, one line).
json_str() {
  printf '%s' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" | head -n 1
}

# json_num <json> <key>: the first number member <key>.
json_num() {
  printf '%s' "$1" | grep -o "\"$2\":-\{0,1\}[0-9][0-9.]*" | head -n 1 | sed 's/.*://'
}

# Counts the lines of a file matching a fixed string (0 when there is no file).
count_lines() {
  if [ -f "$1" ]; then
    grep -cF -- "$2" "$1" || true
  else
    echo 0
  fi
}

# apt_install <package...>: as root, without starting any service (policy-rc.d), or cannot_run.
apt_install() {
  if [ "$(id -u)" != 0 ] || [ -n "${HES_DEB_BUILD:-}" ] || ! command -v apt-get >/dev/null; then
    cannot_run "missing Debian packages: $* (install them, or run as root)"
  fi
  note "apt-get install $*"
  local pol=/usr/sbin/policy-rc.d made=0 rc=0
  # One installer at a time (make -j check): the temporary policy-rc.d must outlive them all.
  exec 9>"${TMPDIR:-/tmp}/collectd-hes-apt.lock"
  flock -w 300 9 || cannot_run "another apt_install holds ${TMPDIR:-/tmp}/collectd-hes-apt.lock"
  if [ ! -e "$pol" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$pol" && chmod 755 "$pol" && made=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends "$@" \
    >"$TEST_TMP/apt.log" 2>&1 ||
    { apt-get update -q >>"$TEST_TMP/apt.log" 2>&1 &&
      apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends "$@" \
        >>"$TEST_TMP/apt.log" 2>&1; } || rc=$?
  [ "$made" = 0 ] || rm -f "$pol"
  exec 9>&-
  [ "$rc" = 0 ] || { tail -n 5 "$TEST_TMP/apt.log"; cannot_run "apt-get install $* failed"; }
}
