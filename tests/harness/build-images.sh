#!/usr/bin/env bash
# Builds the two images the real-node tests run, without a registry:
#
# - the operator image: `docker build` of the repository's Dockerfile as it
#   is (BuildKit, `--network host`: the engine runs without a bridge, see
#   docker-engine.sh), on the base image base-images.sh made locally, then
#   `docker save`d. Its image id is written beside the tarball
#   (operator.id) for the test that holds the tarball to the engine's image;
# - the router image (a test image, not the product's): the simulator,
#   built statically as the Dockerfile builds the operator (build-static.sh,
#   the same cargo command), installed as /usr/local/bin/conveyor-etl-router
#   (the operator's container command is an `sh` wrapper that execs that
#   name) beside /bin/sh from busybox-static (plus `nc` for debugging;
#   busybox's wget segfaults), packed by pack-image.sh.
#
# Each is a docker-archive tarball (what `ctr images import` reads), its name
# written beside it (X.name):
#
#   build-images.sh [OUT_DIR]   (default $CARGO_TARGET_DIR/node-images)
#
# Needs a Docker engine (docker-engine.sh) and the base images
# (base-images.sh). Docker's layer cache and cargo's up-to-date check make a
# second run take seconds. Run it before `cargo test` (the node tests refuse
# an image older than the sources): `cargo test` holds the target
# directory's lock while tests run, so they cannot build it themselves.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

target_dir="${CARGO_TARGET_DIR:-target}"
out_dir="${1:-$target_dir/node-images}"
tag="dev"

log() { echo "[build-images] $*" >&2; }

# `docker build` with BuildKit (the Dockerfile's cache mounts): Docker CLIs
# from 23 on reach it only through the buildx plugin; Debian's docker.io
# CLI (20.10, /usr/bin/docker) has it built in.
docker_cli=""
for candidate in docker /usr/bin/docker; do
  command -v "$candidate" >/dev/null || continue
  version="$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)"
  if "$candidate" buildx version >/dev/null 2>&1 || [[ "${version%%.*}" =~ ^[0-9]+$ && "${version%%.*}" -lt 23 ]]; then
    docker_cli="$candidate"
    break
  fi
done
[[ -n "$docker_cli" ]] || { log "no docker CLI here builds with BuildKit (install buildx, or Debian's docker.io)"; exit 1; }
"$docker_cli" info >/dev/null 2>&1 || { log "no Docker engine answers: run tests/harness/docker-engine.sh"; exit 1; }

log "building the router simulator (build-static.sh)"
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

image="conveyor.local/conveyor-etl-operator:$tag"
log "docker build of the Dockerfile as $image ($docker_cli)"
started=$SECONDS
DOCKER_BUILDKIT=1 "$docker_cli" build --network host --progress plain -t "$image" . >&2
id="$("$docker_cli" image inspect --format '{{.Id}}' "$image")"
log "built $image ($id) in $((SECONDS - started))s"
if [[ -f "$out_dir/operator.tar" && "$(cat "$out_dir/operator.id" 2>/dev/null)" == "$id" ]]; then
  # The same image: the tarball is current (the tests compare its age with the sources').
  touch "$out_dir/operator.tar"
  log "$out_dir/operator.tar holds it already"
else
  "$docker_cli" save -o "$out_dir/operator.tar.tmp" "$image"
  chmod 0644 "$out_dir/operator.tar.tmp"
  mv "$out_dir/operator.tar.tmp" "$out_dir/operator.tar"
  log "saved in $out_dir/operator.tar"
fi
previous="$(cat "$out_dir/operator.id" 2>/dev/null || true)"
echo "$id" > "$out_dir/operator.id"
# The build it replaces, unless something else still names it.
[[ -z "$previous" || "$previous" == "$id" ]] || "$docker_cli" rmi "$previous" >/dev/null 2>&1 || true
echo "$image" > "$out_dir/operator.name"
echo "$image"
