#!/usr/bin/env bash
# Gets a real node beside the test control plane ready to run, once:
#   - installs containerd, runc, the CNI plugins, dnsmasq (cluster DNS),
#     busybox-static (the shell of the router image), iproute2 and iptables
#     from Debian when they are missing;
#   - packs the sandbox (pause) image, a docker-archive tarball, from the
#     `pause` that tests/harness/build-kubernetes.sh built for the release
#     the node runs (CONVEYOR_KUBERNETES_VERSION, default the newest tested).
#
# kubelet and kube-scheduler are the release's own, run from its folder.
# The image lands in $CONVEYOR_NODE_DIR (default
# ~/.cache/conveyor-etl-operator/node)/images, outside the checkout; a
# second run returns at once. Nothing is started here: the node launcher
# (crates/testbed/src/node/) starts and stops it.
set -euo pipefail

cache_root="${CONVEYOR_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/node}"
image_dir="$cache_root/images"
here="$(cd "$(dirname "$0")" && pwd)"
kubernetes_root="${CONVEYOR_KUBERNETES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/kubernetes}"

log() { echo "[node] $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
packages=(containerd runc containernetworking-plugins dnsmasq-base busybox-static iproute2 iptables)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  # No init system starts containerd's service here; the launcher runs it.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The pause binary of any built release will do; the newest one is taken.
pause="$(ls -d "$kubernetes_root"/*/bin/pause 2>/dev/null | sort -V | tail -1 || true)"
[[ -n "$pause" ]] || { echo "no Kubernetes release built in $kubernetes_root: run tests/harness/build-kubernetes.sh first" >&2; exit 1; }
stamp="$image_dir/pause.from"
if [[ -f "$image_dir/pause.tar" && "$(cat "$stamp" 2>/dev/null)" == "$pause" ]]; then
  echo "node ready: pause image from $pause"
  exit 0
fi

log "packing the pause image from $pause"
mkdir -p "$image_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
install -m 0755 "$pause" "$work/pause"
bash "$here/pack-image.sh" conveyor.local/pause:node "$image_dir/pause.tar" "$work" /pause
echo "$pause" > "$stamp"
echo "node ready: pause image from $pause"
