#!/usr/bin/env bash
# The polling benchmark: the release binary on 127.0.0.1 with 100,000 users
# seeded, loaded by wrk, each figure printed beside a ceiling measured in the
# same run (the HTTP floor, and pgbench's point-select and write rates).
# Usage (from the repository root): bash bench/run.sh
# Knobs: USERS (100000), TOKENS (1000), DURATION (10s), CONNECTIONS (64),
#        HOT (1000: the users the cached reads poll).
# Real clients (ETags, heartbeats, tabs, an open loop) are bench/simulate.sh.
source "$(dirname "$0")/lib.sh"

USERS=${USERS:-100000}
TOKENS=${TOKENS:-1000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
HOT=${HOT:-1000}
PORT=${PORT:-18180}
SERVER=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
DB=presence_bench
URL="$SERVER/$DB"
BASE="http://127.0.0.1:$PORT"

need wrk wrk
need pgbench postgresql-contrib
build

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "${SERVER_B:-}" ] && kill "$SERVER_B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export BENCH_DATA="$WORK/data.lua" BENCH_LUA="$PWD/bench/lua"


# ---- seeding --------------------------------------------------------------
say "seeding $USERS users..."
psql -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate
psql -q "$URL" -v users="$USERS" -f bench/seed-users.sql
psql -qAt "$URL" -c "select user_id from user_status order by user_id" > "$WORK/ids"
say "signing $TOKENS tokens..."
head -n "$TOKENS" "$WORK/ids" | while read -r id; do
    PRESENCE_JWT_SECRET=$SECRET "$BIN" token "$id" --ttl 2h
done > "$WORK/tokens"
# The same viewers' tokens as an identity provider would sign them: RS256,
# with the public key given to the server as a PEM file.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/idp.key" 2>/dev/null
openssl pkey -in "$WORK/idp.key" -pubout -out "$WORK/idp.pub.pem"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
rs_header=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
expires=$(( $(date +%s) + 7200 ))
head -n "$TOKENS" "$WORK/ids" | while read -r id; do
    payload=$(printf '{"sub":"%s","exp":%d}' "$id" "$expires" | b64url)
    signature=$(printf '%s.%s' "$rs_header" "$payload" | openssl dgst -sha256 -sign "$WORK/idp.key" -binary | b64url)
    printf '%s.%s.%s\n' "$rs_header" "$payload" "$signature"
done > "$WORK/tokens-rs256"
# data.lua: the ids and the HS256 tokens; data-rs256.lua: the ids and the RS256 tokens.
for kind in "" -rs256; do
    {
        printf 'ids = {\n'; sed 's/.*/"&",/' "$WORK/ids"; printf '}\n'
        printf 'tokens = {\n'; sed 's/.*/"&",/' "$WORK/tokens$kind"; printf '}\n'
    } > "$WORK/data$kind.lua"
done

# ---- helpers ----------------------------------------------------------------
start_server() {
    env DATABASE_URL="$URL" PRESENCE_ADDR="127.0.0.1:$PORT" PRESENCE_JWT_SECRET=$SECRET \
        PRESENCE_JWT_PUBLIC_KEYS="$WORK/idp.pub.pem" PRESENCE_PUT_BURST=100000000 PRESENCE_PUT_PER_SECOND=100000000 PRESENCE_PRUNE_EVERY=0 \
        PRESENCE_SETTINGS_BURST=100000000 PRESENCE_SETTINGS_PER_SECOND=100000000 \
        PRESENCE_METRICS_ADDR= RUST_LOG=warn "$@" "$BIN" serve &
    SERVER_PID=$!
    wait_until_ready "$BASE/healthz"
}
stop_server() {
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
}
# wrk NAME SCRIPT PATH [CONNECTIONS]: prints "rps p50_ms p99_ms"
run_wrk() {
    local out="$WORK/$1.txt"
    wrk -t1 -c"${4:-$CONNECTIONS}" -d"$DURATION" --latency ${2:+-s "bench/lua/$2"} "$BASE$3" > "$out"
    wrk_figures "$out"
}
ROWS=()
row() { ROWS+=("$(printf '%-44s %12s %8s %8s %10s %s' "$@")"); }

# ---- ceilings ---------------------------------------------------------------
say "ceilings: pgbench..."
psql -q "$SERVER/postgres" -c "drop database if exists presence_pgbench with (force)" -c "create database presence_pgbench"
pgbench -q -i -s 10 "$SERVER/presence_pgbench" >/dev/null 2>&1
pg_select=$(pgbench -n -S -M prepared -c "$CONNECTIONS" -j 1 -T "${DURATION%s}" "$SERVER/presence_pgbench" 2>/dev/null | awk '/^tps/ { printf "%.0f", $3 }')
pg_write=$(pgbench -n -N -M prepared -c "$CONNECTIONS" -j 1 -T "${DURATION%s}" "$SERVER/presence_pgbench" 2>/dev/null | awk '/^tps/ { printf "%.0f", $3 }')
psql -q "$SERVER/postgres" -c "drop database presence_pgbench with (force)"

say "HTTP floor and reads..."
start_server PRESENCE_CACHE_TTL=0
read -r floor floor50 floor99 < <(run_wrk healthz "" /healthz)
read -r cold cold50 cold99 < <(run_wrk single-cold single.lua /api/status/x)
stop_server

start_server
BENCH_HOT=$HOT run_wrk warmup single.lua /api/status/x >/dev/null
read -r cached cached50 cached99 < <(BENCH_HOT=$HOT run_wrk single-cached single.lua /api/status/x)
# RS256 against HS256: every request from one of 1,000 viewers, so each
# token's signature is checked once and then answered from the verified-token
# cache. Alternated, so that neither side gets all the warmer moments.
rs256=0; hs256=0
for round in 1 2; do
    read -r rps _ _ < <(BENCH_HOT=$HOT run_wrk "single-hs256-$round" single-viewers.lua /api/status/x)
    hs256=$((hs256 + rps))
    read -r rps _ _ < <(BENCH_HOT=$HOT BENCH_DATA="$WORK/data-rs256.lua" run_wrk "single-rs256-$round" single-viewers.lua /api/status/x)
    rs256=$((rs256 + rps))
done
rs256=$((rs256 / 2)); hs256=$((hs256 / 2))
read -r batch batch50 batch99 < <(run_wrk batch batch.lua /api/status)
read -r batched ba50 ba99 < <(run_wrk ping-batched ping.lua /api/status)
read -r through th50 th99 < <(run_wrk ping-direct ping-direct.lua /api/status)
stop_server

# History on against off: the same group-committed pings, alternated so that
# neither side gets all the later (bigger, less vacuumed) tables.
say "pings with history on and off..."
hist_on=0; hist_off=0
for round in 1 2; do
    start_server PRESENCE_HISTORY_RETENTION=0
    read -r rps _ _ < <(run_wrk "ping-history-off-$round" ping.lua /api/status)
    hist_off=$((hist_off + rps))
    stop_server
    start_server PRESENCE_HISTORY_RETENTION=90d
    read -r rps _ _ < <(run_wrk "ping-history-on-$round" ping.lua /api/status)
    hist_on=$((hist_on + rps))
    stop_server
done
hist_on=$((hist_on / 2)); hist_off=$((hist_off / 2))

say "cross-instance visibility..."
start_server PRESENCE_CACHE_TTL=60s
first_pid=$SERVER_PID
PORT_B=$((PORT + 1))
env DATABASE_URL="$URL" PRESENCE_ADDR="127.0.0.1:$PORT_B" PRESENCE_JWT_SECRET=$SECRET \
    PRESENCE_PRUNE_EVERY=0 PRESENCE_SETTINGS_BURST=100000000 PRESENCE_SETTINGS_PER_SECOND=100000000 \
    PRESENCE_METRICS_ADDR= PRESENCE_CACHE_TTL=60s RUST_LOG=warn "$BIN" serve &
SERVER_B=$!
wait_until_ready "http://127.0.0.1:$PORT_B/healthz"
writer_id=$(sed -n 2p "$WORK/ids")
read -r vis50 vis99 vismax < <(python3 bench/visibility.py "127.0.0.1:$PORT" "127.0.0.1:$PORT_B" \
    "$(sed -n 2p "$WORK/tokens")" "$writer_id" "$(sed -n 1p "$WORK/tokens")")
kill -TERM "$SERVER_B"; wait "$SERVER_B" || true; SERVER_B=
SERVER_PID=$first_pid
stop_server

start_server
BENCH_HOT=$HOT run_wrk warmup-rss single.lua /api/status/x >/dev/null
run_wrk batch-rss batch.lua /api/status >/dev/null
rss_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVER_PID/status")
stop_server

# ---- report -------------------------------------------------------------------
row "figure ($(nproc) cores, $USERS users, c=$CONNECTIONS)" "req/s" "p50 ms" "p99 ms" "ratio" "ceiling"
row "ceiling: GET /healthz (HTTP floor)" "$floor" "$floor50" "$floor99" "1.00" ""
row "ceiling: pgbench -S -M prepared (tps)" "$pg_select" "" "" "1.00" ""
row "ceiling: pgbench -N -M prepared (tps)" "$pg_write" "" "" "1.00" ""
row "single GET, cache off (cold)" "$cold" "$cold50" "$cold99" "$(ratio "$cold" "$pg_select")" "of pgbench -S (target 0.60)"
row "single GET, cache on ($HOT hot users)" "$cached" "$cached50" "$cached99" "$(ratio "$cached" "$floor")" "of /healthz (target 0.70)"
row "ceiling: single GET, 1,000 HS256 viewers" "$hs256" "" "" "1.00" ""
row "single GET, 1,000 RS256 viewers" "$rs256" "" "" "$(ratio "$rs256" "$hs256")" "of HS256 (target 0.95)"
row "batch of 100: statuses/s" "$((batch * 100))" "$batch50" "$batch99" "$(ratio "$((batch * 100))" 500000)" "of 500,000 (target 1.00)"
row "PUT ping, each written on its own" "$through" "$th50" "$th99" "$(ratio "$through" "$pg_write")" "of pgbench -N (target 0.50)"
row "PUT ping, group commit (durable)" "$batched" "$ba50" "$ba99" "$(ratio "$batched" "$pg_write")" "of pgbench -N (target 5)"
row "ceiling: PUT ping, history off" "$hist_off" "" "" "1.00" ""
row "PUT ping, history on" "$hist_on" "" "" "$(ratio "$hist_on" "$hist_off")" "of history off (target 0.95)"
row "cross-instance visibility (ms, TTL 60 s)" "" "$vis50" "$vis99" "" "p50 / p99, max $vismax ms"
row "peak RSS of the server (MB)" "$((rss_kb / 1024))" "" "" "$(ratio "$((rss_kb / 1024))" 150)" "of 150 MB (target < 1.00)"
printf '\n'
printf '%s\n' "${ROWS[@]}"
psql -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
