#!/usr/bin/env bash
# The main job end to end: services up, build, lay out queues and tables, start a subscriber for
# h1, publish a Bash command to h1, wait for its record and print it, stop the subscriber.
# Works in a directory of its own (target/demo), so it never touches your conn.yml or pqx.db.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/services.sh
cargo build --quiet --bins
bin="$root/target/debug"
work="$root/target/demo"
mkdir -p "$work"
cp config/conn.yml.template "$work/conn.yml"
cp config/init.yml.template "$work/init.yml"
cd "$work"

step() { printf '\n== %s\n' "$*"; }
deadline() { echo $(( $(date +%s) + $1 )); }

step "initiator -o init"
"$bin/initiator" -o init

step "subscriber -q h1 (in the background, log in $work/subscriber.log)"
rm -f "$work/subscriber.ready"
"$bin/subscriber" -q h1 --ready-file "$work/subscriber.ready" >"$work/subscriber.log" 2>&1 &
sub=$!
trap 'kill -TERM $sub 2>/dev/null || true; wait $sub 2>/dev/null || true' EXIT
until=$(deadline 30)
until [ -e "$work/subscriber.ready" ]; do
  kill -0 $sub 2>/dev/null || { cat "$work/subscriber.log"; echo "demo: the subscriber exited" >&2; exit 1; }
  [ "$(date +%s)" -lt "$until" ] || { echo "demo: the subscriber did not start in 30s" >&2; exit 1; }
  sleep 0.2
done

step "publisher -o pub -t examples/bash.json"
cat "$root/examples/bash.json"
out=$("$bin/publisher" -o pub -t "$root/examples/bash.json")
echo "$out"
id=$(echo "$out" | awk '/^published/ {print $2; exit}')

step "waiting for the record of $id"
until=$(deadline 60)
until "$bin/inspector" -o hist --message-id "$id" 2>/dev/null | grep -qE "succeeded|failed"; do
  [ "$(date +%s)" -lt "$until" ] || { echo "demo: no result recorded in 60s; subscriber log:" >&2; cat "$work/subscriber.log" >&2; exit 1; }
  sleep 0.2
done
"$bin/inspector" -o hist --message-id "$id"

step "what the subscriber logged"
grep -F "$id" "$work/subscriber.log" | sed 's/\x1b\[[0-9;]*m//g'

step "stopping the subscriber"
kill -TERM $sub
wait $sub && echo "subscriber exited cleanly"
trap - EXIT
"$bin/inspector" -o hist --message-id "$id" | grep -q succeeded && echo "demo: done, the command ran and its result is recorded"
