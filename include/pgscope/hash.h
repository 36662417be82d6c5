/* hash.h — the small hash pieces the analysis modules share (header only). */
#ifndef PGSCOPE_HASH_H
#define PGSCOPE_HASH_H

#include <stdint.h>

/* MurmurHash3's 64-bit finalizer: spreads every input bit over the result, so that keys that
 * differ in a few low bits (FNV sums, counters, fingerprints) land in different buckets. */
static inline uint64_t hash_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

#endif
