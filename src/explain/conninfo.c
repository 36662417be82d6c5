/* conninfo.c — the keywords of pgscope's own connections to the server (the EXPLAIN side
 * connections and the advisor's): defaults the DSN may override, the DSN, then the database. */
#include "config.h"

#include "explain_int.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

static bool given(const char *s)
{
    return s != NULL && s[0] != '\0';
}

void explain_conn_keywords(const explain_conn_target *t, const char **keys, const char **vals)
{
    /* First: a keyword the DSN names wins over the upstream's address, its TLS settings and
     * the statement's user (with expand_dbname, libpq lets the expanded DSN override what came
     * before it, and what comes after it override the DSN). */
    const char *defaults[][2] = {
        {"host", t->host},
        {"port", t->port},
        {"sslmode", t->sslmode},
        {"sslrootcert", t->sslrootcert},
        {"user", t->user},
        {"connect_timeout", t->connect_timeout},
        /* A server that stops answering (a network partition) is given up within a minute,
         * not after the system's two hours: the advisor's connections block, and a stop
         * waits for them. */
        {"keepalives_idle", "10"},
        {"keepalives_interval", "5"},
        {"keepalives_count", "3"},
        {"tcp_user_timeout", "30000"},
    };
    int n = 0;

    /* The most written: every default, dbname twice, fallback_application_name, the NULL. */
    _Static_assert(sizeof defaults / sizeof defaults[0] + 4 <= EXPLAIN_CONN_KEYWORDS,
                   "EXPLAIN_CONN_KEYWORDS too small for the keywords written");
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (given(defaults[i][1])) {
            keys[n] = defaults[i][0];
            vals[n++] = defaults[i][1];
        }
    }
    keys[n] = "dbname"; /* expanded: the whole DSN */
    vals[n++] = t->dsn != NULL ? t->dsn : "";
    if (given(t->database)) {
        keys[n] = "dbname"; /* after the DSN: always the sampled statement's database */
        vals[n++] = t->database;
    }
    keys[n] = "fallback_application_name";
    vals[n++] = t->application_name;
    keys[n] = NULL;
    vals[n] = NULL;
}

/* Whether text contains word, in any case. */
static bool contains(const char *text, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = text; *p; p++)
        if (strncasecmp(p, word, n) == 0)
            return true;
    return false;
}

/* By libpq's and the server's words (fe_sendauth: no password supplied; password, peer or
 * ident authentication failed; no pg_hba.conf entry; pg_hba.conf rejects; role "x" does not
 * exist): a connection has no SQLSTATE to read before it is made. */
bool explain_login_refused(const char *error)
{
    static const char *const words[] = {"authentication", "password", "pg_hba.conf", "role \""};

    for (size_t i = 0; error && i < sizeof(words) / sizeof(words[0]); i++)
        if (contains(error, words[i]))
            return true;
    return false;
}
