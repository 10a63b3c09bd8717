#!/usr/bin/env bash
# Builds the pinned control-plane binaries once per machine into a cache outside the checkout.
# Prints the binary directory on its last line. A no-op when that directory is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/versions.env
export GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0

cache_root="${ONEIRIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oneiric-operator}/cluster-bin"
stamp="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}"
bin="${cache_root}/${stamp}"
if [ -f "${bin}/.complete" ]; then
  echo "${bin}"
  exit 0
fi
mkdir -p "${bin}"
# One build at a time per machine: a second caller (a test, another checkout) waits for the first and
# then finds the directory complete, instead of compiling the same binaries into it concurrently.
exec 9>"${cache_root}/.build.lock"
flock 9
if [ -f "${bin}/.complete" ]; then
  echo "${bin}"
  exit 0
fi
timed() {  # name command...: records wall time and peak RSS of each step
  local name=$1; shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "${name}: %e s wall, %M KB peak RSS" -a -o "${bin}/build-times.txt" "$@"
  else
    local start=$SECONDS; "$@"; echo "${name}: $((SECONDS - start)) s wall" >> "${bin}/build-times.txt"
  fi
}

k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
ldf="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldf+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${k8s_minor}"
  ldf+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.gitCommit= -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

echo "building control plane into ${bin} (cold build takes about 10 minutes)" >&2
(cd tools/etcd && timed etcd go build -trimpath \
  -ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
  -o "${bin}/etcd" go.etcd.io/etcd/server/v3)
(cd tools/kwok && timed kwok go build -trimpath -ldflags="-s -w" -o "${bin}/kwok" sigs.k8s.io/kwok/cmd/kwok)
(cd tools/helm && timed helm go build -trimpath -ldflags="-s -w \
  -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor} \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}" \
  -o "${bin}/helm" helm.sh/helm/v3/cmd/helm)
(cd tools/k8s && timed kubernetes go build -trimpath -tags=notest -ldflags="${ldf}" -o "${bin}/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)

"${bin}/kube-apiserver" --version | grep -qx "Kubernetes ${K8S_VERSION}"
"${bin}/etcd" --version | grep -q "etcd Version: ${ETCD_VERSION#v}"
"${bin}/helm" version --short | grep -q "^${HELM_VERSION}"
touch "${bin}/.complete"
ln -sfn "${bin}" "${cache_root}/current"
echo "${bin}"
