# Shared by the scripts of this directory: messages, root, Debian's packages. Set SCRIPT (the
# prefix of messages) before sourcing.

say() { echo "${SCRIPT:-pqx}: $*" >&2; }
die() { say "error: $*"; exit 1; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "'$*' needs root (or sudo): run it by hand as root"; fi
}

apt_install() {
  say "installing $* from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}
