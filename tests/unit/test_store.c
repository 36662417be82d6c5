/* Unit tests for the store: file creation, schema versions, batches, upserts and lost writes. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgscope/store.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* 2023-11-14 22:13:20.123456 UTC */
#define SOME_TIME_US INT64_C(1700000000123456)

/* ---- a scratch directory per test ---- */

typedef struct {
    char dir[64];
    char path[128];
} scratch;

static int setup(void **state)
{
    scratch *t = calloc(1, sizeof(*t));

    if (!t)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/pgscope-test-store-XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "%s/report.db", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    scratch *t = *state;
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[160];

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", t->path, suffixes[i]);
        unlink(p);
    }
    rmdir(t->dir);
    free(t);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- reading the file from a second connection, as a user would ---- */

static sqlite3 *peer_open(const char *path)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void peer_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

static int64_t peer_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The first column of the first row as text ("" for NULL or no row) in out. */
static void peer_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;

    out[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static int64_t file_int(const char *path, const char *sql)
{
    sqlite3 *db = peer_open(path);
    int64_t v = peer_int(db, sql);

    sqlite3_close(db);
    return v;
}

/* ---- building batches ---- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);

    assert_non_null(d);
    return d;
}

/* Statement row i of a batch: fingerprint 00000000000000<i>, calls = calls, two error codes. */
static void fill_statement(store_statement_row *r, int i, int64_t calls, size_t query_len)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->fingerprint, sizeof(r->fingerprint), "%016x", (unsigned)i + 1);
    r->database = xstrdup("app");
    r->user = xstrdup("alice");
    r->query = malloc(query_len + 1);
    assert_non_null(r->query);
    memset(r->query, 'q', query_len);
    memcpy(r->query, "SELECT $1", query_len < 9 ? query_len : 9);
    r->query[query_len] = '\0';
    r->command = xstrdup("SELECT");
    r->calls = calls;
    r->errors = 3;
    r->rows = calls * 2;
    r->total_ms = (double)calls * 1.5;
    r->min_ms = 0.5;
    r->max_ms = 9.25;
    r->mean_ms = 1.5;
    r->stddev_ms = 0.75;
    r->p50_ms = 1.25;
    r->p95_ms = 4.0;
    r->p99_ms = 8.5;
    r->histogram_len = 5;
    r->histogram = malloc(5);
    assert_non_null(r->histogram);
    memcpy(r->histogram, "\x01\x02\x00\x03\x04", 5);
    r->first_us = SOME_TIME_US;
    r->last_us = SOME_TIME_US + 60 * INT64_C(1000000);
    snprintf(r->errs[0].sqlstate, sizeof(r->errs[0].sqlstate), "22012");
    r->errs[0].count = 2;
    r->errs[1].count = 1; /* "other" */
    r->n_errs = 2;
}

static store_batch *make_batch(int n_statements, int64_t calls, size_t query_len)
{
    store_batch *b = calloc(1, sizeof(*b));

    assert_non_null(b);
    b->statements = calloc((size_t)n_statements, sizeof(*b->statements));
    assert_non_null(b->statements);
    for (int i = 0; i < n_statements; i++)
        fill_statement(&b->statements[i], i, calls, query_len);
    b->n_statements = (size_t)n_statements;

    b->connections = calloc(1, sizeof(*b->connections));
    assert_non_null(b->connections);
    b->connections[0] = (store_connection_row){.conn_id = 7,
                                               .client_addr = xstrdup("127.0.0.1:50000"),
                                               .user = xstrdup("alice"),
                                               .database = xstrdup("app"),
                                               .application_name = xstrdup("tests"),
                                               .start_us = SOME_TIME_US,
                                               .bytes_from_client = 100,
                                               .bytes_from_server = (uint64_t)calls * 1000,
                                               .statements = calls};
    b->n_connections = 1;

    b->tags = calloc(1, sizeof(*b->tags));
    assert_non_null(b->tags);
    snprintf(b->tags[0].fingerprint, sizeof(b->tags[0].fingerprint), "%016x", 1u);
    b->tags[0].tags = xstrdup("action=index,controller=users");
    b->tags[0].calls = calls;
    b->tags[0].total_ms = (double)calls;
    b->n_tags = 1;

    b->run.connections = 1;
    b->run.statements = (uint64_t)calls * (uint64_t)n_statements;
    b->run.events_dropped = 4;
    b->run.fingerprint_fallbacks = 1;
    b->run.fingerprint_parses = 5;
    b->run.fingerprint_hits = 6;
    b->run.track_desyncs = 0;
    return b;
}

/* A batch's rows as the store counts them: run, statements with their errors, connection, tag. */
static uint64_t rows_of(int n_statements)
{
    return 1 + (uint64_t)n_statements * 3 + 1 + 1;
}

static store *open_ok(const char *path)
{
    char err[256] = "";
    store *s = store_open(path, err, sizeof(err));

    if (!s)
        fail_msg("store_open: %s", err);
    return s;
}

static store *open_running(const char *path)
{
    char err[256] = "";
    store *s = open_ok(path);

    assert_true(store_begin_run(s, "unit", "127.0.0.1:5432", SOME_TIME_US, err, sizeof(err)) > 0);
    assert_true(store_start(s));
    return s;
}

/* Hands a batch over, retrying while the previous one is being written. */
static void submit_eventually(store *s, store_batch *b)
{
    for (int i = 0; i < 5000; i++) {
        if (store_submit(s, b))
            return;
        sleep_ms(1);
    }
    store_batch_free(b);
    fail_msg("the store never took the batch");
}

/* ---- opening ---- */

static void test_open_creates_private_wal_file(void **state)
{
    scratch *t = *state;
    struct stat st;
    char text[64];
    mode_t old = umask(022);
    store *s = open_ok(t->path);

    umask(old);
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->path);
    assert_int_equal(stat(wal, &st), 0); /* the schema was written through the WAL */
    assert_int_equal(st.st_mode & 0777, 0600);
    sqlite3 *db = peer_open(t->path);
    peer_text(db, "PRAGMA journal_mode", text, sizeof(text));
    assert_string_equal(text, "wal");
    assert_int_equal(peer_int(db, "SELECT value FROM meta WHERE key = 'schema_version'"),
                     STORE_SCHEMA_VERSION);
    peer_text(db, "SELECT value FROM meta WHERE key = 'application'", text, sizeof(text));
    assert_string_equal(text, "pgscope");
    /* The views for people exist and work on an empty file. */
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_stats"), 0);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM slowest_statements"), 0);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM run_summary"), 0);
    sqlite3_close(db);
    store_close(s, NULL);
}

static void test_reopen_keeps_runs(void **state)
{
    scratch *t = *state;
    char err[256];
    store *s = open_ok(t->path);

    assert_int_equal(store_begin_run(s, "first", "up", SOME_TIME_US, err, sizeof(err)), 1);
    store_close(s, NULL);
    s = open_ok(t->path);
    assert_int_equal(store_begin_run(s, NULL, "up", SOME_TIME_US, err, sizeof(err)), 2);
    store_close(s, NULL);

    sqlite3 *db = peer_open(t->path);
    char text[64];
    assert_int_equal(peer_int(db, "SELECT count(*) FROM runs"), 2);
    peer_text(db, "SELECT label FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, "first");
    assert_int_equal(peer_int(db, "SELECT label IS NULL FROM runs WHERE id = 2"), 1);
    peer_text(db, "SELECT started_at FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, "2023-11-14 22:13:20.123");
    peer_text(db, "SELECT pgscope_version FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, PACKAGE_VERSION);
    /* Closed without a last batch, a run still gets its end time. */
    assert_int_equal(peer_int(db, "SELECT count(*) FROM runs WHERE ended_at IS NOT NULL"), 2);
    sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
    scratch *t = *state;
    char err[256] = "";

    store_close(open_ok(t->path), NULL);
    sqlite3 *db = peer_open(t->path);
    peer_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    sqlite3_close(db);
    assert_null(store_open(t->path, err, sizeof(err)));
    assert_non_null(strstr(err, "newer pgscope"));
    assert_non_null(strstr(err, "99"));
}

static void test_foreign_files_refused(void **state)
{
    scratch *t = *state;
    char err[256] = "";

    sqlite3 *db = peer_open(t->path);
    peer_exec(db, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)");
    sqlite3_close(db);
    assert_null(store_open(t->path, err, sizeof(err)));
    assert_non_null(strstr(err, "not a pgscope report database"));
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM sqlite_master"), 1);

    unlink(t->path);
    FILE *f = fopen(t->path, "w");
    assert_non_null(f);
    fputs("this is a text file, not a database, and it is long enough to be looked at.\n", f);
    for (int i = 0; i < 64; i++)
        fputs("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    err[0] = '\0';
    assert_null(store_open(t->path, err, sizeof(err)));
    assert_true(err[0] != '\0');
}

static void check_read_only_refused(const char *path)
{
    char err[256] = "";
    store *s = store_open(path, err, sizeof(err));

    if (s) {
        store_close(s, NULL);
        fail_msg("a read-only file was opened for writing");
    }
    assert_true(strstr(err, "Permission denied") || strstr(err, "read-only"));
}

/* A file pgscope may not write is refused at once with a clear reason, so that the proxy
 * starts without statistics instead of losing every batch. The check runs as an unprivileged
 * user: root may write any file. */
static void test_read_only_file_refused(void **state)
{
    scratch *t = *state;

    store_close(open_ok(t->path), NULL);
    assert_int_equal(chmod(t->path, 0400), 0);
    if (geteuid() != 0) {
        check_read_only_refused(t->path);
        return;
    }
    const uid_t nobody = 65534;
    assert_int_equal(chmod(t->dir, 0755), 0);
    assert_int_equal(chown(t->path, nobody, nobody), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256] = "";
        if (setgid(nobody) != 0 || setuid(nobody) != 0)
            _exit(3);
        store *s = store_open(t->path, err, sizeof(err));
        if (s)
            _exit(1);
        _exit(strstr(err, "Permission denied") || strstr(err, "read-only") ? 0 : 2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- writing ---- */

static void test_batch_written(void **state)
{
    scratch *t = *state;
    char text[128];
    store *s = open_running(t->path);
    store_batch *last = calloc(1, sizeof(*last)); /* the run's counters only */

    assert_non_null(last);
    submit_eventually(s, make_batch(3, 10, 40));
    last->run = (store_run_counters){.ended_us = SOME_TIME_US + 3600 * INT64_C(1000000),
                                     .connections = 1,
                                     .statements = 30,
                                     .events_dropped = 4};
    store_close(s, last);

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements WHERE run_id = 1"), 3);
    assert_int_equal(peer_int(db, "SELECT sum(calls) FROM statements"), 30);
    assert_int_equal(peer_int(db, "SELECT rows FROM statements WHERE fingerprint = "
                                  "'0000000000000001' AND database = 'app' "
                                  "AND user_name = 'alice'"),
                     20);
    peer_text(db, "SELECT hex(histogram) FROM statements LIMIT 1", text, sizeof(text));
    assert_string_equal(text, "0102000304");
    peer_text(db, "SELECT first_seen || ' / ' || last_seen FROM statements LIMIT 1", text,
              sizeof(text));
    assert_string_equal(text, "2023-11-14 22:13:20.123 / 2023-11-14 22:14:20.123");
    peer_text(db, "SELECT p99_ms FROM statements LIMIT 1", text, sizeof(text));
    assert_string_equal(text, "8.5");
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_errors"), 6);
    assert_int_equal(peer_int(db, "SELECT count FROM statement_errors WHERE sqlstate = '22012' "
                                  "AND fingerprint = '0000000000000002'"),
                     2);
    assert_int_equal(peer_int(db, "SELECT count FROM statement_errors WHERE sqlstate = '' "
                                  "AND fingerprint = '0000000000000002'"),
                     1);
    peer_text(db,
              "SELECT client_addr || ' ' || application_name || ' ' || bytes_from_server "
              "|| ' ' || (ended_at IS NULL) FROM connections WHERE conn_id = 7",
              text, sizeof(text));
    assert_string_equal(text, "127.0.0.1:50000 tests 10000 1");
    assert_int_equal(peer_int(db, "SELECT calls FROM statement_tags WHERE tags = "
                                  "'action=index,controller=users'"),
                     10);
    /* The last batch's counters and end time replace the earlier ones. */
    peer_text(db, "SELECT ended_at FROM runs WHERE id = 1", text, sizeof(text));
    assert_string_equal(text, "2023-11-14 23:13:20.123");
    assert_int_equal(peer_int(db, "SELECT statements FROM runs WHERE id = 1"), 30);
    assert_int_equal(peer_int(db, "SELECT events_dropped FROM runs WHERE id = 1"), 4);
    assert_int_equal(peer_int(db, "SELECT lost_writes FROM runs WHERE id = 1"), 0);
    assert_int_equal(peer_int(db, "SELECT round(duration_s) FROM run_summary"), 3600);
    assert_int_equal(peer_int(db, "SELECT shapes FROM run_summary"), 3);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM slowest_statements WHERE run_id = 1"), 3);
    assert_int_equal(peer_int(db, "SELECT CAST(rows_per_call AS INTEGER) FROM statement_stats "
                                  "LIMIT 1"),
                     2);
    sqlite3_close(db);
}

static void test_later_batch_replaces_rows(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);

    submit_eventually(s, make_batch(2, 10, 20));
    store_batch *b = make_batch(2, 25, 20);
    b->statements[0].errs[0].count = 9;
    b->connections[0].end_us = SOME_TIME_US + 1000;
    submit_eventually(s, b);
    store_close(s, NULL);

    sqlite3 *db = peer_open(t->path);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statements"), 2);
    assert_int_equal(peer_int(db, "SELECT min(calls) FROM statements"), 25);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM statement_errors"), 4);
    assert_int_equal(peer_int(db, "SELECT count FROM statement_errors WHERE sqlstate = '22012' "
                                  "AND fingerprint = '0000000000000001'"),
                     9);
    assert_int_equal(peer_int(db, "SELECT count(*) FROM connections"), 1);
    assert_int_equal(peer_int(db, "SELECT ended_at IS NOT NULL FROM connections"), 1);
    assert_int_equal(peer_int(db, "SELECT calls FROM statement_tags"), 25);
    assert_int_equal(peer_int(db, "SELECT statements FROM runs"), 50);
    sqlite3_close(db);
}

static void test_submit_needs_a_started_store(void **state)
{
    scratch *t = *state;
    store *s = open_ok(t->path);
    store_batch *b = make_batch(1, 1, 10);

    assert_false(store_submit(s, b)); /* not started: the caller keeps the batch */
    store_batch_free(b);
    assert_false(store_submit(NULL, NULL));
    store_close(s, NULL);
    store_close(NULL, NULL);
}

/* A second connection holds the write lock: the writer waits its busy timeout, gives up, counts
 * the batch as lost and goes on; meanwhile new batches are refused, not queued. */
static void test_locked_database_counts_lost_writes(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);
    sqlite3 *locker = peer_open(t->path);

    peer_exec(locker, "BEGIN IMMEDIATE");
    assert_true(store_submit(s, make_batch(2, 10, 20)));
    store_batch *second = make_batch(2, 20, 20);
    assert_false(store_submit(s, second)); /* the first one is still being written */
    for (int i = 0; i < 10000 && store_lost_writes(s) == 0; i++)
        sleep_ms(1);
    assert_int_equal(store_lost_writes(s), rows_of(2));
    peer_exec(locker, "COMMIT");
    sqlite3_close(locker);

    submit_eventually(s, second);
    store_close(s, NULL);
    assert_int_equal(file_int(t->path, "SELECT min(calls) FROM statements"), 20);
    assert_int_equal(file_int(t->path, "SELECT lost_writes FROM runs"), (int64_t)rows_of(2));
}

/* A write beyond the file size limit fails as a full disk would (SQLITE_FULL or an I/O error):
 * counted, logged, and the next batch is written once there is room again. */
static void test_full_disk_counts_lost_writes(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);
    struct rlimit old, small;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 1 << 20;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    assert_true(store_submit(s, make_batch(20, 10, 100000))); /* about 2 MB of query text */
    for (int i = 0; i < 10000 && store_lost_writes(s) == 0; i++)
        sleep_ms(1);
    uint64_t lost = store_lost_writes(s);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(lost, rows_of(20));

    submit_eventually(s, make_batch(1, 2, 10));
    store_close(s, NULL);
    assert_int_equal(file_int(t->path, "SELECT count(*) FROM statements"), 1);
    assert_int_equal(file_int(t->path, "SELECT calls FROM statements"), 2);
    assert_true(file_int(t->path, "SELECT lost_writes FROM runs") >= (int64_t)rows_of(20));
}

/* A reader in its own transaction sees a consistent snapshot and never blocks the writer. */
static void test_reader_while_writing(void **state)
{
    scratch *t = *state;
    store *s = open_running(t->path);
    sqlite3 *reader = NULL;

    submit_eventually(s, make_batch(5, 1, 20));
    submit_eventually(s, make_batch(0, 0, 0)); /* taken only once the first is written */
    assert_int_equal(sqlite3_open_v2(t->path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(reader, 5000);

    peer_exec(reader, "BEGIN");
    assert_int_equal(peer_int(reader, "SELECT min(calls) FROM statements"), 1);
    for (int64_t calls = 2; calls <= 40; calls++)
        submit_eventually(s, make_batch(5, calls, 20));
    submit_eventually(s, make_batch(0, 0, 0));
    /* Still inside its transaction, the reader sees its snapshot. */
    assert_int_equal(peer_int(reader, "SELECT max(calls) FROM statements"), 1);
    peer_exec(reader, "COMMIT");
    for (int i = 0; i < 20; i++) {
        peer_exec(reader, "BEGIN");
        int64_t lo = peer_int(reader, "SELECT min(calls) FROM statements");
        int64_t hi = peer_int(reader, "SELECT max(calls) FROM statements");
        peer_exec(reader, "COMMIT");
        assert_int_equal(lo, hi); /* every batch is one transaction */
        store_batch *b = make_batch(5, 41 + i, 20);
        if (!store_submit(s, b))
            store_batch_free(b);
    }
    assert_int_equal(store_lost_writes(s), 0);
    store_close(s, NULL);
    assert_true(peer_int(reader, "SELECT min(calls) FROM statements") >= 40);
    sqlite3_close(reader);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_private_wal_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_files_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_batch_replaces_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_needs_a_started_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_database_counts_lost_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_counts_lost_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_while_writing, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
