#!/usr/bin/env bash
# Distinct statement shapes without end: sends SHAPES distinct shapes (default 1,000,000)
# through pgscope with max_shapes 5000 and prints the time, the rate and pgscope's peak RSS;
# fails if the RSS passes RSS_LIMIT_KB (default 102400) or if the calls stored (the "other"
# row included) are not exactly the statements sent. It is the integration suite's soak test
# (tests/integration/test_shapes.py, 200,000 shapes there) at full size, on a scratch
# PostgreSQL 15 cluster the harness starts.
#
# Environment: PGSCOPE_BIN (default ./src/pgscope), SHAPES, RSS_LIMIT_KB.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export PGSCOPE_BIN=${PGSCOPE_BIN:-$PWD/src/pgscope}
export PGSCOPE_SOAK_SHAPES=${SHAPES:-1000000}
export PGSCOPE_SOAK_RSS_KB=${RSS_LIMIT_KB:-102400}
export PGSCOPE_TEST_TIMEOUT=${PGSCOPE_TEST_TIMEOUT:-900}
exec /usr/bin/python3 "$HERE/../../tests/integration/run.py" -k test_soak_distinct_shapes
