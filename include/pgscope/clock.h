/* clock.h — the two clocks pgscope reads (header only). */
#ifndef PGSCOPE_CLOCK_H
#define PGSCOPE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Wall clock, microseconds since the Unix epoch: what statements' times and the report's
 * timestamps are in. */
static inline int64_t clock_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* For intervals and deadlines of pgscope's own: a step of the wall clock must not stretch or
 * cut them. */
static inline int64_t clock_monotonic_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
