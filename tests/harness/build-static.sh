#!/usr/bin/env bash
# Builds the release binaries exactly as the Dockerfile does (a test holds the
# two commands equal) and checks that they are static: no interpreter, no
# shared libraries. Release builds take minutes on a small machine, so this is
# not part of `cargo test`; run it after changing the Dockerfile or the
# dependencies:
#
#   bash tests/harness/build-static.sh
#
# glibc linked statically (+crt-static) rather than musl: the musl target's
# standard library cannot be installed offline, and glibc >= 2.34 has its
# `files` and `dns` name services built in, so a static binary resolves names
# on a base image without any shared library.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The operator (the Dockerfile's image) and the router simulator (the router
# image of build-images.sh), each built as its own package: the operator
# without the simulator's dependencies.
for PACKAGE in conveyor-etl-operator conveyor-router-sim; do
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target x86_64-unknown-linux-gnu --package "$PACKAGE"
done

out="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release"
for bin in conveyor-etl-operator conveyor-router-sim; do
  path="$out/$bin"
  description="$(file -L "$path")"
  echo "$description"
  case "$description" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "$bin is not static" >&2; exit 1 ;;
  esac
  if readelf -l "$path" | grep -q "Requesting program interpreter"; then
    echo "$bin asks for a dynamic loader" >&2; exit 1
  fi
  if readelf -d "$path" | grep -q "(NEEDED)"; then
    echo "$bin needs shared libraries:" >&2; readelf -d "$path" | grep "(NEEDED)" >&2; exit 1
  fi
  # It runs with an empty environment and nothing but itself.
  env -i "$path" --version
done
echo "static binaries in $out"
