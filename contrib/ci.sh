#!/usr/bin/env bash
# Builds pgscope twice (warnings as errors, then ASan/UBSan) and runs the test suite on each build.
#
# Both builds are out of tree, in _build and _build-asan: automake refuses a build directory
# beside a configured source tree, so an in-tree build (the demo's) is cleaned first.
# Prints a last line "N passed, N failed" summing both passes; exits non-zero on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${JOBS:-2}
PASSED=0
FAILED=0
STATUS=0

log() { printf '\n== ci: %s\n' "$*"; }

prepare_tree() {
    cd "$ROOT"
    if [ -f config.status ]; then
        log "the source tree holds an in-tree build: make distclean"
        make distclean >/dev/null
    fi
    log "autoreconf -fi"
    autoreconf -fi
}

build() { # builddir configure-options...
    local dir=$1
    shift
    mkdir -p "$dir"
    log "configure $* (in ${dir#"$ROOT"/})"
    (cd "$dir" && "$ROOT/configure" "$@")
    log "make -j$JOBS (in ${dir#"$ROOT"/})"
    make -C "$dir" -j"$JOBS"
}

# Runs tests/run-all.sh on a build and adds its closing "N passed, N failed" to the totals.
run_tests() { # builddir
    local dir=$1 out rc=0 summary
    out=$dir/run-all.out
    log "tests/run-all.sh (on ${dir#"$ROOT"/})"
    (cd "$dir" && bash "$ROOT/tests/run-all.sh" "$dir") 2>&1 </dev/null | tee "$out" || rc=$?
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1 || true)
    if [ -z "$summary" ]; then
        printf 'ci: tests/run-all.sh printed no "N passed, N failed" line (exit %s)\n' "$rc"
        FAILED=$((FAILED + 1))
        STATUS=1
        return
    fi
    PASSED=$((PASSED + $(awk '{ print $1 }' <<<"$summary")))
    FAILED=$((FAILED + $(awk '{ print $3 }' <<<"$summary")))
    [ "$rc" -eq 0 ] || STATUS=1
}

# make distcheck on the first build: the tarball builds and passes its unit tests on its own.
run_distcheck() { # builddir
    local dir=$1
    log "make distcheck (in ${dir#"$ROOT"/})"
    if make -C "$dir" -j"$JOBS" distcheck >"$dir/distcheck.out" 2>&1 </dev/null; then
        printf 'distcheck: passed\n'
        PASSED=$((PASSED + 1))
    else
        tail -n 40 "$dir/distcheck.out"
        printf 'distcheck: FAILED\n'
        FAILED=$((FAILED + 1))
        STATUS=1
    fi
}

# PostgreSQL's own regression suite through the ASan build (contrib/regress.sh): no test may
# fail only through pgscope, and pgscope's log may hold no sanitizer report.
run_regress() { # builddir
    local dir=$1
    log "contrib/regress.sh (pgscope of ${dir#"$ROOT"/})"
    if PGSCOPE_BIN="$dir/src/pgscope" REGRESS_RUNS=1 \
        bash "$ROOT/contrib/regress.sh" </dev/null 2>&1 | tee "$dir/regress.out" | tail -n 30 &&
        grep -q '^1 passed, 0 failed' "$dir/regress.out"; then
        PASSED=$((PASSED + 1))
    else
        printf 'regress: FAILED (outputs in /tmp/pgscope-regress)\n'
        FAILED=$((FAILED + 1))
        STATUS=1
    fi
}

main() {
    prepare_tree
    build "$ROOT/_build" --enable-werror
    run_tests "$ROOT/_build"
    run_distcheck "$ROOT/_build"
    build "$ROOT/_build-asan" --enable-asan --enable-werror
    run_tests "$ROOT/_build-asan"
    run_regress "$ROOT/_build-asan"
    [ "$FAILED" -eq 0 ] || STATUS=1
    printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
    exit "$STATUS"
}

main "$@"
