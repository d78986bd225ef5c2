#!/usr/bin/env bash
# Builds the control-plane binaries envtest needs (kube-apiserver, etcd and
# kube-controller-manager) from source through the Go module proxy, because the
# usual prebuilt-binary download site is not reachable everywhere we run.
#
# Usage: hack/setup-envtest.sh            prints the directory for KUBEBUILDER_ASSETS
#
# - KUBEBUILDER_ASSETS set by the user wins: it is checked and printed as is.
# - A no-op when the binaries are already in bin/k8s/<version>/.
# - Build logs go to stderr; stdout carries only the path.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${ENVTEST_BIN_DIR:-$ROOT/bin/k8s/$K8S_VERSION}
BINARIES=(kube-apiserver etcd kube-controller-manager)

log() { printf 'setup-envtest: %s\n' "$*" >&2; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
	for b in kube-apiserver etcd; do
		if [[ ! -x "$KUBEBUILDER_ASSETS/$b" ]]; then
			log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"
			exit 1
		fi
	done
	echo "$KUBEBUILDER_ASSETS"
	exit 0
fi

mkdir -p "$DEST"
build() { # build <module dir> <package> <output name>
	local dir=$1 pkg=$2 out=$3
	if [[ -x "$DEST/$out" ]]; then return 0; fi
	log "building $out from source (one time, cached in ${DEST#"$ROOT"/})..."
	local start=$SECONDS
	(cd "$ROOT/hack/envtest/$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$DEST/$out.tmp" "$pkg")
	mv "$DEST/$out.tmp" "$DEST/$out"
	log "built $out in $((SECONDS - start))s"
}

build etcd . etcd
build kube ./cmd/kube-apiserver kube-apiserver
build kube ./cmd/kube-controller-manager kube-controller-manager

for b in "${BINARIES[@]}"; do
	[[ -x "$DEST/$b" ]] || { log "missing $DEST/$b"; exit 1; }
done
echo "$DEST"
