# shellcheck shell=bash
# tests/deb_lib.sh: builds the Debian package the way an administrator would, for
# tests/deb_package.sh and tests/piuparts.sh (bash, after tests/lib.sh; needs root).
#
#   deb_build <work dir>   copies the source tree to <work dir>/src, installs the build
#                          dependencies (without the test-only ones), runs dpkg-buildpackage
#                          -b with nocheck, and sets DEB_VERSION, DEB_FILE and DEB_CHANGES.

# Other tests of make check may run apt at the same time: wait for the dpkg lock.
apt_get() {
  apt-get -o DPkg::Lock::Timeout=300 "$@"
}

deb_build() {
  local work=$1 src=$1/src arch
  mkdir -p "$src"
  # What git tracks plus new files not ignored; without git, the tree but builds and .git.
  if git -C "$top_srcdir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$top_srcdir" && git ls-files -co --exclude-standard -z) |
      (cd "$top_srcdir" && tar -cf - --null --no-recursion -T -) | tar -xf - -C "$src"
  else
    tar -C "$top_srcdir" --exclude='./_build*' --exclude=./.git -cf - . | tar -xf - -C "$src"
  fi
  [ -f "$src/debian/control" ] || fail "no debian/control in the source copy"
  DEB_VERSION=$(cd "$src" && dpkg-parsechangelog -S Version)
  note "building collectd-hes $DEB_VERSION from a copy of $top_srcdir"
  # apt-get build-dep of a directory reads its debian/control.
  if ! (cd "$src" && dpkg-checkbuilddeps -P nocheck) >/dev/null 2>&1; then
    note "installing build dependencies"
    if ! apt_get build-dep -y -q -P nocheck "$src" >"$work/build-dep.log" 2>&1; then
      apt_get update -q >>"$work/build-dep.log" 2>&1 || true
      apt_get build-dep -y -q -P nocheck "$src" >>"$work/build-dep.log" 2>&1 ||
        FAIL_LOGS="$work/build-dep.log" fail "apt-get build-dep"
    fi
  fi
  # nocheck: make check runs the whole suite (minutes); the callers are about the package.
  (cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
    dpkg-buildpackage -us -uc -b -Pnocheck) >"$work/build.log" 2>&1 ||
    FAIL_LOGS="$work/build.log" fail "dpkg-buildpackage failed"
  arch=$(dpkg --print-architecture)
  DEB_FILE=$work/collectd-hes_${DEB_VERSION}_$arch.deb
  DEB_CHANGES=$work/collectd-hes_${DEB_VERSION}_$arch.changes
  { [ -f "$DEB_FILE" ] && [ -f "$DEB_CHANGES" ]; } ||
    FAIL_LOGS="$work/build.log" fail "no $DEB_FILE or $DEB_CHANGES"
}
