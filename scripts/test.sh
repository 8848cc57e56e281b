#!/usr/bin/env bash
# Every test of pvkit, as `npm test` runs it:
#   1. the Debian packages the interop tests need (scripts/host-deps.sh)
#   2. build: `tsc -b` of every package, the examples and the benchmarks
#   3. type-check of the tests themselves
#   4. vitest: unit, property, conformance, interop and example tests
#   5. the API site: `npm run docs` must build with no warning
# and ends with one line: "N passed, N failed" (vitest's tests plus the three checks).
set -u
cd "$(dirname "$0")/.."
mkdir -p .test-results
rm -f .test-results/vitest.json .test-results/summary.txt

bash scripts/host-deps.sh

checks_passed=0
checks_failed=0
check() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    checks_passed=$((checks_passed + 1))
  else
    echo "FAILED: $name"
    checks_failed=$((checks_failed + 1))
  fi
}

check "build (tsc -b)" npm run -s build
check "type-check tests" npx tsc -p tsconfig.tests.json
echo "== vitest"
vitest_status=0
npx vitest run --reporter=default --reporter=json --outputFile=.test-results/vitest.json || vitest_status=$?
check "API docs (typedoc, warnings are errors)" npx typedoc --logLevel Warn

node scripts/summary.mjs .test-results/vitest.json "$checks_passed" "$checks_failed" "$vitest_status" | tee .test-results/summary.txt
grep -q ' 0 failed' .test-results/summary.txt
