#!/usr/bin/env bash
# `make image-test`: build the container image with podman and exercise it for real
# (tests/image/: read-only root filesystem, non-root, signed backup to a mounted repository,
# /readyz, /runs/<id>/result, the snapshot, SIGTERM mid-run leaves no repository lock).
#
# Works without a container registry or a Docker daemon: the base image is a local debootstrap
# of Debian bookworm (the same release as the Dockerfile's default BASE), imported once into
# podman storage under .tools/podman/. podman runs with runc and explicit ulimits, which these
# machines need (docs/environment.md).
#
# Usage: scripts/image-test.sh [--build-only] [pytest args...]
# Env:   IMAGE (default localhost/restic-runner:test), BASE_IMAGE (default: the local base).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
build_only=0
if [ "${1:-}" = "--build-only" ]; then build_only=1; shift; fi

log() { echo "image-test: $*" >&2; }
seconds() { date +%s.%N; }
took() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$1" "$(seconds)"; }

need=()
for pair in podman:podman runc:runc debootstrap:debootstrap catatonit:catatonit; do  # catatonit: kube play's pause image
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { log "needs root to install ${need[*]}"; exit 1; }
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

store=$root/.tools/podman
mkdir -p "$store"
podman=(podman --root "$store/root" --runroot "$store/run" --runtime runc)
ulimits=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
base_local=localhost/debian:bookworm-local
base=${BASE_IMAGE:-$base_local}
image=${IMAGE:-localhost/restic-runner:test}

if [ "$base" = "$base_local" ] && ! "${podman[@]}" image exists "$base_local"; then
  mirror=$(bash scripts/debian-mirror.sh || echo http://deb.debian.org/debian)
  t0=$(seconds)
  if [ ! -e "$store/rootfs/.complete" ]; then
    log "debootstrap --variant=minbase bookworm ($mirror)"
    rm -rf "$store/rootfs"
    debootstrap --variant=minbase bookworm "$store/rootfs" "$mirror" >"$store/debootstrap.log" 2>&1 \
      || { tail -20 "$store/debootstrap.log" >&2; exit 1; }
    # apt inside the build uses the same mirror as this machine
    echo "deb $mirror bookworm main" >"$store/rootfs/etc/apt/sources.list"
    rm -rf "$store/rootfs/var/cache/apt/archives/"*.deb "$store/rootfs/var/lib/apt/lists/"*
    touch "$store/rootfs/.complete"
  fi
  tar -C "$store/rootfs" --exclude ./.complete -c . | "${podman[@]}" import - "$base_local" >/dev/null
  log "base image $base_local ready in $(took "$t0")"
fi

ca_args=()
for ca in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$ca" ] && [ -s "$ca" ]; then ca_args=(--secret "id=ca_bundle,src=$ca"); break; fi
done

t0=$(seconds)
log "building $image FROM $base"
# --format docker keeps HEALTHCHECK (the OCI image format has no field for it)
"${podman[@]}" build --format docker "${ulimits[@]}" "${ca_args[@]}" \
  --build-arg "BASE=$base" \
  --build-arg "REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$image" . >"$store/build.log" 2>&1 || { tail -40 "$store/build.log" >&2; exit 1; }
log "built $image in $(took "$t0") ($("${podman[@]}" image inspect --format '{{.Size}}' "$image" \
  | awk '{printf "%.0f MB", $1 / 1e6}'))"

[ "$build_only" = 1 ] && exit 0

t0=$(seconds)
RESTIC_RUNNER_IMAGE=$image RESTIC_RUNNER_PODMAN="${podman[*]}" \
  "$root/.venv/bin/pytest" -q -p no:cacheprovider tests/image "$@"
log "image checks passed in $(took "$t0")"
