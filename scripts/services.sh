#!/usr/bin/env bash
# Brings up the local services pqx needs, without Docker: RabbitMQ with the management plugin and,
# with --postgres, PostgreSQL. Installs them from Debian's packages when missing (as root), starts
# them when stopped, and creates the user, vhost, role and database that config/conn.yml.template
# names. Safe to run any number of times.
#
#   scripts/services.sh [--postgres] [--second-node] [--tls] [--cluster] [--fleet-net]
#                                        bring services up (--second-node: a second RabbitMQ
#                                        node on port 5673 for the tests that restart a broker;
#                                        --cluster: three more nodes, clustered, AMQP on
#                                        127.0.0.1:5681-5683, management on 15681-15683;
#                                        --tls: a throwaway CA and certificates in $PQX_TLS_DIR,
#                                        RabbitMQ's TLS listeners on 127.0.0.1:5671 (AMQP) and
#                                        :15671 (management), PostgreSQL serving the same CA's
#                                        certificate;
#                                        --fleet-net: the tests' fleet network, a bridge with
#                                        no uplink, 10.231.0.1/16, where RabbitMQ's main node and
#                                        PostgreSQL listen too, for hosts in network namespaces)
#   scripts/services.sh stop             stop what this script started
set -euo pipefail

MQ_USER=${PQX_MQ_USER:-pqx}
MQ_PASS=${PQX_MQ_PASS:-pqx}
MQ_VHOST=${PQX_MQ_VHOST:-pqx}
PG_USER=${PQX_PG_USER:-pqx}
PG_PASS=${PQX_PG_PASS:-pqx}
PG_DB=${PQX_PG_DB:-pqx}
RABBIT_CONF=/etc/rabbitmq/rabbitmq.conf
MARK="# written by pqx scripts/services.sh"

SCRIPT=services
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

# The tests' fleet network: a bridge with no uplink that the tests' network namespaces join by veth
# pairs. Nothing on it reaches outside this machine.
FLEET_BRIDGE=pqxfleet0
FLEET_ADDR=10.231.0.1
FLEET_NET=10.231.0.0/16
fleet_ready() { ip -4 addr show dev "$FLEET_BRIDGE" 2>/dev/null | grep -q "inet $FLEET_ADDR/"; }
fleet_net_up() {
  command -v ip >/dev/null || apt_install iproute2
  fleet_ready && return 0
  say "making the tests' fleet network: bridge $FLEET_BRIDGE, $FLEET_ADDR/16, no uplink"
  ip link show "$FLEET_BRIDGE" >/dev/null 2>&1 || as_root ip link add "$FLEET_BRIDGE" type bridge
  as_root ip addr add "$FLEET_ADDR/16" dev "$FLEET_BRIDGE"
  as_root ip link set "$FLEET_BRIDGE" up
}

# rabbitmqctl on a node ("" = the main node).
ctl() {
  local node=$1; shift
  if [ -n "$node" ]; then as_root rabbitmqctl -q -n "$node" "$@"; else as_root rabbitmqctl -q "$@"; fi
}

# A node's rabbitmq.conf: loopback only, and consumer_timeout raised so that a long command's unacked
# delivery does not get its channel closed after the default 30 minutes (up to 7 days here). With
# a third argument, TLS listeners on those ports with the certificates of tls_up.
rabbit_conf() {
  cat <<CONF
$MARK
listeners.tcp.default = 127.0.0.1:$1
management.tcp.ip = 127.0.0.1
management.tcp.port = $2
consumer_timeout = 604800000
CONF
  [ -n "${3:-}" ] || return 0
  cat <<CONF
listeners.ssl.default = 127.0.0.1:$3
ssl_options.cacertfile = $RABBIT_TLS/ca.pem
ssl_options.certfile = $RABBIT_TLS/server.pem
ssl_options.keyfile = $RABBIT_TLS/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
management.ssl.ip = 127.0.0.1
management.ssl.port = $4
management.ssl.cacertfile = $RABBIT_TLS/ca.pem
management.ssl.certfile = $RABBIT_TLS/server.pem
management.ssl.keyfile = $RABBIT_TLS/server.key
CONF
}

# Throwaway certificates for the tests of TLS, made once: a CA, a server certificate for 127.0.0.1
# (RabbitMQ and PostgreSQL), a client certificate, and a second CA that signed none of them.
TLS_DIR=${PQX_TLS_DIR:-/etc/pqx-test-tls}
RABBIT_TLS=/etc/rabbitmq/pqx-tls
tls_ready() { [ -f "$TLS_DIR/server.pem" ] && [ -f "$TLS_DIR/wrong-ca.pem" ]; }

# Signs a certificate for $1 (file stem) with subject $2 and extensions $3 by the CA.
tls_sign() {
  local stem=$1 subject=$2 ext=$3
  as_root openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
    -keyout "$TLS_DIR/$stem.key" -out "$TLS_DIR/$stem.csr" 2>/dev/null
  printf '%b' "$ext" | as_root tee "$TLS_DIR/$stem.ext" >/dev/null
  as_root openssl x509 -req -in "$TLS_DIR/$stem.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 3650 -extfile "$TLS_DIR/$stem.ext" -out "$TLS_DIR/$stem.pem" 2>/dev/null
  as_root rm -f "$TLS_DIR/$stem.csr" "$TLS_DIR/$stem.ext"
}

tls_up() {
  command -v openssl >/dev/null || apt_install openssl
  if ! tls_ready; then
    say "making a throwaway CA and certificates in $TLS_DIR"
    as_root mkdir -p "$TLS_DIR"
    for ca in ca wrong-ca; do
      as_root openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=pqx test $ca" -keyout "$TLS_DIR/$ca.key" -out "$TLS_DIR/$ca.pem" 2>/dev/null
    done
    tls_sign server "/CN=127.0.0.1" "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    tls_sign client "/CN=pqx-test-client" "extendedKeyUsage=clientAuth\n"
    # The CAs' keys are the script's only; the rest is for the tests, which may run as anyone.
    as_root chmod 600 "$TLS_DIR/ca.key" "$TLS_DIR/wrong-ca.key"
    as_root chmod 644 "$TLS_DIR"/*.pem "$TLS_DIR/client.key" "$TLS_DIR/server.key"
    as_root rm -f "$TLS_DIR"/*.srl
  fi
  # RabbitMQ and PostgreSQL read their key as their own user.
  as_root mkdir -p "$RABBIT_TLS"
  as_root cp "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$RABBIT_TLS/"
  as_root chown -R rabbitmq:rabbitmq "$RABBIT_TLS"
  as_root chmod 600 "$RABBIT_TLS/server.key"
}

# await_startup fails at once until the node has registered with epmd, so poll it.
await_node() {
  local node=$1 what=$2
  for _ in $(seq 1 60); do
    ctl "$node" await_startup --timeout 30 >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "$what did not start"
}

# The pqx user, administrator, with every permission on vhost $2 of node $1.
grant() {
  local node=$1 vhost=$2
  if ! ctl "$node" list_users | awk '{print $1}' | grep -qx "$MQ_USER"; then
    ctl "$node" add_user "$MQ_USER" "$MQ_PASS" >/dev/null
  fi
  ctl "$node" set_user_tags "$MQ_USER" administrator >/dev/null
  if ! ctl "$node" list_vhosts | grep -qx "$vhost"; then
    ctl "$node" add_vhost "$vhost" >/dev/null
  fi
  ctl "$node" set_permissions -p "$vhost" "$MQ_USER" ".*" ".*" ".*" >/dev/null
}

# Waits for the management API on port $1.
await_api() {
  local url="http://127.0.0.1:$1/api/overview"
  for _ in $(seq 1 120); do
    curl -fsS -u "$MQ_USER:$MQ_PASS" "$url" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "RabbitMQ management API does not answer on 127.0.0.1:$1"
}

rabbit_up() {
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  [ "$tls" = 1 ] && tls_up
  local conf restart=0
  # Once made, the TLS listeners stay: runs without --tls do not restart the broker to drop them.
  if tls_ready; then conf=$(rabbit_conf 5672 15672 5671 15671); else conf=$(rabbit_conf 5672 15672); fi
  # Once made, the fleet network's listener stays too (while the bridge does).
  if fleet_ready; then conf="$conf"$'\n'"listeners.tcp.fleet = $FLEET_ADDR:5672"; fi
  if [ ! -f "$RABBIT_CONF" ] || grep -q "^$MARK" "$RABBIT_CONF"; then
    if [ "$(as_root cat "$RABBIT_CONF" 2>/dev/null)" != "$conf" ]; then
      printf '%s\n' "$conf" | as_root tee "$RABBIT_CONF" >/dev/null
      restart=1
    fi
  else
    say "leaving $RABBIT_CONF as it is (not written by pqx)"
  fi
  # epmd and Erlang distribution on loopback too (they listen on every interface by default).
  if ! grep -q "^$MARK" /etc/rabbitmq/rabbitmq-env.conf 2>/dev/null; then
    as_root tee -a /etc/rabbitmq/rabbitmq-env.conf >/dev/null <<ENV
$MARK
export ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
ENV
  fi
  export ERL_EPMD_ADDRESS=127.0.0.1
  as_root rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
  if [ "$restart" = 1 ] && ctl "" await_startup --timeout 1 >/dev/null 2>&1; then
    say "restarting RabbitMQ: its configuration changed"
    ctl "" stop >/dev/null 2>&1 || true
  fi
  if ! ctl "" await_startup --timeout 1 >/dev/null 2>&1; then
    say "starting RabbitMQ"
    as_root env ERL_EPMD_ADDRESS=127.0.0.1 rabbitmq-server -detached >/dev/null 2>&1 || true
    await_node "" "RabbitMQ (see /var/log/rabbitmq/)"
  fi
  grant "" "$MQ_VHOST"
  await_api 15672
  say "RabbitMQ up: amqp://$MQ_USER@127.0.0.1:5672/$MQ_VHOST, management on 127.0.0.1:15672"
  if tls_ready; then
    await_tls 5671 "RabbitMQ's TLS listener"
    say "RabbitMQ TLS: amqps://127.0.0.1:5671, https://127.0.0.1:15671 (CA $TLS_DIR/ca.pem)"
  fi
}

# Waits for a TLS handshake with the test CA on 127.0.0.1 port $1.
await_tls() {
  for _ in $(seq 1 60); do
    openssl s_client -connect "127.0.0.1:$1" -CAfile "$TLS_DIR/ca.pem" -verify_return_error \
      </dev/null >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$2 does not answer on 127.0.0.1:$1"
}

# A second RabbitMQ node on 127.0.0.1:5673 (management 15673) that the fault tests stop and start,
# so that they never disturb the main node other tests use. It also has the delayed-message plugin
# that every original PQX deployment has, for the tests that reproduce one: the main node has not,
# for the tests of pqx on its own.
NODE2_BASE=/var/lib/rabbitmq/pqx-node2
DELAYED_PLUGIN=rabbitmq_delayed_message_exchange
node2_name() { echo "pqx-node2@$(hostname -s)"; }
node2_env() {
  echo RABBITMQ_NODENAME="$(node2_name)" RABBITMQ_NODE_PORT=5673 RABBITMQ_DIST_PORT=25673 \
    RABBITMQ_MNESIA_BASE="$NODE2_BASE/mnesia" RABBITMQ_LOG_BASE="$NODE2_BASE/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$NODE2_BASE/enabled_plugins" \
    RABBITMQ_PLUGINS_DIR="$(builtin_plugins_dir):$NODE2_BASE/plugins" \
    RABBITMQ_CONFIG_FILE="$NODE2_BASE/rabbitmq.conf" RABBITMQ_PID_FILE="$NODE2_BASE/pid" \
    ERL_EPMD_ADDRESS=127.0.0.1
}

# Where the packaged plugins are (RabbitMQ's default plugins directory).
builtin_plugins_dir() {
  ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins 2>/dev/null | tail -n 1
}

# The delayed-message plugin file: $PQX_DELAYED_PLUGIN, else the one in ../shared/vendor/.
delayed_plugin_file() {
  if [ -n "${PQX_DELAYED_PLUGIN:-}" ]; then echo "$PQX_DELAYED_PLUGIN"; return; fi
  local here; here=$(cd "$(dirname "$0")/.." && pwd)
  ls "$here"/../shared/vendor/$DELAYED_PLUGIN-*.ez 2>/dev/null | tail -n 1
}

# Copies the plugin into node 2's plugins directory; says which plugins node 2 enables.
node2_plugins() {
  local file; file=$(delayed_plugin_file)
  as_root mkdir -p "$NODE2_BASE/plugins"
  if [ -n "$file" ] && [ -f "$file" ]; then
    as_root cp "$file" "$NODE2_BASE/plugins/"
    echo "[rabbitmq_management,$DELAYED_PLUGIN]."
  elif [ "${CI:-}" = true ]; then
    die "the delayed-message plugin is missing (set PQX_DELAYED_PLUGIN or put it in ../shared/vendor/)"
  else
    say "WARNING: no delayed-message plugin (PQX_DELAYED_PLUGIN or ../shared/vendor/): the tests of an original PQX deployment will not run"
    echo "[rabbitmq_management]."
  fi
}

# Whether the node whose management API is on port $1 has the delayed-message exchange type.
has_delayed_type() {
  curl -fsS -u "$MQ_USER:$MQ_PASS" "http://127.0.0.1:$1/api/overview" 2>/dev/null |
    grep -q '"x-delayed-message"'
}

node2_up() {
  local node; node=$(node2_name)
  # A node started before the plugin was there gets it on a restart.
  if ctl "$node" await_startup --timeout 1 >/dev/null 2>&1 && [ -n "$(delayed_plugin_file)" ] &&
    ! has_delayed_type 15673; then
    say "restarting $node to load the delayed-message plugin"
    ctl "$node" stop >/dev/null 2>&1 || true
  fi
  if ! ctl "$node" await_startup --timeout 1 >/dev/null 2>&1; then
    as_root mkdir -p "$NODE2_BASE/mnesia" "$NODE2_BASE/log"
    rabbit_conf 5673 15673 | as_root tee "$NODE2_BASE/rabbitmq.conf" >/dev/null
    node2_plugins | as_root tee "$NODE2_BASE/enabled_plugins" >/dev/null
    as_root chown -R rabbitmq:rabbitmq "$NODE2_BASE"
    say "starting the second RabbitMQ node $node"
    # shellcheck disable=SC2046
    as_root env $(node2_env) rabbitmq-server -detached >/dev/null 2>&1 || true
    await_node "$node" "the second RabbitMQ node (see $NODE2_BASE/log)"
  fi
  # The fault tests stop its app; start it again if a test was cut off while it was stopped.
  ctl "$node" start_app >/dev/null 2>&1 || true
  # RabbitMQ 3.10 cannot delete a vhost that holds a delayed-message exchange, so the tests of an
  # original PQX deployment leave theirs: once they pile up, the node's data is reset.
  local left; left=$(ctl "$node" list_vhosts 2>/dev/null | grep -c '^pqx_test' || true)
  if [ "${left:-0}" -gt 20 ]; then
    say "resetting $node: $left vhosts left by earlier tests"
    ctl "$node" stop_app >/dev/null && ctl "$node" reset >/dev/null && ctl "$node" start_app >/dev/null
  fi
  grant "$node" /
  await_api 15673
  if [ "${CI:-}" = true ] && ! has_delayed_type 15673; then
    die "$node did not load the delayed-message plugin (see $NODE2_BASE/log)"
  fi
  say "second RabbitMQ node up: $node on 127.0.0.1:5673, management on 127.0.0.1:15673"
}

# A three-node cluster for the tests of a broker cluster (quorum queues, a node lost): nodes
# pqx-c1..3@<host>, AMQP on 5681..5683, management on 15681..15683, each in its own directories.
CLUSTER_BASE=/var/lib/rabbitmq/pqx-cluster
cluster_name() { echo "pqx-c$1@$(hostname -s)"; }
cluster_env() {
  local n=$1 dir=$CLUSTER_BASE/c$1
  echo RABBITMQ_NODENAME="$(cluster_name "$n")" RABBITMQ_NODE_PORT=$((5680 + n)) \
    RABBITMQ_DIST_PORT=$((25680 + n)) RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_PID_FILE="$dir/pid" \
    ERL_EPMD_ADDRESS=127.0.0.1
}

# Starts cluster node $1 unless it runs.
cluster_node_up() {
  local n=$1 node dir=$CLUSTER_BASE/c$1
  node=$(cluster_name "$n")
  ctl "$node" await_startup --timeout 1 >/dev/null 2>&1 && return 0
  as_root mkdir -p "$dir/mnesia" "$dir/log"
  rabbit_conf $((5680 + n)) $((15680 + n)) | as_root tee "$dir/rabbitmq.conf" >/dev/null
  echo "[rabbitmq_management]." | as_root tee "$dir/enabled_plugins" >/dev/null
  as_root chown -R rabbitmq:rabbitmq "$CLUSTER_BASE"
  say "starting cluster node $node"
  # shellcheck disable=SC2046
  as_root env $(cluster_env "$n") rabbitmq-server -detached >/dev/null 2>&1 || true
}

# Whether node $1's cluster lists node $2 as a member.
cluster_has() {
  ctl "$1" cluster_status --formatter json 2>/dev/null | grep -q "\"$2\""
}

cluster_up() {
  local n first
  first=$(cluster_name 1)
  for n in 1 2 3; do cluster_node_up "$n"; done
  for n in 1 2 3; do await_node "$(cluster_name "$n")" "cluster node $(cluster_name "$n") (see $CLUSTER_BASE/c$n/log)"; done
  for n in 2 3; do
    local node; node=$(cluster_name "$n")
    if ! cluster_has "$first" "$node"; then
      say "joining $node to the cluster of $first"
      local out
      out=$( { ctl "$node" stop_app && ctl "$node" reset && ctl "$node" join_cluster "$first" &&
        ctl "$node" start_app; } 2>&1) || die "cannot join $node to $first: $out"
    fi
    # A test that stopped a node's app may have been cut off before it started it again.
    ctl "$node" start_app >/dev/null 2>&1 || true
  done
  ctl "$first" start_app >/dev/null 2>&1 || true
  grant "$first" /
  for n in 1 2 3; do await_api $((15680 + n)); done
  say "RabbitMQ cluster up: $(cluster_name 1), $(cluster_name 2), $(cluster_name 3) on 127.0.0.1:5681-5683, management on 15681-15683"
}

pg_cluster() { pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1" "$2}'; }

pg_up() {
  command -v pg_lsclusters >/dev/null || apt_install postgresql
  [ -n "$(pg_cluster)" ] || apt_install postgresql
  read -r ver name <<<"$(pg_cluster)"
  [ -n "${ver:-}" ] || die "no PostgreSQL cluster found (pg_lsclusters)"
  if ! pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1==v && $2==n {print $4}' | grep -q online; then
    say "starting PostgreSQL $ver/$name"
    as_root pg_ctlcluster "$ver" "$name" start
  fi
  local port; port=$(pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1==v && $2==n {print $3}')
  psql_su() { as_root su postgres -c "psql -p $port -qtAX -c \"$1\""; }
  for _ in $(seq 1 60); do psql_su "select 1" >/dev/null 2>&1 && break; sleep 0.5; done
  if [ "$(psql_su "select 1 from pg_roles where rolname='$PG_USER'")" != 1 ]; then
    psql_su "create role $PG_USER login createdb password '$PG_PASS'" >/dev/null
  fi
  if [ "$(psql_su "select 1 from pg_database where datname='$PG_DB'")" != 1 ]; then
    psql_su "create database $PG_DB owner $PG_USER" >/dev/null
  fi
  if tls_ready; then pg_tls "$ver" "$name" "$port"; fi
  if fleet_ready; then pg_fleet "$ver" "$name" "$port"; fi
  say "PostgreSQL up: postgres://$PG_USER@127.0.0.1:$port/$PG_DB"
}

# PostgreSQL listens on the fleet network too, and lets its hosts log in with a password.
pg_fleet() {
  local ver=$1 name=$2 port=$3 hba=/etc/postgresql/$1/$2/pg_hba.conf
  if ! as_root grep -q "^host all all $FLEET_NET scram-sha-256" "$hba"; then
    printf '%s\nhost all all %s scram-sha-256\n' "$MARK" "$FLEET_NET" | as_root tee -a "$hba" >/dev/null
    as_root su postgres -c "psql -p $port -qtAX -c 'select pg_reload_conf()'" >/dev/null
  fi
  local now; now=$(as_root su postgres -c "psql -p $port -qtAX -c 'show listen_addresses'")
  if [ "$now" != "localhost,$FLEET_ADDR" ]; then
    say "PostgreSQL: listening on $FLEET_ADDR too (restarting it)"
    as_root su postgres -c "psql -p $port -qtAX -c \"alter system set listen_addresses = 'localhost,$FLEET_ADDR'\"" >/dev/null
    as_root pg_ctlcluster "$ver" "$name" restart
    for _ in $(seq 1 60); do as_root su postgres -c "psql -p $port -qtAX -c 'select 1'" >/dev/null 2>&1 && break; sleep 0.5; done
  fi
}

# PostgreSQL serves the test CA's certificate for 127.0.0.1 (sslmode=verify-full checks it).
pg_tls() {
  local ver=$1 name=$2 port=$3 dir=/etc/postgresql/$1/$2/pqx-tls
  as_root mkdir -p "$dir"
  as_root cp "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$dir/"
  as_root chown -R postgres:postgres "$dir"
  as_root chmod 600 "$dir/server.key"
  local now; now=$(as_root su postgres -c "psql -p $port -qtAX -c 'show ssl_cert_file'")
  if [ "$now" != "$dir/server.pem" ]; then
    say "PostgreSQL: serving the test CA's certificate"
    as_root su postgres -c "psql -p $port -qtAX -c \"alter system set ssl = on\"" >/dev/null
    as_root su postgres -c "psql -p $port -qtAX -c \"alter system set ssl_cert_file = '$dir/server.pem'\"" >/dev/null
    as_root su postgres -c "psql -p $port -qtAX -c \"alter system set ssl_key_file = '$dir/server.key'\"" >/dev/null
    as_root su postgres -c "psql -p $port -qtAX -c 'select pg_reload_conf()'" >/dev/null
  fi
}

stop_all() {
  for n in 3 2 1; do as_root rabbitmqctl -q -n "$(cluster_name "$n")" stop >/dev/null 2>&1 || true; done
  as_root rabbitmqctl -q -n "$(node2_name)" stop >/dev/null 2>&1 || true
  as_root rabbitmqctl -q stop >/dev/null 2>&1 || true
  if command -v pg_lsclusters >/dev/null && [ -n "$(pg_cluster)" ]; then
    read -r ver name <<<"$(pg_cluster)"
    as_root pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
  fi
  as_root ip link del "$FLEET_BRIDGE" >/dev/null 2>&1 || true
  say "stopped"
}

postgres=0
node2=0
tls=0
cluster=0
fleet=0
for arg in "$@"; do
  case "$arg" in
    stop) stop_all; exit 0 ;;
    --postgres) postgres=1 ;;
    --second-node) node2=1 ;;
    --tls) tls=1 ;;
    --cluster) cluster=1 ;;
    --fleet-net) fleet=1 ;;
    *) die "unknown argument '$arg': expected --postgres, --second-node, --tls, --cluster, --fleet-net or stop" ;;
  esac
done
command -v curl >/dev/null || apt_install curl
[ "$fleet" = 1 ] && fleet_net_up
rabbit_up
[ "$node2" = 1 ] && node2_up
[ "$cluster" = 1 ] && cluster_up
[ "$postgres" = 1 ] && pg_up
exit 0
