#!/usr/bin/env bash
# Builds tools/kstatus (sigs.k8s.io/cli-utils' kstatus, pinned in its go.mod/go.sum) once per machine
# into a cache outside the checkout, keyed by the hash of its sources. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/../tools/kstatus"
export GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false -mod=readonly" CGO_ENABLED=0
key=$(cat go.mod go.sum main.go | sha256sum | cut -c1-16)
bin="${ONEIRIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oneiric-operator}/kstatus-${key}/kstatus-check"
if [ ! -x "${bin}" ]; then
  mkdir -p "$(dirname "${bin}")"
  go build -trimpath -ldflags="-s -w" -o "${bin}.tmp" . && mv "${bin}.tmp" "${bin}"
fi
echo "${bin}"
