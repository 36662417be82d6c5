/* queue.c — single-producer single-consumer ring of pointers with C11 atomics: the producer
 * (the forwarding thread) never takes a lock or makes a system call. */
#include "config.h"

#include "pgscope/queue.h"

#include <stdatomic.h>
#include <stdlib.h>

struct queue {
    size_t mask;
    void **slots;
    /* Head and tail on separate cache lines: each is written by one thread only. */
    _Alignas(64) _Atomic size_t head; /* next slot to pop, written by the consumer */
    _Alignas(64) _Atomic size_t tail; /* next slot to fill, written by the producer */
    _Alignas(64) _Atomic uint64_t dropped;
    _Atomic size_t bytes; /* declared sizes of the items pushed and not yet released */
    size_t max_bytes;
};

queue *queue_new(size_t capacity, size_t max_bytes)
{
    size_t n = 16;
    queue *q;

    while (n < capacity)
        n <<= 1;
    q = aligned_alloc(64, (sizeof(*q) + 63) / 64 * 64);
    if (!q)
        return NULL;
    q->slots = calloc(n, sizeof(void *));
    if (!q->slots) {
        free(q);
        return NULL;
    }
    q->mask = n - 1;
    q->max_bytes = max_bytes;
    atomic_init(&q->bytes, 0);
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    atomic_init(&q->dropped, 0);
    return q;
}

void queue_free(queue *q)
{
    if (!q)
        return;
    free(q->slots);
    free(q);
}

/* Pushes unless fewer than `spare` slots (and spare/16 of the bytes) would stay free. */
static bool push_leaving(queue *q, void *item, size_t bytes, size_t spare)
{
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    size_t used = atomic_load_explicit(&q->bytes, memory_order_relaxed);
    size_t spare_bytes = spare ? q->max_bytes / 16 : 0;

    if (tail - head + spare > q->mask || used + bytes + spare_bytes > q->max_bytes) {
        atomic_fetch_add_explicit(&q->dropped, 1, memory_order_relaxed);
        return false;
    }
    atomic_fetch_add_explicit(&q->bytes, bytes, memory_order_relaxed);
    q->slots[tail & q->mask] = item;
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return true;
}

bool queue_push(queue *q, void *item, size_t bytes)
{
    return push_leaving(q, item, bytes, (q->mask + 1) / 16);
}

bool queue_push_vital(queue *q, void *item, size_t bytes)
{
    return push_leaving(q, item, bytes, 0);
}

size_t queue_pop_many(queue *q, void **out, size_t max)
{
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    size_t n = tail - head < max ? tail - head : max;

    for (size_t i = 0; i < n; i++)
        out[i] = q->slots[(head + i) & q->mask];
    atomic_store_explicit(&q->head, head + n, memory_order_release);
    return n;
}

void queue_release(queue *q, size_t bytes)
{
    atomic_fetch_sub_explicit(&q->bytes, bytes, memory_order_relaxed);
}

uint64_t queue_dropped(const queue *q)
{
    return atomic_load_explicit(&((queue *)q)->dropped, memory_order_relaxed);
}
