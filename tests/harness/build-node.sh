#!/usr/bin/env bash
# Builds (once) and caches what a real node beside the test control plane
# needs, and installs the Debian packages it runs on when they are missing:
#   - kubelet and kube-scheduler, built from the same Debian source package
#     (`kubernetes` 1.20.2 with vendor/) as tests/harness/build-control-plane.sh,
#   - `pause`, compiled statically from build/pause/linux/pause.c of that tree,
#     and the pause image (a docker-archive tarball) the sandbox runs,
#   - containerd, runc, the CNI plugins, dnsmasq (cluster DNS), busybox-static
#     (the shell of the router image), iproute2 and iptables from Debian.
#
# The binaries land in $CONVEYOR_NODE_DIR (default
# ~/.cache/conveyor-etl-operator/node/bin), outside the checkout, so a second
# run returns in well under a second. Nothing is started here: the node
# launcher (src/demo/node.rs) starts and stops it.
set -euo pipefail

cache_root="${CONVEYOR_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/node}"
bin_dir="$cache_root/bin"
image_dir="$cache_root/images"
k8s_version="1.20.5+really1.20.2-1.1+deb12u1"
stamp="$bin_dir/.built-from-$k8s_version"
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "[node] $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
packages=(containerd runc containernetworking-plugins dnsmasq-base busybox-static iproute2 iptables)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [[ -f "$stamp" && -x "$bin_dir/kubelet" && -x "$bin_dir/kube-scheduler" && -x "$bin_dir/pause" \
      && -f "$image_dir/pause.tar" && ${#missing[@]} -eq 0 ]]; then
  echo "node cached in $bin_dir"
  exit 0
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  # No init system starts containerd's service here; the launcher runs it.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -f "$stamp" && -x "$bin_dir/kubelet" && -x "$bin_dir/kube-scheduler" && -x "$bin_dir/pause" \
      && -f "$image_dir/pause.tar" ]]; then
  echo "node cached in $bin_dir"
  exit 0
fi

if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null; then
  # The same derivation as build-control-plane.sh: the machine's own Debian
  # entries with `deb` turned into `deb-src`.
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
  apt-get update -qq
fi

log "installing build dependencies"
build_deps=(golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev gcc libc6-dev)
missing=()
for package in "${build_deps[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work="$cache_root/work"
rm -rf "$work"
mkdir -p "$work" "$bin_dir" "$image_dir"
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

log "compiling pause statically"
gcc -Os -static -o "$work/pause" "$tree/build/pause/linux/pause.c"
strip "$work/pause"

log "building kubelet and kube-scheduler (several minutes)"
gopath="$work/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -s "$tree" "$gopath/src/k8s.io/kubernetes"
(
  cd "$gopath/src/k8s.io/kubernetes"
  export GOPATH="$gopath" GOCACHE="$work/gocache" CGO_ENABLED=0 GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off
  export KUBE_GIT_VERSION="v1.20.2" KUBE_GIT_TREE_STATE=clean
  make WHAT="cmd/kubelet cmd/kube-scheduler" >"$work/build.log" 2>&1 \
    || { tail -50 "$work/build.log" >&2; exit 1; }
)
out="$tree/_output/local/bin/linux/$(go env GOARCH)"
install -m 0755 "$out/kubelet" "$out/kube-scheduler" "$work/pause" "$bin_dir/"

log "packing the pause image"
rootfs="$work/pause-rootfs"
mkdir -p "$rootfs"
install -m 0755 "$bin_dir/pause" "$rootfs/pause"
bash "$here/pack-image.sh" conveyor.local/pause:3.2 "$image_dir/pause.tar" "$rootfs" /pause

rm -rf "$work"
touch "$stamp"
log "node cached in $bin_dir"
