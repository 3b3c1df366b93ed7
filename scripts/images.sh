#!/usr/bin/env bash
# The images compose.yaml needs, made on a machine that cannot pull from public registries:
#   - python:3.11-slim-bookworm (the Dockerfile's base): Debian bookworm from debootstrap, with this
#     machine's CA bundle and pip settings;
#   - PostgreSQL, Redis and HAProxy from Debian's packages, and moto's S3 server (PyPI) for MinIO, used
#     through deploy/compose.closed-network.yaml;
#   - with `--app`, the service's own image (citizen-intake:latest) on top.
# Only what is missing is built: the base images stay in podman's storage between runs.
#
#   scripts/images.sh            # the base and service images
#   scripts/images.sh --app      # ... and the service image (make test-image does this)
#   IMAGES_REBUILD=1 scripts/images.sh   # build everything again
#
# Uses podman (installed with apt-get when missing) with deploy/podman/containers.conf; with Docker,
# `docker build` the same Containerfiles in deploy/images/ (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
CACHE=${IMAGES_CACHE:-/var/cache/intake-images}
BASE=localhost/intake-debian:bookworm
PYTHON_BASE=docker.io/library/python:3.11-slim-bookworm
APP=localhost/citizen-intake:latest
TOOLS=(podman runc debootstrap podman-compose haproxy)

log() { printf '[images] %s\n' "$*" >&2; }

ensure_tools() {
  local missing=()
  for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" != 0 ]; then
    log "missing ${missing[*]}: apt-get install ${TOOLS[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${TOOLS[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${TOOLS[@]}" >/dev/null; }
}

# The Debian mirror apt uses here (debootstrap must fetch from where this machine may go).
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local mirror
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '/^URIs:/ {uri=$2} /^Suites:/ && / bookworm( |$)/ && uri {print uri; exit}
           /^deb / && $3 == "bookworm" {print $2; exit}')
  echo "${mirror:-http://deb.debian.org/debian}"
}

have_image() { [ -z "${IMAGES_REBUILD:-}" ] && podman image exists "$1"; }

build() {  # build TAG CONTAINERFILE [CONTEXT [PODMAN-BUILD-OPTIONS...]]
  local tag=$1 file=$2 context=${3:-$ROOT/deploy/images}
  shift $(( $# < 3 ? $# : 3 ))
  log "building $tag"
  # --network host: the build reaches Debian's mirror and PyPI the way this machine does.
  # --format docker: OCI images drop the Dockerfile's HEALTHCHECK.
  podman build --pull=never --network host --layers --format docker "$@" -t "$tag" -f "$file" "$context" >&2
}

base_image() {
  have_image "$BASE" && return
  local rootfs=$CACHE/rootfs-bookworm
  if [ ! -f "$rootfs/.complete" ]; then
    log "debootstrap bookworm from $(debian_mirror) (once per machine)"
    rm -rf "$rootfs" && mkdir -p "$CACHE"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$(debian_mirror)" >&2
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb
    touch "$rootfs/.complete"
  fi
  log "importing $BASE"
  tar -C "$rootfs" --exclude=./.complete -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
}

python_image() {
  have_image "$PYTHON_BASE" && return
  local context
  context=$(mktemp -d)
  cp "$ROOT/deploy/images/python.Containerfile" "$context/"
  cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
  # pip's own settings on this machine (an index, a certificate), and those given in the environment.
  { [ -f /etc/pip.conf ] && cat /etc/pip.conf || echo "[global]"; } > "$context/pip.conf"
  local pip_env=""
  for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
    [ -n "${!name:-}" ] && pip_env+=" $name=${!name}"
  done
  [ -n "$pip_env" ] && echo "ENV$pip_env" >> "$context/python.Containerfile"
  build "$PYTHON_BASE" "$context/python.Containerfile" "$context"
  rm -rf "$context"
}

service_images() {
  have_image localhost/intake-postgres:15 || build localhost/intake-postgres:15 deploy/images/postgres.Containerfile
  have_image localhost/intake-redis:7 || build localhost/intake-redis:7 deploy/images/redis.Containerfile
  have_image localhost/intake-haproxy:2.6 || build localhost/intake-haproxy:2.6 deploy/images/haproxy.Containerfile
  have_image localhost/intake-s3:latest || build localhost/intake-s3:latest deploy/images/s3.Containerfile
}

ensure_tools
# Never pulls: this script is for machines that cannot reach the public registries (elsewhere, compose
# pulls the public images itself). A python base already present (pulled earlier, or made here) is kept.
if have_image "$PYTHON_BASE"; then
  log "$PYTHON_BASE is there"
else
  base_image
  python_image
fi
base_image
service_images
if [ "${1:-}" = --app ]; then
  # Always rebuilt: podman's layer cache makes it quick when only the code changed.
  previous=$(podman image inspect --format '{{.Id}}' "$APP" 2>/dev/null || true)
  build "$APP" Dockerfile "$ROOT" --build-arg "BUILD_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
  # The image it replaced would otherwise pile up, one per run, on a machine that keeps its store.
  if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$APP")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
  fi
fi
log "ready"
