#!/bin/bash
# The Debian package under piuparts, the Debian way of testing packages: builds collectd-hes
# (tests/deb_lib.sh) and has piuparts install it into a new minimal Debian 12 chroot
# (debootstrap minbase bookworm from this machine's apt mirror), with its dependencies from
# the archive, then remove and purge it, and check that nothing of it is left and that it
# leaves no process running. Not part of make check (minutes, most of them debootstrap):
#
#   sudo bash tests/piuparts.sh [PACKAGE.deb]     build the package, or test the one given
#
# Needs root; installs piuparts (and the build dependencies) with apt-get. PIUPARTS_MIRROR
# overrides the mirror (default: the first deb.debian.org-style URI of apt's sources),
# PIUPARTS_BASETGZ names a base tarball to reuse (created on first use when it is missing).
set -euo pipefail
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"
. "$top_srcdir/tests/deb_lib.sh"

[ "$(id -u)" = 0 ] || cannot_run "not root: piuparts needs root (chroot, mounts)"
command -v piuparts >/dev/null || apt_install piuparts
command -v piuparts >/dev/null || cannot_run "piuparts not found"

if [ $# -gt 0 ]; then
  deb=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  [ -f "$deb" ] || fail "no $1"
else
  chmod 0755 "$TEST_TMP"
  deb_build "$TEST_TMP/pkg"
  deb=$DEB_FILE
fi

# The mirror apt uses here (one-line or deb822 sources; not every file exists).
apt_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | sed -n -e 's|^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*/debian\)/\{0,1\} .*|\2|p' \
    -e 's|^URIs: \(http[^ ]*/debian\)/\{0,1\}$|\1|p' | head -n 1
}
mirror=${PIUPARTS_MIRROR:-$(apt_mirror || true)}
mirror=${mirror:-http://deb.debian.org/debian}
base=${PIUPARTS_BASETGZ:-}
# Leftovers after purge fail the run (piuparts' default); no upgrade test: collectd-hes is
# not in the archive to upgrade from.
args=(--distribution bookworm --mirror "$mirror main" --no-upgrade-test
  --log-file "$TEST_TMP/piuparts.log")
if [ -n "$base" ] && [ -s "$base" ]; then
  args+=(--basetgz "$base")
elif [ -n "$base" ]; then
  args+=(--save "$base")
fi
note "piuparts ${args[*]} $(basename "$deb")"
rc=0
piuparts "${args[@]}" "$deb" >"$TEST_TMP/piuparts.out" 2>&1 || rc=$?
grep -E '^[0-9:m.]+ (FAIL|ERROR|WARN)' "$TEST_TMP/piuparts.log" | head -n 20 >&2 || true
if [ "$rc" != 0 ] || ! grep -q 'PASS: All tests.' "$TEST_TMP/piuparts.log"; then
  tail -n 60 "$TEST_TMP/piuparts.log" >&2
  fail "piuparts failed (exit $rc)"
fi
ok "piuparts (bookworm, $mirror): installed, removed and purged $(basename "$deb") with nothing left"
