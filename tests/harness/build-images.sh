#!/usr/bin/env bash
# Builds the two images the real-node tests run, locally, without a registry
# or a Docker engine, from the static binaries the Dockerfile builds (its
# build command is tests/harness/build-static.sh's, which this runs):
#
# - the router image: `conveyor-router-sim` installed as
#   /usr/local/bin/conveyor-etl-router (the operator's container command is an
#   `sh` wrapper that execs that name) and /bin/sh from busybox-static (plus
#   `nc` for debugging; busybox's wget segfaults);
# - the operator image: what the Dockerfile's final stage holds (the
#   operator binary, the CA roots, user 65532, entrypoint `conveyor-etl-operator`),
#   on an empty base.
#
# Each is packed as a docker-archive tarball by pack-image.sh, its name
# written beside it (X.name):
#
#   build-images.sh [OUT_DIR]   (default $CARGO_TARGET_DIR/node-images)
#
# Cargo's own up-to-date check makes a second run take seconds. Run it before
# `cargo test` (the node tests refuse an image older than the sources):
# `cargo test` holds the target directory's lock while tests run, so they
# cannot build it themselves.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

target_dir="${CARGO_TARGET_DIR:-target}"
out_dir="${1:-$target_dir/node-images}"
tag="dev"

bash "$here/build-static.sh" >&2
bin="$target_dir/x86_64-unknown-linux-gnu/release"
[[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q "statically linked" \
  || { echo "/bin/busybox (busybox-static) is missing: run tests/harness/build-node.sh" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

router="$work/router"
mkdir -p "$router/bin" "$router/usr/local/bin" "$router/tmp" "$router/etc/conveyor" "$router/var/lib/conveyor"
chmod 1777 "$router/tmp"
install -m 0755 /bin/busybox "$router/bin/busybox"
for applet in sh nc ls cat; do ln -s busybox "$router/bin/$applet"; done
install -m 0755 "$bin/conveyor-router-sim" "$router/usr/local/bin/conveyor-etl-router"
image="conveyor.local/conveyor-etl-router:$tag"
bash "$here/pack-image.sh" "$image" "$out_dir/router.tar" "$router" /usr/local/bin/conveyor-etl-router >&2
echo "$image" > "$out_dir/router.name"
echo "$image"

operator="$work/operator"
mkdir -p "$operator/usr/local/bin" "$operator/etc/ssl/certs"
install -m 0755 "$bin/conveyor-etl-operator" "$operator/usr/local/bin/"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$operator/etc/ssl/certs/ca-certificates.crt"
image="conveyor.local/conveyor-etl-operator:$tag"
IMAGE_USER=65532:65532 IMAGE_CMD=run \
  bash "$here/pack-image.sh" "$image" "$out_dir/operator.tar" "$operator" /usr/local/bin/conveyor-etl-operator >&2
echo "$image" > "$out_dir/operator.name"
echo "$image"
