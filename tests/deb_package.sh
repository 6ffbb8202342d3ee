#!/bin/bash
# The Debian package, built and used the way a Debian 12 administrator would: builds
# collectd-hes from a copy of the source tree with dpkg-buildpackage, lints it (no E: or W:),
# installs it next to Debian's collectd package, checks that the unfilled snippet leaves
# collectd's stock configuration working, fills the snippet in for the simulator and a
# local mosquitto, runs the stock /usr/sbin/collectd on (a copy of) the stock
# /etc/collectd/collectd.conf and sees values arrive, then purges the package and checks
# that nothing of it is left.
#
# Needs root (it installs packages) and dpkg-buildpackage; fails otherwise (cannot_run). It changes
# the machine: it installs the build dependencies, lintian and Debian's collectd package,
# and leaves them installed. collectd-hes itself is purged again, also on failure.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
. "$top_srcdir/tests/e2e_lib.sh"
. "$top_srcdir/tests/deb_lib.sh"

# debian/rules exports this: make check inside the package build must not build it again.
[ -z "${HES_DEB_BUILD:-}" ] || cannot_run "inside a package build"
[ "$(id -u)" = 0 ] || cannot_run "not root: installing packages needs root"
require_cmd dpkg-buildpackage apt-get dpkg-query
start_mosquitto "$TEST_TMP" # before the long part: skips early when there is no mosquitto

export DEBIAN_FRONTEND=noninteractive
PKG=collectd-hes
SNIPPET=/etc/collectd/collectd.conf.d/hes.conf
STOCK_CONF=/etc/collectd/collectd.conf
WORK=$TEST_TMP/pkg
SRC=$WORK/src
# apt-get reads ./x.deb as the user _apt: let it into the (0700) test directory.
chmod 0755 "$TEST_TMP"
mkdir -p "$SRC"

# No grep -q at the end of a pipeline: under pipefail, the writer's SIGPIPE fails it.
pkg_status() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true
}

installed() {
  [ "$(pkg_status "$1")" = "install ok installed" ]
}

# Whatever happens, a failed run must not leave a filled-in snippet that loads the plugin
# (collectd would not start without it any more, or would read meters).
_deb_cleanup() {
  if grep -q 'installed\|config-files' <<<"$(pkg_status "$PKG")"; then
    apt_get purge -y -q "$PKG" >/dev/null 2>&1 || dpkg --purge "$PKG" >/dev/null 2>&1 || true
  fi
}
_deb_exit() {
  local rc=$?
  _deb_cleanup
  # _lib_cleanup reads the status from $?; under set -e, (exit 1) would end the trap here
  # and leave the broker and the simulator running.
  set +e
  (exit "$rc")
  _lib_cleanup
}
trap _deb_exit EXIT

apt_install() {
  if ! apt_get install -y -q --no-install-recommends "$@" >"$WORK/apt.log" 2>&1; then
    apt_get update -q >>"$WORK/apt.log" 2>&1 || true
    apt_get install -y -q --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1 ||
      FAIL_LOGS="$WORK/apt.log" fail "apt-get install $*"
  fi
}

# --- 1.-3. a copy of the source tree, its build dependencies, the build; lintian ---------
command -v lintian >/dev/null || apt_install lintian fakeroot
deb_build "$WORK"
version=$DEB_VERSION deb=$DEB_FILE changes=$DEB_CHANGES
# A native package: debian/changelog carries the version of configure.ac.
ac_version=$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' "$SRC/configure.ac")
[ "$version" = "$ac_version" ] ||
  fail "debian/changelog says $version, configure.ac $ac_version: add a changelog entry (dch -v)"
ok "dpkg-buildpackage -us -uc -b built $(basename "$deb")"

# The built package's contents and fields, before anything is installed.
contents=$(dpkg-deb -c "$deb")
for f in ./usr/lib/collectd/hes.so ./usr/share/collectd-hes/hes-types.db \
  ./etc/collectd/collectd.conf.d/hes.conf ./usr/share/man/man5/collectd-hes.5.gz \
  ./usr/share/doc/$PKG/copyright ./usr/share/doc/$PKG/changelog.gz \
  ./lib/systemd/system/collectd.service.d/collectd-hes.conf; do
  grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done
grep -q '\.la$' <<<"$contents" && fail "a libtool .la file is in the package"
grep -q '^-rw-r----- root/root .* ./etc/collectd/collectd.conf.d/hes.conf$' <<<"$contents" ||
  fail "the snippet is not 0640 root:root: $(grep hes.conf <<<"$contents")"
[ "$(dpkg-deb -f "$deb" Package)" = "$PKG" ] || fail "wrong Package field"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles) || fail "no conffiles"
grep -qx "$SNIPPET" <<<"$conffiles" || fail "$SNIPPET is not a conffile: $conffiles"
# The collectd-core range comes from the collectd-dev the package was built against.
cd_ver=$(dpkg-query -W -f='${Version}' collectd-dev)
series=$(sed -nE 's/^([0-9]+:)?([0-9]+)\.([0-9]+).*/\1\2.\3/p' <<<"$cd_ver")
next=$(sed -nE 's/^([0-9]+:)?([0-9]+)\.([0-9]+).*/\1|\2|\3/p' <<<"$cd_ver" |
  awk -F'|' '{ print $1 $2 "." $3 + 1 }')
depends=$(dpkg-deb -f "$deb" Depends)
grep -qF "collectd-core (>= $series), collectd-core (<< $next~)" <<<"$depends" ||
  fail "Depends does not pin collectd-core to $series: $depends"
for lib in libcurl4 libjson-c5 libmosquitto1; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib (shlibs): $depends"
done
# The operator's tool, where the build has it.
if grep -q '^bin_PROGRAMS *=.*hesctl' "$SRC/Makefile.am"; then
  for f in ./usr/bin/hesctl ./usr/share/man/man1/hesctl.1.gz; do
    grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
  done
fi
ok "contents: plugin, types, 0640 conffile, man page; Depends: $depends"

# --- 4. lintian --------------------------------------------------------------------------
lintian -I -E --pedantic "$changes" >"$WORK/lintian.log" 2>&1 || true
sed 's/^/# lintian: /' "$WORK/lintian.log" | grep -v 'running with root privileges' || true
if grep -E '^(E|W):' "$WORK/lintian.log" >/dev/null; then
  fail "lintian reports errors or warnings"
fi
ok "lintian: no errors, no warnings"

# --- 5. Debian's collectd (it owns /etc/collectd/collectd.conf) --------------------------
if ! installed collectd || [ ! -f "$STOCK_CONF" ]; then
  note "installing Debian's collectd package"
  apt_install collectd
  # On a system without policy-rc.d its postinst starts the service: ours is the only
  # collectd this test wants.
  if [ -d /run/systemd/system ]; then
    systemctl stop collectd >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/collectd ] && /etc/init.d/collectd status >/dev/null 2>&1; then
    note "the collectd service was started by its installation: stopping it"
    /etc/init.d/collectd stop >/dev/null 2>&1 || true
  fi
fi
[ -f "$STOCK_CONF" ] || fail "$STOCK_CONF missing after installing collectd"
grep -q '^<Include "/etc/collectd/collectd.conf.d">' "$STOCK_CONF" ||
  fail "$STOCK_CONF does not include collectd.conf.d"

# --- 6. install ----------------------------------------------------------------------------
_deb_cleanup # a leftover of an earlier run
apt_get install -y -q "$deb" >"$WORK/install.log" 2>&1 ||
  FAIL_LOGS="$WORK/install.log" fail "apt-get install $deb"
installed "$PKG" || fail "$PKG not installed"
[ "$(stat -c '%a %U %G' "$SNIPPET")" = "640 root root" ] ||
  fail "installed snippet is $(stat -c '%a %U %G' "$SNIPPET"), not 640 root root"
[ -f /usr/lib/collectd/hes.so ] || fail "no /usr/lib/collectd/hes.so"
# collectd's service gets one malloc arena (conf/systemd/collectd-hes.conf says why).
DROPIN=/lib/systemd/system/collectd.service.d/collectd-hes.conf
grep -qx 'Environment=MALLOC_ARENA_MAX=1' "$DROPIN" 2>/dev/null ||
  fail "no $DROPIN setting MALLOC_ARENA_MAX=1"
grep -q "^ $SNIPPET " <<<"$(dpkg-query -W -f='${Conffiles}\n' "$PKG")" || fail "no conffile registered"
dpkg -L "$PKG" >"$WORK/files.list"
if [ -e /usr/bin/hesctl ]; then
  /usr/bin/hesctl --version >"$WORK/hesctl.out" 2>&1 || fail "hesctl --version: $(cat "$WORK/hesctl.out")"
fi
ok "installed with apt-get next to collectd $(dpkg-query -W -f='${Version}' collectd)"

# --- 7. the stock config, with a logfile, Interval 1 and the csv writer in $TEST_TMP ------
# Everything else is Debian's file as shipped, including its Include of collectd.conf.d.
run=$TEST_TMP/run
conf=$run/collectd.conf
log=$run/collectd.log
csv=$run/csv
mkdir -p "$run/var" "$csv"
FAIL_LOGS="$log $run/collectd.out"
{
  cat <<EOF
# $TEST_NAME: test settings first, then Debian's $STOCK_CONF unchanged but its paths.
Hostname "debtest"
BaseDir "$run/var"
PIDFile "$run/collectd.pid"
Interval 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$log"
  Timestamp true
  PrintSeverity true
</Plugin>
LoadPlugin csv
<Plugin csv>
  DataDir "$csv"
</Plugin>
EOF
  # The stock rrdtool and friends write under /var/lib/collectd: keep the machine clean.
  sed -e "s|/var/lib/collectd|$run/var|g" "$STOCK_CONF"
} >"$conf"
# A stock plugin whose libraries are missing cannot load: collectd's package only Recommends
# them (libmnl0 for processes, ...), and this test installs no Recommends. That has nothing
# to do with collectd-hes: such LoadPlugin lines are commented out in this copy, saying why.
# Likewise df on a system without /etc/mtab (a chroot made by debootstrap has none): its
# every read fails, and collectd -T fails with it.
while read -r p; do
  so=/usr/lib/collectd/$p.so
  [ -f "$so" ] || fail "the stock config loads $p, but there is no $so"
  missing=$(ldd "$so" 2>/dev/null | awk '/not found/ { printf "%s%s", sep, $1; sep = " " }')
  why=
  if [ -n "$missing" ]; then
    why="$p.so lacks $missing (collectd only Recommends it)"
  elif [ "$p" = df ] && [ ! -e /etc/mtab ]; then
    why="df reads the mounts from /etc/mtab, which this system lacks"
  fi
  [ -n "$why" ] || continue
  note "stock plugin $p not loaded in this test: $why"
  sed -i "s|^LoadPlugin $p\$|# $TEST_NAME: $why\n#LoadPlugin $p|" "$conf"
done < <(sed -n 's/^LoadPlugin \([a-z_0-9]*\)$/\1/p' "$STOCK_CONF")

# Installing must not break collectd: the unfilled snippet only earns one notice.
: >"$log"
timeout 60 /usr/sbin/collectd -T -C "$conf" >"$run/collectd-T.out" 2>&1 ||
  FAIL_LOGS="$log $run/collectd-T.out" fail "collectd -T fails with the unfilled snippet"
grep -q "configuration for the \`hes' plugin, but the plugin isn't loaded" "$log" ||
  fail "the unfilled snippet was not read (no notice about the unloaded hes plugin)"
grep -q 'hes plugin' "$log" && fail "the unfilled snippet loaded the plugin"
ok "the unfilled snippet is inert: collectd -T on the stock config exits 0"

# --- 8. fill the snippet in, run the stock collectd, see values -------------------------
# The simulator freezes daily billing at midnight of its TZ, the plugin's TimeZone (tzdata).
# shellcheck disable=SC2046
TZ=Asia/Shanghai start_sim $(sim_credentials)
wait_for 10 sim_connected || fail "simulator not connected to the broker"
sed -i -e 's|^#LoadPlugin hes$|LoadPlugin hes|' \
  -e "s|^\(    URL \)\"[^\"]*\"|\1\"$SIM_URL\"|" \
  -e "s|^\(    TenantCode \)\"[^\"]*\"|\1\"$SIM_TENANT\"|" \
  -e "s|^\(    Username \)\"[^\"]*\"|\1\"$SIM_USER\"|" \
  -e "s|^\(    Password \)\"[^\"]*\"|\1\"$SIM_PASSWORD\"|" \
  -e "s|^\(    SecretKey \)\"[^\"]*\"|\1\"$SIM_SECRET\"|" \
  -e "s|^    #Timeout 10000 .*|    Timeout 1000|" \
  -e "s|^      #Port 1883 .*|      Port $MQTT_PORT|" \
  -e "s|^      #ClientId .*|      ClientId \"deb-test-$$\"|" \
  -e 's|^\(    Item "voltageA".*\)$|\1 "powerFactorTotal" "dailyBilling"|' \
  -e "s|^    #Interval 60 .*|    Interval 2|" \
  -e "s|^    #PlanTimeout 300 .*|    PlanTimeout 5\\n    BackfillPeriods 2\\n    RetryInterval 2\\n    TimeZone \"Asia/Shanghai\"|" \
  "$SNIPPET"
for want in '^LoadPlugin hes$' "URL \"$SIM_URL\"" "SecretKey \"$SIM_SECRET\"" \
  "Port $MQTT_PORT\$" '"powerFactorTotal" "dailyBilling"$' 'Interval 2$' 'PlanTimeout 5$' 'Timeout 1000$' \
  'BackfillPeriods 2$' 'RetryInterval 2$' 'TimeZone "Asia/Shanghai"$'; do
  grep -q -- "$want" "$SNIPPET" || fail "filling in the snippet: no line matching $want"
done
[ "$(stat -c '%a' "$SNIPPET")" = 640 ] || fail "editing changed the snippet's mode"

: >"$log"
# with the environment the service gets from the package's drop-in
# shellcheck disable=SC2046 # NAME=value words
LIB_OUT=$run/collectd.out run_bg env $(sed -n 's/^Environment=//p' "$DROPIN") /usr/sbin/collectd -f -C "$conf"
cd_pid=$BG_PID
wait_for 20 grep -q 'Initialization complete' "$log" || fail "collectd did not start"
have_values() {
  local m f
  for m in 202407100001 202407100002; do
    for f in voltage-A voltage-B voltage-C current-A energy_wh-import power_factor-total \
      energy_wh-daily-import; do
      ls "$csv/debtest/hes-$m/$f"-* >/dev/null 2>&1 || return 1
      # Frozen values come one period per round: 1 row, the others 2.
      [ "$(cat "$csv/debtest/hes-$m/$f"-* | grep -c '^[0-9]')" -ge "$([ "${f#*daily}" = "$f" ] && echo 2 || echo 1)" ] ||
        return 1
    done
  done
}
wait_for 30 have_values || fail "no values from the plugin in $csv"
# A voltage the simulator sends is a few volts around 230.
v=$(grep '^[0-9]' "$csv"/debtest/hes-202407100001/voltage-A-* | tail -n 1 | cut -d, -f2)
awk -v v="$v" 'BEGIN { exit !(v > 200 && v < 260) }' || fail "voltage-A is $v"
have_self() { grep -qs '^[0-9]' "$csv"/debtest/hes-hes1-self/total_values-dispatched-*; }
wait_for 10 have_self || fail "no self-metrics"
kill -INT "$cd_pid"
rc=0
wait "$cd_pid" || rc=$?
_lib_forget "$cd_pid"
[ "$rc" = 0 ] || fail "collectd exited with status $rc"
if grep -E '\[error\].*hes plugin' "$log" >/dev/null; then
  grep -E '\[error\].*hes plugin' "$log" | head -n 5 >&2
  fail "the hes plugin logged errors"
fi
# The frozen item's state went to the default StateDir, collectd's BaseDir.
[ -s "$run/var/hes-backfill-hes1-daily.state" ] || fail "no backfill state in BaseDir $run/var"
ok "stock collectd with the filled-in snippet: 2 meters x 6 items and daily billing in CSV (voltage-A $v V)"

# --- 9. remove keeps the configuration and state, purge removes everything --------------
# State as the plugin leaves it in its default StateDir (Debian's BaseDir).
state_dir=/var/lib/collectd
mkdir -p "$state_dir"
state_files=("$state_dir/hes-backfill-debtest-daily.state" "$state_dir/hes-relay-debtest.state"
  "$state_dir/hes-backfill-debtest-daily.state.corrupt")
touch "${state_files[@]}"
apt_get remove -y -q "$PKG" >"$WORK/remove.log" 2>&1 || FAIL_LOGS="$WORK/remove.log" fail "apt-get remove"
[ "$(pkg_status "$PKG")" = "deinstall ok config-files" ] || fail "after remove: $(pkg_status "$PKG")"
[ -f "$SNIPPET" ] || fail "remove took the conffile"
[ ! -e /usr/lib/collectd/hes.so ] || fail "remove left hes.so"
for f in "${state_files[@]}"; do
  [ -e "$f" ] || fail "remove took the state file $f"
done
apt_get purge -y -q "$PKG" >"$WORK/purge.log" 2>&1 || FAIL_LOGS="$WORK/purge.log" fail "apt-get purge"
for f in "${state_files[@]}"; do
  [ ! -e "$f" ] || fail "purge left the state file $f"
done
! grep -q 'installed\|config-files' <<<"$(pkg_status "$PKG")" ||
  fail "$PKG still known to dpkg: $(pkg_status "$PKG")"
left=0
while read -r f; do
  [ -e "$f" ] || continue
  [ -d "$f" ] && [ -n "$(dpkg -S "$f" 2>/dev/null)" ] && continue # shared directory
  [ -d "$f" ] && [ "$f" != /usr/share/collectd-hes ] && [ "$f" != "/usr/share/doc/$PKG" ] && continue
  echo "left behind: $f" >&2
  left=$((left + 1))
done <"$WORK/files.list"
[ "$left" = 0 ] || fail "$left path(s) of $PKG left after purge"
[ ! -e "$SNIPPET" ] || fail "the conffile $SNIPPET survived the purge"
[ ! -e /usr/share/collectd-hes ] || fail "/usr/share/collectd-hes survived the purge"
# And the stock configuration works again without it.
: >"$log"
timeout 60 /usr/sbin/collectd -T -C "$conf" >"$run/collectd-T.out" 2>&1 ||
  FAIL_LOGS="$log $run/collectd-T.out" fail "collectd -T fails after the purge"
ok "removed (conffile and state kept), then purged: none of the $(wc -l <"$WORK/files.list") paths of dpkg -L remain, no conffile, no state"
