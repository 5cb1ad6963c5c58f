#!/usr/bin/env bash
# make kind-up: a local Kubernetes cluster running paygate.
#   1. create the kind cluster (deploy/kind/cluster.yaml) unless it exists
#   2. install cert-manager from its published manifest and wait for its webhook
#   3. build the image and load it into the cluster's nodes
#   4. helm upgrade --install the chart, wait for every pod to be ready
#   5. print how to call the gateway
# Needs: docker, kind, kubectl, internet access for cert-manager and the
# redis image. helm comes from PATH or is built by scripts/tools.sh.
# Settings: KIND_CLUSTER_NAME (paygate), PAYGATE_NAMESPACE (paygate),
# CERT_MANAGER_VERSION (v1.19.1), HELM_EXTRA_ARGS (e.g. "-f my-values.yaml").
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=${KIND_CLUSTER_NAME:-paygate}
ns=${PAYGATE_NAMESPACE:-paygate}
cm_version=${CERT_MANAGER_VERSION:-v1.19.1}
step() { printf '\n==> %s\n' "$*"; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is required (see docs/OPERATIONS.md)" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind-up: docker is installed but its engine is not running" >&2; exit 1; }
helm=$(command -v helm || scripts/tools.sh helm)
kctx="kind-$cluster"
k() { kubectl --context "$kctx" "$@"; }

step "cluster $cluster"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "kind cluster $cluster exists; reusing it"
else
  kind create cluster --name "$cluster" --config deploy/kind/cluster.yaml --wait 120s
fi

step "cert-manager $cm_version"
k apply -f "https://github.com/cert-manager/cert-manager/releases/download/$cm_version/cert-manager.yaml"
k -n cert-manager wait --for=condition=Available deployment --all --timeout=300s
# "Available" can come before the webhook serves; the chart's Issuers need it.
webhook_tries_max=60
for ((i = 1; i <= webhook_tries_max; i++)); do
  if k apply --dry-run=server -f - >/dev/null 2>&1 <<'YAML'
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: { name: paygate-webhook-probe, namespace: default }
spec: { selfSigned: {} }
YAML
  then break; fi
  [ "$i" -lt "$webhook_tries_max" ] || { echo "kind-up: cert-manager's webhook did not answer" >&2; exit 1; }
  sleep 2
done

step "image"
image=$(deploy/images.sh paygate | tail -n 1)
kind load docker-image "$image" --name "$cluster"

step "helm install paygate into namespace $ns"
monitoring=false
if k get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1; then monitoring=true; fi
# shellcheck disable=SC2086 # HELM_EXTRA_ARGS is a list of arguments on purpose
"$helm" --kube-context "$kctx" upgrade --install paygate deploy/helm/paygate \
  --namespace "$ns" --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=IfNotPresent \
  --set monitoring.enabled=$monitoring \
  --wait --timeout 10m ${HELM_EXTRA_ARGS:-}

step "status"
k -n "$ns" get pods,pvc,certificates -o wide
echo
"$helm" --kube-context "$kctx" -n "$ns" get notes paygate
cat <<TXT

paygate is up in kind cluster "$cluster" (kubectl context $kctx, namespace $ns).
Tear it down with: make kind-down
TXT
