/* queue.h — the bounded queue from the forwarding thread to the analysis thread: one producer,
 * one consumer, lock-free. A push never waits: when the queue is full the item is refused and
 * counted as dropped, so traffic is never delayed to make room. */
#ifndef PGSCOPE_QUEUE_H
#define PGSCOPE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct queue queue;

/* A queue of up to capacity pointers (rounded up to a power of two) holding items of at most
 * max_bytes in all (as their sizes are declared by queue_push). */
queue *queue_new(size_t capacity, size_t max_bytes);
void queue_free(queue *q);

/* Producer side. False when full (slots or bytes): the caller keeps the item (and frees it).
 * An ordinary push leaves a sixteenth of the slots and bytes free for vital items (the start
 * and end of a connection), so that a flood of statements cannot make the analysis lose
 * track of a connection, and keep its record forever. */
bool queue_push(queue *q, void *item, size_t bytes);
bool queue_push_vital(queue *q, void *item, size_t bytes);

/* Consumer side. Up to max items into out; returns how many. */
size_t queue_pop_many(queue *q, void **out, size_t max);

/* Consumer side: the items of these bytes are gone (freed), making room for more. */
void queue_release(queue *q, size_t bytes);

/* Items refused since the start (producer-side count, readable from any thread). */
uint64_t queue_dropped(const queue *q);

#endif
