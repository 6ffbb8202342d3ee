#!/bin/bash
# Every C file of the tree is laid out by the repository's .clang-format.
set -euo pipefail
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
require_cmd clang-format
cd "$top_srcdir"
bad=$(find src tests -name '*.[ch]' -print | sort | while read -r f; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || echo "$f"
done)
[ -z "$bad" ] || fail "not formatted by .clang-format (run clang-format -i): $bad"
ok "every .c and .h is formatted by .clang-format"
