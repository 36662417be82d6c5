#!/bin/bash
# Runs every pgscope test stage (unit, fuzz, integration) on a built tree and prints the total.
#
# Usage: tests/run-all.sh [BUILDDIR]     (or env BUILDDIR; default: the repository root)
# The tree must already be configured and built. Last line: "N passed, N failed".
set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDDIR=$(cd "${1:-${BUILDDIR:-$REPO}}" 2>/dev/null && pwd) || {
    echo "run-all: build directory ${1:-${BUILDDIR:-$REPO}} not found"
    echo "0 passed, 1 failed"
    exit 1
}
export PGSCOPE_BIN=${PGSCOPE_BIN:-$BUILDDIR/src/pgscope}

LOGDIR=$(mktemp -d /tmp/pgscope-run-all.XXXXXX)
trap 'rm -rf "$LOGDIR"' EXIT
PASSED=0
FAILED=0
BROKEN=0

count() {  # count STAGE PASSED FAILED
    echo "== $1: $2 passed, $3 failed"
    PASSED=$((PASSED + $2))
    FAILED=$((FAILED + $3))
}

broken() {  # broken STAGE REASON: a stage that could not run counts as one failure
    echo "== $1: could not run: $2"
    BROKEN=1
    FAILED=$((FAILED + 1))
}

sum_field() {  # sum_field LOG FIELD: total of the automake summary lines "# FIELD: N"
    awk -v f="# $2:" 'index($0, f) == 1 { n += $NF } END { print n + 0 }' "$1"
}

unit_stage() {
    local log=$LOGDIR/unit.log rc pass fail
    echo "== unit tests: make -C $BUILDDIR check"
    if [ ! -f "$BUILDDIR/Makefile" ]; then
        broken "unit tests" "$BUILDDIR has no Makefile (configure and build first)"
        return
    fi
    make -C "$BUILDDIR" check </dev/null >"$log" 2>&1
    rc=$?
    cat "$log"
    if ! grep -q '^# TOTAL:' "$log"; then
        broken "unit tests" "no test-suite summary from make check (exit $rc)"
        return
    fi
    pass=$(sum_field "$log" PASS)
    fail=$(( $(sum_field "$log" FAIL) + $(sum_field "$log" ERROR) + $(sum_field "$log" XPASS) ))
    # Count cmocka's cases rather than test programs; a program that died before its summary
    # still counts through automake's FAIL.
    local cases
    cases=$(cat "$BUILDDIR"/tests/unit/*.log 2>/dev/null | awk '
        /^\[  PASSED  \] [0-9]+ test/ { p += $4 }
        /^\[  FAILED  \] [0-9]+ test/ { f += $4 }
        END { if (p + f > 0) print p + 0, f + 0 }')
    if [ -n "$cases" ]; then
        pass=${cases% *}
        [ "${cases#* }" -gt "$fail" ] && fail=${cases#* }
    fi
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        fail=1
    fi
    count "unit tests" "$pass" "$fail"
}

fuzz_stage() {
    local script=$REPO/tests/fuzz/run.sh
    if [ ! -x "$script" ]; then
        echo "== fuzz: no executable tests/fuzz/run.sh, skipped"
        return
    fi
    echo "== fuzz: $script"
    if BUILDDIR=$BUILDDIR "$script" </dev/null; then
        count "fuzz" 1 0
    else
        count "fuzz" 0 1
    fi
}

integration_stage() {
    local log=$LOGDIR/integration.log line
    echo "== integration tests: tests/integration/run.py (pgscope: $PGSCOPE_BIN)"
    /usr/bin/python3 "$REPO/tests/integration/run.py" </dev/null 2>&1 | tee "$log"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        broken "integration tests" "no result line from run.py"
        return
    fi
    count "integration tests" "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
}

START=$(date +%s)
unit_stage
fuzz_stage
integration_stage
echo "== all stages took $(( $(date +%s) - START ))s"
echo "$PASSED passed, $FAILED failed"
if [ "$FAILED" -ne 0 ] || [ "$BROKEN" -ne 0 ]; then
    exit 1
fi
exit 0
