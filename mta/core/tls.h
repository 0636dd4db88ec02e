/*
 * tls.h — OpenSSL contexts: the SMTP server's (one per listener) and the
 * SMTP client's (delivery; smtp_client_tls_init() adds session resumption).
 */
#ifndef OUTPOST_MTA_TLS_H
#define OUTPOST_MTA_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/*
 * tls_server_ctx_new — a server context with the certificate chain and key
 * from the PEM files.  MIN_VERSION is TLS1_2_VERSION or TLS1_3_VERSION;
 * CIPHERS (TLS 1.2 list) may be NULL.  Refuses a key file readable by group
 * or others.  Returns NULL with err set.  Main thread.
 */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file,
			    int min_version, const char *ciphers, char *err,
			    size_t errlen);

/*
 * tls_client_ctx_new — the delivery client's context: TLS >= 1.2, no
 * compression, no renegotiation, client session cache; certificates are
 * verified against CA_FILE and/or CA_PATH (both NULL: the system's trust
 * store) but not enforced (SSL_VERIFY_NONE: the result is read per
 * connection, and only tls=verify requires it).  Returns NULL with err set.
 * Main thread, at start; the caller frees it (SSL_CTX_free) after every
 * connection using it is gone.
 */
SSL_CTX *tls_client_ctx_new(const char *ca_file, const char *ca_path, char *err,
			    size_t errlen);

/*
 * tls_selfsigned_ensure — when neither file exists, write a new self-signed
 * certificate for HOSTNAME (EC P-256, one year; key 0600).  When both exist,
 * do nothing.  0 ok, -1 with err set (also when only one of them exists).
 */
int tls_selfsigned_ensure(const char *cert_file, const char *key_file,
			  const char *hostname, char *err, size_t errlen);

/* tls_error — the last OpenSSL error as text (into BUF). */
const char *tls_error(char *buf, size_t len);

#endif
