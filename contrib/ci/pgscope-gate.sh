#!/usr/bin/env bash
# Runs a test suite through pgscope and gates on what it found: any CI can call it.
#
#   contrib/ci/pgscope-gate.sh [--upstream HOST:PORT] [--listen HOST:PORT] [--db FILE]
#                              [--out DIR] -- TEST-COMMAND...
#
# Starts pgscope in front of the upstream PostgreSQL (default 127.0.0.1:5432, listening on
# 127.0.0.1:6432), runs TEST-COMMAND with PGHOST and PGPORT pointing at pgscope (point your
# connection string at them too), stops pgscope, then runs `pgscope check` and writes to DIR
# (default ./pgscope-out): check.md (Markdown, also appended to $GITHUB_STEP_SUMMARY when set),
# junit.xml, report.txt and report.html (the page to open from the artifact). With
# GITHUB_ACTIONS=true it prints GitHub annotations.
# Exit status: the test command's when it failed, else pgscope check's (0 passed, 1 a rule
# failed, 2 or 3 pgscope could not check). PGSCOPE (default: pgscope on PATH) is the binary;
# PGSCOPE_CHECK_ARGS adds options to pgscope check (e.g. "--duplicate-min 5").
set -euo pipefail

UPSTREAM=127.0.0.1:5432
LISTEN=127.0.0.1:6432
DB=./pgscope.db
OUT=./pgscope-out
PGSCOPE=${PGSCOPE:-pgscope}

while [ $# -gt 0 ]; do
    case $1 in
    --upstream) UPSTREAM=$2; shift 2 ;;
    --listen) LISTEN=$2; shift 2 ;;
    --db) DB=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "pgscope-gate: unknown argument $1 (the test command goes after --)" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "pgscope-gate: no test command (after --)" >&2; exit 2; }
mkdir -p "$OUT"

"$PGSCOPE" proxy --listen "$LISTEN" --upstream "$UPSTREAM" --db "$DB" 2>"$OUT/pgscope.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do # ready when it logs that it listens
    grep -q "listening on" "$OUT/pgscope.log" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/pgscope.log" >&2; exit 3; }
    sleep 0.1
done

TESTS=0
PGHOST=${LISTEN%:*} PGPORT=${LISTEN##*:} "$@" || TESTS=$?
kill -TERM "$PID"
wait "$PID" || { echo "pgscope-gate: pgscope did not stop cleanly" >&2; cat "$OUT/pgscope.log" >&2; }
trap - EXIT

# shellcheck disable=SC2086 # PGSCOPE_CHECK_ARGS is a list of options
set -- ${PGSCOPE_CHECK_ARGS:-}
"$PGSCOPE" report --db "$DB" >"$OUT/report.txt" || true
"$PGSCOPE" report --db "$DB" --format html --output "$OUT/report.html" || true
"$PGSCOPE" check --db "$DB" --format junit --output "$OUT/junit.xml" "$@" || true
ANNOTATE=()
[ "${GITHUB_ACTIONS:-}" = true ] && ANNOTATE=(--annotations github)
CHECK=0
"$PGSCOPE" check --db "$DB" --format markdown --output "$OUT/check.md" "${ANNOTATE[@]}" "$@" ||
    CHECK=$?
[ -n "${GITHUB_STEP_SUMMARY:-}" ] && cat "$OUT/check.md" >>"$GITHUB_STEP_SUMMARY"
"$PGSCOPE" check --db "$DB" "$@" || true # the verdict, for the log
[ "$TESTS" -ne 0 ] && exit "$TESTS"
exit "$CHECK"
