#!/usr/bin/env bash
# Builds the pinned Prometheus server and promtool once per machine into a cache outside the checkout
# (the chart's alert rules are checked and unit-tested with promtool). Prints the binary directory on
# its last line. A no-op when that directory is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/versions.env
export GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0

cache_root="${ONEIRIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oneiric-operator}/prometheus-bin"
bin="${cache_root}/prometheus-${PROMETHEUS_VERSION}"
if [ -f "${bin}/.complete" ]; then
  echo "${bin}"
  exit 0
fi
mkdir -p "${bin}"
exec 9>"${cache_root}/.build.lock"  # one build at a time per machine
flock 9
if [ -f "${bin}/.complete" ]; then
  echo "${bin}"
  exit 0
fi
echo "building prometheus and promtool into ${bin} (cold build takes several minutes)" >&2
start=$SECONDS
ldf="-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}"
# remove_all_sd: no cloud service discoveries (static, file, http and kubernetes stay): fewer modules to compile.
(cd tools/prometheus && go build -trimpath -tags=remove_all_sd -ldflags="${ldf}" -o "${bin}/" \
  github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool)
echo "prometheus+promtool: $((SECONDS - start)) s wall" > "${bin}/build-times.txt"
"${bin}/promtool" --version >/dev/null
touch "${bin}/.complete"
ln -sfn "${bin}" "${cache_root}/current"
echo "${bin}"
