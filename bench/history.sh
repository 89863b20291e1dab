#!/usr/bin/env bash
# The history benchmark: a history of USERS users x DAYS days, shaped like an
# office (below), then GET /api/admin/online?at= at random instants and a
# DAYS-day GET /api/admin/stats?bucket=day, each through the release server,
# with the disk the history takes per 1,000 user-days.
#
# Rows go in in time order, as the service writes them (a day's records
# share pages), with every index in place.
#
# The history each user-day holds (a workday of the simulator's model,
# bench/README.md): a laptop session from about 9:00 for about 8 hours and a
# phone session of about 30 minutes in the evening (2 sessions), and 6 spans
# of activity across the working hours (activity bursts whose pauses reach the
# idle threshold about 6 times a day). Starts and lengths vary by user and day.
#
# Usage (from the repository root): bash bench/history.sh
# Knobs: USERS (100000), DAYS (30), DURATION (10s), CONNECTIONS (1: a
#        backend or a dashboard asks one question at a time),
#        REUSE=1 (use the history a previous REUSE=1 run kept, and keep it:
#        seeding takes about 15 minutes at the defaults).
# Ping throughput with history on against off is in bench/run.sh.
source "$(dirname "$0")/lib.sh"

USERS=${USERS:-100000}
DAYS=${DAYS:-30}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-1}
PORT=${PORT:-18190}
SERVER=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
DB=presence_history_bench
URL="$SERVER/$DB"
BASE="http://127.0.0.1:$PORT"

need wrk wrk
build

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The history ends at the last midnight UTC; the server's clock is now.
END=$(date -u +%Y-%m-%dT00:00:00Z)

started=$(date +%s)
if [ "${REUSE:-0}" = 1 ] && psql -qAt "$URL" -c "select 1" >/dev/null 2>&1; then
    say "reusing the history in $DB"
    DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate
    psql -q "$URL" -c "truncate history_rollups"
else
say "seeding $USERS users x $DAYS days of history..."
# With REUSE=1 the history stays for the next run.
[ "${REUSE:-0}" = 1 ] || psql -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate
psql -q "$URL" <<SQL
set synchronous_commit = off;
create temporary table people as
select gen_random_uuid() as user_id, n from generate_series(1, $USERS) as n;
create temporary table days as
select timestamptz '$END' - (d * interval '1 day') as day, d
from generate_series(1, $DAYS) as d;

insert into device_sessions (user_id, device_id, platform, started_at, ended_at)
select p.user_id, 'laptop', 'desktop',
       x.day + interval '9 hours' + (x.jitter % 3600) * interval '1 second',
       x.day + interval '17 hours' + (x.jitter % 5400) * interval '1 second'
from people as p cross join lateral (
    select d.day, abs(hashtext(p.n::text || ':' || d.d)) as jitter from days as d) as x
union all
select p.user_id, 'phone', 'mobile',
       x.day + interval '20 hours' + (x.jitter % 7200) * interval '1 second',
       x.day + interval '20 hours 10 minutes' + (x.jitter % 7200 + x.jitter % 2400) * interval '1 second'
from people as p cross join lateral (
    select d.day, abs(hashtext(d.d::text || '/' || p.n)) as jitter from days as d) as x
-- In time order, as the service writes them.
order by 4;

insert into activity_spans (user_id, started_at, ended_at)
select p.user_id, s.starts, s.starts + (x.jitter % 3000 + 60) * interval '1 second'
from people as p
cross join lateral (select d.day, abs(hashtext(p.n::text || '#' || d.d)) as jitter from days as d) as x
cross join lateral (
    select x.day + interval '9 hours 30 minutes' + k * interval '75 minutes'
           + (x.jitter % (600 + k)) * interval '1 second' as starts
    from generate_series(0, 5) as k) as s
order by 2;

insert into user_status (user_id, last_seen, active_since, devices)
select user_id, timestamptz '$END' - interval '4 hours', timestamptz '$END' - interval '4 hours', '[]'
from people;
SQL
psql -q "$URL" -c "vacuum analyze device_sessions" -c "vacuum analyze activity_spans" -c "vacuum analyze user_status"
fi
seeded=$(( $(date +%s) - started ))

# What the schedule does in the background, a bucket at a time: compute and
# store the stats of each finished day (a request for a day not stored yet
# computes it the same way, within its deadline).
say "computing the stats of $DAYS days, as the schedule does..."
rollup_started=$(date +%s%N)
psql -q "$URL" -c "
    insert into history_rollups (bucket, starts_at, active_users, connected_users, connected_seconds, sessions)
    select 'day', d, s.*
    from generate_series(timestamptz '$END' - interval '$DAYS days', timestamptz '$END' - interval '1 day', interval '1 day') as d,
         history_bucket_stats(d, d + interval '1 day', interval '60 seconds', now()) as s"
rollup_ms=$(( ($(date +%s%N) - rollup_started) / 1000000 / DAYS ))
read -r sessions spans bytes < <(psql -qAt -F ' ' "$URL" -c "
    select (select count(*) from device_sessions), (select count(*) from activity_spans),
           pg_total_relation_size('device_sessions') + pg_total_relation_size('activity_spans')
           + pg_total_relation_size('settings_changes')")
user_days=$((USERS * DAYS))

start_server() {
    env DATABASE_URL="$URL" PRESENCE_ADDR="127.0.0.1:$PORT" PRESENCE_JWT_SECRET=$SECRET \
        PRESENCE_PRUNE_EVERY=0 PRESENCE_METRICS_ADDR= RUST_LOG=warn "$BIN" serve &
    SERVER_PID=$!
    wait_until_ready "$BASE/healthz"
}
TOKEN=$(PRESENCE_JWT_SECRET=$SECRET "$BIN" token --scope presence:admin bench --ttl 2h)
start_server

# wrk NAME SCRIPT: prints "rps p50_ms p99_ms"
run_wrk() {
    local out="$WORK/$1.txt"
    BENCH_TOKEN=$TOKEN BENCH_END=$END BENCH_DAYS=$DAYS \
        wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "bench/lua/$2" "$BASE/" > "$out"
    wrk_figures "$out"
}

# The busiest instant: 14:00, when nearly every laptop session is open.
peak=$(date -u -d "$END - 2 days + 14 hours" +%Y-%m-%dT%H:%M:%SZ)
online_peak=$(psql -qAt "$URL" -c "select count(distinct user_id) from device_sessions
    where tstzrange(started_at, ended_at, '[)') @> timestamptz '$peak'")
peak_ms=$(for _ in $(seq 1 11); do
    curl -fs -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "$BASE/api/admin/online?at=$peak"
done | sort -n | sed -n 6p | awk '{ printf "%.1f", $1 * 1000 }')

say "online?at= and stats under load..."
read -r online online50 online99 < <(run_wrk online history-online.lua)
read -r stats stats50 stats99 < <(run_wrk stats history-stats.lua)
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=

printf '\n%-52s %10s %8s %8s %6s %s\n' "history figure ($(nproc) cores, $USERS users x $DAYS days)" "req/s" "p50 ms" "p99 ms" "ratio" "ceiling"
printf '%-52s %10s %8s %8s %6s %s\n' \
    "GET /api/admin/online?at= (random instant)" "$online" "$online50" "$online99" "$(ratio "$online50" 50)" "of 50 ms p50 (target < 1.00)" \
    "the same at 14:00 ($online_peak users online; median of 11)" "" "$peak_ms" "" "$(ratio "$peak_ms" 50)" "of 50 ms" \
    "GET /api/admin/stats, $DAYS days by day (stored)" "$stats" "$stats50" "$stats99" "$(ratio "$stats50" 50)" "of 50 ms p50 (target < 1.00)" \
    "computing one day's stats (the schedule, once)" "" "$rollup_ms" "" "" "per day bucket, in the background"
printf '\n%s sessions and %s spans (%s per user-day), seeded in %s s\n' \
    "$sessions" "$spans" "$(( (sessions + spans) / user_days ))" "$seeded"
printf 'disk: %s MB in all, %s KB per 1,000 user-days (tables and indexes)\n' \
    "$((bytes / 1048576))" "$((bytes / 1024 * 1000 / user_days))"
# With REUSE=1 the history stays for the next run.
[ "${REUSE:-0}" = 1 ] || psql -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
