#!/usr/bin/env bash
# make kind-down: delete the kind cluster (and with it every volume and ledger).
set -euo pipefail
cluster=${KIND_CLUSTER_NAME:-paygate}
command -v kind >/dev/null || { echo "kind-down: kind is required" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "kind cluster $cluster does not exist; nothing to do"
fi
