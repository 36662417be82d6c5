/* config.c — one table of settings, read from defaults, an ini file and flags, in that order. */
#include "config.h"

#include "pgscope/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum {
    OPT_STR,
    OPT_INT,
    OPT_REAL,
    OPT_BOOL,
    OPT_LIST,
    OPT_FILE,
    OPT_HELP,
    OPT_VERSION
} opt_kind;

typedef struct {
    const char *name; /* key in the file; the flag is --name with '-' for '_' */
    char short_flag;
    opt_kind kind;
    size_t offset;
    size_t size; /* of a string field */
    const char *def;
    int min, max;
    const char *arg, *help; /* an OPT_STR whose arg lists choices ("a|b") takes only those */
} opt;

#define STR(field) OPT_STR, offsetof(config, field), sizeof(((config *)0)->field)
#define INT(field) OPT_INT, offsetof(config, field), 0
#define BOOL(field) OPT_BOOL, offsetof(config, field), 0
#define REAL(field) OPT_REAL, offsetof(config, field), 0

static const opt opts[] = {
    {"listen", 'l', OPT_LIST, 0, 0, "127.0.0.1:6432", 0, 0, "ADDR",
     "HOST:PORT, [IPv6]:PORT or a Unix socket directory /dir[:PORT]; repeatable"},
    {"upstream", 'u', STR(upstream), "127.0.0.1:5432", 0, 0, "ADDR",
     "PostgreSQL server: HOST:PORT, a Unix socket path or /dir:PORT"},
    {"db", 'd', STR(db), "./pgscope.db", 0, 0, "FILE", "report database (SQLite)"},
    {"config", 'c', OPT_FILE, offsetof(config, config_file), sizeof(((config *)0)->config_file), "",
     0, 0, "FILE", "read settings from this ini file ([pgscope] section)"},
    {"upstream_sslmode", 0, STR(upstream_sslmode), "disable", 0, 0, "MODE",
     "TLS to the server: disable, prefer, require, verify-ca, verify-full"},
    {"upstream_ca_file", 0, STR(upstream_ca_file), "", 0, 0, "FILE",
     "CA certificates for verify-ca and verify-full"},
    {"tls_cert_file", 0, STR(tls_cert_file), "", 0, 0, "FILE",
     "certificate offered to clients; with a key, clients may use TLS"},
    {"tls_key_file", 0, STR(tls_key_file), "", 0, 0, "FILE", "private key of that certificate"},
    {"shutdown_timeout", 0, INT(shutdown_timeout), "30", 0, 86400, "SECONDS",
     "time sessions get to finish after SIGTERM or SIGINT"},
    {"connect_timeout", 0, INT(connect_timeout), "10", 1, 3600, "SECONDS",
     "time allowed to connect to the server"},
    {"buffer_size", 0, INT(buffer_size), "65536", 4096, 64 * 1024 * 1024, "BYTES",
     "bytes queued per direction per connection before reading pauses"},
    {"max_connections", 0, INT(max_connections), "1000", 1, 1000000, "N",
     "client connections served at once"},
    {"max_startup_connections", 0, INT(max_startup_connections), "100", 1, 1000000, "N",
     "connections still to send their startup packet; past it the oldest is closed"},
    {"startup_timeout", 0, INT(startup_timeout), "15", 1, 3600, "SECONDS",
     "time a new connection has to send its startup packet (TLS handshake included)"},
    {"log_level", 0, STR(log_level), "info", 0, 0, "LEVEL", "error, warning, info or debug"},
    {"run_label", 0, STR(run_label), "", 0, 0, "TEXT", "name of this run in the report"},
    {"store_params", 0, BOOL(store_params), "off", 0, 0, "on|off",
     "keep one example of each statement with its literal and parameter values"},
    {"queue_size", 0, INT(queue_size), "65536", 1024, 16 * 1024 * 1024, "N",
     "statement events waiting for analysis; beyond, events are dropped and counted"},
    {"max_query_text", 0, INT(max_query_text), "16384", 256, 256 * 1024, "BYTES",
     "statement text kept for analysis; longer text is cut"},
    {"max_shapes", 0, INT(max_shapes), "5000", 100, 10000000, "N",
     "statement shapes kept (per database and user); beyond, the least costly are folded "
     "into one \"other\" entry"},
    {"nplusone_min_repeats", 0, INT(nplusone_min_repeats), "5", 2, 1000000, "N",
     "executions (with as many distinct parameters) that make a repeated query an N+1"},
    {"nplusone_idle_gap", 0, INT(nplusone_idle_gap), "250", 1, 3600000, "MS",
     "a pause this long ends a unit of work outside transactions"},
    {"nplusone_ignore", 0, STR(nplusone_ignore), "", 0, 0, "LIST",
     "fingerprints or table names never reported as N+1 (comma-separated)"},
    {"explain", 0, BOOL(explain), "on", 0, 0, "on|off",
     "replay slow statements under EXPLAIN on a side connection and store their plans"},
    {"explain_dsn", 0, STR(explain_dsn), "", 0, 0, "CONNINFO",
     "side connection: libpq conninfo or URL (user, password, sslmode...); host and port "
     "default to the upstream's, the user to the statement's, the database is the statement's"},
    {"explain_min_duration", 0, INT(explain_min_duration), "50", 0, 86400000, "MS",
     "a statement this slow is sampled (so is one above its shape's p95 after 100 calls)"},
    {"explain_max_per_shape", 0, INT(explain_max_per_shape), "3", 0, 64, "N",
     "plans per statement shape, each with different parameters"},
    {"explain_budget", 0, REAL(explain_budget), "5", 0, 100, "PERCENT",
     "side-connection time at most this share of the statement time observed"},
    {"explain_sample_rate", 0, REAL(explain_sample_rate), "1", 0, 1, "RATE",
     "share of the slow statements sampled, 0 to 1"},
    {"explain_dml", 0, STR(explain_dml), "off", 0, 0, "off|analyze-rollback",
     "DML is planned only (off), or run under EXPLAIN ANALYZE and rolled back"},
    {"explain_statement_timeout", 0, INT(explain_statement_timeout), "5000", 1, 3600000, "MS",
     "statement_timeout of a replay"},
    {"explain_lock_timeout", 0, INT(explain_lock_timeout), "100", 1, 3600000, "MS",
     "lock_timeout of a replay"},
    {"explain_timing", 0, BOOL(explain_timing), "on", 0, 0, "on|off",
     "EXPLAIN ANALYZE's per-node timing (off lowers its overhead)"},
    {"explain_allow_functions", 0, STR(explain_allow_functions), "", 0, 0, "LIST",
     "user functions ([schema.]name or schema.*, comma-separated) you vouch have no side "
     "effects: statements calling them may run under EXPLAIN ANALYZE"},
    {"advisor", 0, BOOL(advisor), "on", 0, 0, "on|off",
     "suggest indexes for sampled statements, verified with hypopg where the database has it"},
    {"advisor_create_extension", 0, BOOL(advisor_create_extension), "off", 0, 0, "on|off",
     "CREATE EXTENSION hypopg in databases that lack it (changes the database)"},
    {"advisor_min_reduction", 0, REAL(advisor_min_reduction), "30", 0, 99, "PERCENT",
     "a hypothetical index counts when the plan's cost drops by this much"},
    {"help", 'h', OPT_HELP, 0, 0, NULL, 0, 0, NULL, "show this help and exit"},
    {"version", 'V', OPT_VERSION, 0, 0, NULL, 0, 0, NULL, "show the version and exit"},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static bool fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}

static const opt *find_key(const char *key)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(opts[i].name, key) == 0)
            return &opts[i];
    return NULL;
}

/* Finds the option of a flag: "--shutdown-timeout" or "-l". */
static const opt *find_flag(const char *flag)
{
    char key[64];

    if (flag[0] == '-' && flag[1] != '-' && flag[1] && !flag[2]) {
        for (size_t i = 0; i < N_OPTS; i++)
            if (opts[i].short_flag == flag[1])
                return &opts[i];
        return NULL;
    }
    if (strncmp(flag, "--", 2) != 0 || strlen(flag + 2) >= sizeof(key))
        return NULL;
    size_t i = 0;
    for (const char *p = flag + 2; *p; p++)
        key[i++] = *p == '-' ? '_' : *p;
    key[i] = '\0';
    return find_key(key);
}

static bool set_list(config *cfg, const char *value, char *err, size_t errlen)
{
    char copy[CONFIG_STR_MAX * 4];

    snprintf(copy, sizeof(copy), "%s", value);
    for (char *save = NULL, *tok = strtok_r(copy, ", \t", &save); tok;
         tok = strtok_r(NULL, ", \t", &save)) {
        if (cfg->n_listen == CONFIG_MAX_LISTEN)
            return fail(err, errlen, "listen: at most %d addresses", CONFIG_MAX_LISTEN);
        if (strlen(tok) >= CONFIG_STR_MAX)
            return fail(err, errlen, "listen: address too long");
        snprintf(cfg->listen[cfg->n_listen++], CONFIG_STR_MAX, "%s", tok);
    }
    return true;
}

/* Whether value is one of the '|'-separated words of choices. */
static bool is_choice(const char *choices, const char *value)
{
    size_t n = strlen(value);

    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0)
            return true;
        p += len + (bar != NULL);
    }
    return false;
}

static bool set_value(config *cfg, const opt *o, const char *value, char *err, size_t errlen)
{
    char *base = (char *)cfg;

    switch (o->kind) {
    case OPT_LIST:
        return set_list(cfg, value, err, errlen);
    case OPT_STR:
    case OPT_FILE:
        if (strlen(value) >= o->size)
            return fail(err, errlen, "%s: value too long", o->name);
        if (o->kind == OPT_STR && o->arg && strchr(o->arg, '|') && !is_choice(o->arg, value))
            return fail(err, errlen, "%s: \"%s\" is not one of %s", o->name, value, o->arg);
        memcpy(base + o->offset, value, strlen(value) + 1);
        return true;
    case OPT_BOOL: {
        static const char *const yes[] = {"on", "true", "yes", "1"}, *const no[] = {"off", "false",
                                                                                    "no", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
                *(bool *)(base + o->offset) = strcasecmp(value, yes[i]) == 0;
                return true;
            }
        }
        return fail(err, errlen, "%s: \"%s\" is not on or off", o->name, value);
    }
    case OPT_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < o->min || v > o->max)
            return fail(err, errlen, "%s: \"%s\" is not a whole number from %d to %d", o->name,
                        value, o->min, o->max);
        *(int *)(base + o->offset) = (int)v;
        return true;
    }
    case OPT_REAL: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !(v >= o->min && v <= o->max))
            return fail(err, errlen, "%s: \"%s\" is not a number from %d to %d", o->name, value,
                        o->min, o->max);
        *(double *)(base + o->offset) = v;
        return true;
    }
    default:
        return fail(err, errlen, "%s cannot be set in a file", o->name);
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Whether line s, trimmed, opens [section] (any case; a comment may follow). */
static bool opens_section(const char *s, const char *section)
{
    size_t n = strlen(section);

    return s[0] == '[' && strncasecmp(s + 1, section, n) == 0 && s[n + 1] == ']' &&
           (!s[n + 2] || isspace((unsigned char)s[n + 2]) || s[n + 2] == '#' || s[n + 2] == ';');
}

bool config_ini_read(const char *path, const char *section, config_ini_fn fn, void *ctx, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[4096], why[256];
    bool in_section = strcmp(section, "pgscope") == 0, ok = true;
    int lineno = 0;

    if (!f)
        return fail(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
    while (ok && fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            in_section = opens_section(s, section);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in_section)
            continue;
        if (!eq) {
            ok = fail(err, errlen, "%s:%d: expected key = value", path, lineno);
            break;
        }
        *eq = '\0';
        why[0] = '\0';
        if (!fn(trim(s), trim(eq + 1), ctx, why, sizeof(why)))
            ok = fail(err, errlen, "%s:%d: %s", path, lineno, why);
    }
    fclose(f);
    return ok;
}

typedef struct {
    config *cfg;
    bool listen_from_file;
} file_state;

static bool file_key(const char *key, const char *value, void *ctx, char *why, size_t whylen)
{
    file_state *st = ctx;
    const opt *o = find_key(key);

    if (!o || o->kind == OPT_FILE || o->kind == OPT_HELP || o->kind == OPT_VERSION)
        return fail(why, whylen, "unknown setting \"%s\"", key);
    if (o->kind == OPT_LIST && !st->listen_from_file) {
        st->cfg->n_listen = 0; /* the file's list replaces the default */
        st->listen_from_file = true;
    }
    return set_value(st->cfg, o, value, why, whylen);
}

/* Reads the [pgscope] section of an ini file (keys before any section count too; other
 * sections are ignored). A list key may repeat. */
static bool load_file(config *cfg, const char *path, char *err, size_t errlen)
{
    file_state st = {cfg, false};

    return config_ini_read(path, "pgscope", file_key, &st, err, errlen);
}

static void set_defaults(config *cfg)
{
    char ignore[8];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].def)
            set_value(cfg, &opts[i], opts[i].def, ignore, sizeof(ignore));
}

/* Splits "--key=value" into its flag and value; other arguments take the next one. */
static const char *flag_value(char *arg, int *i, int argc, char **argv, char *flag, size_t n)
{
    char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;

    if (eq) {
        snprintf(flag, n, "%.*s", (int)(eq - arg), arg);
        return eq + 1;
    }
    snprintf(flag, n, "%s", arg);
    return *i + 1 < argc ? argv[++*i] : NULL;
}

/* Applies the flags; with files_only, only --config (so that flags can override the file). */
static config_result apply_flags(config *cfg, int argc, char **argv, bool files_only,
                                 bool *listen_from_flags, char *err, size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        char flag[128];
        const opt *o = find_flag(argv[i]);
        if (o && o->kind == OPT_HELP)
            return CONFIG_HELP;
        if (o && o->kind == OPT_VERSION)
            return CONFIG_VERSION;
        if (!o && strchr(argv[i], '=') && strncmp(argv[i], "--", 2) == 0) {
            snprintf(flag, sizeof(flag), "%.*s", (int)(strchr(argv[i], '=') - argv[i]), argv[i]);
            o = find_flag(flag);
        }
        if (!o) {
            fail(err, errlen, "unknown option \"%s\" (see pgscope proxy --help)", argv[i]);
            return CONFIG_ERROR;
        }
        const char *value = flag_value(argv[i], &i, argc, argv, flag, sizeof(flag));
        if (!value) {
            fail(err, errlen, "option %s needs a value", flag);
            return CONFIG_ERROR;
        }
        if (files_only != (o->kind == OPT_FILE))
            continue;
        if (o->kind == OPT_LIST && !*listen_from_flags) {
            cfg->n_listen = 0; /* flags replace the file's and the default list */
            *listen_from_flags = true;
        }
        if (!set_value(cfg, o, value, err, errlen))
            return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

config_result config_load(config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    bool listen_from_flags = false;
    config_result r;

    err[0] = '\0';
    set_defaults(cfg);
    r = apply_flags(cfg, argc, argv, true, &listen_from_flags, err, errlen);
    if (r != CONFIG_OK)
        return r;
    if (cfg->config_file[0] && !load_file(cfg, cfg->config_file, err, errlen))
        return CONFIG_ERROR;
    return apply_flags(cfg, argc, argv, false, &listen_from_flags, err, errlen);
}

void config_print_help(void)
{
    printf("Options (each is also a key in the config file, with '_' for '-'):\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt *o = &opts[i];
        char flag[64], left[96];
        size_t n = 0;
        for (const char *p = o->name; *p && n < sizeof(flag) - 1; p++)
            flag[n++] = *p == '_' ? '-' : *p;
        flag[n] = '\0';
        if (o->short_flag)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_flag, flag, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", flag, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        printf("  %-32s %s", left, o->help);
        if (o->def && *o->def)
            printf(" (default %s)", o->def);
        printf("\n");
    }
}
