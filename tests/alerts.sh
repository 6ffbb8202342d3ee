#!/bin/bash
# The Prometheus alerting rules of conf/examples/hes-alerts.yml: promtool accepts them, and
# their unit tests (tests/data/hes-alerts.test.yml) pass: each alert fires on a series that
# should fire it and not on a healthy one beside it. The metric names are checked against a
# real write_prometheus in tests/e2e_prometheus.sh. Fails (cannot_run) without promtool
# (Debian's prometheus package).
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

PROMTOOL=${PROMTOOL:-promtool}
command -v "$PROMTOOL" >/dev/null 2>&1 || cannot_run "promtool not found: install the Debian package prometheus"
rules=$top_srcdir/conf/examples/hes-alerts.yml
out=$("$PROMTOOL" check rules "$rules" 2>&1) || fail "promtool check rules: $out"
grep -q 'SUCCESS: 5 rules found' <<<"$out" || fail "expected 5 rules: $out"
ok "promtool check rules accepts the 5 rules"
out=$("$PROMTOOL" test rules "$top_srcdir/tests/data/hes-alerts.test.yml" 2>&1) ||
  fail "promtool test rules: $out"
ok "promtool test rules: every alert fires where it should, and only there"
