/* log.c — leveled log lines on stderr with a timestamp and a connection prefix. */
#include "config.h"

#include "pgscope/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};

void log_set_level(log_level level)
{
    current_level = level;
}

bool log_enabled(log_level level)
{
    return (int)level <= current_level;
}

bool log_parse_level(const char *name, log_level *out)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            *out = (log_level)i;
            return true;
        }
    }
    return false;
}

void log_msg(log_level level, const char *conn, const char *fmt, ...)
{
    char line[2048], stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    if (!log_enabled(level))
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
    int n = snprintf(line, sizeof(line), "%s.%03d UTC [%d] %s: %s%s%s", stamp,
                     (int)(tv.tv_usec / 1000), (int)getpid(), level_names[level], conn ? "[" : "",
                     conn ? conn : "", conn ? "] " : "");
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line keeps lines whole when several threads log. */
    size_t len = strnlen(line, sizeof(line) - 2);
    line[len++] = '\n';
    ssize_t unused = write(STDERR_FILENO, line, len);
    (void)unused;
}
