#!/usr/bin/env bash
# The client simulator's benchmark: presence-sim (bench/sim/) drives the release
# server on 127.0.0.1, with its default settings, at growing numbers of
# simulated users, then two instances on one database with users spread over
# both. Simulator, server and PostgreSQL share the machine's cores.
# Usage (from the repository root): bash bench/simulate.sh
# Knobs: STEPS ("5000,10000,20000,30000,40000"), TWO_INSTANCES (10000 users),
#        RAMP (30s), WARMUP (30s), DURATION (30s), CONNECTIONS (64 per instance).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-5000,10000,20000,30000,40000}
TWO_INSTANCES=${TWO_INSTANCES:-10000}
RAMP=${RAMP:-30s}
WARMUP=${WARMUP:-30s}
DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18280}
SERVER=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
DB=presence_simulation
URL="$SERVER/$DB"
BIN=./target/release/presence
SIM=./target/release/presence-sim
export PRESENCE_JWT_SECRET=bench-secret-not-for-production

cargo build --release --quiet
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

psql -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate

# start PORT: a server with the default settings; its pid is appended to PIDS.
start() {
    env DATABASE_URL="$URL" PRESENCE_ADDR="127.0.0.1:$1" PRESENCE_METRICS_ADDR= RUST_LOG=warn \
        "$BIN" serve &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "the server did not start" >&2; exit 1
}
stop_all() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done
    PIDS=()
}
simulate() {
    "$SIM" --ramp "$RAMP" --warmup "$WARMUP" --duration "$DURATION" \
        --connections "$CONNECTIONS" --database-url "$URL" "$@"
}

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
psql -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
