#!/usr/bin/env bash
# Puts the control-plane binaries envtest needs (kube-apiserver, etcd and
# kube-controller-manager) into bin/k8s/<version>/. kube-apiserver and etcd come
# from controller-runtime's setup-envtest download when it is reachable (seconds);
# otherwise, and always for kube-controller-manager (not in envtest's releases),
# they are built from source through the Go module proxy (minutes, once).
#
# Usage: hack/setup-envtest.sh            prints the directory for KUBEBUILDER_ASSETS
#
# - KUBEBUILDER_ASSETS set by the user wins: it is checked and printed as is.
# - A no-op when the binaries are already in bin/k8s/<version>/.
# - ENVTEST_DOWNLOAD=false skips the download; ENVTEST_DOWNLOAD_TIMEOUT bounds it.
# - Download and build logs go to stderr; stdout carries only the path.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${ENVTEST_BIN_DIR:-$ROOT/bin/k8s/$K8S_VERSION}
BINARIES=(kube-apiserver etcd kube-controller-manager)
# tools/setup-envtest is its own module; v0.25.1 matches our controller-runtime minor.
SETUP_ENVTEST_VERSION=${SETUP_ENVTEST_VERSION:-v0.25.1}
ENVTEST_DOWNLOAD=${ENVTEST_DOWNLOAD:-true}
# Short: where the download site is unreachable the build below must start soon.
ENVTEST_DOWNLOAD_TIMEOUT=${ENVTEST_DOWNLOAD_TIMEOUT:-90}

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

# download fetches kube-apiserver and etcd with setup-envtest into DEST. It
# fails (and the caller builds from source) when setup-envtest cannot be
# installed, the release index or tarball cannot be fetched in time, or the
# release lacks a binary. A subshell, so its EXIT trap cleans up on any return.
download() (
	local tool=$ROOT/bin/setup-envtest-$SETUP_ENVTEST_VERSION
	if [[ ! -x "$tool" ]]; then
		log "installing setup-envtest $SETUP_ENVTEST_VERSION..."
		local gobin=$ROOT/bin/.tmp-setup-envtest
		timeout "$ENVTEST_DOWNLOAD_TIMEOUT" env GOBIN="$gobin" GOFLAGS=-buildvcs=false \
			go install "sigs.k8s.io/controller-runtime/tools/setup-envtest@$SETUP_ENVTEST_VERSION" >&2 || return 1
		mv "$gobin/setup-envtest" "$tool" && rm -rf "$gobin"
	fi
	local store path
	store=$(mktemp -d "$DEST/.download.XXXXXX")
	# Only the two binaries are kept, in DEST; setup-envtest's store goes.
	trap 'rm -rf "$store"' EXIT
	log "downloading kube-apiserver and etcd $K8S_VERSION with setup-envtest (timeout ${ENVTEST_DOWNLOAD_TIMEOUT}s)..."
	path=$(timeout "$ENVTEST_DOWNLOAD_TIMEOUT" "$tool" use "$K8S_VERSION" --bin-dir "$store" -p path) || return 1
	for b in kube-apiserver etcd; do
		[[ -x "$path/$b" ]] || { log "setup-envtest's $K8S_VERSION has no $b"; return 1; }
	done
	for b in kube-apiserver etcd; do
		cp "$path/$b" "$DEST/$b.tmp" && mv "$DEST/$b.tmp" "$DEST/$b"
	done
	log "downloaded kube-apiserver and etcd into ${DEST#"$ROOT"/}"
)

if [[ ( ! -x "$DEST/kube-apiserver" || ! -x "$DEST/etcd" ) && "$ENVTEST_DOWNLOAD" == true ]]; then
	download || log "download failed; building from source instead"
fi

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
