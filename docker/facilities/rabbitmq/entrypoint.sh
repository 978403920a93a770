#!/usr/bin/env bash
# Writes the broker's config (readable by rabbitmq only) with the pqx user, vhost and permissions
# from the environment, then becomes rabbitmq-server. The password never reaches a command line.
set -euo pipefail

user=${PQX_MQ_USER:-pqx}
vhost=${PQX_MQ_VHOST:-pqx}
[ -n "${PQX_MQ_PASS:-}" ] || { echo "pqx-rabbitmq: PQX_MQ_PASS is not set" >&2; exit 1; }

# A JSON string; control characters are refused rather than escaped.
json() {
  local s=$1
  [[ $s == *[[:cntrl:]]* ]] && { echo "pqx-rabbitmq: $2 holds a control character" >&2; exit 1; }
  s=${s//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

dir=/var/lib/rabbitmq/pqx
mkdir -p -m 0700 "$dir"
umask 077
cat >"$dir/definitions.json" <<JSON
{
  "users": [{ "name": $(json "$user" PQX_MQ_USER), "password": $(json "$PQX_MQ_PASS" PQX_MQ_PASS), "tags": ["administrator"] }],
  "vhosts": [{ "name": $(json "$vhost" PQX_MQ_VHOST) }],
  "permissions": [{ "user": $(json "$user" PQX_MQ_USER), "vhost": $(json "$vhost" PQX_MQ_VHOST),
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
