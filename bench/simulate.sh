#!/usr/bin/env bash
# The client simulator's benchmark: presence-sim (bench/sim/) drives the release
# server on 127.0.0.1, with its default settings, at growing numbers of
# simulated users, then two instances on one database with users spread over
# both. Simulator, server and PostgreSQL share the machine's cores.
# Each server's metrics listener is on (as by default), at its port + 100: the
# simulator reads the servers' own request durations from it once a second, to
# tell a slow second of the servers' from one of its own.
# PostgreSQL is a private throwaway cluster with initdb's defaults (autovacuum
# on, fsync on), as a production server would run, whatever the shared
# server's settings are; its data lives in a temporary folder.
# Usage (from the repository root): bash bench/simulate.sh
# Knobs: STEPS ("10000,15000,20000,25000,30000"), TWO_INSTANCES (10000 users),
#        RAMP (30s), WARMUP (30s), DURATION (60s), CONNECTIONS (64 per instance).
# DIAGNOSE=1: PostgreSQL also keeps pg_stat_statements, logs a sample of plans
# (auto_explain), autovacuum, checkpoints and statements over 200 ms; at the
# end the tables' scan and update counts, the costliest statements and those
# log lines go to stderr. Its own overhead is in the figures: compare such
# runs with each other only.
# CITUS=1: instead, steps of CITUS_USERS ("2500,5000") users on that private
# PostgreSQL, then the same on a private Citus cluster (a coordinator and two
# workers, fsync on, CITUS_SHARD_COUNT (8) shards, bench/citus-cluster.sh;
# the citus extension must be installed), each server's CPU measured apart.
# ROOMS=1: instead, steps of ROOM_STEPS ("5000,10000") users without rooms,
# then the same with rooms (each user in 3 rooms of 50 members, polling the one
# on screen, typing in bursts), then one room of LARGE_ROOM (10000) members,
# LARGE_ROOM_POLLERS (1000) of them polling its occupancy every 3 s.
source "$(dirname "$0")/lib.sh"

STEPS=${STEPS:-10000,15000,20000,25000,30000}
TWO_INSTANCES=${TWO_INSTANCES:-10000}
RAMP=${RAMP:-30s}
WARMUP=${WARMUP:-30s}
DURATION=${DURATION:-60s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18280}
PG_PORT=${PG_PORT:-25432}
DB=presence_simulation
URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB"
export PRESENCE_JWT_SECRET=$SECRET

build
PG_DATA=$(mktemp -d)
PIDS=()
METRICS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ "${DIAGNOSE:-}" = 1 ]; then diagnosis >&2 || true; fi
    stop_private_postgres "$PG_DATA"
}
# diagnosis: what DIAGNOSE=1 prints at the end.
diagnosis() {
    psql "$URL" -c "select relname, seq_scan, seq_tup_read, idx_scan, n_tup_upd, n_tup_hot_upd,
                           last_autovacuum, last_autoanalyze
                    from pg_stat_user_tables order by seq_tup_read desc limit 8"
    psql "$URL" -c "select calls, round(total_exec_time) as ms, round((total_exec_time / calls)::numeric, 3) as ms_a_call,
                           rows, left(regexp_replace(query, '\s+', ' ', 'g'), 120) as statement
                    from pg_stat_statements order by total_exec_time desc limit 20"
    grep -E 'automatic (vacuum|analyze) of table|checkpoint (starting|complete)|duration: [0-9]{3,}\.[0-9]+ ms  statement' \
        "$PG_DATA/server.log" || true
    say "plans sampled that scan user_status whole: $(grep -c 'Seq Scan on user_status' "$PG_DATA/server.log")"
}
trap cleanup EXIT
private_postgres "$PG_DATA" "$PG_PORT"
if [ "${DIAGNOSE:-}" = 1 ]; then
    cat >> "$PG_DATA/postgresql.conf" <<'CONF'
shared_preload_libraries = 'pg_stat_statements,auto_explain'
pg_stat_statements.track = all
auto_explain.log_min_duration = 0
auto_explain.sample_rate = 0.0003
auto_explain.log_nested_statements = on
log_autovacuum_min_duration = 0
log_checkpoints = on
log_min_duration_statement = 200
CONF
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w restart >/dev/null
fi
psql -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c "create database $DB"
if [ "${DIAGNOSE:-}" = 1 ]; then psql -q "$URL" -c "create extension pg_stat_statements"; fi
DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate

# start PORT: a server with the default settings, its metrics listener on
# PORT + 100; its pid is appended to PIDS, that listener to METRICS.
start() {
    env DATABASE_URL="$URL" PRESENCE_ADDR="127.0.0.1:$1" \
        PRESENCE_METRICS_ADDR="127.0.0.1:$(($1 + 100))" RUST_LOG=warn "$BIN" serve &
    PIDS+=($!)
    METRICS+=("--metrics-url=http://127.0.0.1:$(($1 + 100))")
    wait_until_ready "http://127.0.0.1:$1/readyz"
}
stop_all() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done
    PIDS=()
    METRICS=()
}
simulate() {
    "$SIM" --ramp "$RAMP" --warmup "$WARMUP" --duration "$DURATION" \
        --connections "$CONNECTIONS" --database-url "$URL" "${METRICS[@]}" "$@"
}

# The postmaster's pid of the PostgreSQL server in folder $1.
postmaster() { head -n 1 "$1/postmaster.pid"; }

if [ "${CITUS:-}" = 1 ]; then
    CITUS_USERS=${CITUS_USERS:-2500,5000}
    echo "one instance on PostgreSQL, $CITUS_USERS users" >&2
    start "$PORT"
    simulate --url "http://127.0.0.1:$PORT" --users "$CITUS_USERS" --server-pid "${PIDS[0]}" \
        --postgres-node "postgres=$(postmaster "$PG_DATA")"
    stop_all

    echo "one instance on Citus (a coordinator and two workers), $CITUS_USERS users" >&2
    CITUS_DIR=$(mktemp -d)
    trap 'cleanup; bash bench/citus-cluster.sh stop "$CITUS_DIR"' EXIT
    CITUS_FSYNC=on CITUS_SHARD_COUNT=${CITUS_SHARD_COUNT:-8} \
        bash bench/citus-cluster.sh start "$CITUS_DIR" >/dev/null
    URL=$(bash bench/citus-cluster.sh database "$CITUS_DIR" "$DB")
    DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate --citus
    start "$PORT"
    simulate --url "http://127.0.0.1:$PORT" --users "$CITUS_USERS" --server-pid "${PIDS[0]}" \
        --postgres-node "coordinator=$(postmaster "$CITUS_DIR/node0")" \
        --postgres-node "worker1=$(postmaster "$CITUS_DIR/node1")" \
        --postgres-node "worker2=$(postmaster "$CITUS_DIR/node2")"
    stop_all
    exit 0
fi

if [ "${ROOMS:-}" = 1 ]; then
    ROOM_STEPS=${ROOM_STEPS:-5000,10000}
    echo "one instance, steps of $ROOM_STEPS users, statuses only" >&2
    start "$PORT"
    simulate --url "http://127.0.0.1:$PORT" --users "$ROOM_STEPS" --server-pid "${PIDS[0]}"
    echo "one instance, steps of $ROOM_STEPS users, each in 3 rooms of 50" >&2
    simulate --url "http://127.0.0.1:$PORT" --users "$ROOM_STEPS" --server-pid "${PIDS[0]}" \
        --rooms-per-user 3 --room-size 50
    echo "one instance, one room of ${LARGE_ROOM:-10000} members" >&2
    simulate --url "http://127.0.0.1:$PORT" --server-pid "${PIDS[0]}" \
        --large-room "${LARGE_ROOM:-10000}" --large-room-pollers "${LARGE_ROOM_POLLERS:-1000}"
    stop_all
    exit 0
fi

echo "one instance, steps of $STEPS users" >&2
start "$PORT"
simulate --url "http://127.0.0.1:$PORT" --users "$STEPS" --server-pid "${PIDS[0]}"
stop_all

echo "two instances on one database, $TWO_INSTANCES users spread over both" >&2
start "$PORT"
start $((PORT + 1))
simulate --url "http://127.0.0.1:$PORT" --url "http://127.0.0.1:$((PORT + 1))" \
    --users "$TWO_INSTANCES" --server-pid "${PIDS[0]}" --server-pid "${PIDS[1]}"
stop_all
