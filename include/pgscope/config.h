/* config.h — settings from defaults, an ini file and command-line flags (flags win). Every
 * setting is both a key in the file and a --flag of the same name with '-' for '_'. */
#ifndef PGSCOPE_CONFIG_H
#define PGSCOPE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_LISTEN 16
#define CONFIG_STR_MAX 512

typedef struct config {
    char listen[CONFIG_MAX_LISTEN][CONFIG_STR_MAX];
    int n_listen;
    char upstream[CONFIG_STR_MAX];
    char db[CONFIG_STR_MAX];
    char config_file[CONFIG_STR_MAX];
    char upstream_sslmode[32];
    char upstream_ca_file[CONFIG_STR_MAX];
    char tls_cert_file[CONFIG_STR_MAX];
    char tls_key_file[CONFIG_STR_MAX];
    char log_level[16];
    int shutdown_timeout;
    int connect_timeout;
    int buffer_size;
    int max_connections;
    int max_startup_connections;
    int startup_timeout;
    char run_label[128];
    bool store_params;
    int queue_size;
    int max_query_text;
    int max_shapes;
    int nplusone_min_repeats;
    int nplusone_idle_gap;
    char nplusone_ignore[CONFIG_STR_MAX * 4];
    bool explain;
    char explain_dsn[CONFIG_STR_MAX * 2];
    int explain_min_duration;
    int explain_max_per_shape;
    double explain_budget; /* percent */
    double explain_sample_rate;
    char explain_dml[32];
    int explain_statement_timeout;
    int explain_lock_timeout;
    bool explain_timing;
    char explain_allow_functions[CONFIG_STR_MAX * 4];
    bool advisor;
    bool advisor_create_extension;
    double advisor_min_reduction; /* percent */
} config;

typedef enum {
    CONFIG_OK,      /* settings loaded */
    CONFIG_HELP,    /* --help was asked for */
    CONFIG_VERSION, /* --version was asked for */
    CONFIG_ERROR,   /* err holds the reason */
} config_result;

/* One `key = value` of an ini file's section: true when taken, else false with why. */
typedef bool (*config_ini_fn)(const char *key, const char *value, void *ctx, char *why,
                              size_t whylen);
/* Calls fn for each `key = value` line of [section] in the ini file at path ('#' and ';' start
 * comments; for section "pgscope", lines before any section header count too). False with
 * "path:line: why" in err when the file cannot be read, a line is not key = value, or fn
 * refuses one. */
bool config_ini_read(const char *path, const char *section, config_ini_fn fn, void *ctx, char *err,
                     size_t errlen);

/* Loads defaults, then the file named by --config (if any), then the flags in argv. */
config_result config_load(config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Writes the option list for `pgscope proxy --help`. */
void config_print_help(void);

#endif
