#!/usr/bin/env bash
# Builds the pinned OCI registry (go-containerregistry's cmd/registry, and tools/oci/referrers-registry:
# the same registry with the referrers API on) and the oras CLI once per machine
# into a cache outside the checkout: the OCI-hosted RemoteManifest tests push artifacts with oras to a
# real registry process on 127.0.0.1. Prints the binary directory on its last line. A no-op when that
# directory is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/versions.env
export GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0

cache_root="${ONEIRIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oneiric-operator}/oci-bin"
bin="${cache_root}/ggcr-${GGCR_VERSION}-oras-${ORAS_VERSION}"
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
echo "building the registry and oras into ${bin} (cold build takes about 1.5 minutes)" >&2
start=$SECONDS
(cd tools/oci && go build -trimpath -ldflags="-s -w" -o "${bin}/registry" github.com/google/go-containerregistry/cmd/registry)
(cd tools/oci && go build -trimpath -ldflags="-s -w" -o "${bin}/referrers-registry" ./referrers-registry)
(cd tools/oci && go build -trimpath \
  -ldflags="-s -w -X oras.land/oras/internal/version.Version=${ORAS_VERSION#v} -X oras.land/oras/internal/version.BuildMetadata=" \
  -o "${bin}/oras" oras.land/oras/cmd/oras)
echo "registry+oras: $((SECONDS - start)) s wall" > "${bin}/build-times.txt"
"${bin}/oras" version | grep -q "${ORAS_VERSION#v}"
touch "${bin}/.complete"
ln -sfn "${bin}" "${cache_root}/current"
echo "${bin}"
