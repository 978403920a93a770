#!/usr/bin/env bash
# What the command tests need beyond the broker and databases: ping, an ssh server and client,
# sshpass, Chromium and chromedriver (the dashboard's browser tests), and a local user that the
# tests' own sshd (started on 127.0.0.1 by the tests themselves, never the system's) logs in with
# a key or a password. The password is random, made once per machine, and kept in a root-only
# file. Safe to run any number of times.
set -euo pipefail

SSH_USER=${PQX_TEST_SSH_USER:-pqxssh}
STATE=/var/lib/pqx-test
say() { echo "test-tools: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  say "not root: install openssh-server, openssh-client, sshpass, iputils-ping, chromium and chromium-driver yourself, and set"
  say "PQX_TEST_SSH_USER / PQX_TEST_SSH_PASSWORD to a local user the tests may log in as"
  exit 0
fi

need=()
command -v ping >/dev/null || need+=(iputils-ping)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v sshpass >/dev/null || need+=(sshpass)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
# The dashboard's browser tests drive a real headless Chromium through chromedriver.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  # policy-rc.d or no init system may refuse to start the system's sshd; the tests never use it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd

if ! id "$SSH_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$SSH_USER"
fi
mkdir -p "$STATE"
chmod 0700 "$STATE"
if [ ! -s "$STATE/ssh-password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/ssh-password")
fi
echo "$SSH_USER:$(cat "$STATE/ssh-password")" | chpasswd
say "ready: ping, sshd, ssh, sshpass, chromium, chromedriver; test user $SSH_USER"
