#!/usr/bin/env bash
# A private Citus cluster on loopback, started from the installed `citus`
# extension: a coordinator and two workers, each its own throwaway PostgreSQL
# in a folder of DIR, the workers added to the coordinator's `postgres`
# database. Used by .ci/run (the suite's Citus pass) and bench/simulate.sh
# (CITUS=1). It never builds Citus: it needs citus.so installed for the newest
# PostgreSQL under /usr/lib/postgresql, and says so when it is not.
#
# Usage (from anywhere):
#   bash bench/citus-cluster.sh installed           exit 0 when the extension is installed
#   bash bench/citus-cluster.sh start DIR [PORT]    start it (ports PORT, PORT+1, PORT+2;
#                                                   a free range by default); prints the
#                                                   coordinator's URL on standard output
#   bash bench/citus-cluster.sh database DIR NAME   create database NAME on every node, with
#                                                   the extension and the workers added;
#                                                   prints its URL on the coordinator
#   bash bench/citus-cluster.sh stop-node DIR N     stop node N (0: coordinator, 1-2: workers) at once
#   bash bench/citus-cluster.sh start-node DIR N    start node N again
#   bash bench/citus-cluster.sh stop DIR            stop every node and remove DIR
# Knobs: CITUS_SHARD_COUNT (Citus's default, 32), CITUS_FSYNC (off; on for benchmarks).
set -euo pipefail

source "$(dirname "$0")/lib.sh"

installed() {
    [ -n "$PG_BIN" ] && [ -f "$("$PG_BIN/pg_config" --pkglibdir)/citus.so" ]
}

# free_port_range: the first of three free ports in a row, below the kernel's
# ephemeral range (as private_postgres in lib.sh explains).
free_port_range() {
    python3 - <<'EOF'
import socket
for base in range(26000, 30000, 10):
    try:
        sockets = []
        for port in range(base, base + 3):
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            sockets.append(s)
        print(base)
        break
    except OSError:
        pass
EOF
}

node_dir() { echo "$1/node$2"; }
node_port() { cat "$(node_dir "$1" "$2")/port"; }

start_node() {
    local data
    data=$(node_dir "$1" "$2")
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
}

stop_node() {
    as_postgres "$PG_BIN/pg_ctl" -D "$(node_dir "$1" "$2")" -m immediate -w stop >/dev/null 2>&1 || true
}

psql_node() {
    local dir=$1 node=$2
    shift 2
    psql -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$(node_port "$dir" "$node")/postgres" "$@"
}

start() {
    local dir=$1 base=${2:-}
    installed || { echo "the citus extension is not installed for $PG_BIN" >&2; exit 1; }
    [ -n "$base" ] || base=$(free_port_range)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    for node in 0 1 2; do
        local data port=$((base + node))
        data=$(node_dir "$dir" "$node")
        as_postgres mkdir -p "$data"
        as_postgres chmod 700 "$data"
        as_postgres "$PG_BIN/initdb" -D "$data" -A trust -U postgres --no-sync >/dev/null
        cat >> "$data/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
shared_preload_libraries = 'citus'
max_connections = 300
fsync = ${CITUS_FSYNC:-off}
citus.shard_count = ${CITUS_SHARD_COUNT:-32}
# A worker that does not answer is given up on quickly (the default is 30 s).
citus.node_connection_timeout = 2000
EOF
        echo "$port" | as_postgres tee "$data/port" >/dev/null
        start_node "$dir" "$node"
    done
    psql_node "$dir" 0 -c "create extension citus" \
        -c "select citus_set_coordinator_host('127.0.0.1', $base)" >/dev/null
    for node in 1 2; do
        psql_node "$dir" "$node" -c "create extension citus"
        psql_node "$dir" 0 -c "select citus_add_node('127.0.0.1', $((base + node)))" >/dev/null
    done
    echo "postgres://postgres@127.0.0.1:$base/postgres"
}

database() {
    local dir=$1 name=$2 base
    base=$(node_port "$dir" 0)
    for node in 0 1 2; do
        psql_node "$dir" "$node" -c "create database \"$name\""
        psql -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$(node_port "$dir" "$node")/$name" \
            -c "create extension citus"
    done
    psql -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$base/$name" \
        -c "select citus_set_coordinator_host('127.0.0.1', $base)" \
        -c "select citus_add_node('127.0.0.1', $(node_port "$dir" 1))" \
        -c "select citus_add_node('127.0.0.1', $(node_port "$dir" 2))" >/dev/null
    echo "postgres://postgres@127.0.0.1:$base/$name"
}

stop() {
    local dir=$1
    for node in 0 1 2; do
        [ -d "$(node_dir "$dir" "$node")" ] && stop_node "$dir" "$node"
    done
    rm -rf "$dir"
}

case "${1:-}" in
    installed) installed ;;
    start) start "$2" "${3:-}" ;;
    database) database "$2" "$3" ;;
    stop) stop "$2" ;;
    stop-node) stop_node "$2" "$3" ;;
    start-node) start_node "$2" "$3" ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
