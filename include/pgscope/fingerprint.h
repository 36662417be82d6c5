/* fingerprint.h — statement shapes: libpg_query fingerprints and normalized texts behind a cache
 * keyed by a fast literal-stripping pre-digest, so that texts differing only in their literals
 * cost one libpg_query call per shape. Also splits multi-statement strings and reads
 * sqlcommenter tags. Used on the analysis thread only (not thread-safe). */
#ifndef PGSCOPE_FINGERPRINT_H
#define PGSCOPE_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fp_span {
    uint32_t offset, len; /* one statement of a string, without its ';' */
} fp_span;

/* Splits text at top-level semicolons (quotes, quoted identifiers, comments and dollar quotes
 * respected). Returns the number of non-empty statements (whitespace and comments alone do not
 * count) and fills up to max spans. */
int fp_split(const char *text, size_t len, fp_span *spans, int max);

/* The pre-digest: a 64-bit hash of the token stream with comments and spacing left out and
 * keywords case-folded. Literals are replaced by a marker of their kind, but for the few whose
 * value decides validity or type (U&'...', E'\u..', float(24), int[5]...); in statements whose
 * fingerprint ignores constants (DML, SET, transaction control, PREPARE/EXECUTE, CALL, LOCK...)
 * constant lists (IN, ARRAY, VALUES) and generated savepoint, cursor and prepared-statement
 * names are merged too. The guarantee: texts with equal pre-digests have equal fp_result ids. */
uint64_t fp_predigest(const char *text, size_t len);

typedef struct fp_result {
    /* The shape: libpg_query's fingerprint; for a statement whose fingerprint would depend on
     * a value (a literal of DDL, NOTIFY, COMMENT, a role's PASSWORD, ALTER ... SET, a SET value
     * written as a word), a hash of its normalized text instead, so that no shape depends on
     * values; for text libpg_query cannot parse, a fallback from the pre-digest. */
    uint64_t id;
    const char *normalized; /* constants as $1, $2...; valid until the next call on the cache */
    bool fallback;          /* libpg_query could not parse the text (syntax, depth, cut text) */
    bool values;            /* this text may hold values fp_literals finds (false: it has none) */
} fp_result;

typedef struct fp_cache fp_cache;

/* A cache of at most max_entries shapes and max_entries x 640 bytes (1 MiB at least) of
 * normalized text: least recently used ones are evicted. */
fp_cache *fp_cache_new(size_t max_entries);
void fp_cache_free(fp_cache *c);

/* The fingerprint of one statement's text (already split; need not be NUL-terminated). */
void fp_statement(fp_cache *c, const char *text, size_t len, fp_result *out);

typedef struct fp_counters {
    uint64_t lookups, hits, parses, fallbacks, evictions;
    uint64_t exact_hits; /* lookups whose text was known byte for byte: not even lexed */
} fp_counters;
void fp_get_counters(const fp_cache *c, fp_counters *out);

/* The literal values of one statement's text, in order (the ones libpg_query's normalize turns
 * into $1, $2...: numbers as written, strings decoded: quotes removed, '' and E-string escapes
 * resolved). Calls fn for each; returns how many. */
int fp_literals(const char *text, size_t len, void (*fn)(const char *value, size_t len, void *arg),
                void *arg);

/* The table a SELECT reads from when its FROM clause names exactly one (schema-qualified names
 * keep their schema; quotes removed); "" otherwise. Written into out (cap bytes). */
void fp_single_table(const char *text, size_t len, char *out, size_t cap);

/* 16 lowercase hex digits and a NUL. */
void fp_hex(uint64_t id, char out[17]);

/* sqlcommenter tags: the key='value' pairs of the first comment of the form
 * /\*key='value',key2='value2'*\/ in text, values URL-decoded. Writes them as one canonical
 * string "key=value,key2=value2" (keys sorted) into out (cap bytes, NUL-terminated, cut if
 * needed); returns the number of pairs (0 and "" when there are none). */
int fp_tags(const char *text, size_t len, char *out, size_t cap);

#endif
