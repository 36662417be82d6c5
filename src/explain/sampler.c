/* sampler.c — which slow statements get an EXPLAIN sample: candidates, per-shape limits, budget. */
#include "config.h"

#include "pgscope/explain.h"
#include "pgscope/hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * How a candidate is decided (explain_sampler_decide), first rule that applies wins and is
 * counted:
 *
 *   guard refused → guard;  shape has max_per_shape samples → enough;  these parameters
 *   already sampled for the shape → same_params;  shape in backoff → backoff;  not drawn by
 *   sample_rate → rate;  over the budget → budget;  else sample, or for a statement the guard
 *   found calling a denied function: function, or for DML without dml_analyze: dml.
 *
 * "dml" and "function" are skips of ANALYZE only: the statement was chosen like any other and
 * holds a reservation, but is to be explained without ANALYZE (nothing executed). So it is
 * bounded by the same per-shape limit and budget as SELECTs, and its replay, planning only, is
 * charged at most PLAIN_EXPLAIN_MS until done() tells its real cost. A sample whose plan check
 * on the side connection refused ANALYZE ends with done(function): counted, and settled as a
 * plan, not as a failure.
 *
 * A sample decided is reserved until explain_sampler_done: it counts toward max_per_shape, its
 * parameters hash is remembered, and an estimate of its cost (the duration of the candidate,
 * the last observe() that returned true: replaying a statement costs about what running it did)
 * is charged to the budget. done() replaces the estimate with the real side time; a failure
 * releases the reservation (count and parameters, so that the shape may be tried again once its
 * backoff ends) and starts or extends the backoff. done() names only the fingerprint, so the
 * oldest sample in flight of that shape is the one that ended; when samples of one shape end out
 * of order, the estimates are swapped for a while (their sum stays right) and a failure may
 * release the other one's parameters.
 *
 * Memory: only shapes that were sampled are remembered, at most SAMPLER_MAX_SHAPES, each with
 * at most max_per_shape parameter hashes. Beyond that the least recently used shape is forgotten
 * whole, sample count included: should it come back it may be sampled again (up to
 * max_per_shape more times). A shape with a sample in flight is never forgotten; when every
 * remembered shape has one in flight a new shape cannot be reserved and is counted as "queue"
 * (the side connections are that far behind), as is a failed allocation.
 */

#define SAMPLER_MAX_SHAPES 10000u   /* shapes remembered (see above) */
#define SAMPLER_MAX_PER_SHAPE 64    /* upper bound for settings.max_per_shape */
#define SAMPLER_MAX_BACKOFF_SHIFT 4 /* backoff doubles up to 2^4 = 16 times backoff_ms */
#define SAMPLER_P95_FLOOR_MS 1.0    /* the p95 rule ignores statements faster than this */
#define SAMPLER_WARMUP_MS 10000.0   /* the budget is a share of at least this much time */
#define SAMPLER_SEED 0x9e3779b97f4a7c15ULL
#define PLAIN_EXPLAIN_MS 10.0 /* estimate for a replay that only plans */
#define NONE UINT32_MAX

/* One sample of a shape, in the order they were decided. */
typedef struct sample_slot {
    uint64_t params_hash;
    double estimate_ms; /* charged to the budget while in flight */
    bool in_flight;
} sample_slot;

typedef struct shape {
    uint64_t fingerprint;
    int64_t backoff_until_us;
    uint32_t bucket_next;        /* next shape in the same hash bucket */
    uint32_t lru_prev, lru_next; /* toward the most / least recently used end */
    int nslots;                  /* samples decided and not failed */
    int in_flight;               /* of those, not done yet; such a shape is off the LRU list */
    int fail_streak;
} shape;

struct explain_sampler {
    explain_sampler_settings set;
    uint64_t counts[EXPLAIN_SKIP_COUNT]; /* [EXPLAIN_SAMPLE] counts samples decided */
    double observed_ms;                  /* all statement time seen: the budget's base */
    double spent_ms;                     /* side time of samples done */
    double in_flight_ms;                 /* estimates of samples not done yet */
    double candidate_ms;                 /* duration of the last candidate */
    uint64_t in_flight;                  /* samples not done yet, all shapes */
    uint64_t rng;
    int per_shape;      /* slots per shape: clamped max_per_shape */
    shape *shapes;      /* shapes[0..nshapes) */
    sample_slot *slots; /* per_shape slots for each shape, same index */
    uint32_t nshapes, cap;
    uint32_t *buckets; /* hash heads, nbuckets a power of two */
    uint32_t nbuckets;
    uint32_t lru_head, lru_tail; /* most and least recently used, NONE when empty */
};

/* ---- settings ---- */

void explain_sampler_defaults(explain_sampler_settings *s)
{
    if (s == NULL)
        return;
    memset(s, 0, sizeof *s);
    s->min_duration_ms = 50.0;
    s->p95_min_calls = 100;
    s->max_per_shape = 3;
    s->backoff_ms = 60000;
    s->budget_share = 0.05;
    s->sample_rate = 1.0;
    s->dml_analyze = false;
}

/* Out-of-range settings are brought into range rather than refused: NaN means the default. */
static void sanitize(explain_sampler_settings *s)
{
    explain_sampler_settings d;

    explain_sampler_defaults(&d);
    if (isnan(s->min_duration_ms))
        s->min_duration_ms = d.min_duration_ms;
    if (s->min_duration_ms < 0.0)
        s->min_duration_ms = 0.0;
    if (s->max_per_shape < 0)
        s->max_per_shape = 0;
    if (s->max_per_shape > SAMPLER_MAX_PER_SHAPE)
        s->max_per_shape = SAMPLER_MAX_PER_SHAPE;
    if (s->backoff_ms < 0)
        s->backoff_ms = 0;
    if (isnan(s->budget_share))
        s->budget_share = d.budget_share;
    if (s->budget_share < 0.0)
        s->budget_share = 0.0;
    if (isnan(s->sample_rate))
        s->sample_rate = d.sample_rate;
    if (s->sample_rate < 0.0)
        s->sample_rate = 0.0;
    if (s->sample_rate > 1.0)
        s->sample_rate = 1.0;
}

const char *explain_skip_name(explain_skip s)
{
    static const char *const names[EXPLAIN_SKIP_COUNT] = {
        [EXPLAIN_SAMPLE] = "sample",
        [EXPLAIN_SKIP_ENOUGH] = "enough",
        [EXPLAIN_SKIP_SAME_PARAMS] = "same_params",
        [EXPLAIN_SKIP_BACKOFF] = "backoff",
        [EXPLAIN_SKIP_BUDGET] = "budget",
        [EXPLAIN_SKIP_RATE] = "rate",
        [EXPLAIN_SKIP_DML] = "dml",
        [EXPLAIN_SKIP_GUARD] = "guard",
        [EXPLAIN_SKIP_NO_CONNECTION] = "no_connection",
        [EXPLAIN_SKIP_FAILED] = "failed",
        [EXPLAIN_SKIP_QUEUE] = "queue",
        [EXPLAIN_SKIP_INCOMPLETE] = "incomplete",
        [EXPLAIN_SKIP_ERROR] = "error",
        [EXPLAIN_SKIP_FUNCTION] = "function",
        [EXPLAIN_SKIP_TEMP_TABLE] = "temp_table",
        [EXPLAIN_SKIP_NOT_VISIBLE] = "not_visible",
    };

    /* Compared as unsigned: an enum holding a value outside its list must not index out. */
    if ((unsigned)s >= EXPLAIN_SKIP_COUNT)
        return "unknown";
    return names[s];
}

/* ---- life ---- */

explain_sampler *explain_sampler_new(const explain_sampler_settings *s)
{
    explain_sampler *sm = calloc(1, sizeof *sm);

    if (sm == NULL)
        return NULL;
    if (s != NULL)
        sm->set = *s;
    else
        explain_sampler_defaults(&sm->set);
    sanitize(&sm->set);
    sm->per_shape = sm->set.max_per_shape;
    sm->rng = SAMPLER_SEED;
    sm->lru_head = sm->lru_tail = NONE;
    return sm;
}

void explain_sampler_free(explain_sampler *sm)
{
    if (sm == NULL)
        return;
    free(sm->shapes);
    free(sm->slots);
    free(sm->buckets);
    free(sm);
}

/* ---- the pseudo-random draw ---- */

/* xorshift64*: deterministic from the seed, so a run (and a test) decides the same way twice,
 * and independent of rand()'s global state that other code may use. */
static double draw(explain_sampler *sm)
{
    uint64_t x = sm->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    sm->rng = x;
    return (double)((x * 0x2545f4914f6cdd1dULL) >> 11) * 0x1.0p-53; /* [0, 1) */
}

/* ---- the LRU list of shapes without a sample in flight ---- */

static void lru_unlink(explain_sampler *sm, uint32_t i)
{
    shape *sh = &sm->shapes[i];

    if (sh->lru_prev != NONE)
        sm->shapes[sh->lru_prev].lru_next = sh->lru_next;
    else
        sm->lru_head = sh->lru_next;
    if (sh->lru_next != NONE)
        sm->shapes[sh->lru_next].lru_prev = sh->lru_prev;
    else
        sm->lru_tail = sh->lru_prev;
    sh->lru_prev = sh->lru_next = NONE;
}

static void lru_push_front(explain_sampler *sm, uint32_t i)
{
    shape *sh = &sm->shapes[i];

    sh->lru_prev = NONE;
    sh->lru_next = sm->lru_head;
    if (sm->lru_head != NONE)
        sm->shapes[sm->lru_head].lru_prev = i;
    else
        sm->lru_tail = i;
    sm->lru_head = i;
}

/* A shape with samples in flight is pinned: off the list, so never the one forgotten. */
static void touch(explain_sampler *sm, uint32_t i)
{
    if (sm->shapes[i].in_flight > 0)
        return;
    lru_unlink(sm, i);
    lru_push_front(sm, i);
}

/* ---- the table of shapes ---- */

static uint32_t bucket_of(const explain_sampler *sm, uint64_t fingerprint)
{
    return (uint32_t)(hash_mix64(fingerprint) & (sm->nbuckets - 1));
}

static uint32_t find_shape(const explain_sampler *sm, uint64_t fingerprint)
{
    if (sm->nbuckets == 0)
        return NONE;
    for (uint32_t i = sm->buckets[bucket_of(sm, fingerprint)]; i != NONE;
         i = sm->shapes[i].bucket_next)
        if (sm->shapes[i].fingerprint == fingerprint)
            return i;
    return NONE;
}

static void bucket_insert(explain_sampler *sm, uint32_t i)
{
    uint32_t b = bucket_of(sm, sm->shapes[i].fingerprint);

    sm->shapes[i].bucket_next = sm->buckets[b];
    sm->buckets[b] = i;
}

static void bucket_remove(explain_sampler *sm, uint32_t i)
{
    uint32_t *link = &sm->buckets[bucket_of(sm, sm->shapes[i].fingerprint)];

    while (*link != NONE && *link != i)
        link = &sm->shapes[*link].bucket_next;
    if (*link == i)
        *link = sm->shapes[i].bucket_next;
}

/* Room for cap shapes, and at least as many buckets: chains stay about one long. */
static bool grow(explain_sampler *sm)
{
    uint32_t cap = sm->cap ? sm->cap * 2 : 64;
    uint32_t nbuckets = 1;
    size_t per = (size_t)sm->per_shape;

    if (cap > SAMPLER_MAX_SHAPES)
        cap = SAMPLER_MAX_SHAPES;
    while (nbuckets < cap)
        nbuckets *= 2;
    shape *shapes = realloc(sm->shapes, cap * sizeof *shapes);
    if (shapes == NULL)
        return false;
    sm->shapes = shapes;
    sample_slot *slots = realloc(sm->slots, cap * per * sizeof *slots);
    if (slots == NULL)
        return false;
    sm->slots = slots;
    uint32_t *buckets = malloc(nbuckets * sizeof *buckets);
    if (buckets == NULL)
        return false;
    free(sm->buckets);
    sm->buckets = buckets;
    sm->nbuckets = nbuckets;
    sm->cap = cap;
    for (uint32_t b = 0; b < nbuckets; b++)
        buckets[b] = NONE;
    for (uint32_t i = 0; i < sm->nshapes; i++)
        bucket_insert(sm, i);
    return true;
}

/* The slot index for a new shape: a fresh one, or the least recently used shape's, forgotten.
 * NONE when neither can be had (out of memory, or every shape has a sample in flight). */
static uint32_t free_shape(explain_sampler *sm)
{
    uint32_t i;

    if (sm->nshapes == sm->cap && sm->cap < SAMPLER_MAX_SHAPES && !grow(sm))
        return NONE;
    if (sm->nshapes < sm->cap)
        return sm->nshapes++;
    i = sm->lru_tail;
    if (i == NONE)
        return NONE;
    lru_unlink(sm, i);
    bucket_remove(sm, i);
    return i;
}

static uint32_t new_shape(explain_sampler *sm, uint64_t fingerprint)
{
    uint32_t i = free_shape(sm);

    if (i == NONE)
        return NONE;
    shape *sh = &sm->shapes[i];
    memset(sh, 0, sizeof *sh);
    sh->fingerprint = fingerprint;
    sh->lru_prev = sh->lru_next = NONE;
    bucket_insert(sm, i);
    lru_push_front(sm, i);
    return i;
}

static sample_slot *slots_of(explain_sampler *sm, uint32_t i)
{
    return &sm->slots[(size_t)i * (size_t)sm->per_shape];
}

/* ---- observing ---- */

static bool above_own_p95(const explain_sampler *sm, double duration_ms, double shape_p95_ms,
                          uint64_t shape_calls)
{
    /* The floor keeps statements of a few microseconds, which are above their p95 about 5% of
     * the time by definition, from making candidates of themselves. */
    return sm->set.p95_min_calls > 0 && shape_calls >= sm->set.p95_min_calls &&
           duration_ms > shape_p95_ms && duration_ms >= SAMPLER_P95_FLOOR_MS;
}

bool explain_sampler_observe(explain_sampler *sm, double duration_ms, double shape_p95_ms,
                             uint64_t shape_calls)
{
    if (sm == NULL || !isfinite(duration_ms) || duration_ms < 0.0)
        return false;
    sm->observed_ms += duration_ms;
    if (duration_ms >= sm->set.min_duration_ms ||
        above_own_p95(sm, duration_ms, shape_p95_ms, shape_calls)) {
        sm->candidate_ms = duration_ms;
        return true;
    }
    return false;
}

/* ---- deciding ---- */

static bool has_params(explain_sampler *sm, uint32_t i, uint64_t params_hash)
{
    const sample_slot *slot = slots_of(sm, i);

    for (int k = 0; k < sm->shapes[i].nslots; k++)
        if (slot[k].params_hash == params_hash)
            return true;
    return false;
}

/* The rules that need the shape's memory; EXPLAIN_SAMPLE when none applies. */
static explain_skip shape_rule(explain_sampler *sm, uint64_t fingerprint, uint64_t params_hash,
                               int64_t now_us)
{
    uint32_t i;

    if (sm->set.max_per_shape == 0)
        return EXPLAIN_SKIP_ENOUGH;
    i = find_shape(sm, fingerprint);
    if (i == NONE)
        return EXPLAIN_SAMPLE;
    touch(sm, i);
    if (sm->shapes[i].nslots >= sm->set.max_per_shape)
        return EXPLAIN_SKIP_ENOUGH;
    if (has_params(sm, i, params_hash))
        return EXPLAIN_SKIP_SAME_PARAMS;
    if (now_us < sm->shapes[i].backoff_until_us)
        return EXPLAIN_SKIP_BACKOFF;
    return EXPLAIN_SAMPLE;
}

/* Side time may be budget_share of the statement time observed, but of at least
 * SAMPLER_WARMUP_MS: at the start of a run the first slow statement is most of the time
 * observed, and without that allowance could never be sampled (its replay costs about as much
 * as itself, far above 5% of itself). */
static bool over_budget(const explain_sampler *sm, double estimate_ms)
{
    double base = sm->observed_ms > SAMPLER_WARMUP_MS ? sm->observed_ms : SAMPLER_WARMUP_MS;

    return sm->spent_ms + sm->in_flight_ms + estimate_ms > sm->set.budget_share * base;
}

/* Reserves a sample: counts toward the shape's limit, remembers the parameters, charges the
 * estimate. False when the shape cannot be remembered. */
static bool reserve(explain_sampler *sm, uint64_t fingerprint, uint64_t params_hash,
                    double estimate_ms)
{
    uint32_t i = find_shape(sm, fingerprint);

    if (i == NONE)
        i = new_shape(sm, fingerprint);
    if (i == NONE)
        return false;
    shape *sh = &sm->shapes[i];
    sample_slot *slot = &slots_of(sm, i)[sh->nslots++];
    slot->params_hash = params_hash;
    slot->estimate_ms = estimate_ms;
    slot->in_flight = true;
    if (sh->in_flight++ == 0)
        lru_unlink(sm, i);
    sm->in_flight++;
    sm->in_flight_ms += estimate_ms;
    return true;
}

static explain_skip decide(explain_sampler *sm, uint64_t fingerprint, uint64_t params_hash,
                           explain_guard_kind guard, int64_t now_us)
{
    explain_skip rule;

    if (guard != EXPLAIN_GUARD_SELECT && guard != EXPLAIN_GUARD_DML &&
        guard != EXPLAIN_GUARD_PLAN_ONLY)
        return EXPLAIN_SKIP_GUARD; /* refused, or a verdict this code does not know */
    bool plain =
        guard == EXPLAIN_GUARD_PLAN_ONLY || (guard == EXPLAIN_GUARD_DML && !sm->set.dml_analyze);
    double estimate = plain ? fmin(sm->candidate_ms, PLAIN_EXPLAIN_MS) : sm->candidate_ms;
    rule = shape_rule(sm, fingerprint, params_hash, now_us);
    if (rule != EXPLAIN_SAMPLE)
        return rule;
    /* Drawn only when the rate can say no, so that rate 1 leaves the sequence untouched. */
    if (sm->set.sample_rate < 1.0 && !(draw(sm) < sm->set.sample_rate))
        return EXPLAIN_SKIP_RATE;
    if (over_budget(sm, estimate))
        return EXPLAIN_SKIP_BUDGET;
    if (!reserve(sm, fingerprint, params_hash, estimate))
        return EXPLAIN_SKIP_QUEUE;
    if (!plain)
        return EXPLAIN_SAMPLE;
    return guard == EXPLAIN_GUARD_PLAN_ONLY ? EXPLAIN_SKIP_FUNCTION : EXPLAIN_SKIP_DML;
}

explain_skip explain_sampler_decide(explain_sampler *sm, uint64_t fingerprint, uint64_t params_hash,
                                    explain_guard_kind guard, int64_t now_us)
{
    explain_skip verdict;

    if (sm == NULL)
        return EXPLAIN_SKIP_QUEUE;
    verdict = decide(sm, fingerprint, params_hash, guard, now_us);
    sm->counts[verdict]++;
    return verdict;
}

/* ---- samples ending ---- */

/* The oldest sample in flight of shape i, or -1. */
static int oldest_in_flight(explain_sampler *sm, uint32_t i)
{
    const sample_slot *slot = slots_of(sm, i);

    for (int k = 0; k < sm->shapes[i].nslots; k++)
        if (slot[k].in_flight)
            return k;
    return -1;
}

/* The sample no longer in flight: its estimate leaves the budget (the real time is in
 * spent_ms), and a shape with nothing in flight any more goes back on the LRU list. */
static void land(explain_sampler *sm, uint32_t i, int k)
{
    shape *sh = &sm->shapes[i];
    sample_slot *slot = &slots_of(sm, i)[k];

    slot->in_flight = false;
    sm->in_flight--;
    /* Subtracting doubles leaves dust; with nothing in flight the exact answer is zero. */
    sm->in_flight_ms = sm->in_flight == 0 ? 0.0 : fmax(0.0, sm->in_flight_ms - slot->estimate_ms);
    if (--sh->in_flight == 0)
        lru_push_front(sm, i);
}

/* Drops slot k: its count and its parameters, so the shape may be tried again. */
static void release(explain_sampler *sm, uint32_t i, int k)
{
    shape *sh = &sm->shapes[i];
    sample_slot *slot = slots_of(sm, i);

    memmove(&slot[k], &slot[k + 1], (size_t)(sh->nslots - k - 1) * sizeof *slot);
    sh->nslots--;
}

/* backoff_ms, doubled for each failure in a row after the first, up to 16 times; the window is
 * extended, never shortened, by a later failure. */
static void back_off(explain_sampler *sm, shape *sh, int64_t now_us)
{
    int shift =
        sh->fail_streak < SAMPLER_MAX_BACKOFF_SHIFT ? sh->fail_streak : SAMPLER_MAX_BACKOFF_SHIFT;
    int64_t wait_us = ((int64_t)sm->set.backoff_ms << shift) * 1000;
    int64_t until = now_us > INT64_MAX - wait_us ? INT64_MAX : now_us + wait_us;

    if (sh->fail_streak < SAMPLER_MAX_BACKOFF_SHIFT + 1)
        sh->fail_streak++;
    if (until > sh->backoff_until_us)
        sh->backoff_until_us = until;
}

void explain_sampler_done(explain_sampler *sm, uint64_t fingerprint, double side_ms,
                          explain_skip outcome, int64_t now_us)
{
    uint32_t i;
    int k;
    /* a plain plan instead of ANALYZE is a plan all the same: no backoff, the slot is kept */
    bool ok = outcome == EXPLAIN_SAMPLE || outcome == EXPLAIN_SKIP_FUNCTION;

    if (sm == NULL)
        return;
    /* The time was spent whatever came of it. */
    if (isfinite(side_ms) && side_ms > 0.0)
        sm->spent_ms += side_ms;
    if (outcome != EXPLAIN_SAMPLE)
        sm->counts[(unsigned)outcome < EXPLAIN_SKIP_COUNT ? outcome : EXPLAIN_SKIP_FAILED]++;
    i = find_shape(sm, fingerprint);
    if (i == NONE)
        return; /* not a sample decided here: nothing reserved to settle */
    k = oldest_in_flight(sm, i);
    if (k >= 0)
        land(sm, i, k);
    if (ok) {
        sm->shapes[i].fail_streak = 0;
        return;
    }
    if (k >= 0)
        release(sm, i, k);
    back_off(sm, &sm->shapes[i], now_us);
}

/* ---- counters ---- */

void explain_sampler_count(explain_sampler *sm, explain_skip reason)
{
    /* Samples are counted by decide; anything outside the list is ignored. */
    if (sm == NULL || reason == EXPLAIN_SAMPLE || (unsigned)reason >= EXPLAIN_SKIP_COUNT)
        return;
    sm->counts[reason]++;
}

/* For EXPLAIN_SAMPLE: the samples decided. */
uint64_t explain_sampler_skips(const explain_sampler *sm, explain_skip reason)
{
    if (sm == NULL || (unsigned)reason >= EXPLAIN_SKIP_COUNT)
        return 0;
    return sm->counts[reason];
}
