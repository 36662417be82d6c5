/* Unit tests for the analysis queue: bounded, never waiting, with room kept for vital items. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgscope/queue.h"

static int items[64];

/* Ordinary pushes stop a sixteenth short of the slots; vital ones fill the rest, then the queue
 * refuses both, counting each refusal. */
static void test_vital_items_find_room_after_a_flood(void **state)
{
    (void)state;
    queue *q = queue_new(64, 1 << 20);
    size_t ordinary = 0, vital = 0;

    assert_non_null(q);
    while (queue_push(q, &items[ordinary % 64], 10))
        ordinary++;
    assert_int_equal(ordinary, 64 - 64 / 16);
    while (queue_push_vital(q, &items[0], 10))
        vital++;
    assert_int_equal(vital, 64 / 16);
    assert_false(queue_push_vital(q, &items[0], 10));
    assert_int_equal(queue_dropped(q), 3); /* each refusal counted */

    void *out[64];
    assert_int_equal(queue_pop_many(q, out, 64), 64);
    queue_release(q, 64 * 10);
    assert_true(queue_push(q, &items[1], 10));
    queue_free(q);
}

/* The byte bound: ordinary items leave a sixteenth of the bytes to vital ones. */
static void test_vital_items_find_bytes_after_a_flood(void **state)
{
    (void)state;
    queue *q = queue_new(1024, 1600);

    assert_non_null(q);
    assert_true(queue_push(q, &items[0], 1400));
    assert_false(queue_push(q, &items[1], 101)); /* would leave less than 1600 / 16 */
    assert_true(queue_push_vital(q, &items[1], 101));
    assert_false(queue_push_vital(q, &items[2], 100)); /* 1601 > 1600 */
    queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vital_items_find_room_after_a_flood),
        cmocka_unit_test(test_vital_items_find_bytes_after_a_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
