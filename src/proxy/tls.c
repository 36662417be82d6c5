/* tls.c — OpenSSL contexts: one to terminate clients' TLS, one for TLS to the server. */
#include "config.h"

#include "proxy_int.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

static void last_error(const char *what, const char *file, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    char reason[200];

    ERR_error_string_n(e, reason, sizeof(reason));
    snprintf(err, errlen, "%s %s: %s", what, file, e ? reason : "unknown error");
    ERR_clear_error();
}

SSL_CTX *proxy_tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A peer closing TCP without close_notify has ended its stream, not failed. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        last_error("cannot load certificate", cert_file, err, errlen);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        last_error("cannot load private key", key_file, err, errlen);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        last_error("private key does not match certificate", cert_file, err, errlen);
    } else {
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *proxy_tls_client_ctx(proxy_sslmode mode, const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A peer closing TCP without close_notify has ended its stream, not failed. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (mode < PROXY_SSL_VERIFY_CA) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    if (!ca_file[0]) {
        snprintf(err, errlen, "upstream_sslmode verify-ca and verify-full need upstream_ca_file");
    } else if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        last_error("cannot load CA file", ca_file, err, errlen);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

SSL *proxy_tls_client_ssl(SSL_CTX *ctx, proxy_sslmode mode, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

    if (!ssl)
        return NULL;
    if (host[0] && !is_ip)
        SSL_set_tlsext_host_name(ssl, host);
    if (mode == PROXY_SSL_VERIFY_FULL) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(param, host);
        else
            SSL_set1_host(ssl, host);
    }
    return ssl;
}

void proxy_tls_error(SSL *ssl, int ret, char *buf, size_t len)
{
    long verify = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_error();
    char reason[200];

    if (verify != X509_V_OK) {
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(verify));
    } else if (e) {
        ERR_error_string_n(e, reason, sizeof(reason));
        snprintf(buf, len, "TLS error: %s", reason);
    } else {
        snprintf(buf, len, "TLS error: %s (%d)", ret == 0 ? "unexpected EOF" : "socket error",
                 SSL_get_error(ssl, ret));
    }
    ERR_clear_error();
}
