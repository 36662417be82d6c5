/* text_runs.h — texts at their bounds for the unit tests: long runs of one character. Include
 * after <cmocka.h>. */
#ifndef PGSCOPE_TEST_TEXT_RUNS_H
#define PGSCOPE_TEST_TEXT_RUNS_H

#include <stdlib.h>
#include <string.h>

/* n copies of c between head and tail; malloc'd. */
static inline char *run_of(const char *head, char c, size_t n, const char *tail)
{
    size_t h = strlen(head), t = strlen(tail);
    char *s = malloc(h + n + t + 1);

    assert_non_null(s);
    memcpy(s, head, h);
    memset(s + h, c, n);
    memcpy(s + h + n, tail, t + 1);
    return s;
}

#endif
