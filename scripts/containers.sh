#!/usr/bin/env bash
# Sets up a Debian machine without Docker to build and run pqx's containers with podman: installs
# podman, runc, podman-compose and debootstrap from Debian's packages, makes the Debian base image
# the Dockerfiles start from when no registry can give it, and lifts podman's default ulimits
# where this machine's root may not raise them. Safe to run any number of times.
#
#   scripts/containers.sh setup        all of the above
#   scripts/containers.sh base-image   only the base image (docker.io/library/debian:bookworm-slim)
#   scripts/containers.sh image        the images docker-compose.yml runs: pqx-server:latest from
#                                      the release binaries, pqx-rabbitmq and pqx-postgres (with
#                                      Docker when its engine answers, else with podman);
#                                      PQX_BINARIES=DIR and PQX_IMAGE_TAG=TAG build pqx-server:TAG
#                                      from other binaries (the tests: target/debug, tag test)
set -euo pipefail

BASE_IMAGE=docker.io/library/debian:bookworm-slim
SUITE=bookworm
MIRROR=${PQX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CONTAINERS_CONF=/etc/containers/containers.conf
MARK="# written by pqx scripts/containers.sh"

SCRIPT=containers
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v podman-compose >/dev/null || missing+=(podman-compose)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
}

# The Dockerfiles name the public image, so that they build unchanged with Docker Hub; here it is
# pulled when a registry answers and made with debootstrap when none does.
base_image() {
  if as_root podman image exists "$BASE_IMAGE"; then return; fi
  say "pulling $BASE_IMAGE"
  if as_root timeout 60 podman pull -q "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
  say "no registry gave $BASE_IMAGE: making it with debootstrap from $MIRROR (about a minute)"
  local root
  root=$(mktemp -d /var/tmp/pqx-base.XXXXXX)
  # A RETURN trap stays set after the function returns: it clears itself, or it would run again
  # (with $root gone) when the next function returns.
  trap 'as_root rm -rf "${root:-}"; trap - RETURN' RETURN
  as_root debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >/dev/null \
    || die "debootstrap $SUITE from $MIRROR failed"
  slim "$root"
  as_root tar -C "$root" -c . | as_root podman import -q --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  say "made $BASE_IMAGE ($(as_root podman image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes)"
}

# What the published slim image leaves out: documentation, manuals, translations, package lists.
slim() {
  local root=$1
  as_root tee "$root/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  as_root tee "$root/etc/dpkg/dpkg.cfg.d/slim" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  as_root find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  as_root rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*
  as_root rm -f "$root"/var/log/*.log "$root"/var/log/apt/*
}

# podman asks for nofile/nproc limits of 1048576 by default; a root without CAP_SYS_RESOURCE
# cannot set them ("error setting rlimit type 7"), so only there are the defaults turned off.
limits() {
  local probe
  if probe=$(as_root podman run --rm --network none "$BASE_IMAGE" true 2>&1); then return; fi
  case "$probe" in
    *"setting rlimit"*) ;;
    *) die "podman cannot run a container: $probe" ;;
  esac
  if [ -e "$CONTAINERS_CONF" ] && grep -q '^\[containers\]' "$CONTAINERS_CONF"; then
    grep -q '^default_ulimits' "$CONTAINERS_CONF" \
      && die "$CONTAINERS_CONF sets default_ulimits, which this machine cannot apply: set it to []"
    as_root sed -i "/^\[containers\]/a default_ulimits = []  $MARK" "$CONTAINERS_CONF"
  else
    printf '%s\n[containers]\ndefault_ulimits = []\n' "$MARK" | as_root tee -a "$CONTAINERS_CONF" >/dev/null
  fi
  say "this machine's root cannot raise rlimits: podman's default ulimits turned off in $CONTAINERS_CONF"
  probe=$(as_root podman run --rm --network none "$BASE_IMAGE" true 2>&1) \
    || die "podman still cannot run a container: $probe"
}

# The binaries (of PQX_BINARIES, default target/release) without their debug sections (a fifth of
# their size), where the Dockerfile takes them.
stage() {
  local from=${PQX_BINARIES:-target/release} dir=target/image/bin bin
  rm -rf "$dir" && mkdir -p "$dir"
  for bin in initiator inspector rectifier publisher subscriber; do
    [ -x "$from/$bin" ] || die "$from/$bin is missing: run cargo build --release --bins"
    objcopy --strip-debug "$from/$bin" "$dir/$bin"
  done
}

# The images docker-compose.yml runs: pqx-server from the staged binaries, and the facilities.
image() {
  stage
  local engine
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=(docker build -q)
  else
    install_tools; base_image; limits
    engine=(as_root podman build -q)
  fi
  local server=pqx-server:${PQX_IMAGE_TAG:-latest}
  "${engine[@]}" -t "$server" -f docker/server/Dockerfile . >/dev/null
  "${engine[@]}" -t pqx-rabbitmq:latest docker/facilities/rabbitmq >/dev/null
  "${engine[@]}" -t pqx-postgres:latest docker/facilities/postgres >/dev/null
  say "built $server (binaries of ${PQX_BINARIES:-target/release}), pqx-rabbitmq:latest, pqx-postgres:latest"
}

case "${1:-}" in
  setup) install_tools; base_image; limits ;;
  base-image) install_tools; base_image ;;
  image) cd "$(dirname "$0")/.." && image ;;
  *) echo "usage: $0 setup|base-image|image" >&2; exit 2 ;;
esac
