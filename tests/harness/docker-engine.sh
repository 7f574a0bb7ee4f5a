#!/usr/bin/env bash
# Makes a Docker engine answer on the default socket (/var/run/docker.sock),
# for build-images.sh's `docker build` of the Dockerfile:
#
#   - installs Debian's docker.io (dockerd; containerd and runc are Debian's
#     too) when no dockerd is installed, without letting the package start
#     its service (that would start it with Docker's default network setup);
#   - starts dockerd in the background when none answers, with its data-root
#     in the cache ($cache/docker/data, removable with the cache) and its log
#     at $cache/docker/dockerd.log, and waits (with a deadline) until
#     `docker info` answers.
#
# It leaves the host's network alone: no iptables or ip6tables rules (so the
# FORWARD policy stays what it is: with br_netfilter loaded, Docker's DROP
# would drop the test node's pod-to-pod traffic on its bridge), no
# ip_forward change, no docker0 bridge. Builds and containers run with
# `--network host` or `--network none`. dockerd runs its own managed
# containerd (socket under /var/run/docker/containerd), not the one the test
# node starts under its own folder.
#
# A second run finds it answering and returns at once.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-etl-operator/docker"
data_root="$cache/data"
log_file="$cache/dockerd.log"
deadline_seconds=60

log() { echo "[docker-engine] $*" >&2; }

if docker info >/dev/null 2>&1; then
  log "a Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

if ! command -v dockerd >/dev/null; then
  log "installing docker.io (dockerd) from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # The package's maintainer scripts would start its service (with iptables
  # on): a policy-rc.d that refuses stops that; one already there is kept.
  added_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq
  status=0
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null || status=$?
  [[ -z "$added_policy" ]] || rm -f /usr/sbin/policy-rc.d
  [[ $status -eq 0 ]] || { log "apt-get install docker.io failed"; exit "$status"; }
fi

# dockerd attaches to a containerd listening on containerd's default socket
# instead of starting its own; that one would not be dockerd's.
if [[ -S /run/containerd/containerd.sock ]]; then
  log "a containerd listens on /run/containerd/containerd.sock: dockerd would use it instead of its own; stop it first"
  exit 1
fi

started=""
# A dockerd that runs but does not answer (still starting, or stuck) is not
# started twice.
if [[ -f /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  log "dockerd (pid $(cat /var/run/docker.pid)) runs but does not answer yet"
else
  mkdir -p "$data_root"
  log "starting dockerd (data-root $data_root, log $log_file)"
  # setsid: the daemon outlives this script and the shell that ran it.
  setsid dockerd \
    --data-root "$data_root" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    >>"$log_file" 2>&1 </dev/null &
  started=$!
  log "dockerd started (pid $started)"
fi

deadline=$((SECONDS + deadline_seconds))
until docker info >/dev/null 2>&1; do
  if ((SECONDS >= deadline)); then
    log "dockerd did not answer within ${deadline_seconds}s; the end of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    exit 1
  fi
  if [[ -n "$started" ]] && ! kill -0 "$started" 2>/dev/null; then
    log "dockerd exited; the end of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    exit 1
  fi
  sleep 0.2
done
log "dockerd answers ($(docker version --format '{{.Server.Version}}'), storage driver $(docker info --format '{{.Driver}}'))"
