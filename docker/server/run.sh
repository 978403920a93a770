#!/usr/bin/env bash
# Starts and stops pqx in its container, as the original PQX's run.sh did, with a pid file, SIGTERM
# for the subscriber's graceful drain, and its exit code passed on.
set -uo pipefail

usage() {
  cat >&2 <<'EOF'
usage: run.sh sub run|start|stop|restart|status|health
       run.sh init
  sub run       the subscriber in the foreground (the container's command)
  sub start     the subscriber in the background; returns once it consumes its queue
  sub stop      SIGTERM: the running command may finish (PQX_GRACE s), then it exits;
                exits with the subscriber's exit code
  sub restart   stop, then start
  sub status    whether it runs and consumes
  sub health    exit 0 only while it consumes its queue (the container's healthcheck)
  init          initiator -o init once the broker and database answer, tried again until it
                succeeds (PQX_WAIT_SECS)
environment: PQX_QUEUE (the host queue), PQX_GRACE (30), PQX_WAIT_FOR (host:port ... to wait
for first), PQX_WAIT_SECS (120), PQX_STATE_DIR (pid, ready and log files), PQX_CONN, PQX_INIT
EOF
  exit 2
}

STATE=${PQX_STATE_DIR:-/var/lib/pqx/run}
PID_FILE=$STATE/subscriber.pid
READY_FILE=$STATE/subscriber.ready
RC_FILE=$STATE/subscriber.rc
LOG_FILE=$STATE/subscriber.out
GRACE=${PQX_GRACE:-30}
WAIT_SECS=${PQX_WAIT_SECS:-120}

say() { echo "run.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# Waits until every host:port of PQX_WAIT_FOR takes a TCP connection: compose starts services in
# order but does not wait for the broker or database to be ready.
wait_for_services() {
  local target host port deadline=$((SECONDS + WAIT_SECS))
  for target in ${PQX_WAIT_FOR:-}; do
    host=${target%:*} port=${target##*:}
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
      [ "$SECONDS" -lt "$deadline" ] || die "$target did not answer within $WAIT_SECS s"
      sleep 1
    done
  done
}

subscriber_args() {
  [ -n "${PQX_QUEUE:-}" ] || die "PQX_QUEUE is not set: which host queue should the subscriber consume?"
  ARGS=(-q "$PQX_QUEUE" --grace-period "$GRACE" --ready-file "$READY_FILE" --wait-for-init "$WAIT_SECS")
}

running_pid() {
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

sub_run() {
  subscriber_args
  mkdir -p "$STATE"
  wait_for_services
  exec subscriber "${ARGS[@]}"
}

sub_start() {
  local pid deadline=$((SECONDS + WAIT_SECS + 30))
  subscriber_args
  if pid=$(running_pid); then die "the subscriber already runs (pid $pid)"; fi
  mkdir -p "$STATE"
  rm -f "$RC_FILE" "$PID_FILE" "$READY_FILE"
  wait_for_services
  say "starting the subscriber of queue $PQX_QUEUE $(date +'%Y/%m/%d %H:%M:%S')"
  # The shell in between waits for the subscriber and keeps its exit code for `stop`.
  nohup bash -c 'subscriber "${@:2}" </dev/null & echo $! >"$0"; wait $!; echo $? >"$1"' \
    "$PID_FILE" "$RC_FILE" "${ARGS[@]}" >>"$LOG_FILE" 2>&1 &
  until [ -e "$READY_FILE" ]; do
    if [ -e "$RC_FILE" ]; then
      tail -n 5 "$LOG_FILE" >&2
      die "the subscriber exited with $(cat "$RC_FILE") before it consumed its queue (log: $LOG_FILE)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "the subscriber does not consume its queue yet (log: $LOG_FILE)"
    sleep 0.2
  done
  say "the subscriber consumes queue $PQX_QUEUE (pid $(cat "$PID_FILE"), log: $LOG_FILE)"
}

sub_stop() {
  local pid rc deadline=$((SECONDS + GRACE + 15))
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    say "the subscriber does not run"
    return 0
  fi
  say "stopping the subscriber (pid $pid): the running command may finish within $GRACE s"
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "the subscriber did not stop: killing it"
      kill -KILL "$pid" 2>/dev/null
      rm -f "$PID_FILE"
      exit 137
    fi
    sleep 0.2
  done
  until [ -e "$RC_FILE" ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
  rc=$(cat "$RC_FILE" 2>/dev/null || echo 1)
  rm -f "$PID_FILE"
  say "the subscriber stopped with exit code $rc"
  exit "$rc"
}

sub_status() {
  local pid
  if ! pid=$(running_pid); then echo "not running"; exit 3; fi
  if [ -e "$READY_FILE" ]; then echo "running (pid $pid), consuming"; else
    echo "running (pid $pid), not consuming"; exit 1; fi
}

# Healthy while the ready file names a live subscriber: it is removed when the connection is
# lost and when the subscriber stops.
sub_health() {
  local pid
  pid=$(cat "$READY_FILE" 2>/dev/null) || { echo "not consuming"; exit 1; }
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || { echo "not consuming"; exit 1; }
  echo "consuming (pid $pid)"
}

# A port that takes a connection is not yet a service that answers (a broker or its management
# API still starting): initiator -o init, idempotent, is tried again until it succeeds or
# PQX_WAIT_SECS have passed, each failure said.
init() {
  local deadline=$((SECONDS + WAIT_SECS))
  wait_for_services
  until initiator -o init; do
    [ "$SECONDS" -lt "$deadline" ] || die "initiator -o init did not succeed within $WAIT_SECS s"
    say "initiator -o init failed: trying again in 3 s"
    sleep 3
  done
}

case "${1:-}" in
  sub | all)
    case "${2:-}" in
      run) sub_run ;;
      start) sub_start ;;
      stop) sub_stop ;;
      restart) (sub_stop) || true; sub_start ;;
      status) sub_status ;;
      health) sub_health ;;
      *) usage ;;
    esac
    ;;
  init) init ;;
  *) usage ;;
esac
