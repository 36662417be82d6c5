#!/usr/bin/env bash
# capture.sh — regenerates the EXPLAIN (FORMAT JSON) plans test_plan reads, from a scratch
# PostgreSQL 15 cluster: one plan per plan heuristic, two plain EXPLAINs and two clean plans.
#
# Usage: tests/unit/plans/capture.sh        (as root or as a user that may run initdb)
# Env:   PG_BINDIR (default /usr/lib/postgresql/15/bin), SCRATCH_KEEP=1 keeps the cluster dir.
#
# Timings, buffer counts and some row counts differ from run to run; test_plan asserts ranges
# and relations, not exact numbers, so a fresh capture keeps the tests passing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../../.." && pwd)
# shellcheck source=contrib/scratch.sh
. "$top/contrib/scratch.sh"

scratch_traps
scratch_init pgscope-plans
port=$(scratch_free_port)
# No autovacuum: the stale statistics and the unvacuumed visibility map below must stay as made.
# No parallel workers and no JIT by default: short plans (one capture turns workers back on).
scratch_pg_start "$port" -c autovacuum=off -c jit=off -c max_parallel_workers_per_gather=0

sql() {
    psql -XAtq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

# capture NAME SQL: runs SQL (its SETs, then one EXPLAIN) over one connection into NAME.json.
# The plan is checked in the scratch dir first, so a failed run leaves the old file in place.
capture() {
    local name=$1 tmp=$SCRATCH_DIR/$1.json
    sql -c "$2" >"$tmp"
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))[0]["Plan"]' "$tmp" ||
        scratch_die "$name: psql did not return one JSON plan"
    cp "$tmp" "$here/$name.json"
    scratch_log "$name.json: $(wc -c <"$here/$name.json") bytes"
}

ANALYZE_JSON='EXPLAIN (ANALYZE, BUFFERS, VERBOSE, SETTINGS, FORMAT JSON)'
PLAIN_JSON='EXPLAIN (VERBOSE, SETTINGS, FORMAT JSON)'

scratch_log "loading data"
sql <<'EOF'
-- 200,000 orders; one in a thousand is pending; no index but the primary key.
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                     amount int NOT NULL);
INSERT INTO orders
SELECT i, 1 + i % 2000, CASE WHEN i % 1000 = 0 THEN 'pending' ELSE 'shipped' END,
       (i * 7919) % 100000
FROM generate_series(1, 200000) i;

-- 2,000 customers with no index at all: a nested loop can only scan them.
CREATE TABLE customers (id int NOT NULL, name text NOT NULL);
INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 2000) i;

-- 500 shops: a table small enough that scanning it whole is right.
CREATE TABLE shops (id int NOT NULL, city text NOT NULL);
INSERT INTO shops SELECT i, 'city ' || i % 50 FROM generate_series(1, 500) i;

-- 50,000 shipments to hash against the orders.
CREATE TABLE shipments (order_id int NOT NULL, carrier text NOT NULL);
INSERT INTO shipments SELECT i * 4, 'carrier ' || i % 7 FROM generate_series(1, 50000) i;

-- 30,000 addresses whose region is a function of their shop: the planner multiplies the two
-- selectivities, as if they were independent, and misses by the number of shops (30).
CREATE TABLE addresses (id int NOT NULL, shop int NOT NULL, region int NOT NULL);
INSERT INTO addresses SELECT i, i % 30, i % 30 FROM generate_series(1, 30000) i;
CREATE INDEX addresses_shop ON addresses (shop);

-- Stale statistics: analyzed with 1,000 'old' events, then 3,000 'new' ones were loaded.
CREATE TABLE events (id int NOT NULL, kind text NOT NULL);
INSERT INTO events SELECT i, 'old' FROM generate_series(1, 1000) i;
ANALYZE events;
INSERT INTO events SELECT i, 'new' FROM generate_series(1001, 4000) i;

-- 200,000 visits over ten days, scattered over every page, indexed by day.
CREATE TABLE visits (id int NOT NULL, day int NOT NULL, duration int NOT NULL);
INSERT INTO visits SELECT i, i % 10, i % 3600 FROM generate_series(1, 200000) i;
CREATE INDEX visits_day ON visits (day);

-- Stock rows loaded after their index and never vacuumed: the visibility map is empty.
CREATE TABLE stock (id int NOT NULL, sku int NOT NULL, qty int NOT NULL);
CREATE INDEX stock_sku ON stock (sku);
INSERT INTO stock SELECT i, i, i % 100 FROM generate_series(1, 100000) i;

ANALYZE orders, customers, shops, shipments, addresses, visits, stock;
-- Everything but stock is vacuumed, so only stock's index-only scans visit the heap.
VACUUM orders, customers, shops, shipments, addresses, events, visits;
EOF
# VACUUM analyzed nothing: events keeps the statistics of its first thousand rows.

capture seq_scan_filter "$ANALYZE_JSON
SELECT id, amount FROM orders WHERE status = 'pending' ORDER BY amount DESC LIMIT 50"

# Two workers, made cheap enough for a table this size: Actual Rows and Rows Removed by Filter are
# then averages over three loops (the leader and two workers).
capture seq_scan_parallel "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
$ANALYZE_JSON SELECT count(*) FROM orders WHERE status = 'pending'"

capture misestimate_10x "$ANALYZE_JSON
SELECT id FROM addresses WHERE shop = 7 AND region = 7 ORDER BY id"

# An expression without statistics: equality is guessed at 0.5% of the rows.
capture misestimate_100x "$ANALYZE_JSON
SELECT count(*) FROM orders WHERE lower(status) = 'shipped'"

capture misestimate_1000x "$ANALYZE_JSON SELECT count(*) FROM events WHERE kind = 'new'"

capture sort_spill "SET work_mem = '64kB';
$ANALYZE_JSON SELECT id, amount FROM orders ORDER BY amount"

capture hash_batches "SET work_mem = '64kB'; SET enable_mergejoin = off; SET enable_nestloop = off;
$ANALYZE_JSON SELECT count(*) FROM orders o JOIN shipments s ON s.order_id = o.id"

capture nested_loop_inner_scan "SET enable_hashjoin = off; SET enable_mergejoin = off;
SET enable_material = off;
$ANALYZE_JSON
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id <= 200"

# The same join as the planner makes it by default once hash and merge joins are off.
capture nested_loop_materialize "SET enable_hashjoin = off; SET enable_mergejoin = off;
$ANALYZE_JSON
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id <= 200"

capture lossy_bitmap "SET work_mem = '64kB'; SET enable_seqscan = off;
SET enable_indexscan = off; SET enable_indexonlyscan = off;
$ANALYZE_JSON SELECT count(*), sum(duration) FROM visits WHERE day = 3"

capture heap_fetches "SET enable_seqscan = off; SET enable_bitmapscan = off;
$ANALYZE_JSON SELECT sku FROM stock WHERE sku BETWEEN 1000 AND 2999"

# A hash aggregate spilling its groups: temp blocks written by a node that is neither a sort
# nor a hash, under an aggregate whose buffer counts include them.
capture temp_written "SET work_mem = '64kB'; SET enable_sort = off;
$ANALYZE_JSON
SELECT count(*) FROM (SELECT customer_id, amount FROM orders GROUP BY customer_id, amount) g"

# Plain EXPLAIN, as the sampler takes it for DML: estimates only, no actuals, no times.
capture plain_select "$PLAIN_JSON
SELECT id, amount FROM orders WHERE status = 'pending' ORDER BY amount DESC LIMIT 50"

capture plain_delete "$PLAIN_JSON DELETE FROM orders WHERE status = 'pending'"

capture clean_pk "$ANALYZE_JSON SELECT id, status, amount FROM orders WHERE id = 42"

capture clean_small "$ANALYZE_JSON SELECT id FROM shops WHERE city = 'city 7'"

scratch_log "done: plans in $here"
