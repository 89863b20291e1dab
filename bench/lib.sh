# What the benchmark scripts share; each sources it first:
#   source "$(dirname "$0")/lib.sh"
# It stops at the first error, moves to the repository root, and defines the
# binaries, the benchmarks' token secret and the helpers below.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The release binaries (`build` makes them): the server and the client simulator.
BIN=./target/release/presence
SIM=./target/release/presence-sim
# The secret the benchmarks' servers and tokens share: public, for benchmarks only.
SECRET=bench-secret-not-for-production
# The newest installed PostgreSQL's programs (initdb, pg_ctl, pg_basebackup).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)

# say TEXT...: a progress line on stderr (stdout is the figures).
say() { printf '%s\n' "$*" >&2; }

# build: the release binaries of the workspace (the server and the simulator).
build() { cargo build --release --quiet; }

# need PROGRAM PACKAGE: installs Debian's PACKAGE unless PROGRAM is on the PATH.
need() {
    command -v "$1" >/dev/null && return
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"
}

# as_postgres COMMAND...: runs COMMAND as the postgres user when root (initdb refuses root).
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# wait_until_ready URL: waits up to 10 s for URL (a /readyz or /healthz) to answer 200.
wait_until_ready() {
    for _ in $(seq 1 100); do
        curl -fs "$1" >/dev/null 2>&1 && return
        sleep 0.1
    done
    say "the server did not start ($1)"
    exit 1
}

# private_postgres DIR PORT: a throwaway PostgreSQL cluster in DIR (initdb's
# defaults: fsync and autovacuum on) listening on 127.0.0.1:PORT; stop it with
# stop_private_postgres DIR. Keep PORT below the kernel's ephemeral range
# (32768 and up on Linux): a port in it can be the local end of any outgoing
# connection, and PostgreSQL then fails to start with "Address already in use".
private_postgres() {
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$1"
    as_postgres "$PG_BIN/initdb" -D "$1" -A trust -U postgres >/dev/null
    printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n" "$2" "$1" \
        >> "$1/postgresql.conf"
    as_postgres "$PG_BIN/pg_ctl" -D "$1" -l "$1/server.log" -w start >/dev/null
}

# stop_private_postgres DIR: stops the cluster in DIR, if running, and removes DIR.
stop_private_postgres() {
    as_postgres "$PG_BIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$1"
}

# wrk_figures FILE: "requests/s p50_ms p99_ms" of wrk's --latency output in FILE.
wrk_figures() {
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50.000%" || ($1 == "50%") { p50 = ms($2) }
        $1 == "99.000%" || ($1 == "99%") { p99 = ms($2) }
        END { printf "%.0f %.2f %.2f\n", rps, p50, p99 }' "$1"
}

# ratio A B: A / B to two decimals (0 when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
