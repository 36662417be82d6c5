/* fp_bench.c — statements per second through the fingerprint cache, against libpg_query alone.
 *
 * Build and run from the top of the source tree, after ./configure (for config.h):
 *
 *   cc -O2 -I. -Iinclude contrib/bench/fp_bench.c src/analyze/fingerprint.c -lpg_query \
 *      -o /tmp/fp_bench
 *   /tmp/fp_bench [statements [sample]]
 *
 * It first generates the statements (default 1000000): pgbench's TPC-B-like script as
 * `pgbench -M simple` sends it, every literal random (scale 10), so that texts hardly repeat.
 * Then it times two passes:
 *   1. fp_split and fp_statement on each message through one cache, as the analysis thread does;
 *   2. pg_query_fingerprint and pg_query_normalize on each statement, as a design without the
 *      pre-digest cache would. This pass runs on the first `sample` statements (default 100000)
 *      because it is slow; its rate is what matters.
 * It prints both rates and their ratio, and checks that both passes agree on every fingerprint
 * of the sample. Then it does the same with a tenth as many longer, ORM-like statements (Django
 * style: quoted identifiers, a join, IN lists of any length), where parsing costs more. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pg_query.h>

#include "pgscope/fingerprint.h"

#define SCALE 10

typedef struct corpus {
    char *text;      /* all statements, each NUL-terminated */
    size_t *offsets; /* where each starts */
    size_t count, used, cap;
} corpus;

static uint64_t rng_state = 0x853c49e6748fea9bULL;

static uint32_t rnd_range(uint32_t lo, uint32_t hi)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return lo + (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL >> 32) % (hi - lo + 1));
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int corpus_add(corpus *c, const char *s)
{
    size_t n = strlen(s) + 1;

    if (c->used + n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1 << 20;
        char *grown = realloc(c->text, cap);
        if (grown == NULL)
            return -1;
        c->text = grown;
        c->cap = cap;
    }
    memcpy(c->text + c->used, s, n);
    c->offsets[c->count++] = c->used;
    c->used += n;
    return 0;
}

/* One statement of the TPC-B-like transaction (7 statements), literals drawn afresh. */
static void tpcb_statement(size_t k, char *out, size_t cap)
{
    uint32_t aid = rnd_range(1, 100000 * SCALE), tid = rnd_range(1, 10 * SCALE);
    uint32_t bid = rnd_range(1, SCALE);
    int delta = (int)rnd_range(0, 10000) - 5000;

    switch (k % 7) {
    case 0:
        snprintf(out, cap, "BEGIN;");
        break;
    case 1:
        snprintf(out, cap, "UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %u;",
                 delta, aid);
        break;
    case 2:
        snprintf(out, cap, "SELECT abalance FROM pgbench_accounts WHERE aid = %u;", aid);
        break;
    case 3:
        snprintf(out, cap, "UPDATE pgbench_tellers SET tbalance = tbalance + %d WHERE tid = %u;",
                 delta, tid);
        break;
    case 4:
        snprintf(out, cap, "UPDATE pgbench_branches SET bbalance = bbalance + %d WHERE bid = %u;",
                 delta, bid);
        break;
    case 5:
        snprintf(out, cap,
                 "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%u, %u, %u, "
                 "%d, CURRENT_TIMESTAMP);",
                 tid, bid, aid, delta);
        break;
    default:
        snprintf(out, cap, "END;");
        break;
    }
}

/* A statement an ORM (Django here) sends with inlined literals: longer, with quoted
 * identifiers, joins and IN lists of any length. */
static void orm_statement(size_t k, char *out, size_t cap)
{
    static const char *const status[] = {"paid", "shipped", "cancelled", "new"};
    uint32_t id = rnd_range(1, 5000000), day = rnd_range(1, 28);
    int n = 0;

    switch (k % 3) {
    case 0:
        snprintf(
            out, cap,
            "SELECT \"app_order\".\"id\", \"app_order\".\"customer_id\", "
            "\"app_order\".\"status\", \"app_order\".\"total\", \"app_order\".\"created_at\" "
            "FROM \"app_order\" INNER JOIN \"app_customer\" ON (\"app_order\".\"customer_id\" = "
            "\"app_customer\".\"id\") WHERE (\"app_customer\".\"email\" = 'user%u@example.com' "
            "AND \"app_order\".\"status\" IN ('%s', '%s') AND \"app_order\".\"created_at\" >= "
            "'2024-03-%02uT00:00:00+00:00'::timestamptz) ORDER BY \"app_order\".\"created_at\" "
            "DESC LIMIT 21",
            id, status[id % 4], status[(id + 1) % 4], day);
        break;
    case 1:
        n = snprintf(out, cap,
                     "SELECT \"app_item\".\"id\", \"app_item\".\"order_id\", \"app_item\".\"sku\", "
                     "\"app_item\".\"quantity\", \"app_item\".\"price\" FROM \"app_item\" WHERE "
                     "\"app_item\".\"order_id\" IN (%u",
                     id);
        for (uint32_t i = 0, len = rnd_range(0, 30); i < len && n > 0 && (size_t)n < cap - 32; i++)
            n += snprintf(out + n, cap - (size_t)n, ", %u", rnd_range(1, 5000000));
        if (n > 0 && (size_t)n < cap)
            snprintf(out + n, cap - (size_t)n, ") ORDER BY \"app_item\".\"id\" ASC");
        break;
    default:
        snprintf(out, cap,
                 "UPDATE \"app_order\" SET \"status\" = '%s', \"total\" = %u.%02u, "
                 "\"updated_at\" = '2024-03-%02uT10:%02u:00+00:00'::timestamptz WHERE "
                 "\"app_order\".\"id\" = %u",
                 status[id % 4], rnd_range(1, 9999), rnd_range(0, 99), day, rnd_range(0, 59), id);
        break;
    }
}

static int corpus_make(corpus *c, size_t n, void (*make)(size_t, char *, size_t))
{
    char line[1024];

    memset(c, 0, sizeof *c);
    c->offsets = malloc(n * sizeof *c->offsets);
    if (c->offsets == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        make(i, line, sizeof line);
        if (corpus_add(c, line) != 0)
            return -1;
    }
    return 0;
}

/* Pass 1: what the analysis thread does with each Query message. */
static double run_cache(const corpus *c, fp_cache *cache, uint64_t *ids)
{
    double start = now_s();

    for (size_t i = 0; i < c->count; i++) {
        const char *msg = c->text + c->offsets[i];
        fp_span spans[4];
        int n = fp_split(msg, strlen(msg), spans, 4);
        for (int k = 0; k < n && k < 4; k++) {
            fp_result r;
            fp_statement(cache, msg + spans[k].offset, spans[k].len, &r);
            ids[i] = r.id;
        }
    }
    return now_s() - start;
}

/* Pass 2: libpg_query on every statement. */
static double run_direct(const corpus *c, size_t sample, const uint64_t *ids, size_t *mismatches)
{
    double start = now_s();

    *mismatches = 0;
    for (size_t i = 0; i < sample; i++) {
        const char *msg = c->text + c->offsets[i];
        PgQueryFingerprintResult fr = pg_query_fingerprint(msg);
        PgQueryNormalizeResult nr = pg_query_normalize(msg);
        if (fr.error != NULL || fr.fingerprint != ids[i])
            (*mismatches)++;
        pg_query_free_fingerprint_result(fr);
        pg_query_free_normalize_result(nr);
    }
    return now_s() - start;
}

/* Both passes over one workload; false if they disagree or memory runs out. */
static bool workload(const char *name, void (*make)(size_t, char *, size_t), size_t n,
                     size_t sample)
{
    corpus c;
    fp_counters k;
    size_t mismatches = 0;
    uint64_t *ids = calloc(n, sizeof *ids);
    fp_cache *cache = fp_cache_new(10000);
    bool ok = ids != NULL && cache != NULL && corpus_make(&c, n, make) == 0;

    if (ok) {
        double t_cache = run_cache(&c, cache, ids);
        fp_get_counters(cache, &k);
        double t_direct = run_direct(&c, sample, ids, &mismatches);
        double r_cache = (double)n / t_cache, r_direct = (double)sample / t_direct;
        printf("%s: %zu statements, %.0f bytes each on average, random literals\n", name, n,
               (double)c.used / (double)n - 1.0);
        printf("  cache:       %.3f s = %9.0f statements/s (%" PRIu64 " parses, %" PRIu64
               " hits, %" PRIu64 " fallbacks)\n",
               t_cache, r_cache, k.parses, k.hits, k.fallbacks);
        printf("  libpg_query: %.3f s = %9.0f statements/s (fingerprint + normalize, %zu "
               "statements)\n",
               t_direct, r_direct, sample);
        printf("  ratio:       %.1fx; fingerprints that differ: %zu of %zu\n", r_cache / r_direct,
               mismatches, sample);
        ok = mismatches == 0;
    }
    if (ids != NULL && cache != NULL) {
        free(c.offsets);
        free(c.text);
    }
    fp_cache_free(cache);
    free(ids);
    return ok;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    size_t sample = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
    bool ok;

    if (n == 0) {
        fprintf(stderr, "usage: fp_bench [statements [sample]]\n");
        return 2;
    }
    if (sample == 0 || sample > n)
        sample = n;
    ok = workload("pgbench TPC-B-like (-M simple)", tpcb_statement, n, sample);
    ok = workload("ORM-like (Django)", orm_statement, n / 10 ? n / 10 : 1,
                  sample / 10 ? sample / 10 : 1) &&
         ok;
    pg_query_exit();
    if (!ok)
        fprintf(stderr, "fp_bench: out of memory or the passes disagree\n");
    return ok ? 0 : 1;
}
