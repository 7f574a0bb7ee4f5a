#!/usr/bin/env bash
# Builds the router simulator (the router test image's binary, which the
# Dockerfile does not hold) with the Dockerfile's own cargo command (a
# test holds the two equal), on this machine, and checks that it is static:
# no interpreter, no shared libraries. The operator itself is built by
# `docker build` of the Dockerfile (build-images.sh). Release builds take
# minutes on a small machine, so this is not part of `cargo test`;
# build-images.sh runs it:
#
#   bash tests/harness/build-static.sh
#
# glibc linked statically (+crt-static) rather than musl: the musl target's
# standard library cannot be installed offline, and glibc >= 2.34 has its
# `files` and `dns` name services built in, so a static binary resolves names
# on a base image without any shared library.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The Dockerfile's build, with another package.
PACKAGE=conveyor-router-sim
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target x86_64-unknown-linux-gnu --package "$PACKAGE"

path="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/$PACKAGE"
description="$(file -L "$path")"
echo "$description"
case "$description" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "$PACKAGE is not static" >&2; exit 1 ;;
esac
if readelf -l "$path" | grep -q "Requesting program interpreter"; then
  echo "$PACKAGE asks for a dynamic loader" >&2; exit 1
fi
if readelf -d "$path" | grep -q "(NEEDED)"; then
  echo "$PACKAGE needs shared libraries:" >&2; readelf -d "$path" | grep "(NEEDED)" >&2; exit 1
fi
# It runs with an empty environment and nothing but itself.
env -i "$path" --version
echo "static binary: $path"
