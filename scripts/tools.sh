#!/usr/bin/env bash
# Builds developer tools that no package registry here ships, into the ignored
# .tools/bin, from the Go module proxy (the only way we can get them offline).
#   scripts/tools.sh helm        # prints the path of a working helm binary
#   scripts/tools.sh k6          # prints the path of a working k6 binary
# Idempotent: a tool already built at the pinned version is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin="$root/.tools/bin"
mkdir -p "$bin"

# Pinned: a recent 3.x that builds with the local Go toolchain.
HELM_VERSION=${HELM_VERSION:-v3.21.4}
# Pinned: the 1.x the Go module proxy offers here; needs Go >= 1.25.
K6_VERSION=${K6_VERSION:-v1.8.1}

log() { echo "tools.sh: $*" >&2; }

build_helm() {
  local want="$bin/helm" stamp="$bin/.helm-version" recipe="$HELM_VERSION+k8s-ldflags"
  if [ -x "$want" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$recipe" ]; then
    echo "$want"
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build helm"; exit 1; }
  log "building helm $HELM_VERSION with $(go version | awk '{print $3}') into $bin (about 2 minutes on 2 cores the first time)..."
  local start=$SECONDS gomod clientgo major minor
  # Helm's Makefile stamps the Kubernetes version it templates for (.Capabilities
  # .KubeVersion) from its client-go; a bare `go install` would say v1.20.
  gomod=$(cd /tmp && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  clientgo=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
  major=$(( $(echo "$clientgo" | sed 's/^v\([0-9]*\)\..*/\1/') + 1 ))
  minor=$(echo "$clientgo" | sed 's/^v[0-9]*\.\([0-9]*\)\..*/\1/')
  [ -n "$clientgo" ] && [ -n "$minor" ] || { log "cannot find client-go in $gomod"; exit 1; }
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$bin" GOFLAGS="${GOFLAGS:-} -trimpath" go install -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  echo "$recipe" > "$stamp"
  log "helm $HELM_VERSION (Kubernetes $major.$minor) built in $((SECONDS - start))s"
  echo "$want"
}

build_k6() {
  local want="$bin/k6" stamp="$bin/.k6-version"
  if [ -x "$want" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$K6_VERSION" ]; then
    echo "$want"
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build k6"; exit 1; }
  log "building k6 $K6_VERSION with $(go version | awk '{print $3}') into $bin (several minutes on 2 cores the first time)..."
  local start=$SECONDS
  GOBIN="$bin" GOFLAGS="${GOFLAGS:-} -trimpath" go install -ldflags "-s -w" "go.k6.io/k6@$K6_VERSION" >&2
  echo "$K6_VERSION" > "$stamp"
  log "k6 $K6_VERSION built in $((SECONDS - start))s"
  echo "$want"
}

case "${1:-}" in
  helm) build_helm ;;
  k6) build_k6 ;;
  *) echo "usage: $0 helm|k6" >&2; exit 2 ;;
esac
