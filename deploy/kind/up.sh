#!/usr/bin/env bash
# make kind-up: a local Kubernetes cluster running paygate.
#   1. create the kind cluster (deploy/kind/cluster.yaml) unless it exists
#   2. install cert-manager from its published manifest and wait for its webhook
#   3. build the image and load it into the cluster's nodes
#   4. helm upgrade --install the chart: GATEWAY_REPLICAS gateways sharing the
#      bundled single-instance PostgreSQL, Redis for idempotency keys; wait
#      for every pod to be ready
#   5. print how to call the gateway
# Needs: docker, kind, kubectl, internet access for cert-manager and the
# redis and postgres images. helm comes from PATH or is built by scripts/tools.sh.
# Settings: KIND_CLUSTER_NAME (paygate), PAYGATE_NAMESPACE (paygate),
# CERT_MANAGER_VERSION (v1.19.1), GATEWAY_REPLICAS (2),
# HELM_EXTRA_ARGS (e.g. "-f my-values.yaml").
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=${KIND_CLUSTER_NAME:-paygate}
ns=${PAYGATE_NAMESPACE:-paygate}
cm_version=${CERT_MANAGER_VERSION:-v1.19.1}
gateway_replicas=${GATEWAY_REPLICAS:-2}
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

step "helm install paygate into namespace $ns ($gateway_replicas gateways on PostgreSQL + Redis)"
# A release from before the shared store keeps its decisions in gateway-0's
# SQLite file; switching it to an empty PostgreSQL would forget them.
if k -n "$ns" get statefulset gateway >/dev/null 2>&1; then
  db_url=$(k -n "$ns" get statefulset gateway -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="DATABASE_URL")].value}')
  if [ -z "$db_url" ]; then
    echo "kind-up: the installed gateway keeps its store in SQLite; move to PostgreSQL as docs/OPERATIONS.md says, or start over with make kind-down" >&2
    exit 1
  fi
fi
monitoring=false
if k get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1; then monitoring=true; fi
# shellcheck disable=SC2086 # HELM_EXTRA_ARGS is a list of arguments on purpose
"$helm" --kube-context "$kctx" upgrade --install paygate deploy/helm/paygate \
  --namespace "$ns" --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=IfNotPresent \
  --set monitoring.enabled=$monitoring \
  --set gateway.replicas="$gateway_replicas" --set postgresql.bundled.enabled=true --set redis.enabled=true \
  --wait --timeout 10m ${HELM_EXTRA_ARGS:-}

step "status"
k -n "$ns" get pods,pvc,certificates -o wide
echo
"$helm" --kube-context "$kctx" -n "$ns" get notes paygate
cat <<TXT

paygate is up in kind cluster "$cluster" (kubectl context $kctx, namespace $ns).
Tear it down with: make kind-down
TXT
