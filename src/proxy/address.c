/* address.c — parsing listen and upstream addresses: TCP (IPv4, [IPv6], names) and Unix. */
#include "config.h"

#include "proxy_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (!*s || *end || v < 1 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

static bool set_unix(proxy_addr *out, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;

    memset(out, 0, sizeof(*out));
    if (strlen(path) >= sizeof(un->sun_path)) {
        snprintf(err, errlen, "Unix socket path too long: %s", path);
        return false;
    }
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, path);
    out->len = sizeof(*un);
    out->is_unix = true;
    snprintf(out->text, sizeof(out->text), "%s", path);
    return true;
}

/* "/dir:5432" → dir and port; "/dir" → dir and no port (0). */
static void split_dir_port(const char *spec, char *dir, size_t n, int *port)
{
    const char *colon = strrchr(spec, ':');

    *port = 0;
    if (colon && parse_port(colon + 1, port)) {
        snprintf(dir, n, "%.*s", (int)(colon - spec), spec);
        return;
    }
    snprintf(dir, n, "%s", spec);
}

static bool parse_tcp(const char *spec, bool passive, proxy_addr *out, char *err, size_t errlen)
{
    char host[256];
    const char *port_s;
    int port;

    memset(out, 0, sizeof(*out));
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "bad address \"%s\": expected [IPv6]:PORT", spec);
            return false;
        }
        snprintf(host, sizeof(host), "%.*s", (int)(close - spec - 1), spec + 1);
        port_s = close + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon) {
            snprintf(err, errlen, "bad address \"%s\": expected HOST:PORT", spec);
            return false;
        }
        snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
        port_s = colon + 1;
    }
    if (!parse_port(port_s, &port)) {
        snprintf(err, errlen, "bad port in \"%s\"", spec);
        return false;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    if (passive)
        hints.ai_flags |= AI_PASSIVE;
    const char *node = strcmp(host, "*") == 0 || !host[0] ? NULL : host;
    int rc = getaddrinfo(node, port_s, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
        return false;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(out->host, sizeof(out->host), "%s", host);
    snprintf(out->text, sizeof(out->text), "%s", spec);
    return true;
}

bool proxy_addr_parse_listen(const char *spec, int unix_port, proxy_addr *out, char *err,
                             size_t errlen)
{
    char dir[PROXY_ADDR_MAX], path[PROXY_ADDR_MAX + 32];
    int port;

    if (spec[0] != '/')
        return parse_tcp(spec, true, out, err, errlen);
    split_dir_port(spec, dir, sizeof(dir), &port);
    snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", dir, port ? port : unix_port);
    return set_unix(out, path, err, errlen);
}

bool proxy_addr_parse_upstream(const char *spec, proxy_addr *out, char *err, size_t errlen)
{
    char dir[PROXY_ADDR_MAX], path[PROXY_ADDR_MAX + 32];
    struct stat st;
    int port;

    if (spec[0] != '/')
        return parse_tcp(spec, false, out, err, errlen);
    split_dir_port(spec, dir, sizeof(dir), &port);
    if (port == 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        return set_unix(out, spec, err, errlen); /* a socket path */
    snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", dir, port ? port : 5432);
    return set_unix(out, path, err, errlen);
}
