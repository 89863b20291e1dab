#!/usr/bin/env bash
# Read replicas: status reads that miss the cache, answered by the primary,
# then by a streaming standby, through the release server.
# A private primary (initdb's defaults, fsync on) and a `pg_basebackup -R`
# standby of it run on this machine beside the server and wrk, in temporary
# folders. The server's cache holds 1,000 rows, so batches of 100 random users
# out of 100,000 miss it nearly always: every batch is a database read, as the
# misses of a deployment larger than its instances' caches are.
# Usage (from the repository root): bash bench/replicas.sh
# Knobs: USERS (100000), DURATION (10s), CONNECTIONS (64).
source "$(dirname "$0")/lib.sh"

USERS=${USERS:-100000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18380}
PG_PORT=${PG_PORT:-25532}
STANDBY_PORT=${STANDBY_PORT:-25533}
METRICS_PORT=${METRICS_PORT:-18381}
DB=presence_replicas
PRIMARY="postgres://postgres@127.0.0.1:$PG_PORT/$DB"
STANDBY="postgres://postgres@127.0.0.1:$STANDBY_PORT/$DB"
BASE="http://127.0.0.1:$PORT"

need wrk wrk
build
WORK=$(mktemp -d)
PRIMARY_DATA="$WORK/primary"
STANDBY_DATA="$WORK/standby"
mkdir -m 700 "$PRIMARY_DATA" "$STANDBY_DATA"
# initdb refuses to run as root.
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK"
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DATA" -m immediate -w stop >/dev/null 2>&1 || true
    as_postgres "$PG_BIN/pg_ctl" -D "$PRIMARY_DATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export BENCH_DATA="$WORK/data.lua" BENCH_LUA="$PWD/bench/lua"

say "a primary and its standby..."
as_postgres "$PG_BIN/initdb" -D "$PRIMARY_DATA" -A trust -U postgres >/dev/null
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n" "$PG_PORT" "$PRIMARY_DATA" \
    >> "$PRIMARY_DATA/postgresql.conf"
as_postgres "$PG_BIN/pg_ctl" -D "$PRIMARY_DATA" -l "$WORK/primary.log" -w start >/dev/null
psql -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c "create database $DB"
DATABASE_URL="$PRIMARY" RUST_LOG=warn "$BIN" migrate
say "seeding $USERS users..."
psql -q "$PRIMARY" -v users="$USERS" -f bench/seed-users.sql
as_postgres "$PG_BIN/pg_basebackup" -D "$STANDBY_DATA" -R -X stream -c fast \
    -h 127.0.0.1 -p "$PG_PORT" -U postgres
printf "port = %s\nunix_socket_directories = '%s'\n" "$STANDBY_PORT" "$STANDBY_DATA" >> "$STANDBY_DATA/postgresql.conf"
as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DATA" -l "$WORK/standby.log" -w start >/dev/null

psql -qAt "$PRIMARY" -c "select user_id from user_status order by user_id" > "$WORK/ids"
viewer=$(head -n 1 "$WORK/ids")
token=$(PRESENCE_JWT_SECRET=$SECRET "$BIN" token "$viewer" --ttl 2h)
{
    printf 'ids = {\n'; sed 's/.*/"&",/' "$WORK/ids"; printf '}\n'
    printf 'tokens = {\n"%s",\n}\n' "$token"
} > "$BENCH_DATA"

start_server() {
    env DATABASE_URL="$PRIMARY" PRESENCE_ADDR="127.0.0.1:$PORT" PRESENCE_JWT_SECRET=$SECRET \
        PRESENCE_METRICS_ADDR="127.0.0.1:$METRICS_PORT" PRESENCE_PRUNE_EVERY=0 \
        PRESENCE_CACHE_CAPACITY=1000 RUST_LOG=warn "$@" "$BIN" serve &
    SERVER_PID=$!
    wait_until_ready "$BASE/readyz"
}
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=; }
reads() {
    curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk -v server="$1" '$1 == "presence_database_reads_total{server=\"" server "\"}" { print $2 }'
}
# batch NAME: prints "statuses/s p50_ms p99_ms"
batch() {
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/lua/batch.lua "$BASE/api/status" > "$WORK/$1.txt"
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50.000%" || $1 == "50%" { p50 = ms($2) }
        $1 == "99.000%" || $1 == "99%" { p99 = ms($2) }
        END { printf "%.0f %.2f %.2f\n", rps * 100, p50, p99 }' "$WORK/$1.txt"
}

# Alternated twice, so that neither side gets all the warmer moments.
primary=0; replica=0; from_replica=0; from_primary=0
for round in 1 2; do
    say "round $round: batches of 100 from the primary..."
    start_server
    read -r rate p50 p99 < <(batch "primary-$round")
    primary=$((primary + rate))
    stop_server

    say "round $round: batches of 100 through the standby..."
    start_server PRESENCE_DATABASE_REPLICA_URLS="$STANDBY"
    for _ in $(seq 1 100); do
        [ "$(curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" | awk '$1 == "presence_replicas_in_rotation" { print $2 }')" = 1 ] && break
        sleep 0.1
    done
    read -r rate r50 r99 < <(batch "replica-$round")
    replica=$((replica + rate))
    from_replica=$((from_replica + $(reads replica))); from_primary=$((from_primary + $(reads primary)))
    stop_server
done
primary=$((primary / 2)); replica=$((replica / 2))

share=$(awk -v r="${from_replica:-0}" -v p="${from_primary:-0}" 'BEGIN { printf "%.3f", (r + p > 0 ? r / (r + p) : 0) }')
ratio=$(awk -v a="$replica" -v b="$primary" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
printf '\n%-52s %12s %8s %8s %8s\n' "figure (2 cores, $USERS users, c=$CONNECTIONS)" "statuses/s" "p50 ms" "p99 ms" "ratio"
printf '%-52s %12s %8s %8s %8s\n' "ceiling: batch of 100, misses read on the primary" "$primary" "$p50" "$p99" "1.00"
printf '%-52s %12s %8s %8s %8s\n' "batch of 100, misses read on the standby" "$replica" "$r50" "$r99" "$ratio"
echo "(statuses/s: the mean of two rounds; latencies: the second round)"
printf 'database reads answered by the standby in its runs: %s of %s (%s)\n' \
    "${from_replica:-0}" "$(awk -v r="${from_replica:-0}" -v p="${from_primary:-0}" 'BEGIN { print r + p }')" "$share"
