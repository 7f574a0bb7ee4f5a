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
# launcher (crates/testbed/src/node/) starts and stops it.
set -euo pipefail

cache_root="${CONVEYOR_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/node}"
bin_dir="$cache_root/bin"
image_dir="$cache_root/images"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/harness/debian-kubernetes.sh
source "$here/debian-kubernetes.sh"
stamp="$bin_dir/.built-from-$k8s_version"

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

ensure_deb_src

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

kubernetes_source_tree "$work"
tree="$work/src"

log "compiling pause statically"
gcc -Os -static -o "$work/pause" "$tree/build/pause/linux/pause.c"
strip "$work/pause"

log "building kubelet and kube-scheduler (several minutes)"
out="$(build_kubernetes "$work" "cmd/kubelet cmd/kube-scheduler")"
install -m 0755 "$out/kubelet" "$out/kube-scheduler" "$work/pause" "$bin_dir/"

log "packing the pause image"
rootfs="$work/pause-rootfs"
mkdir -p "$rootfs"
install -m 0755 "$bin_dir/pause" "$rootfs/pause"
bash "$here/pack-image.sh" conveyor.local/pause:3.2 "$image_dir/pause.tar" "$rootfs" /pause

rm -rf "$work"
touch "$stamp"
log "node cached in $bin_dir"
