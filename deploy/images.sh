#!/usr/bin/env bash
# Builds the one paygate image (every service; the chart picks the bundle).
#   deploy/images.sh [REPOSITORY]      # default repository: paygate
# Tags it <repository>:<appVersion from the chart> (what the chart deploys by
# default) and prints that reference on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=${1:-${IMAGE_REPOSITORY:-paygate}}
tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' deploy/helm/paygate/Chart.yaml)
[ -n "$tag" ] || { echo "images.sh: no appVersion in deploy/helm/paygate/Chart.yaml" >&2; exit 1; }
command -v docker >/dev/null || { echo "images.sh: docker is required" >&2; exit 1; }
echo "images.sh: building $repo:$tag (the first build compiles better-sqlite3 if no prebuilt binary matches)" >&2
start=$SECONDS
DOCKER_BUILDKIT=1 docker build --tag "$repo:$tag" --label "org.opencontainers.image.version=$tag" . >&2
echo "images.sh: built $repo:$tag in $((SECONDS - start))s" >&2
echo "$repo:$tag"
