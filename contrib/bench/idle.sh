#!/usr/bin/env bash
# Memory per idle connection: pgscope and pgbouncer (session mode) in front of the same
# PostgreSQL 15, in the same run. For each proxy: RSS before, with N idle client connections
# open (each logged in, one query run), and after they closed; prints KB per connection and
# the pgscope/pgbouncer ratio.
#
# Environment: PGSCOPE_BIN (default ./src/pgscope), IDLE_CONNECTIONS (1000), PGBOUNCER_BIN
# (/usr/sbin/pgbouncer), PG_BINDIR (/usr/lib/postgresql/15/bin), SCRATCH_KEEP (keep temp dir).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=contrib/scratch.sh
. "$HERE/../scratch.sh"

N=${IDLE_CONNECTIONS:-1000}
PGBOUNCER=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}

start_pgbouncer() { # port upstream-port
    scratch_pgbouncer_ini "$1" "$2" $((N + 100)) $((N + 50))
    # Not through runuser, whose login limits would leave it 1024 descriptors: it gets the
    # limit this script set, as pgscope does.
    local as_pg=()
    [ "$(id -u)" -eq 0 ] && as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    "${as_pg[@]}" timeout 30 "$PGBOUNCER" -d "$SCRATCH_DIR/pgbouncer.ini" ||
        scratch_die "pgbouncer did not start"
    local i
    for i in $(seq 50); do
        [ -s "$SCRATCH_DIR/pgbouncer.pid" ] && break
        sleep 0.1
    done
    PGBOUNCER_PID=$(cat "$SCRATCH_DIR/pgbouncer.pid")
    scratch_adopt_pid "$PGBOUNCER_PID"
    scratch_wait_ready "$1" 30 "$PGBOUNCER_PID" || scratch_die "pgbouncer is not answering"
}

# Opens N connections to port, runs one query on each, and holds them idle while the proxy's
# RSS is read; prints "before open after" in KB.
measure() { # port pid
    /usr/bin/python3 - "$1" "$2" "$N" <<'PY'
import sys, time, psycopg2
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss():
    with open("/proc/%d/status" % pid) as f:
        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
def session():
    c = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                         sslmode="disable", connect_timeout=10)
    with c.cursor() as cur:
        cur.execute("SELECT 1")
    c.commit()
    return c
# Warm-up: code pages and first allocations are not per connection.
for c in [session() for _ in range(20)]:
    c.close()
time.sleep(1)
before = rss()
conns = [session() for _ in range(n)]
time.sleep(12)  # idle: pgscope gives back a quiet session's room after 5 to 10 s
held = rss()
for c in conns:
    c.close()
time.sleep(2)
print(before, held, rss())
PY
}

main() {
    [ -x "$PGBOUNCER" ] || scratch_die "$PGBOUNCER not found (run contrib/install-deps.sh)"
    ulimit -n $((4 * N + 1024)) 2>/dev/null || true
    scratch_init pgscope-idle
    scratch_traps
    local pg_port bouncer_port scope_port
    pg_port=$(scratch_free_port)
    scratch_pg_start "$pg_port" -c max_connections=$((N + 100)) -c shared_buffers=128MB
    bouncer_port=$(scratch_free_port)
    start_pgbouncer "$bouncer_port" "$pg_port"
    scope_port=$(scratch_free_port)
    scratch_spawn "$SCRATCH_DIR/pgscope.log" "$(scratch_pgscope_bin)" proxy \
        --listen "127.0.0.1:$scope_port" --upstream "127.0.0.1:$pg_port" \
        --db "$SCRATCH_DIR/pgscope.db" --max-connections $((N + 100))
    local scope_pid=$SCRATCH_LAST_PID
    scratch_wait_ready "$scope_port" 30 "$scope_pid" || scratch_die "pgscope is not answering"

    local s b
    read -r -a s <<<"$(measure "$scope_port" "$scope_pid")"
    read -r -a b <<<"$(measure "$bouncer_port" "$PGBOUNCER_PID")"
    awk -v n="$N" -v s0="${s[0]}" -v s1="${s[1]}" -v s2="${s[2]}" \
        -v b0="${b[0]}" -v b1="${b[1]}" -v b2="${b[2]}" 'BEGIN {
        printf "%-10s %10s %10s %10s %12s\n", "proxy", "before_kb", "open_kb", "after_kb", "kb_per_conn"
        printf "%-10s %10d %10d %10d %12.1f\n", "pgscope", s0, s1, s2, (s1 - s0) / n
        printf "%-10s %10d %10d %10d %12.1f\n", "pgbouncer", b0, b1, b2, (b1 - b0) / n
        if (b1 > b0) printf "per-connection ratio pgscope/pgbouncer: %.2f (%d idle connections)\n", (s1 - s0) / (b1 - b0), n
    }'
}

main "$@"
