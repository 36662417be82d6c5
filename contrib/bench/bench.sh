#!/usr/bin/env bash
# Benchmarks pgscope against direct PostgreSQL 15 and pgbouncer (session mode) with pgbench -S.
#
# Environment: PGSCOPE_BIN (default ./src/pgscope), BENCH_SECONDS (10), BENCH_SCALE (10),
# BENCH_OUT (/tmp/pgscope-bench.tsv), BENCH_MODES ("simple extended prepared literals"),
# BENCH_CLIENTS ("1 8"), BENCH_ROUNDS (1; with more, each figure is the median of the rounds,
# and the order of the three targets rotates from round to round), BENCH_PROFILE (1: record
# `perf record -e cpu-clock -g` of pgscope during its 8-client runs and print the top symbols),
# PGBOUNCER_BIN (/usr/sbin/pgbouncer), PG_BINDIR (/usr/lib/postgresql/15/bin), SCRATCH_KEEP
# (keep temp dir).
#
# Besides TPS and latency, for each proxy and run: its CPU time (utime + stime of all its
# threads, /proc/PID/stat) and context switches (voluntary and involuntary, summed over
# /proc/PID/task/*/status) per transaction. pgbench -S in the simple mode inlines a different
# aid literal in every statement: the workload where each statement's text is new; pgscope's
# dropped events are printed at the end. The `literals` mode goes further: a custom script in the
# simple protocol whose statement inlines three values of three kinds (an integer, a negative
# number, a string), all different in every statement, so that nothing about its text repeats
# but its shape.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=contrib/scratch.sh
. "$HERE/../scratch.sh"

DURATION=${BENCH_SECONDS:-10}
SCALE=${BENCH_SCALE:-10}
OUT=${BENCH_OUT:-/tmp/pgscope-bench.tsv}
MODES=${BENCH_MODES:-simple extended prepared literals}
CLIENTS=${BENCH_CLIENTS:-1 8}
ROUNDS=${BENCH_ROUNDS:-1}
TARGETS=(direct pgbouncer pgscope)
PGBOUNCER=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}

PROFILE=${BENCH_PROFILE:-0}
declare -A PORT TPS LAT RSS_SCOPE RSS_BOUNCER CPU VCS NCS PID_OF
FAILURES=0
PGSCOPE_PID=
PGBOUNCER_PID=

check_settings() {
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || scratch_die "BENCH_SECONDS must be a positive integer"
    [[ $SCALE =~ ^[1-9][0-9]*$ ]] || scratch_die "BENCH_SCALE must be a positive integer"
    [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || scratch_die "BENCH_ROUNDS must be a positive integer"
    [ -x "$PGBOUNCER" ] || scratch_die "$PGBOUNCER not found (run contrib/install-deps.sh)"
    PGSCOPE=$(scratch_pgscope_bin)
}

start_postgres() {
    PORT[direct]=$(scratch_free_port)
    scratch_pg_start "${PORT[direct]}" -c max_connections=100 -c shared_buffers=256MB
    scratch_log "PostgreSQL on 127.0.0.1:${PORT[direct]}; pgbench -i -s $SCALE"
    timeout 600 pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "${PORT[direct]}" -U postgres postgres \
        >"$SCRATCH_DIR/pgbench-init.log" 2>&1 ||
        { tail -n 20 "$SCRATCH_DIR/pgbench-init.log" >&2; scratch_die "pgbench -i failed"; }
}


start_pgbouncer() {
    PORT[pgbouncer]=$(scratch_free_port)
    scratch_pgbouncer_ini "${PORT[pgbouncer]}" "${PORT[direct]}" 64 16
    scratch_as_postgres timeout 30 "$PGBOUNCER" -d "$SCRATCH_DIR/pgbouncer.ini" ||
        scratch_die "pgbouncer did not start"
    local i
    for i in $(seq 50); do
        [ -s "$SCRATCH_DIR/pgbouncer.pid" ] && break
        sleep 0.1
    done
    PGBOUNCER_PID=$(cat "$SCRATCH_DIR/pgbouncer.pid" 2>/dev/null || true)
    [ -n "$PGBOUNCER_PID" ] || scratch_die "pgbouncer wrote no pid file"
    scratch_adopt_pid "$PGBOUNCER_PID"
    scratch_wait_ready "${PORT[pgbouncer]}" 30 "$PGBOUNCER_PID" ||
        { tail -n 20 "$SCRATCH_DIR/pgbouncer.log" >&2; scratch_die "pgbouncer is not answering"; }
}

start_pgscope() {
    PORT[pgscope]=$(scratch_free_port)
    scratch_spawn "$SCRATCH_DIR/pgscope.log" "$PGSCOPE" proxy \
        --listen "127.0.0.1:${PORT[pgscope]}" --upstream "127.0.0.1:${PORT[direct]}" \
        --db "$SCRATCH_DIR/pgscope.db"
    PGSCOPE_PID=$SCRATCH_LAST_PID
    scratch_wait_ready "${PORT[pgscope]}" 30 "$PGSCOPE_PID" ||
        { tail -n 20 "$SCRATCH_DIR/pgscope.log" >&2; scratch_die "pgscope is not answering"; }
}

# "CPU_TICKS VOLUNTARY NONVOLUNTARY" of a process, all its threads; "NA NA NA" without one.
proc_counters() { # pid
    local pid=$1
    if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
        echo "NA NA NA"
        return
    fi
    # utime and stime (fields 14 and 15) of /proc/PID/stat count every thread of the process
    awk '{ print $14 + $15 }' "/proc/$pid/stat" | tr '\n' ' '
    cat "/proc/$pid"/task/*/status 2>/dev/null |
        awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 }
             END { print v + 0, n + 0 }'
}

# Per transaction: CPU microseconds, voluntary and involuntary context switches, from two
# proc_counters readings and the transactions pgbench counted.
per_transaction() { # "before" "after" transactions
    awk -v b="$1" -v a="$2" -v t="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        if (x[1] == "NA" || t == "" || t == 0) { print "NA NA NA"; exit }
        printf "%.2f %.3f %.3f\n", (y[1] - x[1]) * 1e6 / hz / t, (y[2] - x[2]) / t, (y[3] - x[3]) / t }'
}

# Runs one pgbench and prints "TPS LATENCY_MS CPU_US VCSW NVCSW" per transaction for the proxy
# (NA where there is none, or the run failed).
run_pgbench() { # target mode clients
    local target=$1 mode=$2 clients=$3 jobs=1 log before after perf=
    [ "$clients" -ge 2 ] && jobs=2
    log=$SCRATCH_DIR/pgbench-$target-$mode-$clients.log
    before=$(proc_counters "${PID_OF[$target]:-}")
    if [ "$PROFILE" = 1 ] && [ "$target" = pgscope ] && [ "$clients" -ge 8 ]; then
        perf record -q -e cpu-clock -g -p "$PGSCOPE_PID" -o "$SCRATCH_DIR/perf-$mode.data" \
            -- sleep "$DURATION" >/dev/null 2>&1 &
        perf=$!
    fi
    local workload=(-S -M "$mode")
    [ "$mode" != literals ] || workload=(-f "$SCRATCH_DIR/literals.sql" -M simple)
    if timeout $((DURATION + 60)) pgbench "${workload[@]}" -n -T "$DURATION" -c "$clients" -j "$jobs" \
        -h 127.0.0.1 -p "${PORT[$target]}" -U postgres postgres >"$log" 2>&1; then
        after=$(proc_counters "${PID_OF[$target]:-}")
        [ -z "$perf" ] || wait "$perf" || true
        local tps_lat txns
        tps_lat=$(awk '/^tps = .*without initial connection time/ { tps = $3 }
             /^latency average = / { lat = $4 }
             END { if (tps == "" || lat == "") print "NA NA"; else print tps, lat }' "$log")
        txns=$(awk '/^number of transactions actually processed:/ { print $NF }' "$log")
        echo "$tps_lat $(per_transaction "$before" "$after" "$txns")"
    else
        [ -z "$perf" ] || wait "$perf" || true
        { scratch_log "pgbench failed against $target ($mode, $clients clients):"; tail -n 5 "$log"; } >&2
        echo "NA NA NA NA NA"
    fi
}

# The literals workload: one indexed lookup, every value inlined and new in each statement.
write_literals_script() {
    cat >"$SCRATCH_DIR/literals.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
\set n random(1, 1000000000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid AND abalance > -:n AND filler <> 'v:n';
SQL
}

warm_up() {
    local target
    for target in "${TARGETS[@]}"; do
        timeout 60 pgbench -S -n -T 2 -c 2 -j 2 -h 127.0.0.1 -p "${PORT[$target]}" -U postgres \
            postgres >/dev/null 2>&1 || scratch_die "warm-up run against $target failed"
    done
}

# The three targets, rotated by N so that no target always runs first or last.
targets_rotated() { # n
    local i
    for i in 0 1 2; do
        printf '%s\n' "${TARGETS[$((($1 + i) % 3))]}"
    done
}

# Median of the numbers given (NA ignored; NA when none).
median() {
    printf '%s\n' "$@" | { grep -v '^NA$' || true; } | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

run_matrix() {
    local round mode clients target key result n
    declare -A tps_runs lat_runs cpu_runs vcs_runs ncs_runs
    PID_OF[pgscope]=$PGSCOPE_PID
    PID_OF[pgbouncer]=$PGBOUNCER_PID
    for round in $(seq "$ROUNDS"); do
        n=$round
        for mode in $MODES; do
            for clients in $CLIENTS; do
                n=$((n + 1))
                for target in $(targets_rotated "$n"); do
                    scratch_log "round $round/$ROUNDS, $target: -M $mode -c $clients -T $DURATION"
                    key=$mode,$clients,$target
                    read -r -a result <<<"$(run_pgbench "$target" "$mode" "$clients")"
                    tps_runs[$key]+="${result[0]} "
                    lat_runs[$key]+="${result[1]} "
                    cpu_runs[$key]+="${result[2]} "
                    vcs_runs[$key]+="${result[3]} "
                    ncs_runs[$key]+="${result[4]} "
                    [ "${result[0]}" != NA ] || FAILURES=$((FAILURES + 1))
                done
                RSS_SCOPE[$mode,$clients]=$(scratch_peak_rss_kb "$PGSCOPE_PID")
                RSS_BOUNCER[$mode,$clients]=$(scratch_peak_rss_kb "$PGBOUNCER_PID")
            done
        done
    done
    for key in "${!tps_runs[@]}"; do
        # shellcheck disable=SC2086
        TPS[$key]=$(median ${tps_runs[$key]})
        # shellcheck disable=SC2086
        LAT[$key]=$(median ${lat_runs[$key]})
        # shellcheck disable=SC2086
        CPU[$key]=$(median ${cpu_runs[$key]})
        # shellcheck disable=SC2086
        VCS[$key]=$(median ${vcs_runs[$key]})
        # shellcheck disable=SC2086
        NCS[$key]=$(median ${ncs_runs[$key]})
    done
}

# One result row, tab-separated: the TSV columns in header order.
result_row() { # mode clients
    local m=$1 c=$2
    awk -v m="$m" -v c="$c" \
        -v td="${TPS[$m,$c,direct]}" -v tb="${TPS[$m,$c,pgbouncer]}" -v ts="${TPS[$m,$c,pgscope]}" \
        -v ld="${LAT[$m,$c,direct]}" -v lb="${LAT[$m,$c,pgbouncer]}" -v ls="${LAT[$m,$c,pgscope]}" \
        -v rs="${RSS_SCOPE[$m,$c]}" -v rb="${RSS_BOUNCER[$m,$c]}" \
        -v cs="${CPU[$m,$c,pgscope]}" -v cb="${CPU[$m,$c,pgbouncer]}" \
        -v vs="${VCS[$m,$c,pgscope]}" -v vb="${VCS[$m,$c,pgbouncer]}" \
        -v ns="${NCS[$m,$c,pgscope]}" -v nb="${NCS[$m,$c,pgbouncer]}" '
        function ratio(a, b) { return (a == "NA" || b == "NA" || b == 0) ? "NA" : sprintf("%.3f", a / b) }
        function added(a, b) { return (a == "NA" || b == "NA") ? "NA" : sprintf("%.0f", (a - b) * 1000) }
        BEGIN {
            OFS = "\t"
            print m, c, td, tb, ts, ld, lb, ls, ratio(ts, td), ratio(ts, tb),
                  added(ls, ld), added(lb, ld), rs, rb, cs, cb, ratio(cs, cb), vs, vb, ns, nb
        }'
}

write_tsv() {
    local mode clients
    {
        printf 'mode\tclients\tdirect_tps\tpgbouncer_tps\tpgscope_tps\tdirect_latency_ms'
        printf '\tpgbouncer_latency_ms\tpgscope_latency_ms\tpgscope_direct_tps_ratio'
        printf '\tpgscope_pgbouncer_tps_ratio\tpgscope_added_us\tpgbouncer_added_us'
        printf '\tpgscope_peak_rss_kb\tpgbouncer_peak_rss_kb\tpgscope_cpu_us_per_txn'
        printf '\tpgbouncer_cpu_us_per_txn\tpgscope_pgbouncer_cpu_ratio'
        printf '\tpgscope_voluntary_csw_per_txn\tpgbouncer_voluntary_csw_per_txn'
        printf '\tpgscope_involuntary_csw_per_txn\tpgbouncer_involuntary_csw_per_txn\n'
        for mode in $MODES; do
            for clients in $CLIENTS; do
                result_row "$mode" "$clients"
            done
        done
    } >"$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
}

print_header() {
    local pgv
    pgv=$("$SCRATCH_PG_BINDIR/postgres" --version)
    printf 'pgscope benchmark: pgbench -S, %s s per run, scale %s, %s round(s), %s cores\n' \
        "$DURATION" "$SCALE" "$ROUNDS" "$(nproc)"
    printf '  %s | %s | %s | %s\n' "$("$PGSCOPE" --version 2>&1 | head -n 1)" "$pgv" \
        "$("$PGBOUNCER" --version | head -n 1)" "$(pgbench --version)"
}

# Pads LABEL with dashes to WIDTH, centred.
rule() { # label width
    awk -v l=" $1 " -v w="$2" 'BEGIN {
        left = int((w - length(l)) / 2); right = w - length(l) - left
        s = ""; for (i = 0; i < left; i++) s = s "-"; s = s l
        for (i = 0; i < right; i++) s = s "-"; print s }'
}

print_table() {
    local fmt='%-9s%7s  %10s %10s %10s  %7s %9s %7s  %7s %10s  %7s %9s\n'
    printf '\n%16s  %s  %s  %s  %s\n' "" "$(rule TPS 32)" "$(rule 'latency (ms)' 25)" \
        "$(rule 'pgscope TPS /' 18)" "$(rule 'added us/trip' 17)"
    # shellcheck disable=SC2059
    printf "$fmt" mode clients direct pgbouncer pgscope direct pgbouncer pgscope direct pgbouncer \
        pgscope pgbouncer
    awk -F '\t' -v fmt="$fmt" '
        function num(x, f) { return x == "NA" ? "NA" : sprintf(f, x) }
        NR > 1 { printf fmt, $1, $2, num($3, "%.1f"), num($4, "%.1f"), num($5, "%.1f"),
                 $6, $7, $8, $9, $10, $11, $12 }' "$OUT"
    local fmt2='%-9s%7s  %9s %9s %7s  %9s %9s  %9s %9s\n'
    printf '\n%16s  %s  %s  %s\n' "" "$(rule 'CPU us/transaction' 27)" \
        "$(rule 'voluntary csw/txn' 19)" "$(rule 'involuntary csw/txn' 19)"
    # shellcheck disable=SC2059
    printf "$fmt2" mode clients pgscope pgbouncer ratio pgscope pgbouncer pgscope pgbouncer
    awk -F '\t' -v fmt="$fmt2" 'NR > 1 { printf fmt, $1, $2, $15, $16, $17, $18, $19, $20, $21 }' \
        "$OUT"
    printf '\npeak RSS: pgscope %s, pgbouncer %s\n' \
        "$(human_kb "$(scratch_peak_rss_kb "$PGSCOPE_PID")")" \
        "$(human_kb "$(scratch_peak_rss_kb "$PGBOUNCER_PID")")"
    printf 'pgscope dropped events: %s (runs.events_dropped, as last written)\n' \
        "$(sqlite3 "$SCRATCH_DIR/pgscope.db" 'SELECT sum(events_dropped) FROM runs' 2>/dev/null ||
            echo NA)"
    printf 'results: %s\n' "$OUT"
}

# The top symbols of each recorded profile (BENCH_PROFILE=1).
print_profiles() {
    local data
    for data in "$SCRATCH_DIR"/perf-*.data; do
        [ -s "$data" ] || continue
        printf '\nperf profile of pgscope, %s (cpu-clock, self time):\n' "$(basename "$data" .data)"
        perf report -i "$data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 \
            2>/dev/null | grep -E '^ +[0-9]' | head -n 30
    done
}

human_kb() { # kB
    awk -v k="$1" 'BEGIN { if (k == "NA") print "NA"; else printf "%.1f MiB\n", k / 1024 }'
}

main() {
    check_settings
    scratch_traps
    scratch_init pgscope-bench
    start_postgres
    start_pgbouncer
    start_pgscope
    write_literals_script
    print_header
    warm_up
    run_matrix
    write_tsv
    print_table
    [ "$PROFILE" != 1 ] || print_profiles
    if [ "$FAILURES" -gt 0 ]; then
        scratch_log "$FAILURES pgbench run(s) failed"
        exit 1
    fi
}

main "$@"
