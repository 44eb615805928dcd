#!/usr/bin/env bash
# Root: start a Docker engine here if none answers, and bring in the base image, debian:bookworm-slim,
# built with debootstrap from Debian's mirror where no image registry is reachable.
set -euo pipefail
if ! docker info >/dev/null 2>&1; then
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start: /var/log/dockerd.log" >&2; exit 1; }
fi
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
fi
docker version --format 'Docker engine {{.Server.Version}}; base image debian:bookworm-slim ready'
