#!/usr/bin/env bash
# Builds (once) and caches the binaries of one Kubernetes release from Go
# modules, for a control plane and a node of that release:
#
#   bash tests/harness/build-kubernetes.sh 1.37      # newest 1.37.x the module proxy serves
#   bash tests/harness/build-kubernetes.sh 1.34.4    # exactly that release
#
#   - kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from
#     k8s.io/kubernetes/cmd/... of the module k8s.io/kubernetes@v1.N.x, built
#     in a small module of its own that requires it and pins each of its
#     staging modules (k8s.io/api, k8s.io/apiserver, ...: v0.0.0 in its
#     go.mod) to the matching v0.N.x with a replace block;
#   - etcd (the newest 3.6.x, or $CONVEYOR_ETCD_VERSION) from a tiny main
#     calling go.etcd.io/etcd/server/v3/etcdmain in a module of its own;
#   - pause, compiled statically from the release's build/pause/linux/pause.c.
#
# Only the Go module proxy (and Debian's packages, for gcc when it is
# missing) is used: no git, no release tarballs, no images. The Go
# binaries are built with CGO_ENABLED=0, -trimpath and the version variables
# set, so `kube-apiserver --version` and the API's /version report v1.N.x.
#
# They land in $CONVEYOR_KUBERNETES_DIR (default
# ~/.cache/conveyor-etl-operator/kubernetes)/<version>/bin, beside a VERSION
# file (shell assignments: KUBERNETES_VERSION=v1.37.2, ETCD_VERSION=...,
# PAUSE_VERSION=..., GO_VERSION=...) written last. A second run returns at
# once; downloads and compiled packages stay in Go's default module and build
# caches, which builds of other releases share.
set -euo pipefail

# Nothing a `cargo run` or a cargo build script hands down reaches the build
# (Kubernetes' own Makefile once built into an inherited OUT_DIR).
for name in $(compgen -e); do
  case "$name" in
    CARGO_HOME) ;;
    CARGO_* | RUSTC_*) unset "$name" ;;
  esac
done
unset OUT_DIR TARGET HOST PROFILE OPT_LEVEL DEBUG NUM_JOBS RUSTC RUSTDOC RUSTFLAGS
# Go: the toolchain on the machine, modules resolved as needed, no
# workspace, and the host platform.
unset GOOS GOARCH GOARM GOAMD64 GOEXPERIMENT CGO_CFLAGS CGO_LDFLAGS CC
export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off GO111MODULE=on
# Static Go binaries. The release itself builds kubelet with cgo (for os/user
# and the system resolver); nothing the tests use needs that.
export CGO_ENABLED=0

usage() {
  echo "usage: $0 MAJOR.MINOR[.PATCH]   (e.g. 1.37 for the newest 1.37.x the module proxy serves)" >&2
  exit 2
}
[[ $# -eq 1 ]] || usage
requested="${1#v}"
[[ "$requested" =~ ^1\.[0-9]+(\.[0-9]+)?$ ]] || usage

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || { echo "build-kubernetes: no Go toolchain on PATH" >&2; exit 1; }

cache_root="${CONVEYOR_KUBERNETES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/kubernetes}"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet pause)

complete() {
  local dir="$1" name
  [[ -f "$dir/VERSION" ]] || return 1
  for name in "${binaries[@]}"; do
    [[ -x "$dir/bin/$name" ]] || return 1
  done
}

# Newest non-prerelease version of module $1 whose version starts with $2
# (e.g. "v1.37."), from the module proxy.
newest() {
  (cd / && go list -m -versions "$1") | tr ' ' '\n' | grep -E "^${2//./\\.}[0-9]+$" | sort -V | tail -1
}

# The full version: as given, or the newest patch the proxy serves; offline,
# the newest patch already built.
if [[ "$requested" =~ ^1\.[0-9]+\.[0-9]+$ ]]; then
  version="$requested"
elif resolved="$(newest k8s.io/kubernetes "v$requested." 2>/dev/null)" && [[ -n "$resolved" ]]; then
  version="${resolved#v}"
else
  version=""
  for dir in "$cache_root/$requested".*; do
    if [[ "${dir##*/}" =~ ^${requested//./\\.}\.[0-9]+$ ]] && complete "$dir"; then
      version="$(printf '%s\n' "$version" "${dir##*/}" | sort -V | tail -1)"
    fi
  done
  [[ -n "$version" ]] || {
    echo "build-kubernetes: no k8s.io/kubernetes v$requested.x from the module proxy (or it cannot be reached), none built before" >&2
    exit 1
  }
fi

dest="$cache_root/$version"
bin_dir="$dest/bin"
if complete "$dest"; then
  echo "kubernetes $version cached in $bin_dir"
  exit 0
fi

log() { echo "[kubernetes $version] $*" >&2; }

mkdir -p "$dest"
# One build of a release at a time; a second waits and then finds it done.
exec 9>"$dest/.lock"
if ! flock -n 9; then
  log "another build of this release is running; waiting for it"
  flock 9
fi
if complete "$dest"; then
  echo "kubernetes $version cached in $bin_dir"
  exit 0
fi

work="$dest/work"
rm -rf "$work" "$bin_dir" "$dest/VERSION"
mkdir -p "$work/kubernetes" "$work/etcd" "$work/out"
started=$SECONDS

# Runs "$@" with its output in the build log; on failure shows the log's end.
logged() {
  "$@" >>"$work/build.log" 2>&1 || {
    echo "build-kubernetes: failed: $*" >&2
    tail -40 "$work/build.log" >&2
    exit 1
  }
}

# Field $2 of `go mod download -json $1`.
download_field() {
  sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}$/\1/p" "$work/$1.json"
}

log "downloading k8s.io/kubernetes@v$version"
(cd "$work/kubernetes" && go mod download -json "k8s.io/kubernetes@v$version" >"$work/kubernetes-module.json") ||
  { cat "$work/kubernetes-module.json" >&2; exit 1; }
source_dir="$(download_field kubernetes-module Dir)"
source_mod="$(download_field kubernetes-module GoMod)"
source_info="$(download_field kubernetes-module Info)"
source_time="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$source_info" 2>/dev/null || true)"
[[ -d "$source_dir" && -f "$source_mod" ]] || { echo "build-kubernetes: no module directory for v$version" >&2; exit 1; }

# The Go this release asks for, against the one on the machine.
go_wanted="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$source_mod")"
go_have="$(go env GOVERSION)"
go_have="${go_have#go}"
if [[ "$(printf '%s\n' "$go_wanted" "${go_have%%[!0-9.]*}" | sort -V | head -1)" != "$go_wanted" ]]; then
  echo "build-kubernetes: Kubernetes $version needs Go >= $go_wanted; $(command -v go) is go$go_have" >&2
  exit 1
fi

minor="${version#1.}"
minor="${minor%%.*}"
staging_version="v0.${version#1.}"
mapfile -t staging < <(sed -n 's/^[[:space:]]*\(k8s\.io\/[^[:space:]]*\) v0\.0\.0$/\1/p' "$source_mod" | sort -u)
[[ ${#staging[@]} -gt 0 ]] || { echo "build-kubernetes: no v0.0.0 staging requirement in $source_mod" >&2; exit 1; }
log "pinning ${#staging[@]} staging modules to $staging_version"
{
  echo "module conveyor.local/build-kubernetes"
  echo
  echo "go $go_wanted"
  sed -n '/^godebug /p' "$source_mod"
  echo
  echo "require k8s.io/kubernetes v$version"
  echo
  echo "replace ("
  for module in "${staging[@]}"; do
    echo "	$module => $module $staging_version"
  done
  echo ")"
} >"$work/kubernetes/go.mod"

# As hack/lib/version.sh and hack/lib/golang.sh set them for a release build.
# No commit is known from a module (empty rather than "$Format:%H$"); the
# build date is the release's, as the proxy dates it.
build_date="${source_time:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}"
ldflags="-s -w"
for package in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $package.gitVersion=v$version -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  ldflags+=" -X $package.gitCommit= -X $package.gitTreeState=archive -X $package.buildDate=$build_date"
done
tags="selinux,notest,grpcnotrace"

log "building with go$go_have; the release's dependencies download into $(go env GOMODCACHE) as needed"
for command in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  log "building $command ..."
  (
    cd "$work/kubernetes"
    logged go build -trimpath -buildvcs=false -tags "$tags" -ldflags "all=$ldflags" \
      -o "$work/out/$command" "k8s.io/kubernetes/cmd/$command"
  )
done

etcd_version="${CONVEYOR_ETCD_VERSION:-}"
if [[ -z "$etcd_version" ]]; then
  etcd_version="$(newest go.etcd.io/etcd/server/v3 v3.6.)"
  [[ -n "$etcd_version" ]] || { echo "build-kubernetes: the module proxy serves no go.etcd.io/etcd/server/v3 v3.6.x" >&2; exit 1; }
fi
etcd_version="v${etcd_version#v}"
log "building etcd $etcd_version ..."
(
  cd "$work/etcd"
  go mod download -json "go.etcd.io/etcd/server/v3@$etcd_version" >"$work/etcd-module.json" ||
    { cat "$work/etcd-module.json" >&2; exit 1; }
  etcd_go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$(download_field etcd-module GoMod)")"
  cat >go.mod <<EOF
module conveyor.local/build-etcd

go $etcd_go

require go.etcd.io/etcd/server/v3 $etcd_version
EOF
  cat >main.go <<'EOF'
// The etcd server, as go.etcd.io/etcd/server/v3's own main starts it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  logged go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$work/out/etcd" .
)

pause_version="$(sed -n 's/^TAG ?= //p' "$source_dir/build/pause/Makefile" 2>/dev/null || true)"
pause_source="$source_dir/build/pause/linux/pause.c"
[[ -f "$pause_source" ]] || { echo "build-kubernetes: $pause_source is not in the module" >&2; exit 1; }
if ! command -v gcc >/dev/null || ! gcc -print-file-name=libc.a | grep -q /; then
  log "installing gcc and libc6-dev (pause is C)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
fi
log "compiling pause ${pause_version:-} statically ..."
logged gcc -Os -Wall -static -DVERSION="v${pause_version:-unknown}" -o "$work/out/pause" "$pause_source"
strip "$work/out/pause"

mkdir -p "$bin_dir"
for name in "${binaries[@]}"; do
  install -m 0755 "$work/out/$name" "$bin_dir/$name"
done
"$bin_dir/kube-apiserver" --version | grep -qx "Kubernetes v$version" ||
  { echo "build-kubernetes: kube-apiserver reports $("$bin_dir/kube-apiserver" --version)" >&2; exit 1; }
# The module files stay beside bin, a record of what was built.
mkdir -p "$dest/modules"
cp "$work/kubernetes/go.mod" "$work/kubernetes/go.sum" "$dest/modules/" 2>/dev/null || true
cp "$work/etcd/go.mod" "$dest/modules/etcd.go.mod"
cp "$work/etcd/go.sum" "$dest/modules/etcd.go.sum" 2>/dev/null || true
cat >"$dest/VERSION.tmp" <<EOF
KUBERNETES_VERSION=v$version
ETCD_VERSION=$etcd_version
PAUSE_VERSION=${pause_version:-unknown}
GO_VERSION=go$go_have
EOF
mv "$dest/VERSION.tmp" "$dest/VERSION"
rm -rf "$work"
log "built in $((SECONDS - started)) s: $bin_dir"
echo "kubernetes $version cached in $bin_dir"
