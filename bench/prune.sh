#!/usr/bin/env bash
# The prune job's cost on a large table: 1,000,000 users, 1,000 with a stale
# device. Prints the time of one run (5 runs, each rolled back) and, as its
# ceiling, the time of the full scan a prune without the index would need.
# Usage (from the repository root): bash bench/prune.sh
source "$(dirname "$0")/lib.sh"

USERS=${USERS:-1000000}
STALE=${STALE:-1000}
RUNS=${RUNS:-5}
server=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
db=presence_bench_prune
url="$server/$db"

build
psql -q "$server/postgres" -c "drop database if exists $db with (force)"
DATABASE_URL="$url" RUST_LOG=warn "$BIN" migrate

echo "seeding $USERS users, $STALE of them with a stale device..."
psql -q "$url" <<SQL
insert into user_status (user_id, last_seen, devices)
select gen_random_uuid(), now() - interval '1 minute',
       jsonb_build_array(jsonb_build_object(
           'id', 'tab', 'platform', 'web',
           'lastPing', now() - (n % 50) * interval '1 second',
           'lastActive', now() - interval '1 minute'))
       || case when n <= $STALE then jsonb_build_array(jsonb_build_object(
           'id', 'old-phone', 'platform', 'mobile',
           'lastPing', now() - interval '20 minutes',
           'lastActive', now() - interval '20 minutes')) else '[]'::jsonb end
from generate_series(1, $USERS) as n;
vacuum analyze user_status;
SQL

timed() {
    psql -qAt "$url" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}

prune_ms=()
for _ in $(seq 1 "$RUNS"); do
    prune_ms+=("$(timed "begin; select prune_stale_devices(interval '5 minutes', 10); rollback;")")
done
scan_ms=$(timed "select count(*) from user_status s where exists (
    select 1 from jsonb_array_elements(s.devices) e(d)
    where (e.d ->> 'lastPing')::timestamptz < now() - interval '5 minutes')")
removed=$(psql -qAt "$url" -c "begin" -c "select prune_stale_devices(interval '5 minutes', 10)" -c "rollback" | grep -E "^[0-9]+$")

median=$(printf '%s\n' "${prune_ms[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
worst=$(printf '%s\n' "${prune_ms[@]}" | sort -n | tail -n 1)
printf '\n%-44s %12s\n' "prune benchmark ($(nproc) cores)" "figure"
printf '%-44s %12s\n' "users / users with a stale device" "$USERS / $STALE"
printf '%-44s %12s\n' "entries removed by one run" "$removed"
printf '%-44s %9.1f ms\n' "one prune run, p50 of $RUNS" "$median"
printf '%-44s %9.1f ms\n' "one prune run, worst of $RUNS" "$worst"
printf '%-44s %9.1f ms\n' "ceiling: full scan for stale devices" "$scan_ms"
awk -v p="$median" -v s="$scan_ms" 'BEGIN { printf "%-44s %11.3f\n", "prune / full scan", p / s }'
psql -q "$server/postgres" -c "drop database if exists $db with (force)"
