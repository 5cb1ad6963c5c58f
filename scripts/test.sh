#!/usr/bin/env bash
# Runs the test suites with node's test runner. One runner invocation, so its
# closing summary counts every test. `scripts/test.sh unit|e2e` for a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

echo "==> typecheck"
npx tsc -p tsconfig.json

echo "==> lint and format (biome.jsonc)"
npx biome lint --diagnostic-level=error .
npx biome format .

echo "==> protos: buf lint, no breaking change against proto/api-baseline.binpb, generated code up to date"
scripts/check-protos.sh

unit=$(find packages services -path '*/node_modules' -prune -o -name '*.test.ts' -print | sort)
e2e=$(find test -name '*.test.ts' 2>/dev/null | sort || true)
case "$what" in
  unit) files=$unit ;;
  e2e) files=$e2e ;;
  *) files="$unit $e2e" ;;
esac
echo "==> $(echo $files | wc -w) test files"
# End-to-end suites start whole stacks of processes; on 2 cores they run one at a time.
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec $files
