#!/usr/bin/env bash
# What one request costs the server, in instructions: the release binary
# under valgrind's callgrind, which counts the instructions it runs, so the
# same build and requests give the same figures on any machine, however busy
# (CPU time per request, as simulate.sh prints it, moves with the machine and
# the noise of one run; this does not, so two builds compare in one sitting).
#
# Usage (from the repository root): bash bench/instructions.sh
# Knobs: REQUESTS (400 of each kind), CONTACTS (20 users per poll),
#        PORT (18480), PG_PORT (25433); KEEP=1 keeps the work folder (its
#        path is the `work:` line on stderr) with callgrind's dumps, one per
#        kind, for callgrind_annotate.
#
# What it models: one front end on a keep-alive connection, as the shipped
# client polls: `POST /api/status/query` for its contacts with the ETag of
# its last answer (a `304`, four polls in five at real load), the same poll
# without it (a full answer), a heartbeat (`PUT /api/status`, written and
# committed through the ping writer), and `/healthz` as the floor any request
# pays. Every contact has a row, cached (a TTL of an hour: misses would
# measure PostgreSQL's round trip instead). Each kind is counted on its own:
# the counters are zeroed, the requests sent one after another, and the
# counters dumped; the figure is the instructions of the whole process (every
# thread: actix, tokio, the ping writer, background jobs) divided by the
# requests. The background jobs run on wall time, which valgrind slows, so a
# share of a few percent is theirs: the script measures their rate over the
# same wait with no request, and the `net` column subtracts it.
source "$(dirname "$0")/lib.sh"

REQUESTS=${REQUESTS:-400}
CONTACTS=${CONTACTS:-20}
PORT=${PORT:-18480}
PG_PORT=${PG_PORT:-25433}
DB=presence_instructions
URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB"
BASE="http://127.0.0.1:$PORT"

need valgrind valgrind
build

WORK=$(mktemp -d); say "work: $WORK"
PG_DATA=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    stop_private_postgres "$PG_DATA"
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
private_postgres "$PG_DATA" "$PG_PORT"
psql -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c "create database $DB"
DATABASE_URL="$URL" RUST_LOG=warn "$BIN" migrate

# The viewer, then its contacts: ids and tokens, one per line.
for _ in $(seq 0 "$CONTACTS"); do
    id=$(cat /proc/sys/kernel/random/uuid)
    printf '%s %s\n' "$id" "$(PRESENCE_JWT_SECRET=$SECRET "$BIN" token "$id" --ttl 2h)"
done > "$WORK/users"

env DATABASE_URL="$URL" PRESENCE_JWT_SECRET=$SECRET PRESENCE_ADDR="127.0.0.1:$PORT" \
    PRESENCE_METRICS_ADDR= RUST_LOG=warn PRESENCE_CACHE_TTL=1h PRESENCE_PRUNE_EVERY=0 \
    PRESENCE_PUT_BURST=100000 PRESENCE_PUT_PER_SECOND=100000 \
    GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4294967295:glibc.cpu.x86_rep_stosb_threshold=4294967295 \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.%p" \
    "$BIN" serve 2> "$WORK/valgrind.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do
    curl -fs "$BASE/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fs "$BASE/readyz" >/dev/null || { say "the server did not start"; cat "$WORK/valgrind.log" >&2; exit 1; }

python3 - "$BASE" "$WORK/users" "$REQUESTS" "$SERVER_PID" "$WORK" <<'PY'
import glob, http.client, json, subprocess, sys, time, urllib.parse

base, users_file, requests, pid, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
users = [line.split() for line in open(users_file)]
viewer_id, viewer_token = users[0]
contacts = users[1:]
address = urllib.parse.urlparse(base)
connection = http.client.HTTPConnection(address.hostname, address.port)

def send(method, path, token=None, body=None, etag=None):
    headers = {}
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        headers["Content-Type"] = "application/json"
    if etag:
        headers["If-None-Match"] = etag
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader("ETag")

def callgrind(*args):
    subprocess.run(["callgrind_control", *args, pid], check=True, capture_output=True)

# Every contact pings once (so each has a row), then one poll fills the cache.
for contact_id, token in contacts + [users[0]]:
    status, _ = send("PUT", "/api/status", token, {"deviceId": "bench", "active": True})
    assert status == 200, status
query = {"userIds": [contact_id for contact_id, _ in contacts]}
status, etag = send("POST", "/api/status/query", viewer_token, query)
assert status == 200 and etag, status

def poll_304():
    status, _ = send("POST", "/api/status/query", viewer_token, query, etag)
    assert status == 304, status

def poll_full():
    status, _ = send("POST", "/api/status/query", viewer_token, query)
    assert status == 200, status

def heartbeat():
    status, _ = send("PUT", "/api/status", viewer_token, {"deviceId": "bench", "active": False})
    assert status == 200, status

def healthz():
    status, _ = send("GET", "/healthz")
    assert status == 200, status

callgrind("-i", "on")
kinds = [("healthz", healthz), ("poll 304", poll_304), ("poll 200", poll_full), ("heartbeat", heartbeat)]
figures = []
for name, request in kinds:
    callgrind("-z")
    started = time.monotonic()
    for _ in range(requests):
        request()
    seconds = time.monotonic() - started
    callgrind("-d", name.replace(" ", "-"))
    figures.append((name, seconds))
# The same wall time as the slowest kind, with no request: the background's share.
callgrind("-z")
time.sleep(max(seconds for _, seconds in figures))
callgrind("-d", "idle")

def instructions(label):
    dumps = sorted(glob.glob(f"{work}/callgrind.{pid}.*"))
    for dump in dumps:
        text = open(dump).read()
        if f"\ndesc: Trigger: dump {label}\n" in text:
            for line in text.splitlines():
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
    raise SystemExit(f"no dump for {label}")

idle = instructions("idle")
idle_seconds = max(seconds for _, seconds in figures)
background = idle / idle_seconds
print(f"\ninstructions per request, {requests} of each, {len(contacts)} users per poll (callgrind);")
print(f"net: less the background jobs' {background:,.0f} a second (measured with no request) over the kind's wall time")
print(f"{'request':<12} {'per request':>12} {'net':>10} {'x healthz':>10} {'wall s':>8}")
def net(name, seconds):
    return (instructions(name.replace(" ", "-")) - background * seconds) / requests
floor = net("healthz", figures[0][1])
for name, seconds in figures:
    total = instructions(name.replace(" ", "-")) / requests
    print(f"{name:<12} {total:>12,.0f} {net(name, seconds):>10,.0f} {net(name, seconds) / floor:>10.2f} {seconds:>8.1f}")
