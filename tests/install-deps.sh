#!/bin/sh
# Installs what building, testing and the demo need on Debian 12 (run as root).
# The one list of the project's Debian packages; README and .ci/run use this script.
set -eu

packages="build-essential autoconf automake libtool pkg-config
  collectd-core collectd-dev libcurl4-openssl-dev libjson-c-dev libmosquitto-dev
  libcmocka-dev libmicrohttpd-dev
  mosquitto mosquitto-clients curl ca-certificates
  clang valgrind rrdtool socat"

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
apt-get install -y -q --no-install-recommends $missing
