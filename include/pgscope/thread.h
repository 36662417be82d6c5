/* thread.h — what pgscope's background threads (analysis, report writer) do when they start. */
#ifndef PGSCOPE_THREAD_H
#define PGSCOPE_THREAD_H

#include <sys/resource.h>
#include <unistd.h>

/* Background work must never take a core from the forwarding thread, or from the clients and
 * the server it serves on the same machine: nice it down (Linux sets nice per thread). */
static inline void thread_background(void)
{
#ifdef __linux__
    int unused = setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
    (void)unused;
#endif
}

#endif
