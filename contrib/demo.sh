#!/usr/bin/env bash
# Demo: a scratch PostgreSQL 15 with pgscope in front of it, driven by psql, pgbench and a small
# application with an N+1 loop and a slow query; ends with pgscope report.
#
# Builds nothing: run it from a built tree (./src/pgscope) or set PGSCOPE_BIN.
# Environment: PGSCOPE_BIN, DEMO_SECONDS (pgbench duration, default 5), DEMO_OUT (where the HTML
# report and the report database are kept, default ./pgscope-demo), PG_BINDIR, SCRATCH_KEEP.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=contrib/scratch.sh
. "$HERE/scratch.sh"

SECONDS_PGBENCH=${DEMO_SECONDS:-5}
DEMO_OUT=${DEMO_OUT:-./pgscope-demo}
export PGCONNECT_TIMEOUT=10
SUMMARY=()

step() { printf '\n== %s\n' "$*"; }
note() { SUMMARY+=("$*"); }

start_stack() {
    PGPORT=$(scratch_free_port)
    SCOPEPORT=$(scratch_free_port)
    scratch_pg_start "$PGPORT"
    scratch_spawn "$SCRATCH_DIR/pgscope.log" "$PGSCOPE" proxy \
        --listen "127.0.0.1:$SCOPEPORT" --upstream "127.0.0.1:$PGPORT" \
        --db "$SCRATCH_DIR/pgscope.db" --shutdown-timeout 5 --run-label demo \
        --explain-min-duration 10 --advisor-create-extension on
    SCOPE_PID=$SCRATCH_LAST_PID
    scratch_wait_ready "$SCOPEPORT" 30 "$SCOPE_PID" ||
        { tail -n 20 "$SCRATCH_DIR/pgscope.log" >&2; scratch_die "pgscope is not answering"; }
    printf 'PostgreSQL 15 on 127.0.0.1:%s, pgscope on 127.0.0.1:%s (pid %s)\n' \
        "$PGPORT" "$SCOPEPORT" "$SCOPE_PID"
}

# psql through pgscope; the SQL comes from stdin of this function.
scope_psql() { # psql options...
    timeout 60 psql -X -h 127.0.0.1 -p "$SCOPEPORT" -U postgres -d postgres "$@"
}

run_statements() {
    step "psql through pgscope: create, insert, a multi-statement query"
    scope_psql -v ON_ERROR_STOP=1 -f - <<'SQL'
CREATE TABLE demo_items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10, 2));
INSERT INTO demo_items (name, price)
    SELECT 'item ' || g, g * 1.5 FROM generate_series(1, 100) AS g;
SELECT count(*) AS items, sum(price) AS total FROM demo_items;
SQL
    # psql -c sends the whole string as one simple Query message.
    scope_psql -v ON_ERROR_STOP=1 \
        -c "BEGIN; UPDATE demo_items SET price = price * 2 WHERE id <= 10; SELECT max(price) AS max_price FROM demo_items; COMMIT" \
        </dev/null
    note "statements: table created, 100 rows inserted, multi-statement query committed"
}

run_error() {
    step "an error passes through, and the session goes on"
    local out
    out=$(scope_psql -v VERBOSITY=verbose -f - 2>&1 <<'SQL' || true
SELECT 1 / 0;
SELECT 'still connected' AS status;
SQL
)
    printf '%s\n' "$out"
    grep -q '22012' <<<"$out" || scratch_die "expected SQLSTATE 22012 (division by zero)"
    grep -q 'still connected' <<<"$out" || scratch_die "the session did not survive the error"
    note "error: SQLSTATE 22012 reached the client; the session went on"
}

run_pgbench() {
    step "pgbench -i -s 1 through pgscope (COPY)"
    timeout 300 pgbench -i -q -s 1 -h 127.0.0.1 -p "$SCOPEPORT" -U postgres postgres </dev/null 2>&1
    step "pgbench -S -T $SECONDS_PGBENCH -c 4 -j 2 through pgscope"
    local log=$SCRATCH_DIR/pgbench.log tps
    timeout $((SECONDS_PGBENCH + 60)) pgbench -S -n -T "$SECONDS_PGBENCH" -c 4 -j 2 \
        -h 127.0.0.1 -p "$SCOPEPORT" -U postgres postgres </dev/null >"$log" 2>&1 ||
        { cat "$log" >&2; scratch_die "pgbench failed"; }
    grep -E '^(number of transactions actually processed|latency average|tps)' "$log"
    tps=$(awk '/^tps = .*without initial connection time/ { printf "%.0f", $3 }' "$log")
    note "pgbench: initialised through pgscope, select-only at $tps TPS with 4 clients"
}

stop_pgscope() {
    step "SIGTERM: pgscope stops accepting, lets sessions finish, exits"
    local rss
    rss=$(scratch_peak_rss_kb "$SCOPE_PID")
    scratch_stop_pid "$SCOPE_PID" 15
    tail -n 5 "$SCRATCH_DIR/pgscope.log"
    [ "$SCRATCH_STOP_RC" = 0 ] ||
        scratch_die "pgscope exited with status $SCRATCH_STOP_RC after SIGTERM (expected 0)"
    note "pgscope: peak RSS $rss kB, exit status 0 after SIGTERM"
}

run_app() {
    step "a small shop application through pgscope: an N+1 loop and a slow query"
    local dsn="host=127.0.0.1 port=$SCOPEPORT dbname=postgres user=postgres"
    timeout 300 /usr/bin/python3 "$HERE/demo_app.py" setup "$dsn" </dev/null ||
        scratch_die "demo app setup failed"
    timeout 300 /usr/bin/python3 "$HERE/demo_app.py" run "$dsn" </dev/null ||
        scratch_die "demo app failed"
    note "app: 5 page views, each 1 + 50 queries for its orders' customers, and a slow query"
}

show_report() {
    step "pgscope report: what the application asked of the database"
    "$PGSCOPE" report --db "$SCRATCH_DIR/pgscope.db" --limit 10 </dev/null ||
        scratch_die "pgscope report failed"
    local calls
    calls=$(sqlite3 "$SCRATCH_DIR/pgscope.db" \
        "SELECT coalesce(sum(calls), 0) FROM statements WHERE query LIKE '%pgbench_accounts%'")
    [ "${calls:-0}" -gt 0 ] || scratch_die "the report database has no pgbench statements"
    note "report: $calls pgbench_accounts statements recorded in $SCRATCH_DIR/pgscope.db"
    local np1
    np1=$(sqlite3 "$SCRATCH_DIR/pgscope.db" \
        "SELECT count(*) FROM n_plus_one WHERE kind = 'n_plus_one' AND confirmed = 1")
    [ "${np1:-0}" -ge 1 ] || scratch_die "the report found no confirmed N+1 in the demo app"
    note "report: the app's N+1 loop found and confirmed, with its fix"
    local plan
    plan=$(sqlite3 "$SCRATCH_DIR/pgscope.db" \
        "SELECT plan_id FROM plan_findings WHERE kind = 'seq_scan_filter' AND relation = 'orders' LIMIT 1")
    [ -n "$plan" ] || scratch_die "no plan of the slow query was sampled"
    step "pgscope report --plan $plan: the slow query's plan, replayed on a side connection"
    "$PGSCOPE" report --db "$SCRATCH_DIR/pgscope.db" --plan "$plan" </dev/null ||
        scratch_die "pgscope report --plan failed"
    note "report: the slow query's plan sampled (plan $plan), its sequential scan named"
    local ddl
    ddl=$(sqlite3 "$SCRATCH_DIR/pgscope.db" \
        "SELECT ddl FROM index_suggestions WHERE verified = 1 AND table_name = 'orders' ORDER BY rank LIMIT 1")
    [ -n "$ddl" ] || scratch_die "no verified index suggestion for the slow query"
    note "report: index suggested and verified with hypopg: $ddl"
    step "pgscope report --format html: the same report as one page to open in a browser"
    mkdir -p "$DEMO_OUT"
    cp "$SCRATCH_DIR/pgscope.db" "$DEMO_OUT/pgscope.db"
    "$PGSCOPE" report --db "$DEMO_OUT/pgscope.db" --format html --output "$DEMO_OUT/report.html" \
        </dev/null || scratch_die "pgscope report --format html failed"
    grep -q 'id="findings"' "$DEMO_OUT/report.html" || scratch_die "report.html has no findings"
    printf 'HTML report: %s\n' "$(cd "$DEMO_OUT" && pwd)/report.html"
    note "report: $(cd "$DEMO_OUT" && pwd)/report.html ($(wc -c <"$DEMO_OUT/report.html") bytes)"
}

print_summary() {
    step "summary"
    printf '  %s\n' "${SUMMARY[@]}"
    printf 'demo: all steps passed\n'
}

main() {
    PGSCOPE=$(scratch_pgscope_bin)
    scratch_traps
    scratch_init pgscope-demo
    printf '%s\n' "$("$PGSCOPE" --version)"
    start_stack
    run_statements
    run_error
    run_pgbench
    run_app
    stop_pgscope
    show_report
    print_summary
}

main "$@"
