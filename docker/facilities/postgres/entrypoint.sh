#!/usr/bin/env bash
# On a data volume used for the first time: makes the cluster, the role PQX_DB_USER with password
# PQX_DB_PASS and the database PQX_DB_NAME it owns; then becomes the server, listening on every
# address with password authentication. The password never reaches a command line.
set -euo pipefail

user=${PQX_DB_USER:-pqx}
db=${PQX_DB_NAME:-pqx}
say() { echo "pqx-postgres: $*" >&2; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${PQX_DB_PASS:-}" ] || { say "PQX_DB_PASS is not set"; exit 1; }
  say "making the cluster in $PGDATA"
  initdb -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  # Not listening on TCP until the role exists: waiting clients see it ready only when it is.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres \
    -v user="$user" -v db="$db" <<'SQL'
\getenv pass PQX_DB_PASS
CREATE ROLE :"user" LOGIN PASSWORD :'pass';
CREATE DATABASE :"db" OWNER :"user";
SQL
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  say "role $user and database $db made"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
