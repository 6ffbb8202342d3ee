#!/bin/bash
# hes.so resolves collectd's symbols only when collectd dlopens it, so a helper that the
# headers declare but the daemon does not export (or a forgotten -lm) shows up only then.
# This compares the plugin's undefined symbols with what its libraries and the daemon give.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
so=$top_builddir/.libs/hes.so
[ -f "$so" ] || fail "$so not built"
[ -x "${COLLECTD_BIN:-/usr/sbin/collectd}" ] || cannot_run "no collectd binary"
require_cmd nm
provided=$TEST_TMP/provided
{
  nm -D --defined-only "${COLLECTD_BIN:-/usr/sbin/collectd}" | awk '{print $3}'
  for lib in $(ldd "$so" | awk '/=> \// {print $3}'); do
    nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//'
  done
} | sort -u >"$provided"
missing=$(nm -D --undefined-only "$so" | awk '$1 == "U" {print $2}' | sed 's/@.*//' | sort -u |
  comm -23 - "$provided")
[ -z "$missing" ] || fail "hes.so needs symbols nothing provides: $missing"
exports=$(nm -D --defined-only "$so" | awk '$2 == "T" {print $3}')
[ "$exports" = module_register ] || fail "hes.so exports more than module_register: $exports"
ok "every symbol of hes.so resolves; it exports module_register only"
