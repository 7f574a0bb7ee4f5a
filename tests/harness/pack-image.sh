#!/usr/bin/env bash
# Packs a folder as a one-layer image in docker-archive format (what
# `ctr -n k8s.io images import` reads): the layer tar, a config JSON and
# manifest.json. No registry, no Docker engine.
#
#   [IMAGE_USER=UID:GID] [IMAGE_CMD=ARG] pack-image.sh NAME:TAG OUT.tar ROOTFS ENTRYPOINT [ARG...]
#
# IMAGE_USER and IMAGE_CMD are the Dockerfile's USER and a one-word CMD.
set -euo pipefail
[[ $# -ge 4 ]] || { echo "usage: $0 NAME:TAG OUT.tar ROOTFS ENTRYPOINT [ARG...]" >&2; exit 2; }
name="$1"; out="$2"; rootfs="$3"; shift 3

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Reproducible layer: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$rootfs" -cf "$work/layer.tar" .
layer_digest="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
mkdir "$work/$layer_digest"
mv "$work/layer.tar" "$work/$layer_digest/layer.tar"

json_string() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }
entrypoint="["
for arg in "$@"; do
  [[ "$entrypoint" == "[" ]] || entrypoint+=","
  entrypoint+="$(json_string "$arg")"
done
entrypoint+="]"
extra=""
[[ -z "${IMAGE_USER:-}" ]] || extra+=",\"User\":$(json_string "$IMAGE_USER")"
[[ -z "${IMAGE_CMD:-}" ]] || extra+=",\"Cmd\":[$(json_string "$IMAGE_CMD")]"
cat > "$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Entrypoint":$entrypoint,"Env":["PATH=/usr/local/bin:/bin"],"WorkingDir":"/"$extra},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_digest"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"tests/harness/pack-image.sh"}],"created":"1970-01-01T00:00:00Z"}
EOF
config_digest="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
mv "$work/config.json" "$work/$config_digest.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
  "$config_digest" "$name" "$layer_digest" > "$work/manifest.json"

mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$work" -cf "$out.tmp" \
  manifest.json "$config_digest.json" "$layer_digest"
mv "$out.tmp" "$out"
echo "$name packed in $out (config sha256:$config_digest)"
