/* handoff.c — the list a helper thread's results wait in until the analysis thread takes them
 * (EXPLAIN side connections, the advisor's verifier). The caller holds its own lock. */
#include "config.h"

#include "explain_int.h"

#include <stdlib.h>
#include <string.h>

bool explain_list_push(explain_list *l, void *item)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void **grown = realloc(l->items, cap * sizeof *grown);
        if (grown == NULL)
            return false;
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = item;
    return true;
}

void *explain_list_pop(explain_list *l)
{
    if (l->n == 0)
        return NULL;
    void *first = l->items[0];
    memmove(l->items, l->items + 1, --l->n * sizeof *l->items);
    return first;
}

void explain_list_free(explain_list *l, void (*free_item)(void *))
{
    for (size_t i = 0; i < l->n; i++)
        free_item(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}
