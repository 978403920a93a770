#!/usr/bin/env bash
# Writes the broker's config (readable by rabbitmq only) with the pqx user, vhost and permissions
# from the environment, then becomes rabbitmq-server. The password never reaches a command line.
set -euo pipefail

user=${PQX_MQ_USER:-pqx}
vhost=${PQX_MQ_VHOST:-pqx}
[ -n "${PQX_MQ_PASS:-}" ] || { echo "pqx-rabbitmq: PQX_MQ_PASS is not set" >&2; exit 1; }

# Control characters are refused rather than escaped into the definitions.
for var in PQX_MQ_USER PQX_MQ_PASS PQX_MQ_VHOST; do
  [[ ${!var:-} == *[[:cntrl:]]* ]] && { echo "pqx-rabbitmq: $var holds a control character" >&2; exit 1; }
done

# A JSON string of a value checked above.
json() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

dir=/var/lib/rabbitmq/pqx
mkdir -p -m 0700 "$dir"
umask 077
cat >"$dir/definitions.json" <<JSON
{
  "users": [{ "name": $(json "$user"), "password": $(json "$PQX_MQ_PASS"), "tags": ["administrator"] }],
  "vhosts": [{ "name": $(json "$vhost") }],
  "permissions": [{ "user": $(json "$user"), "vhost": $(json "$vhost"),
                    "configure": ".*", "write": ".*", "read": ".*" }]
}
JSON
cat >"$dir/rabbitmq.conf" <<CONF
# written at each start by pqx-rabbitmq from the environment
load_definitions = $dir/definitions.json
log.console = true
log.console.level = info
log.file = false
CONF
exec /usr/lib/rabbitmq/bin/rabbitmq-server
