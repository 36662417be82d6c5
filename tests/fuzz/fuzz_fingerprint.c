/* libFuzzer target for the fingerprint path: splitting, the pre-digest, the cache (small, so that
 * it evicts), normalization and its cleaning pass, literals, tags and the single-table reader, on
 * any text. Checks what each promises: bounds, NUL-terminated outputs, and that a text's shape
 * does not depend on whether the cache held it (the normalized text may: the cache keeps the
 * first text seen of each shape). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgscope/fingerprint.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static fp_cache *warm; /* lives across inputs: hits and evictions */

static void count_literal(const char *value, size_t len, void *arg)
{
    (void)value;
    (void)len;
    ++*(int *)arg;
}

static void one_statement(const char *text, size_t len)
{
    fp_cache *cold = fp_cache_new(4);
    fp_result a, b;

    CHECK(cold != NULL);
    fp_statement(warm, text, len, &a);
    CHECK(a.normalized != NULL);
    fp_statement(cold, text, len, &b);
    CHECK(b.normalized != NULL);
    CHECK(a.id == b.id && a.fallback == b.fallback && a.values == b.values);
    fp_cache_free(cold);

    int seen = 0;
    int n = fp_literals(text, len, count_literal, &seen);
    CHECK(n == seen && n >= 0);
    CHECK(n == 0 || a.values); /* the analysis skips fp_literals on a text without values */

    char table[64], tags[128];
    fp_single_table(text, len, table, sizeof(table));
    CHECK(memchr(table, '\0', sizeof(table)) != NULL);
    fp_tags(text, len, tags, sizeof(tags));
    CHECK(memchr(tags, '\0', sizeof(tags)) != NULL);
    (void)fp_predigest(text, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fp_span spans[16];
    char *text = malloc(size ? size : 1); /* exactly the input: no NUL, overreads reported */

    CHECK(text != NULL);
    if (!warm)
        warm = fp_cache_new(64);
    CHECK(warm != NULL);
    memcpy(text, data, size);
    int n = fp_split(text, size, spans, 16);
    CHECK(n >= 0);
    for (int i = 0; i < n && i < 16; i++) {
        CHECK(spans[i].offset <= size && spans[i].len <= size - spans[i].offset);
        one_statement(text + spans[i].offset, spans[i].len);
    }
    free(text);
    return 0;
}
