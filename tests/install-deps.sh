#!/bin/sh
# Installs what building and the demo need on Debian 12 (run as root); with --test also
# everything the whole test suite (tests/check.sh) calls: the real Prometheus and InfluxDB
# servers, Debian packaging tools, the fuzzers' runtime, and the tools the scripts use
# beyond a minbase system. A test that finds something missing fails (it never skips), so
# this list is complete: no test relies on what another package merely Recommends
# (packages go in with --no-install-recommends).
# The one list of the project's Debian packages; README, tests/demo.sh and tests/check.sh use it.
set -eu

# collectd, not only collectd-core: it owns the stock /etc/collectd/collectd.conf and brings
# librrd8 for the rrdtool plugin.
packages="build-essential autoconf automake libtool pkg-config
  collectd collectd-core collectd-dev libcurl4-openssl-dev libjson-c-dev libmosquitto-dev
  libcmocka-dev libmicrohttpd-dev
  mosquitto mosquitto-clients curl ca-certificates
  clang valgrind rrdtool socat"
# iproute2: ss (free UDP ports); python3: JSON checks; openssl: the MQTT TLS tests'
# certificates; libclang-rt-dev: libFuzzer and the sanitizer runtimes clang links (only
# Recommended by clang); libprotobuf-c1 and libmicrohttpd12: write_prometheus.so's libraries.
if [ "${1:-}" = --test ]; then
  packages="$packages clang-format libclang-rt-dev prometheus influxdb libprotobuf-c1
    libmicrohttpd12 dpkg-dev debhelper lintian fakeroot iproute2 python3 openssl"
fi

missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages:$missing (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Servers that come with a package (prometheus, influxdb, mosquitto, collectd) must not
# start: the tests run their own on free ports, and a service on a default port (1883) would
# answer in their place. policy-rc.d tells invoke-rc.d not to start anything meanwhile.
pol=/usr/sbin/policy-rc.d
made=0
if [ ! -e "$pol" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$pol" && chmod 755 "$pol" && made=1
fi
rc=0
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing || rc=$?
[ "$made" = 0 ] || rm -f "$pol"
exit "$rc"
