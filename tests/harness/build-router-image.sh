#!/usr/bin/env bash
# Builds the router image the real-node tests run, locally, without a
# registry or a Docker engine: the simulator `conveyor-router-sim` built
# statically exactly as the Dockerfile builds it (tests/harness/build-static.sh
# is the same command), installed as /usr/local/bin/conveyor-etl-router (the
# operator's container command is an `sh` wrapper that execs that name), and
# /bin/sh from busybox-static (plus `nc` for debugging; busybox's wget
# segfaults). Packed as a docker-archive tarball by pack-image.sh.
#
#   build-router-image.sh [OUT.tar]   (default $CARGO_TARGET_DIR/node-images/router.tar)
#
# Writes the image name beside it (OUT.name) and prints it. Cargo's own
# up-to-date check makes a second run take about a second. Run it before
# `cargo test` (the node tests refuse an image older than the sources):
# `cargo test` holds the target directory's lock while tests run, so they
# cannot build it themselves.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

target_dir="${CARGO_TARGET_DIR:-target}"
out="${1:-$target_dir/node-images/router.tar}"
image="conveyor.local/conveyor-etl-router:dev"

RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --no-default-features \
  --target x86_64-unknown-linux-gnu --bin conveyor-router-sim >&2
sim="$target_dir/x86_64-unknown-linux-gnu/release/conveyor-router-sim"
if readelf -l "$sim" | grep -q "Requesting program interpreter" || readelf -d "$sim" | grep -q "(NEEDED)"; then
  echo "$sim is not static" >&2
  exit 1
fi
[[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q "statically linked" \
  || { echo "/bin/busybox (busybox-static) is missing: run tests/harness/build-node.sh" >&2; exit 1; }

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/usr/local/bin" "$rootfs/tmp" "$rootfs/etc/conveyor" "$rootfs/var/lib/conveyor"
chmod 1777 "$rootfs/tmp"
install -m 0755 /bin/busybox "$rootfs/bin/busybox"
for applet in sh nc ls cat; do ln -s busybox "$rootfs/bin/$applet"; done
install -m 0755 "$sim" "$rootfs/usr/local/bin/conveyor-etl-router"
bash "$here/pack-image.sh" "$image" "$out" "$rootfs" /usr/local/bin/conveyor-etl-router >&2
echo "$image" > "${out%.tar}.name"
echo "$image"
