#!/bin/sh
# Installs what building and the demo need on Debian 12 (run as root); with --test also
# what the whole test suite needs (the real Prometheus and InfluxDB servers, Debian
# packaging tools), so that CI never skips a test for a missing package.
# The one list of the project's Debian packages; README, tests/demo.sh and tests/check.sh use it.
set -eu

packages="build-essential autoconf automake libtool pkg-config
  collectd-core collectd-dev libcurl4-openssl-dev libjson-c-dev libmosquitto-dev
  libcmocka-dev libmicrohttpd-dev
  mosquitto mosquitto-clients curl ca-certificates
  clang valgrind rrdtool socat"
if [ "${1:-}" = --test ]; then
  packages="$packages clang-format prometheus influxdb libprotobuf-c1 dpkg-dev debhelper lintian
    fakeroot"
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
# shellcheck disable=SC2086
# Servers that come with a package (prometheus, influxdb, mosquitto) need not start: the
# tests run their own on free ports.
apt-get install -y -q --no-install-recommends $missing
