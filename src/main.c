/* main.c — subcommand dispatch: pgscope proxy | version | help. */
#include "config.h"

#include "pgscope/analyze.h"
#include "pgscope/clock.h"
#include "pgscope/config.h"
#include "pgscope/log.h"
#include "pgscope/proxy.h"
#include "pgscope/queue.h"
#include "pgscope/report.h"
#include "pgscope/store.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* What a reload needs: the proxy's own arguments, read again with the file. */
typedef struct {
    int argc;
    char **argv;
} proxy_args;

static void usage(FILE *out)
{
    fprintf(out,
            "pgscope %s — a PostgreSQL wire-protocol proxy that shows what your application "
            "asks of the database\n\n"
            "Usage:\n"
            "  pgscope proxy [OPTIONS]   forward clients to PostgreSQL and watch the traffic\n"
            "  pgscope report [OPTIONS]  print what the report database says to fix\n"
            "  pgscope check [OPTIONS]   the CI gate: exit 1 when a run breaks a rule\n"
            "  pgscope diff [OPTIONS]    two runs side by side: what changed, in percent\n"
            "  pgscope baseline save     a run's figures as a JSON file, for check --baseline\n"
            "  pgscope version           print the version\n"
            "  pgscope help              this text; `pgscope proxy --help` lists options\n",
            PACKAGE_VERSION);
}

static bool settings_from_config(const config *cfg, proxy_settings *s, char *err, size_t errlen)
{
    log_level level;

    memset(s, 0, sizeof(*s));
    if (!proxy_parse_sslmode(cfg->upstream_sslmode, &s->upstream_sslmode)) {
        snprintf(err, errlen,
                 "upstream_sslmode: \"%s\" is not one of disable, prefer, require, "
                 "verify-ca, verify-full",
                 cfg->upstream_sslmode);
        return false;
    }
    if (!log_parse_level(cfg->log_level, &level)) {
        snprintf(err, errlen, "log_level: \"%s\" is not one of error, warning, info, debug",
                 cfg->log_level);
        return false;
    }
    for (int i = 0; i < cfg->n_listen; i++)
        snprintf(s->listen[i], sizeof(s->listen[i]), "%s", cfg->listen[i]);
    s->n_listen = cfg->n_listen;
    snprintf(s->upstream, sizeof(s->upstream), "%s", cfg->upstream);
    snprintf(s->upstream_ca_file, sizeof(s->upstream_ca_file), "%s", cfg->upstream_ca_file);
    snprintf(s->tls_cert_file, sizeof(s->tls_cert_file), "%s", cfg->tls_cert_file);
    snprintf(s->tls_key_file, sizeof(s->tls_key_file), "%s", cfg->tls_key_file);
    s->shutdown_timeout = cfg->shutdown_timeout;
    s->connect_timeout = cfg->connect_timeout;
    s->buffer_size = cfg->buffer_size;
    s->max_connections = cfg->max_connections;
    s->max_startup_connections = cfg->max_startup_connections;
    s->startup_timeout = cfg->startup_timeout;
    track_limits_default(&s->limits);
    s->limits.max_text = (uint32_t)cfg->max_query_text;
    if (!proxy_settings_check(s, err, errlen))
        return false;
    log_set_level(level); /* only once everything else is known to be right */
    return true;
}

static bool reload(proxy_settings *out, void *arg)
{
    proxy_args *a = arg;
    config cfg;
    char err[512];

    if (config_load(&cfg, a->argc, a->argv, err, sizeof(err)) != CONFIG_OK ||
        !settings_from_config(&cfg, out, err, sizeof(err))) {
        log_error(NULL, "reload refused, settings unchanged: %s", err);
        return false;
    }
    return true;
}

/* Memory the events waiting for analysis may hold in all (their texts and parameters). */
#define QUEUE_MAX_BYTES (64u * 1024 * 1024)

/* The analysis side of a run: report database, queue, analysis thread. NULL members when the
 * database cannot be opened: pgscope then forwards traffic without statistics. */
typedef struct {
    store *st;
    queue *q;
    analyzer *an;
    bool refused; /* the file is not a pgscope report database, or a newer one's: exit 2 */
} run_state;

/* The N+1 allow-list, split once; it lives as long as the process. */
static char ignore_copy[CONFIG_STR_MAX * 4];
static const char *ignore_list[64];

static int split_ignores(const char *list)
{
    int n = 0;

    snprintf(ignore_copy, sizeof(ignore_copy), "%s", list);
    for (char *save = NULL, *tok = strtok_r(ignore_copy, ", \t", &save); tok && n < 64;
         tok = strtok_r(NULL, ", \t", &save))
        ignore_list[n++] = tok;
    return n;
}

/* The upstream address as libpq's host and port: "h:5432", "[::1]:5432", "/dir:5432" or a
 * socket path "/dir/.s.PGSQL.5432". The side connections default to them. */
static void upstream_host_port(const char *up, char *host, size_t hn, char *port, size_t pn)
{
    const char *sock = strstr(up, "/.s.PGSQL.");
    const char *colon = strrchr(up, ':');

    host[0] = port[0] = '\0';
    if (up[0] == '/' && sock) {
        snprintf(host, hn, "%.*s", (int)(sock - up), up);
        snprintf(port, pn, "%s", sock + strlen("/.s.PGSQL."));
    } else if (colon && (up[0] != '[' || colon[-1] == ']')) {
        int skip = up[0] == '[';
        snprintf(host, hn, "%.*s", (int)(colon - up) - 2 * skip, up + skip);
        snprintf(port, pn, "%s", colon + 1);
    } else {
        snprintf(host, hn, "%s", up);
    }
}

static char upstream_host[CONFIG_STR_MAX], upstream_port[16];

static void explain_settings_from_config(const config *cfg, const char *upstream,
                                         analyze_settings *as)
{
    explainer_settings *x = &as->explain;

    as->explain_enabled = cfg->explain;
    explain_sampler_defaults(&x->sampler);
    explain_side_defaults(&x->side);
    x->sampler.min_duration_ms = cfg->explain_min_duration;
    x->sampler.max_per_shape = cfg->explain_max_per_shape;
    x->sampler.budget_share = cfg->explain_budget / 100.0;
    x->sampler.sample_rate = cfg->explain_sample_rate;
    x->sampler.dml_analyze = strcmp(cfg->explain_dml, "analyze-rollback") == 0;
    upstream_host_port(upstream, upstream_host, sizeof(upstream_host), upstream_port,
                       sizeof(upstream_port));
    x->side.dsn = cfg->explain_dsn;
    x->side.host = upstream_host;
    x->side.port = upstream_port;
    x->side.sslmode = cfg->upstream_sslmode;
    x->side.sslrootcert = cfg->upstream_ca_file;
    x->side.statement_timeout_ms = cfg->explain_statement_timeout;
    x->side.lock_timeout_ms = cfg->explain_lock_timeout;
    x->side.timing = cfg->explain_timing;
    x->side.allow_functions = cfg->explain_allow_functions;
    x->store_params = cfg->store_params;
    x->advise = cfg->advisor;
    advisor_settings_default(&x->advisor);
    x->advisor.dsn = cfg->explain_dsn;
    x->advisor.host = upstream_host;
    x->advisor.port = upstream_port;
    x->advisor.sslmode = cfg->upstream_sslmode;
    x->advisor.sslrootcert = cfg->upstream_ca_file;
    x->advisor.statement_timeout_ms = cfg->explain_statement_timeout;
    x->advisor.lock_timeout_ms = cfg->explain_lock_timeout;
    x->advisor.min_reduction = cfg->advisor_min_reduction / 100.0;
    x->advisor.create_extension = cfg->advisor_create_extension;
}

static bool start_run(const config *cfg, const proxy_settings *s, run_state *run)
{
    char err[512];
    analyze_settings as = {.store_params = cfg->store_params,
                           .flush_ms = 500,
                           .fp_cache_entries = 50000,
                           .max_shapes = (size_t)cfg->max_shapes};

    np1_settings_default(&as.nplusone);
    as.nplusone.min_repeats = cfg->nplusone_min_repeats;
    as.nplusone.idle_gap_ms = cfg->nplusone_idle_gap;
    as.nplusone.keep_params = cfg->store_params;
    as.nplusone.ignore = ignore_list;
    as.nplusone.n_ignore = split_ignores(cfg->nplusone_ignore);
    explain_settings_from_config(cfg, s->upstream, &as);

    memset(run, 0, sizeof(*run));
    run->st = store_open(cfg->db, &run->refused, err, sizeof(err));
    if (run->refused) {
        /* The user named the wrong file: a configuration error, not a reason to run blind. */
        fprintf(stderr, "pgscope: %s\n", err);
        return false;
    }
    if (!run->st ||
        store_begin_run(run->st, cfg->run_label, s->upstream, clock_wall_us(), err, sizeof(err)) <
            0 ||
        !store_start(run->st)) {
        log_error(NULL, "report database %s unusable (%s): forwarding without statistics", cfg->db,
                  err);
        if (run->st)
            store_close(run->st, NULL);
        run->st = NULL;
        return false;
    }
    run->q = queue_new((size_t)cfg->queue_size, QUEUE_MAX_BYTES);
    run->an = run->q ? analyze_start(run->q, run->st, &as) : NULL;
    if (!run->an) {
        log_error(NULL, "cannot start the analysis thread: forwarding without statistics");
        store_close(run->st, NULL);
        queue_free(run->q);
        memset(run, 0, sizeof(*run));
        return false;
    }
    log_info(NULL, "report database %s", cfg->db);
    return true;
}

/* After the proxy stopped: every event is analysed and everything written before exit. A proxy
 * that never served (it could not listen) leaves no run behind: it would hide, as the latest
 * run, the one still going in the same file. */
static void end_run(run_state *run, bool served)
{
    if (!run->an)
        return;
    if (!served)
        store_discard_run(run->st);
    analyze_stop(run->an, clock_wall_us());
    queue_free(run->q);
}

static int cmd_proxy(int argc, char **argv)
{
    config cfg;
    proxy_settings settings;
    proxy_args args = {argc, argv};
    char err[512];

    switch (config_load(&cfg, argc, argv, err, sizeof(err))) {
    case CONFIG_HELP:
        printf("Usage: pgscope proxy [OPTIONS]\n\n");
        config_print_help();
        return 0;
    case CONFIG_VERSION:
        printf("pgscope %s\n", PACKAGE_VERSION);
        return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "pgscope: %s\n", err);
        return 2;
    case CONFIG_OK:
        break;
    }
    if (!settings_from_config(&cfg, &settings, err, sizeof(err))) {
        fprintf(stderr, "pgscope: %s\n", err);
        return 2;
    }
    run_state run;
    if (start_run(&cfg, &settings, &run))
        settings.events = run.q;
    else if (run.refused)
        return 2;
    int rc = proxy_run(&settings, reload, &args);
    end_run(&run, rc == 0); /* proxy_run returns non-zero only when it could not start */
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "help";

    if (strcmp(cmd, "proxy") == 0)
        return cmd_proxy(argc - 2, argv + 2);
    if (strcmp(cmd, "report") == 0)
        return report_main(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0)
        return check_main(argc - 2, argv + 2);
    if (strcmp(cmd, "diff") == 0)
        return diff_main(argc - 2, argv + 2);
    if (strcmp(cmd, "baseline") == 0)
        return baseline_main(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("pgscope %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "pgscope: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
