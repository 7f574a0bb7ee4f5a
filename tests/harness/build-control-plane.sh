#!/usr/bin/env bash
# Builds (once) and caches the real Kubernetes control plane the integration
# tests run against: etcd, kube-apiserver and kube-controller-manager.
#
# Everything comes from Debian's archive (bookworm), so it works on a machine
# without internet access beyond the package mirrors:
#   - etcd from the `etcd-server` package (3.4),
#   - kube-apiserver and kube-controller-manager built from Debian's source
#     package `kubernetes` (1.20.2 with vendor/) using Debian's Go toolchain.
#
# The binaries land in $CONVEYOR_CONTROL_PLANE_DIR (default
# ~/.cache/conveyor-etl-operator/control-plane/bin), outside the checkout, so a
# second run returns in well under a second. Users who already have envtest
# binaries can skip this and set KUBEBUILDER_ASSETS instead.
set -euo pipefail

cache_root="${CONVEYOR_CONTROL_PLANE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/control-plane}"
bin_dir="$cache_root/bin"
k8s_version="1.20.5+really1.20.2-1.1+deb12u1"
stamp="$bin_dir/.built-from-$k8s_version"

if [[ -f "$stamp" && -x "$bin_dir/etcd" && -x "$bin_dir/kube-apiserver" && -x "$bin_dir/kube-controller-manager" ]]; then
  echo "control plane cached in $bin_dir"
  exit 0
fi

log() { echo "[control-plane] $*" >&2; }

if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null; then
  # Source packages come from the same archives the machine already installs
  # binary packages from: copy its Debian entries with `deb` turned into `deb-src`.
  log "adding deb-src entries derived from the machine's apt sources"
  derived=/etc/apt/sources.list.d/conveyor-deb-src
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    for file in /etc/apt/sources.list.d/*.sources; do
      grep -qs '^Signed-By:.*debian-archive-keyring' "$file" || continue
      sed -e 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' "$file"
      echo
    done > "$derived.sources"
  fi
  if [[ -f /etc/apt/sources.list ]]; then
    grep -E '^deb[[:space:]]' /etc/apt/sources.list | sed -e 's/^deb /deb-src /' > "$derived.list" || true
  fi
  if ! grep -qs 'deb-src' "$derived.sources" "$derived.list"; then
    echo "no Debian apt source found to derive a deb-src entry from" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
log "installing build dependencies"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  golang-go rsync dpkg-dev etcd-server golang-github-modern-go-reflect2-dev >/dev/null

work="$cache_root/work"
rm -rf "$work"
mkdir -p "$work" "$bin_dir"
cd "$work"

log "downloading Debian source package kubernetes=$k8s_version"
apt-get source --download-only "kubernetes=$k8s_version" >/dev/null
dpkg-source --no-check -x kubernetes_*.dsc src >/dev/null
tree="$work/src"

log "replacing vendored modern-go/reflect2 v1.0.1 with Debian's v1.0.2 (Go >= 1.18 map iteration fix)"
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
rm -rf "$tree/vendor/github.com/modern-go/reflect2"
mkdir -p "$tree/vendor/github.com/modern-go/reflect2"
cp -r "$reflect2_src"/. "$tree/vendor/github.com/modern-go/reflect2/"
find "$tree/vendor/github.com/modern-go/reflect2" -name '*_test.go' -delete
sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' "$tree/go.mod" "$tree/vendor/modules.txt"
sed -i '/^github.com\/modern-go\/reflect2 v1.0.1/d' "$tree/go.sum" || true

log "building kube-apiserver and kube-controller-manager (a few minutes)"
gopath="$work/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -s "$tree" "$gopath/src/k8s.io/kubernetes"
(
  cd "$gopath/src/k8s.io/kubernetes"
  export GOPATH="$gopath" GOCACHE="$work/gocache" CGO_ENABLED=0 GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off
  export KUBE_GIT_VERSION="v1.20.2" KUBE_GIT_TREE_STATE=clean
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/build.log" 2>&1 \
    || { tail -50 "$work/build.log" >&2; exit 1; }
)
out="$tree/_output/local/bin/linux/$(go env GOARCH)"
install -m 0755 "$out/kube-apiserver" "$out/kube-controller-manager" "$bin_dir/"
install -m 0755 /usr/bin/etcd "$bin_dir/etcd"
rm -rf "$work"
touch "$stamp"
log "control plane cached in $bin_dir"
