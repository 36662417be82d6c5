/* timed_sleeps.c — a libpq client that runs SELECT pg_sleep($1) with the given durations (ms)
 * over the extended protocol and prints how long each round trip took, in microseconds, one
 * per line: the client's own view, to compare with pgscope's percentiles.
 * Usage: timed_sleeps CONNINFO MS [MS...] */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CONNINFO MS [MS...]\n", argv[0]);
        return 2;
    }
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(conn));
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        char secs[32];
        const char *values[1] = {secs};
        snprintf(secs, sizeof(secs), "%.3f", atof(argv[i]) / 1000.0);
        double start = now_us();
        PGresult *res = PQexecParams(conn, "SELECT pg_sleep($1)", 1, NULL, values, NULL, NULL, 0);
        double took = now_us() - start;
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "%s", PQerrorMessage(conn));
            return 1;
        }
        PQclear(res);
        printf("%.1f\n", took);
    }
    PQfinish(conn);
    return 0;
}
