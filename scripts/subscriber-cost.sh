#!/usr/bin/env bash
# What one command costs a subscriber, measured apart from the bench: N `Bash true` commands
# through a release subscriber of queue h1, with SQLite, in target/cost (laid out as the demo).
#
#   scripts/subscriber-cost.sh [N]              CPU per command (all the subscriber's threads, from
#                                               /proc; not bash's) and context switches per command
#   scripts/subscriber-cost.sh --callgrind [N]  user-space instructions per command, under valgrind
#                                               (deterministic: N and N/4 commands, the difference)
#   PQX_COST_BIN=dir                            binaries from dir instead of target/release
#
# Needs valgrind for --callgrind (apt-get install valgrind).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

callgrind=false
if [ "${1:-}" = "--callgrind" ]; then
  callgrind=true
  shift
fi
n=${1:-2000}
scripts/services.sh
if [ -z "${PQX_COST_BIN:-}" ]; then
  cargo build --quiet --release --bins -p pqx-app
fi
bin=${PQX_COST_BIN:-$root/target/release}
work="$root/target/cost"
mkdir -p "$work"
cp config/conn.yml.template "$work/conn.yml"
cp config/init.yml.template "$work/init.yml"
cd "$work"
"$bin/initiator" -o init >/dev/null

tasks() {
  local line='{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}'
  awk -v n="$1" -v line="$line" 'BEGIN { for (i = 0; i < n; i++) print line }' >"$work/tasks.jsonl"
}

# Starts a subscriber of h1 (under $1, a wrapper such as valgrind, if given); sets $sub.
start() {
  rm -f "$work/ready" "$work/sub.log"
  RUST_LOG=info "$@" "$bin/subscriber" -q h1 --ready-file "$work/ready" >"$work/sub.log" 2>&1 &
  sub=$!
  for _ in $(seq 600); do
    [ -e "$work/ready" ] && return 0
    kill -0 $sub 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/sub.log" >&2
  echo "subscriber-cost: the subscriber did not start" >&2
  exit 1
}

# Publishes tasks.jsonl and waits until the subscriber logged $1 successes in all.
publish_and_wait() {
  "$bin/publisher" -o pub --quiet --lines -t "$work/tasks.jsonl" >/dev/null 2>&1
  for _ in $(seq 12000); do
    [ "$(grep -c 'succeeded queue' "$work/sub.log" || true)" -ge "$1" ] && return 0
    sleep 0.05
  done
  echo "subscriber-cost: the commands did not all succeed in 10 minutes" >&2
  exit 1
}

stop() {
  kill -INT $sub 2>/dev/null || true
  wait $sub 2>/dev/null || true
}

if $callgrind; then
  # Instructions for n/4 and for n commands: the difference, per command, leaves out start-up.
  count() {
    tasks "$1"
    rm -f "$work"/callgrind.out.*
    start valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p"
    publish_and_wait "$1"
    stop
    awk '/^(summary|totals):/ {print $2; exit}' "$work"/callgrind.out.*
  }
  small=$((n / 4))
  a=$(count $small)
  b=$(count "$n")
  echo "user-space instructions per command: $(((b - a) / (n - small))) ($small commands: $a, $n: $b)"
  exit 0
fi

# CPU (user + system, every thread of the subscriber) and context switches, over n commands
# after a first one that opens what is opened lazily.
tasks 1
start
publish_and_wait 1
cpu() { awk '{print $14 + $15}' "/proc/$sub/stat"; }
switches() { cat /proc/$sub/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
tasks "$n"
c0=$(cpu); s0=$(switches); t0=$(date +%s.%N)
publish_and_wait $((n + 1))
c1=$(cpu); s1=$(switches); t1=$(date +%s.%N)
stop
hz=$(getconf CLK_TCK)
awk -v n="$n" -v c="$((c1 - c0))" -v s="$((s1 - s0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN {
  printf "%d commands, %.0f/s: subscriber CPU %.0f us per command, %.1f context switches per command\n",
    n, n / (t1 - t0), c * 1e6 / hz / n, s / n }'
