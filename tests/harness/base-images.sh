#!/usr/bin/env bash
# Makes the base images the Dockerfile's stages start FROM, locally, when the
# Docker engine (tests/harness/docker-engine.sh) does not have them: no
# registry is reachable here, so `docker build` could not pull them.
#
#   - `rust:X.Y-bookworm` (the build stage): a Debian bookworm rootfs made by
#     debootstrap from the mirror of this machine's own apt sources, with what
#     the official image's base has that the build uses (gcc, libc6-dev,
#     make, pkg-config, git, curl, ca-certificates) and this machine's Rust
#     toolchain (rustup's, of the version `rustc --version` reports, which
#     must be X.Y) copied in as the official image lays it out: RUSTUP_HOME
#     /usr/local/rustup, CARGO_HOME /usr/local/cargo, rustup's proxies in
#     /usr/local/cargo/bin on PATH. Its apt sources are the machine's, so the
#     Dockerfile's own `apt-get install` runs (builds use `--network host`).
#     Cargo in it trusts what this machine trusts (CARGO_HTTP_CAINFO names a
#     copy of the machine's CA bundle: a machine whose TLS goes through an
#     intercepting proxy adds its CA there); the image's own CA roots, which
#     the Dockerfile copies into the operator image, stay Debian's.
#   - `scratch` needs nothing.
#
# A base image the engine already has, made by this recipe (its label
# conveyor.base-images.recipe), is skipped (`docker image inspect`), so a
# second run returns at once. Bump `recipe` when changing how it is made. The rootfs is built in
# $cache/docker/base/ and removed once imported.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/docker"
suite=bookworm
recipe=2
host_ca=/etc/ssl/certs/ca-certificates.crt

log() { echo "[base-images] $*" >&2; }

# The Debian mirror (first URI serving `bookworm` binary packages) and the
# machine's binary bookworm entries, from /etc/apt's deb822 .sources files
# and one-line .list files.
apt_entries() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$file" ]] || continue
    # deb [options] URI SUITE COMPONENT...
    sed -n -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+)[[:space:]]+(.*)$/\2 \3 \4/p' "$file"
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    # One "URI SUITE COMPONENTS" line per URI and suite of each enabled binary stanza.
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no")
          for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) print uris[u], suites[s], components
        types = ""; enabled = ""; nu = 0; ns = 0; components = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      {
        key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ /, "")
        if (key == "types") types = $0
        else if (key == "enabled") enabled = tolower($0)
        else if (key == "uris") nu = split($0, uris, " ")
        else if (key == "suites") ns = split($0, suites, " ")
        else if (key == "components") components = $0
      }
      END { flush() }
    ' "$file"
  done
}

make_rust_image() {
  local name="$1" wanted="$2"
  local version sysroot triple
  version="$(rustc --version | awk '{print $2}')"
  if [[ "$version" != "$wanted" && "$version" != "$wanted".* ]]; then
    log "the Dockerfile builds FROM $name but this machine's rustc is $version: set the Dockerfile's FROM to rust:${version%.*}-$suite"
    exit 1
  fi
  sysroot="$(rustc --print sysroot)"
  triple="$(rustc -vV | sed -n 's/^host: //p')"

  local mirror entries
  entries="$(apt_entries | awk -v suite="$suite" '$2 == suite || index($2, suite "-") == 1')"
  mirror="$(awk -v suite="$suite" '$2 == suite { print $1; exit }' <<<"$entries")"
  [[ -n "$mirror" ]] || { log "no apt source in /etc/apt serves Debian $suite"; exit 1; }

  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi

  local work="$cache/base/rust-$version"
  rm -rf "$work"
  mkdir -p "$work"
  local rootfs="$work/rootfs"
  log "debootstrap $suite from $mirror into $rootfs (takes minutes)"
  debootstrap --variant=minbase --include=ca-certificates,curl,gcc,git,libc6-dev,make,pkg-config \
    "$suite" "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; log "debootstrap failed (log: $work/debootstrap.log)"; exit 1; }

  # The machine's bookworm binary sources, as the image's only sources.
  rm -f "$rootfs/etc/apt/sources.list"
  while read -r uri entry_suite components; do
    echo "deb $uri $entry_suite $components"
  done <<<"$entries" > "$rootfs/etc/apt/sources.list"
  log "the image's apt sources: $(tr '\n' ';' < "$rootfs/etc/apt/sources.list")"
  rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/archives/"*.deb

  # The toolchain, as rustup installs it in the official image.
  local toolchain="$version-$triple"
  log "copying the Rust toolchain $toolchain from $sysroot"
  mkdir -p "$rootfs/usr/local/rustup/toolchains/$toolchain" "$rootfs/usr/local/cargo/bin"
  tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$rootfs/usr/local/rustup/toolchains/$toolchain" -xf -
  install -m 0755 "$(command -v rustup)" "$rootfs/usr/local/cargo/bin/rustup"
  local proxy
  for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-gdbgui rust-lldb; do
    ln "$rootfs/usr/local/cargo/bin/rustup" "$rootfs/usr/local/cargo/bin/$proxy"
  done
  install -D -m 0644 "$host_ca" "$rootfs/usr/local/share/conveyor/host-ca-certificates.crt"
  cat > "$rootfs/usr/local/rustup/settings.toml" <<EOF
version = "12"
default_toolchain = "$toolchain"
profile = "minimal"
auto_self_update = "disable"

[overrides]
EOF

  log "importing $name"
  tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
    | docker import \
      --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
      --change 'ENV CARGO_HOME=/usr/local/cargo' \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "ENV RUST_VERSION=$version" \
      --change 'ENV CARGO_HTTP_CAINFO=/usr/local/share/conveyor/host-ca-certificates.crt' \
      --change "LABEL conveyor.base-images.recipe=$recipe" \
      --change 'CMD ["bash"]' \
      --message "debootstrap $suite + rustc $version (tests/harness/base-images.sh)" \
      - "$name" >/dev/null
  rm -rf "$work"
  # It builds, offline: the toolchain answers through rustup's proxies.
  docker run --rm --network none "$name" sh -c 'cargo --version && rustc --version && cc --version | head -n 1' >&2
  log "$name made"
}

# Every FROM of the Dockerfile that is not an earlier stage.
stages=()
while read -r image alias; do
  if [[ " ${stages[*]} " == *" $image "* ]]; then continue; fi
  [[ -z "$alias" ]] || stages+=("$alias")
  case "$image" in
    scratch) ;;
    *)
      made_by="$(docker image inspect --format '{{index .Config.Labels "conveyor.base-images.recipe"}}' "$image" 2>/dev/null || true)"
      if [[ "$made_by" == "$recipe" ]]; then
        log "$image present"
        continue
      fi
      old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
      [[ -z "$old_id" ]] || log "$image was not made by recipe $recipe of this script: making it again"
      case "$image" in
        rust:*-"$suite") wanted="${image#rust:}"; make_rust_image "$image" "${wanted%-"$suite"}" ;;
        *) log "the Dockerfile builds FROM $image, which this script cannot make"; exit 1 ;;
      esac
      # The image it replaces, unless something still uses it.
      [[ -z "$old_id" ]] || docker rmi "$old_id" >/dev/null 2>&1 || true
      ;;
  esac
done < <(sed -n -E 's/^FROM[[:space:]]+([^[:space:]]+)([[:space:]]+[Aa][Ss][[:space:]]+([^[:space:]]+))?.*/\1 \3/p' Dockerfile)
