#!/usr/bin/env bash
# The change feed's benchmark: what recording every change costs the pings,
# whether a dead webhook endpoint slows them, and how soon a backend has each
# change under real clients' load.
#
# 1. Ping throughput with the feed on against off: wrk sends heartbeats
#    (lua/ping.lua: random tabs of TOKENS users, group-committed) as fast as
#    the server takes them, in rounds that alternate the feed's switch
#    (feed_switch(), which the trigger sees at its next write), so that
#    neither side gets all the later, bigger tables.
# 2. The same pings with webhooks on, the endpoint answering at once, then
#    the endpoint accepting connections and never answering (a hung backend):
#    throughput and p50/p99 of each, at HANG_CONNECTIONS connections, while
#    one user switches do-not-disturb ten times a second (changes to deliver).
# 3. presence-sim at SIM_USERS simulated users (bench/README.md describes the
#    load), the feed off, then on with a backend following it: a reader
#    polling the feed and a local receiver of the webhooks, each noting how
#    long after its instant it had every change.
# PostgreSQL is a private throwaway cluster with initdb's defaults, as in
# bench/simulate.sh. Usage (from the repository root): bash bench/feed.sh
# Knobs: USERS (10000 seeded for wrk), TOKENS (1000), DURATION (10s),
#        CONNECTIONS (64), HANG_CONNECTIONS (16), ROUNDS (4), SIM_USERS (10000),
#        RAMP (30s), WARMUP (6m: users start going idle 5 min after their
#        last activity, so a shorter run would see few changes by the clock),
#        SIM_DURATION (60s), SIMULATE (1; 0 skips part 3). About 25 minutes
#        (4 without part 3).
# PostgreSQL logs its checkpoints and autovacuum runs; the script prints them
# at the end, to lay beside the seconds the simulator found slow.
source "$(dirname "$0")/lib.sh"

USERS=${USERS:-10000}
TOKENS=${TOKENS:-1000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
HANG_CONNECTIONS=${HANG_CONNECTIONS:-16}
ROUNDS=${ROUNDS:-4}
SIM_USERS=${SIM_USERS:-10000}
SIMULATE=${SIMULATE:-1}
RAMP=${RAMP:-30s}
WARMUP=${WARMUP:-6m}
SIM_DURATION=${SIM_DURATION:-60s}
PORT=${PORT:-18380}
RECEIVER_PORT=$((PORT + 1))
PG_PORT=${PG_PORT:-25532}
DB=presence_feed
URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB"
BASE="http://127.0.0.1:$PORT"
# A webhook secret for this benchmark only (Standard Webhooks' form).
WEBHOOK_SECRET=whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtbm90LWZvci11c2U=
export PRESENCE_JWT_SECRET=$SECRET

need wrk wrk
build

WORK=$(mktemp -d)
PG_DATA=$(mktemp -d)
SERVER_PID=
RECEIVER_PID=
CHANGING_PID=
cleanup() {
    [ -n "$CHANGING_PID" ] && kill "$CHANGING_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$RECEIVER_PID" ] && kill "$RECEIVER_PID" 2>/dev/null || true
    stop_private_postgres "$PG_DATA"
    rm -rf "$WORK"
}
trap cleanup EXIT
export BENCH_DATA="$WORK/data.lua" BENCH_LUA="$PWD/bench/lua"

private_postgres "$PG_DATA" "$PG_PORT"
PG_PID=$(head -n 1 "$PG_DATA/postmaster.pid")
psql -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
    -c "alter system set log_autovacuum_min_duration = 0" -c "select pg_reload_conf()" >/dev/null

# fresh_database: the database, migrated, with no users.
fresh_database() {
    psql -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
        -c "drop database if exists $DB with (force)" -c "create database $DB"
    DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate
}
feed() { psql -qAt "$URL" -c "select feed_switch($1)" >/dev/null; }

# start_server [NAME=VALUE...]: the server, pings limited by nothing but the machine.
start_server() {
    env DATABASE_URL="$URL" PRESENCE_ADDR="127.0.0.1:$PORT" PRESENCE_METRICS_ADDR= RUST_LOG=warn \
        PRESENCE_PUT_BURST=100000000 PRESENCE_PUT_PER_SECOND=100000000 \
        "$@" "$BIN" serve &
    SERVER_PID=$!
    wait_until_ready "$BASE/readyz"
}
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=; }

# receiver MODE: a webhook endpoint on RECEIVER_PORT that answers 204 at once
# (MODE up) or accepts connections and never answers (MODE hung).
receiver() {
    python3 - "$RECEIVER_PORT" "$1" <<'PY' &
import socket, sys, threading
port, mode = int(sys.argv[1]), sys.argv[2]
server = socket.create_server(("127.0.0.1", port), reuse_port=True)
held = []
def serve(connection):
    buffer = b""
    while True:
        data = connection.recv(65536)
        if not data:
            return
        buffer += data
        while b"\r\n\r\n" in buffer:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                break
            buffer = rest[length:]
            connection.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
while True:
    connection, _ = server.accept()
    if mode == "hung":
        held.append(connection)
    else:
        threading.Thread(target=serve, args=(connection,), daemon=True).start()
PY
    RECEIVER_PID=$!
    sleep 0.5
}
stop_receiver() { kill "$RECEIVER_PID"; wait "$RECEIVER_PID" 2>/dev/null || true; RECEIVER_PID=; }

# changing: one user switches do-not-disturb on and off ten times a second,
# so that the feed has changes to deliver while wrk runs; stop_changing ends it.
changing() {
    local token
    token=$(head -n 1 "$WORK/tokens")
    (
        status='"dnd"'
        while true; do
            curl -fs -o /dev/null -X PUT "$BASE/api/status" -H "Authorization: Bearer $token" \
                -H 'Content-Type: application/json' \
                -d "{\"deviceId\":\"desk\",\"manualStatus\":$status}" || true
            if [ "$status" = null ]; then status='"dnd"'; else status=null; fi
            sleep 0.1
        done
    ) &
    CHANGING_PID=$!
}
stop_changing() { kill "$CHANGING_PID"; wait "$CHANGING_PID" 2>/dev/null || true; }

# run_wrk NAME SCRIPT PATH [CONNECTIONS]: prints "rps p50_ms p99_ms"
run_wrk() {
    local out="$WORK/$1.txt"
    wrk -t1 -c"${4:-$CONNECTIONS}" -d"$DURATION" --latency -s "bench/lua/$2" "$BASE$3" > "$out"
    wrk_figures "$out"
}

say "seeding $USERS users, signing $TOKENS tokens..."
# Seeded with the feed off, so that the feed holds no change of theirs and
# schedules none (their devices time out a minute later, which would put ten
# thousand changes by the clock into one round): wrk's pings are the only
# writes, and each round measures the same steady heartbeats.
fresh_database
feed false
psql -q "$URL" -v users="$USERS" -f bench/seed-users.sql
psql -qAt "$URL" -c "select user_id from user_status order by user_id limit $TOKENS" > "$WORK/ids"
while read -r id; do "$BIN" token "$id" --ttl 2h; done < "$WORK/ids" > "$WORK/tokens"
{
    printf 'ids = {\n'; sed 's/.*/"&",/' "$WORK/ids"; printf '}\n'
    printf 'tokens = {\n'; sed 's/.*/"&",/' "$WORK/tokens"; printf '}\n'
} > "$WORK/data.lua"

say "pings with the feed off and on, $ROUNDS rounds..."
start_server
run_wrk warmup ping.lua /api/status >/dev/null
on_rounds=(); off_rounds=()
for round in $(seq 1 "$ROUNDS"); do
    # Off then on, then on then off: each side gets as many earlier moments.
    if [ $((round % 2)) = 1 ]; then order="false true"; else order="true false"; fi
    for state in $order; do
        feed "$state"
        read -r rps _ _ < <(run_wrk "feed-$state-$round" ping.lua /api/status)
        if [ "$state" = true ]; then on_rounds+=("$rps"); else off_rounds+=("$rps"); fi
    done
done
stop_server

say "pings with webhooks delivered, then the endpoint hung..."
start_server PRESENCE_WEBHOOK_URL="http://127.0.0.1:$RECEIVER_PORT/hook" \
    PRESENCE_WEBHOOK_SECRET="$WEBHOOK_SECRET"
changing
receiver up
read -r up_rps up50 up99 < <(run_wrk hook-up ping.lua /api/status "$HANG_CONNECTIONS")
stop_receiver
receiver hung
read -r hung_rps hung50 hung99 < <(run_wrk hook-hung ping.lua /api/status "$HANG_CONNECTIONS")
stop_receiver
stop_changing
stop_server

# simulate ON: presence-sim at SIM_USERS on a fresh database (only the
# simulated users), the feed on or off.
simulate() {
    fresh_database
    feed "$1"
    local hooks=()
    if [ "$1" = true ]; then
        start_server PRESENCE_WEBHOOK_URL="http://127.0.0.1:$RECEIVER_PORT/hook" \
            PRESENCE_WEBHOOK_SECRET="$WEBHOOK_SECRET"
        hooks=(--feed --webhook-listen "127.0.0.1:$RECEIVER_PORT" --webhook-secret "$WEBHOOK_SECRET")
    else
        start_server
    fi
    "$SIM" --url "$BASE" --users "$SIM_USERS" --ramp "$RAMP" --warmup "$WARMUP" \
        --duration "$SIM_DURATION" --connections "$CONNECTIONS" --database-url "$URL" \
        --server-pid "$SERVER_PID" --postgres-node "postgres=$PG_PID" "${hooks[@]}"
    stop_server
}
if [ "$SIMULATE" = 1 ]; then
    say "presence-sim, $SIM_USERS users, the feed off..."
    printf '\n== presence-sim, %s users, the feed off ==\n' "$SIM_USERS"
    simulate false
    say "presence-sim, $SIM_USERS users, the feed on, a backend following it..."
    printf '\n== presence-sim, %s users, the feed on, a reader and a webhook receiver ==\n' "$SIM_USERS"
    simulate true
fi

sum() { local total=0; for value in "$@"; do total=$((total + value)); done; echo "$total"; }
off=$(sum "${off_rounds[@]}"); on=$(sum "${on_rounds[@]}")
printf '\n%-46s %s\n' "figure ($(nproc) cores, c=$CONNECTIONS)" "value"
printf '%-46s %s\n' "ceiling: PUT ping/s, feed off, each round" "${off_rounds[*]}"
printf '%-46s %s\n' "PUT ping/s, feed on, each round" "${on_rounds[*]}"
printf '%-46s %s\n' "feed on against off, all rounds" "$(ratio "$on" "$off") (goal >= 0.90)"
printf '%-46s %s\n' "ceiling: pings, webhook endpoint up (c=$HANG_CONNECTIONS)" \
    "$up_rps/s, p50 $up50 ms, p99 $up99 ms"
printf '%-46s %s\n' "pings, webhook endpoint hung" "$hung_rps/s, p50 $hung50 ms, p99 $hung99 ms"
printf '%-46s %s\n' "hung against up: throughput, p99" \
    "$(ratio "$hung_rps" "$up_rps"), $(ratio "$hung99" "$up99") (goal: ~1.00, ~1.00)"
printf '\nPostgreSQL: checkpoints and autovacuum runs (UTC)\n'
grep -E 'checkpoint (starting|complete)|automatic (vacuum|analyze) of table' "$PG_DATA/server.log" \
    | sed -E 's/^([0-9-]+ [0-9:.]+) UTC \[[0-9]+\] (LOG: +)?/\1 /' | cut -c1-160 || true
