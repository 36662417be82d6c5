/* log.h — leveled log lines on stderr, each naming the connection it is about. */
#ifndef PGSCOPE_LOG_H
#define PGSCOPE_LOG_H

#include <stdbool.h>

typedef enum { LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG } log_level;

void log_set_level(log_level level);
bool log_enabled(log_level level);
bool log_parse_level(const char *name, log_level *out);

/* Writes one line: time, pid, level, the connection prefix (may be NULL) and the message. */
void log_msg(log_level level, const char *conn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(conn, ...) log_msg(LOG_ERROR, conn, __VA_ARGS__)
#define log_warning(conn, ...) log_msg(LOG_WARNING, conn, __VA_ARGS__)
#define log_info(conn, ...) log_msg(LOG_INFO, conn, __VA_ARGS__)
#define log_debug(conn, ...)                                                                       \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, conn, __VA_ARGS__);                                                 \
    } while (0)

#endif
