#!/usr/bin/env bash
# Runs PostgreSQL's own regression suite (pg_regress, parallel_schedule) through pgscope.
#
# A scratch PostgreSQL 15 cluster is started; the suite runs once directly against it, then
# REGRESS_RUNS times through pgscope (all analysis on: EXPLAIN sampling, advisor), each run
# with a fresh pgscope process. A test that fails through pgscope but passed directly is
# pgscope's; one that also fails directly comes from the environment (for instance the test
# sources being a different minor release than the server). pgscope's log of each run is
# searched for sanitizer reports (AddressSanitizer, LeakSanitizer, UBSan "runtime error:"),
# and pgscope must still be alive at the end of the run and exit 0 on SIGTERM.
#
# The test sources are not in Debian's binary packages: the script fetches the postgresql-15
# source package (apt-get source --download-only, from a deb-src entry it adds for the
# Debian mirror) into REGRESS_CACHE, the installed server's version if the mirror has it,
# else the newest 15.x source there is, and extracts src/test/regress. That needs root
# once; later runs use the cache. regress.so is compiled against the installed server
# headers (postgresql-server-dev-15).
#
# Environment: PGSCOPE_BIN (./src/pgscope; copied to the temp dir before use),
# REGRESS_RUNS (1; 0 runs the direct pass only), REGRESS_CACHE (/var/cache/pgscope-regress),
# REGRESS_PG_SOURCE (a Debian source version such as 15.18-0+deb12u1, to pin the test
# sources), REGRESS_OUT (/tmp/pgscope-regress: each run's pg_regress output, regression.diffs
# and pgscope log are kept there), REGRESS_TIMEOUT (1800 seconds per pg_regress run),
# REGRESS_MAX_CONCURRENT (20 tests at once), PG_BINDIR (/usr/lib/postgresql/15/bin),
# SCRATCH_KEEP (keep the temp dir).
#
# Last line: "N passed, N failed", counting the runs through pgscope. A run passes when every
# test that passed directly passes through pgscope, pgscope's log holds no sanitizer report,
# and pgscope neither died nor failed to stop cleanly. Setup failures print "0 passed,
# 1 failed". Exit status: 0 when every run passed, 1 otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=contrib/scratch.sh
. "$HERE/scratch.sh"

RUNS=${REGRESS_RUNS:-1}
CACHE=${REGRESS_CACHE:-/var/cache/pgscope-regress}
OUT=${REGRESS_OUT:-/tmp/pgscope-regress}
RUN_TIMEOUT=${REGRESS_TIMEOUT:-1800}
MAX_CONCURRENT=${REGRESS_MAX_CONCURRENT:-20}
PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
PG_PACKAGE=postgresql-15
SANITIZER_RE='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:'

SRC_VERSION=
SRC_NOTE=
REGRESS_SRC=
PG_PORT=
DIRECT_FAILED=
RUNS_PASSED=0
RUNS_FAILED=0

# Setup failures end with the summary line too, so callers that sum it see a failure.
regress_die() {
    scratch_log "error: $*"
    printf '0 passed, 1 failed\n'
    exit 1
}

check_settings() {
    [[ $RUNS =~ ^[0-9]+$ ]] || regress_die "REGRESS_RUNS must be a number"
    [[ $RUN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || regress_die "REGRESS_TIMEOUT must be a positive integer"
    [[ $MAX_CONCURRENT =~ ^[1-9][0-9]*$ ]] ||
        regress_die "REGRESS_MAX_CONCURRENT must be a positive integer"
    [ -x "$PG_REGRESS" ] || regress_die "$PG_REGRESS not found (package postgresql-client-15)"
    command -v pg_config >/dev/null || regress_die "pg_config not found (postgresql-server-dev-15)"
    [ -f "$(pg_config --includedir-server)/postgres.h" ] ||
        regress_die "PostgreSQL server headers not found (install postgresql-server-dev-15)"
    command -v gcc >/dev/null || regress_die "gcc not found (build-essential)"
    command -v bzip2 >/dev/null || command -v xz >/dev/null || regress_die "bzip2 not found"
    if [ "$RUNS" -gt 0 ]; then
        PGSCOPE=$(scratch_pgscope_bin) || regress_die "no pgscope binary to test"
    fi
}

# --- test sources ------------------------------------------------------------------------

# The Debian version of the installed server package (e.g. 15.20-0+deb12u1).
installed_version() {
    dpkg-query -W -f='${Version}' "$PG_PACKAGE" 2>/dev/null ||
        regress_die "package $PG_PACKAGE is not installed"
}

# Directory the regression sources of a Debian version are extracted to.
src_dir_of() { # debian-version
    printf '%s/postgresql-%s\n' "$CACHE" "${1%%-*}"
}

extracted() { # debian-version
    [ -f "$(src_dir_of "$1")/.complete" ]
}

# Adds a deb-src twin of the Debian mirror entries, once. Prints nothing.
ensure_deb_src() {
    local list=/etc/apt/sources.list.d/pgscope-src.sources tmp
    if apt-cache showsrc "$PG_PACKAGE" 2>/dev/null | grep -q '^Version:'; then
        return 0
    fi
    [ -f /etc/apt/sources.list.d/debian.sources ] ||
        regress_die "no deb-src entry for $PG_PACKAGE and no /etc/apt/sources.list.d/debian.sources to copy"
    tmp=$(mktemp)
    grep -v '^#' /etc/apt/sources.list.d/debian.sources |
        sed 's/^Types:.*/Types: deb-src/' >"$tmp"
    if ! cmp -s "$tmp" "$list"; then
        scratch_log "adding $list (deb-src of the Debian mirror)"
        install -m 0644 "$tmp" "$list"
    fi
    rm -f "$tmp"
}

# Source versions of 15.x the mirror lists, newest first.
available_versions() {
    apt-cache showsrc "$PG_PACKAGE" 2>/dev/null | awk '/^Version: 15\./ { print $2 }' |
        sort -u | sort -r -V
}

# Source versions already extracted in the cache (upstream numbers only), newest first.
cached_versions() {
    local marker
    for marker in "$CACHE"/postgresql-15.*/.complete; do
        [ -f "$marker" ] || continue
        marker=${marker%/.complete}
        printf '%s\n' "${marker##*/postgresql-}"
    done | sort -r -V
}

# The upstream tarball of a version in DIR, if it was downloaded.
orig_tarball() { # dir upstream-version
    local f
    for f in "$1/${PG_PACKAGE}_$2.orig.tar."*; do
        [ -f "$f" ] && { printf '%s\n' "$f"; return 0; }
    done
    return 0
}

# Downloads a source package version into the cache and extracts src/test/regress.
fetch_version() { # debian-version
    local ver=$1 upstream=${1%%-*} dl=$CACHE/download dest tarball
    dest=$(src_dir_of "$ver")
    mkdir -p "$dl"
    tarball=$(orig_tarball "$dl" "$upstream")
    if [ -z "$tarball" ]; then
        scratch_log "apt-get source --download-only $PG_PACKAGE=$ver"
        if ! (cd "$dl" && apt-get source -qq --download-only "$PG_PACKAGE=$ver") \
            >"$dl/apt-$ver.log" 2>&1; then
            grep -E '^E:' "$dl/apt-$ver.log" | head -n 3 >&2 || true
            return 1
        fi
        tarball=$(orig_tarball "$dl" "$upstream")
        [ -n "$tarball" ] || return 1
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -xf "$tarball" -C "$dest" --strip-components=1 "postgresql-$upstream/src/test/regress" ||
        { rm -rf "$dest"; return 1; }
    touch "$dest/.complete"
}

# True when the mirror lacked this version less than a day ago.
recently_missed() { # debian-version
    local miss=$CACHE/unavailable-$1
    [ -f "$miss" ] && [ -z "$(find "$miss" -mmin +1440 2>/dev/null)" ]
}

# Tries one version: the cache first, then the mirror (as root). Remembers a failed download
# for a day so that every run does not ask the mirror again for a version it lacks.
try_version() { # debian-version
    local ver=$1 miss=$CACHE/unavailable-$1
    extracted "$ver" && return 0
    [ "$(id -u)" -eq 0 ] || return 1
    recently_missed "$ver" && return 1
    if fetch_version "$ver"; then
        rm -f "$miss"
        return 0
    fi
    touch "$miss"
    return 1
}

choose_sources() {
    local installed ver
    installed=$(installed_version)
    mkdir -p "$CACHE" 2>/dev/null || true
    if [ -n "${REGRESS_PG_SOURCE:-}" ]; then
        [ "$(id -u)" -eq 0 ] && ! extracted "$REGRESS_PG_SOURCE" && ensure_deb_src &&
            apt-get update -qq >/dev/null 2>&1
        rm -f "$CACHE/unavailable-$REGRESS_PG_SOURCE"
        try_version "$REGRESS_PG_SOURCE" ||
            regress_die "cannot get the $PG_PACKAGE $REGRESS_PG_SOURCE source package"
        SRC_VERSION=$REGRESS_PG_SOURCE
        SRC_NOTE="pinned by REGRESS_PG_SOURCE"
    elif extracted "$installed"; then
        SRC_VERSION=$installed
        SRC_NOTE="the installed server's version"
    else
        if [ "$(id -u)" -eq 0 ] && ! recently_missed "$installed"; then
            ensure_deb_src
            scratch_log "apt-get update"
            apt-get update -qq >/dev/null 2>&1 || scratch_log "apt-get update failed; using what is known"
        fi
        if try_version "$installed"; then
            SRC_VERSION=$installed
            SRC_NOTE="the installed server's version"
        else
            for ver in $(available_versions) $(cached_versions); do
                [ "$ver" != "$installed" ] || continue
                if try_version "$ver"; then
                    SRC_VERSION=$ver
                    SRC_NOTE="fallback: the installed server is $installed, whose source is not available"
                    break
                fi
            done
        fi
    fi
    [ -n "$SRC_VERSION" ] ||
        regress_die "no $PG_PACKAGE source package available (run once as root to download it into $CACHE)"
    scratch_log "regression tests of PostgreSQL ${SRC_VERSION%%-*} ($SRC_NOTE)"
}

# --- scratch tree ------------------------------------------------------------------------

# Copies the test sources into the temp dir (the server reads data files from there, and
# writes results/ beside them) and builds regress.so against the installed server headers.
prepare_tree() {
    local src lib pkglib
    src=$(src_dir_of "$SRC_VERSION")/src/test/regress
    REGRESS_SRC=$SCRATCH_DIR/regress
    cp -r "$src" "$REGRESS_SRC"
    lib=$SCRATCH_DIR/lib
    mkdir -p "$lib"
    gcc -O2 -fPIC -shared -Wno-implicit-fallthrough -I"$(pg_config --includedir-server)" \
        -o "$lib/regress.so" "$REGRESS_SRC/regress.c" >"$SCRATCH_DIR/regress-so.log" 2>&1 ||
        { cat "$SCRATCH_DIR/regress-so.log" >&2; regress_die "cannot compile regress.c"; }
    pkglib=$(pg_config --pkglibdir)
    for so in autoinc refint; do
        [ -f "$pkglib/$so.so" ] || regress_die "$pkglib/$so.so not found (package postgresql-15)"
        ln -s "$pkglib/$so.so" "$lib/$so.so"
    done
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres: "$SCRATCH_DIR"
    fi
    if [ "${RUNS:-0}" -gt 0 ]; then
        mkdir -p "$SCRATCH_DIR/bin"
        cp "$PGSCOPE" "$SCRATCH_DIR/bin/pgscope"
        PGSCOPE=$SCRATCH_DIR/bin/pgscope
    fi
    rm -rf "$OUT"
    mkdir -p "$OUT"
}

# Each run gets a cluster of its own: a run that breaks off (pgscope dying mid-suite) leaves
# objects behind, such as a subscription that keeps the next run from dropping its database.
start_cluster() {
    PG_PORT=$(scratch_free_port)
    # max_prepared_transactions: prepared_xacts exercises two-phase commit (its alternative
    # expected output covers 0, but this way the real path runs).
    scratch_pg_start "$PG_PORT" -c max_connections=200 -c max_prepared_transactions=10 \
        -c lc_messages=C
    scratch_log "PostgreSQL $("$SCRATCH_PG_BINDIR/postgres" --version | awk '{ print $3 }') on 127.0.0.1:$PG_PORT"
}

# Stops the run's cluster, keeps its server log in OUTDIR and removes its data directory.
stop_cluster() { # outdir
    scratch_pg_stop_all
    cp "$SCRATCH_DIR/pg-$PG_PORT.log" "$1/postgres.log" 2>/dev/null || true
    rm -rf "$SCRATCH_DIR/pg-$PG_PORT"
}

# --- runs --------------------------------------------------------------------------------

# Runs the suite against PORT; its files go to OUTDIR. Prints nothing; returns pg_regress's status.
run_suite() { # port outdir
    local port=$1 outdir=$2
    scratch_as_postgres mkdir -p "$outdir"
    (cd "$outdir" && scratch_as_postgres timeout "$RUN_TIMEOUT" "$PG_REGRESS" \
        --inputdir="$REGRESS_SRC" --outputdir="$outdir" --dlpath="$SCRATCH_DIR/lib" \
        --bindir="$SCRATCH_PG_BINDIR" --schedule="$REGRESS_SRC/parallel_schedule" \
        --max-concurrent-tests="$MAX_CONCURRENT" --host=127.0.0.1 --port="$port" \
        --user=postgres) </dev/null >"$outdir/pg_regress.out" 2>&1
}

# Per-test results of a run, "name status" lines (status ok, FAILED or ignored).
test_results() { # outdir
    awk '/^(test |     )[^ ].* \.\.\. / {
             name = $1 == "test" ? $2 : $1
             st = $0; sub(/.* \.\.\. */, "", st)
             if (st ~ /^ok/) s = "ok"; else if (st ~ /ignored/) s = "ignored"; else s = "FAILED"
             print name, s
         }' "$1/pg_regress.out"
}

# "P F T": passed, failed, total of a run (ignored failures count as passed, as pg_regress does).
counts() { # outdir
    test_results "$1" | awk '{ t++; if ($2 == "FAILED") f++ } END { print t - f, f + 0, t + 0 }'
}

failed_tests() { # outdir
    test_results "$1" | awk '$2 == "FAILED" { print $1 }' | sort
}

keep_outputs() { # outdir name
    local f
    mkdir -p "$OUT/$2"
    for f in pg_regress.out regression.diffs regression.out pgscope.log pgscope.db postgres.log; do
        [ -f "$1/$f" ] && cp "$1/$f" "$OUT/$2/"
    done
    return 0
}

run_direct() {
    local outdir=$SCRATCH_DIR/direct start rc=0 p f t
    start_cluster
    scratch_log "direct run: pg_regress against 127.0.0.1:$PG_PORT"
    start=$SECONDS
    run_suite "$PG_PORT" "$outdir" || rc=$?
    stop_cluster "$outdir"
    read -r p f t <<<"$(counts "$outdir")"
    keep_outputs "$outdir" direct
    [ "$t" -gt 0 ] || { tail -n 20 "$outdir/pg_regress.out" >&2; regress_die "the direct run ran no test (pg_regress exit $rc)"; }
    DIRECT_FAILED=$(failed_tests "$outdir")
    printf 'direct:      %d of %d passed, %d failed, %ds\n' "$p" "$t" "$f" $((SECONDS - start))
    if [ -n "$DIRECT_FAILED" ]; then
        printf '  failing directly too (environment or version, not pgscope): %s\n' \
            "$(words "$DIRECT_FAILED")"
    fi
}

# Lists the tests that failed only through pgscope, apart from those that failed because
# pgscope was gone (psql could not connect, or lost its connection).
report_only() { # outdir tests
    local t lost='' other=''
    for t in $2; do
        if grep -q -E 'connection to server .* failed|server closed the connection unexpectedly|connection to server was lost' \
            "$1/results/$t.out" 2>/dev/null; then
            lost+="$t "
        else
            other+="$t "
        fi
    done
    [ -z "$other" ] || printf '  FAILED only through pgscope: %s\n' "${other% }"
    [ -z "$lost" ] ||
        printf '  FAILED only through pgscope, connection refused or lost: %s\n' "${lost% }"
}

# Splits a regression.diffs into one file per test in DIR, without the paths and times of the
# headers, so that the diffs of two runs can be compared test by test.
split_diffs() { # regression.diffs dir
    mkdir -p "$2"
    [ -f "$1" ] || return 0
    awk -v dir="$2" '
        /^diff / { f = $NF; sub(/.*\//, "", f); sub(/\.out$/, "", f); f = dir "/" f; next }
        /^(---|\+\+\+) / { next }
        f != "" { print > f }' "$1"
}

# Tests that fail directly and through pgscope, but with a different diff through pgscope.
changed_failures() { # outdir
    local t
    split_diffs "$SCRATCH_DIR/direct/regression.diffs" "$SCRATCH_DIR/direct/diffs"
    split_diffs "$1/regression.diffs" "$1/diffs"
    for t in $(comm -12 <(printf '%s\n' "$DIRECT_FAILED") <(failed_tests "$1")); do
        cmp -s "$SCRATCH_DIR/direct/diffs/$t" "$1/diffs/$t" || printf '%s\n' "$t"
    done
}

words() { printf '%s\n' "$1" | paste -sd ' '; }

# Prints the sanitizer reports of a pgscope log, each from its first line to its SUMMARY line
# (the shadow-byte map after it is left out), at most three; nothing when there are none.
sanitizer_reports() { # log
    awk -v re="$SANITIZER_RE" '
        !inside && $0 ~ re { inside = 1; lines = 0; if (++reports > 3) exit }
        inside { if (++lines <= 60) print }
        inside && /^SUMMARY: / { inside = 0 }' "$1"
}

run_pgscope() { # n
    local n=$1 outdir=$SCRATCH_DIR/pgscope-$1 port pid start rc=0 p f t only changed reports ok=1 died=
    start_cluster
    port=$(scratch_free_port)
    scratch_as_postgres mkdir -p "$outdir"
    scratch_spawn "$outdir/pgscope.log" env "ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}" \
        "UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}" "$PGSCOPE" proxy \
        --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PG_PORT" --db "$outdir/pgscope.db" \
        --run-label "regress-$n"
    pid=$SCRATCH_LAST_PID
    scratch_wait_ready "$port" 60 "$pid" ||
        { tail -n 20 "$outdir/pgscope.log" >&2; regress_die "pgscope is not answering"; }
    scratch_log "run $n/$RUNS: pg_regress through pgscope 127.0.0.1:$port"
    start=$SECONDS
    run_suite "$port" "$outdir" || rc=$?
    local took=$((SECONDS - start))
    if ! scratch_alive "$pid"; then
        wait "$pid" 2>/dev/null || died="pgscope died during the run (exit status $?)"
        [ -n "$died" ] || died="pgscope exited during the run"
    else
        scratch_stop_pid "$pid" 60
        [ "$SCRATCH_STOP_RC" -eq 0 ] ||
            died="pgscope did not stop cleanly on SIGTERM (exit status $SCRATCH_STOP_RC)"
    fi
    stop_cluster "$outdir"
    keep_outputs "$outdir" "pgscope-$n"
    read -r p f t <<<"$(counts "$outdir")"
    printf 'pgscope %d/%d: %d of %d passed, %d failed, %ds\n' "$n" "$RUNS" "$p" "$t" "$f" "$took"
    if [ "$t" -eq 0 ]; then
        printf '  pg_regress ran no test (exit %s):\n' "$rc"
        tail -n 10 "$outdir/pg_regress.out" | sed 's/^/    /'
        ok=0
    fi
    only=$(comm -13 <(printf '%s\n' "$DIRECT_FAILED") <(failed_tests "$outdir") | sed '/^$/d')
    if [ -n "$only" ]; then
        report_only "$outdir" "$only"
        printf '  (diffs: %s/pgscope-%d/regression.diffs)\n' "$OUT" "$n"
        ok=0
    fi
    changed=$(changed_failures "$outdir")
    if [ -n "$changed" ]; then
        printf '  FAILED directly too, but with another diff through pgscope: %s\n' "$(words "$changed")"
        ok=0
    fi
    reports=$(sanitizer_reports "$outdir/pgscope.log")
    if [ -n "$reports" ]; then
        printf '  sanitizer report in pgscope log (%s/pgscope-%d/pgscope.log):\n' "$OUT" "$n"
        printf '%s\n' "$reports" | sed 's/^/    /'
        ok=0
    fi
    if [ -n "$died" ]; then
        if [ -n "$reports" ]; then
            printf '  %s (after the report above)\n' "$died"
        else
            printf '  %s; last log lines:\n' "$died"
            tail -n 15 "$outdir/pgscope.log" | sed 's/^/    /'
        fi
        ok=0
    fi
    if [ "$ok" -eq 1 ]; then
        RUNS_PASSED=$((RUNS_PASSED + 1))
    else
        RUNS_FAILED=$((RUNS_FAILED + 1))
    fi
}

main() {
    check_settings
    scratch_traps
    choose_sources
    scratch_init pgscope-regress
    prepare_tree
    printf 'pgscope regression run: PostgreSQL %s tests (%s), server %s, %s\n' \
        "${SRC_VERSION%%-*}" "$SRC_NOTE" "$(installed_version)" \
        "$([ "$RUNS" -gt 0 ] && "$PGSCOPE" --version 2>&1 | head -n 1 || echo 'no pgscope run')"
    run_direct
    local n
    for n in $(seq "$RUNS"); do
        run_pgscope "$n"
    done
    printf 'outputs: %s\n' "$OUT"
    printf '%d passed, %d failed\n' "$RUNS_PASSED" "$RUNS_FAILED"
    [ "$RUNS_FAILED" -eq 0 ]
}

main "$@"
