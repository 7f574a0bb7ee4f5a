# Sourced by build-control-plane.sh and build-node.sh: Kubernetes binaries
# built from Debian's source package `kubernetes`, which both build from.
# The caller defines `log`.

# The Debian package version both build from (1.20.2, with vendor/).
k8s_version="1.20.5+really1.20.2-1.1+deb12u1"

# Adds deb-src entries when the machine has none: its own Debian entries
# (the archives it already installs binary packages from) with `deb` turned
# into `deb-src`; then refreshes the package lists.
ensure_deb_src() {
  if grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null; then
    return
  fi
  log "adding deb-src entries derived from the machine's apt sources"
  local derived=/etc/apt/sources.list.d/conveyor-deb-src file
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    for file in /etc/apt/sources.list.d/*.sources; do
      grep -qs '^Signed-By:.*debian-archive-keyring' "$file" || continue
      sed -e 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' "$file"
      echo
    done > "$derived.sources"
  fi
  if [[ -f /etc/apt/sources.list ]]; then
    grep -E '^deb[[:space:]]' /etc/apt/sources.list | sed -e 's/^deb /deb-src /' > "$derived.list" || true
  fi
  if ! grep -qs 'deb-src' "$derived.sources" "$derived.list"; then
    echo "no Debian apt source found to derive a deb-src entry from" >&2
    exit 1
  fi
  apt-get update -qq
}

# Downloads and unpacks the source package into $1/src (the current
# directory must be $1), with the vendored modern-go/reflect2 v1.0.1
# replaced by Debian's v1.0.2 (Go >= 1.18 map iteration fix). Needs the
# package golang-github-modern-go-reflect2-dev.
kubernetes_source_tree() {
  local work="$1" tree="$1/src"
  log "downloading Debian source package kubernetes=$k8s_version"
  apt-get source --download-only "kubernetes=$k8s_version" >/dev/null
  dpkg-source --no-check -x kubernetes_*.dsc src >/dev/null
  log "replacing vendored modern-go/reflect2 v1.0.1 with Debian's v1.0.2 (Go >= 1.18 map iteration fix)"
  local reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  mkdir -p "$tree/vendor/github.com/modern-go/reflect2"
  cp -r "$reflect2_src"/. "$tree/vendor/github.com/modern-go/reflect2/"
  find "$tree/vendor/github.com/modern-go/reflect2" -name '*_test.go' -delete
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' "$tree/go.mod" "$tree/vendor/modules.txt"
  sed -i '/^github.com\/modern-go\/reflect2 v1.0.1/d' "$tree/go.sum" || true
}

# Builds the commands $2 (e.g. "cmd/kubelet cmd/kube-scheduler") of the tree
# kubernetes_source_tree unpacked in $1, offline from vendor/; they land in
# $1/src/_output/local/bin/linux/<arch>, which it prints.
build_kubernetes() {
  local work="$1" what="$2" tree="$1/src" gopath="$1/gopath"
  mkdir -p "$gopath/src/k8s.io"
  ln -s "$tree" "$gopath/src/k8s.io/kubernetes"
  (
    cd "$gopath/src/k8s.io/kubernetes"
    export GOPATH="$gopath" GOCACHE="$work/gocache" CGO_ENABLED=0 GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off
    export KUBE_GIT_VERSION="v1.20.2" KUBE_GIT_TREE_STATE=clean
    # Kubernetes' Makefile builds into OUT_DIR, which a `cargo run` of a
    # package with a build script would hand down.
    unset OUT_DIR
    make WHAT="$what" >"$work/build.log" 2>&1 || { tail -50 "$work/build.log" >&2; exit 1; }
  )
  echo "$tree/_output/local/bin/linux/$(go env GOARCH)"
}
