#!/usr/bin/env bash
# The kind path (needs a Docker engine): create a cluster, build and load the image, install the chart,
# run the e2e tests against it, delete the cluster. Usage: bash e2e/run-kind.sh [pytest args...]
#   KEEP_CLUSTER=1   leave the cluster running afterwards (delete: kind delete cluster --name oneiric-e2e)
#   KIND=/path/kind  use this kind binary (default: kind on PATH, else `go install` of the pinned version)
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_VERSION=v0.32.0
CLUSTER=oneiric-e2e
IMAGE_REPO=oneiric/operator
IMAGE_TAG=e2e-$(git rev-parse --short HEAD 2>/dev/null || echo local)   # never :latest (pull policy Always)
RELEASE_NAMESPACE=oneiric-system
WORK=.cache/kind
mkdir -p "$WORK"
KUBECONFIG_FILE=$PWD/$WORK/kubeconfig

say() { printf '\n== %s\n' "$*"; }

command -v docker >/dev/null || { echo "run-kind.sh: docker is not installed" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "run-kind.sh: no Docker engine answers (docker info failed); the kind path needs one. Without Docker run: make e2e" >&2; exit 2; }

KIND=${KIND:-$(command -v kind || true)}
if [[ -z "$KIND" ]]; then
  say "installing kind $KIND_VERSION into $WORK/bin (go install)"
  GOBIN=$PWD/$WORK/bin go install "sigs.k8s.io/kind@$KIND_VERSION"
  KIND=$PWD/$WORK/bin/kind
fi

# The pinned kubectl and helm of the local control plane (built once per machine).
BIN=$(bash hack/build-cluster-bins.sh | tail -1)
KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE")
HELM=("$BIN/helm" --kubeconfig "$KUBECONFIG_FILE")

cleanup() {
  if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
    say "deleting kind cluster $CLUSTER"
    "$KIND" delete cluster --name "$CLUSTER" || true
  else
    echo "cluster kept: export KUBECONFIG=$KUBECONFIG_FILE"
  fi
}
trap cleanup EXIT

say "creating kind cluster $CLUSTER"
"$KIND" create cluster --config e2e/kind.yaml --kubeconfig "$KUBECONFIG_FILE" --wait 180s

say "building $IMAGE_REPO:$IMAGE_TAG"
docker build -t "$IMAGE_REPO:$IMAGE_TAG" .

say "building the example shop (examples/shop/Dockerfile: the runtime wheel and aiohttp)"
docker build -f examples/shop/Dockerfile -t oneiric-shop:dev .

say "loading the images into the kind nodes"
"$KIND" load docker-image "$IMAGE_REPO:$IMAGE_TAG" --name "$CLUSTER"
"$KIND" load docker-image oneiric-shop:dev --name "$CLUSTER"

say "installing the chart (cluster-wide, webhook on)"
"${HELM[@]}" install oneiric charts/oneiric-operator \
  --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=IfNotPresent \
  --set webhook.enabled=true \
  --wait --timeout 5m
"${KUBECTL[@]}" -n "$RELEASE_NAMESPACE" rollout status deployment/oneiric-oneiric-operator --timeout 120s

say "running the e2e tests against kind"
status=0
"$PWD/.venv/bin/pytest" e2e --kubeconfig "$KUBECONFIG_FILE" -p no:cacheprovider "$@" || status=$?
if [[ $status -ne 0 ]]; then
  say "operator log (last 200 lines)"
  "${KUBECTL[@]}" -n "$RELEASE_NAMESPACE" logs deployment/oneiric-oneiric-operator --tail 200 || true
fi
exit $status
