#!/usr/bin/env bash
# Regenerates tools/*/go.mod and go.sum from tools/versions.env.
# Run by a developer when bumping a version; CI only builds from the committed pins.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/versions.env
export GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0
staging_minor="v0.${K8S_VERSION#v1.}"

fresh_module() {  # dir module-path
  rm -f "$1/go.mod" "$1/go.sum"
  (cd "$1" && go mod init "$2" >/dev/null 2>&1 && go mod edit -go=1.26.0)
}

# Kubernetes: replace every staging module with its published tag (v1.X.Y -> v0.X.Y).
fresh_module tools/k8s oneiric.local/tools/k8s
(
  cd tools/k8s
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  for m in $(sed -n 's#^[[:space:]]*k8s.io/\([a-z0-9-]*\) => ./staging/src/k8s.io/.*#\1#p' "$gomod"); do
    go mod edit -replace="k8s.io/${m}=k8s.io/${m}@${staging_minor}"
  done
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@${K8S_VERSION}" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@${K8S_VERSION}" \
    "k8s.io/kubernetes/cmd/kube-scheduler@${K8S_VERSION}" \
    "k8s.io/kubernetes/cmd/kubectl@${K8S_VERSION}"
  go mod tidy
)

fresh_module tools/etcd oneiric.local/tools/etcd
(cd tools/etcd && go get -tool "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" && go mod tidy)

fresh_module tools/kwok oneiric.local/tools/kwok
(cd tools/kwok && go get -tool "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" && go mod tidy)

fresh_module tools/helm oneiric.local/tools/helm
(cd tools/helm && go get -tool "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" && go mod tidy)
echo "pinned: $(ls tools/*/go.sum | tr '\n' ' ')"
