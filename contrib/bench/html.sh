#!/usr/bin/env bash
# The HTML report's budget: 10,000 statement shapes through pgscope on a scratch PostgreSQL 15
# cluster, the page's size, the time to write it and its DOMContentLoaded in headless Chromium;
# then the report file grown to STATEMENT_ROWS statement rows (default 1,000,000) and the time
# `pgscope report --format html` takes over it. Exits 1 when over budget (2 MB, 1 s, 1 s).
#
# Environment: PGSCOPE_BIN (default ./src/pgscope), STATEMENT_ROWS, ROUNDS (default 3).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PGSCOPE_BIN=${PGSCOPE_BIN:-$PWD/src/pgscope}
exec /usr/bin/python3 "$HERE/html_bench.py"
