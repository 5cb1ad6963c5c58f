#!/usr/bin/env bash
# The wire API keeps its promises: the protos lint clean, nothing breaks
# compatibility with the previous commit of main nor with the last released
# API (proto/api-baseline.binpb, a buf image; `make proto-baseline` replaces it
# when a release is cut), and packages/proto/src/gen is exactly what
# `buf generate` makes from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
npx buf breaking --against proto/api-baseline.binpb
# The previous commit: what the working tree (in CI: the newest commit) changes.
# A shallow clone has no parent to compare with; the baseline above still holds.
if git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
  npx buf breaking --against '.git#ref=HEAD~1,subdir=proto'
else
  echo "protos: no previous commit in this clone (shallow); checked against the baseline only"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npx buf generate -o "$out"
if ! diff -r "$out/packages/proto/src/gen" packages/proto/src/gen >"$out/diff.txt"; then
  echo "packages/proto/src/gen is not what buf generate makes from proto/ (run make generate):" >&2
  head -40 "$out/diff.txt" >&2
  exit 1
fi
echo "protos: lint clean, compatible with the baseline, generated code up to date"
