#!/usr/bin/env bash
# A Citus worker down under load. A private Citus cluster (a coordinator and
# two workers, fsync on, bench/citus-cluster.sh; the citus extension must be
# installed), the release server on it with its default settings, and the
# client simulator (bench/sim/) keeping USERS users on it; meanwhile
# bench/worker_down.py stops one worker at once for DOWN seconds, starts it
# again, and checks what its probe users were answered (see that file).
# Exits 1 when a check fails.
# Usage (from the repository root): bash bench/citus-worker-down.sh
# Knobs: USERS (1000), DOWN (20 s).
source "$(dirname "$0")/lib.sh"

USERS=${USERS:-1000}
DOWN=${DOWN:-20}
PORT=${PORT:-18290}
DB=presence_worker_down
export PRESENCE_JWT_SECRET=$SECRET

bash bench/citus-cluster.sh installed || {
    echo "the citus extension is not installed: see docs/scaling.md, \"Running the tests on Citus\"" >&2
    exit 1
}
build
CITUS_DIR=$(mktemp -d)
SERVER=
SIMULATOR=
cleanup() {
    [ -n "$SIMULATOR" ] && kill "$SIMULATOR" 2>/dev/null || true
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    bash bench/citus-cluster.sh stop "$CITUS_DIR"
}
trap cleanup EXIT
CITUS_FSYNC=on CITUS_SHARD_COUNT=8 bash bench/citus-cluster.sh start "$CITUS_DIR" >/dev/null
URL=$(bash bench/citus-cluster.sh database "$CITUS_DIR" "$DB")
DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate --citus
DATABASE_URL="$URL" PRESENCE_ADDR="127.0.0.1:$PORT" PRESENCE_METRICS_ADDR= RUST_LOG=error \
    "$BIN" serve &
SERVER=$!
wait_until_ready "http://127.0.0.1:$PORT/readyz"

# The simulator's measured minute spans the whole outage.
"$SIM" --url "http://127.0.0.1:$PORT" --users "$USERS" --ramp 20s --warmup 5s \
    --duration "$((DOWN + 40))s" --server-pid "$SERVER" &
SIMULATOR=$!
sleep 25
held=0
python3 bench/worker_down.py --url "http://127.0.0.1:$PORT" --database-url "$URL" \
    --cluster-dir "$CITUS_DIR" --binary "$BIN" --down "$DOWN" || held=$?
wait "$SIMULATOR" || true
SIMULATOR=
exit "$held"
