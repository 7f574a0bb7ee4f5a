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

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/harness/debian-kubernetes.sh
source "$here/debian-kubernetes.sh"

cache_root="${CONVEYOR_CONTROL_PLANE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/control-plane}"
bin_dir="$cache_root/bin"
stamp="$bin_dir/.built-from-$k8s_version"

if [[ -f "$stamp" && -x "$bin_dir/etcd" && -x "$bin_dir/kube-apiserver" && -x "$bin_dir/kube-controller-manager" ]]; then
  echo "control plane cached in $bin_dir"
  exit 0
fi

log() { echo "[control-plane] $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
ensure_deb_src
log "installing build dependencies"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  golang-go rsync dpkg-dev etcd-server golang-github-modern-go-reflect2-dev >/dev/null

work="$cache_root/work"
rm -rf "$work"
mkdir -p "$work" "$bin_dir"
cd "$work"

kubernetes_source_tree "$work"
log "building kube-apiserver and kube-controller-manager (a few minutes)"
out="$(build_kubernetes "$work" "cmd/kube-apiserver cmd/kube-controller-manager")"
install -m 0755 "$out/kube-apiserver" "$out/kube-controller-manager" "$bin_dir/"
install -m 0755 /usr/bin/etcd "$bin_dir/etcd"
rm -rf "$work"
touch "$stamp"
log "control plane cached in $bin_dir"
