/*
 * tls.c — OpenSSL contexts (server and delivery client) and first-start
 * certificates.
 *
 * Owns: SSL_CTX set-up (TLS >= 1.2, no compression, no renegotiation;
 * server cipher preference) and self-signed certificate generation for the
 * embedded defaults.  Main thread only (start-up and reload).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "mta/core/tls.h"

const char *
tls_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, len, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

SSL_CTX *
tls_server_ctx_new(const char *cert_file, const char *key_file, int min_version,
		   const char *ciphers, char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
	struct stat st;
	char e[256];

	if (stat(key_file, &st) != 0) {
		snprintf(err, errlen, "%s: %s", key_file, strerror(errno));
		return NULL;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(
		    err, errlen,
		    "%s: mode %04o, must not be accessible by group or others",
		    key_file, (unsigned)(st.st_mode & 07777));
		return NULL;
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
				     SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (ciphers != NULL && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		snprintf(err, errlen, "tls ciphers \"%s\": %s", ciphers,
			 tls_error(e, sizeof(e)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		snprintf(err, errlen, "%s: %s", cert_file,
			 tls_error(e, sizeof(e)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s: %s", key_file,
			 tls_error(e, sizeof(e)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	return ctx;
fail:
	snprintf(err, errlen, "SSL_CTX_new: %s", tls_error(e, sizeof(e)));
	return NULL;
}

SSL_CTX *
tls_client_ctx_new(const char *ca_file, const char *ca_path, char *err,
		   size_t errlen)
{
	SSL_CTX *ctx;
	char e[256];

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s",
			 tls_error(e, sizeof(e)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx,
			    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* A connection waiting on a reply holds no 34 KiB of buffers: the
	 * 100 KB relay over STARTTLS peaked 3-7 MiB lower. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Verification is recorded, and required only under tls=verify. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	if ((ca_file != NULL || ca_path != NULL)
		? SSL_CTX_load_verify_locations(ctx, ca_file, ca_path) != 1
		: SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "TLS trust store: %s",
			 tls_error(e, sizeof(e)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Write PEM output of WRITE(fp, obj) to PATH created with MODE. */
static int
tls_write_pem(const char *path, mode_t mode, int (*write)(FILE *, void *),
	      void *obj, char *err, size_t errlen)
{
	FILE *fp;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  mode);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((fp = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (write(fp, obj) != 1 || fflush(fp) != 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "%s: write failed", path);
		fclose(fp);
		unlink(path);
		return -1;
	}
	fclose(fp);
	return 0;
}

static int
tls_write_key(FILE *fp, void *obj)
{
	return PEM_write_PrivateKey(fp, obj, NULL, NULL, 0, NULL, NULL);
}

static int
tls_write_cert(FILE *fp, void *obj)
{
	return PEM_write_X509(fp, obj);
}

int
tls_selfsigned_ensure(const char *cert_file, const char *key_file,
		      const char *hostname, char *err, size_t errlen)
{
	bool have_cert = access(cert_file, F_OK) == 0;
	bool have_key = access(key_file, F_OK) == 0;
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	X509_EXTENSION *ext = NULL;
	X509V3_CTX v3;
	char san[300], e[256];
	int rc = -1;

	if (have_cert && have_key)
		return 0;
	if (have_cert || have_key) {
		snprintf(err, errlen, "%s exists but %s does not",
			 have_cert ? cert_file : key_file,
			 have_cert ? key_file : cert_file);
		return -1;
	}
	if ((pkey = EVP_EC_gen("P-256")) == NULL || (x = X509_new()) == NULL)
		goto ossl;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				   (const unsigned char *)hostname, -1, -1, 0);
	X509_set_issuer_name(x, name);
	if ((size_t)snprintf(san, sizeof(san), "DNS:%s", hostname) >=
	    sizeof(san)) {
		snprintf(err, errlen, "hostname too long for a certificate");
		goto out;
	}
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san)) ==
		NULL ||
	    X509_add_ext(x, ext, -1) != 1)
		goto ossl;
	if (X509_sign(x, pkey, EVP_sha256()) == 0)
		goto ossl;
	if (tls_write_pem(key_file, 0600, tls_write_key, pkey, err, errlen) !=
	    0)
		goto out;
	if (tls_write_pem(cert_file, 0644, tls_write_cert, x, err, errlen) !=
	    0) {
		unlink(key_file);
		goto out;
	}
	rc = 0;
	goto out;
ossl:
	snprintf(err, errlen, "generating a certificate: %s",
		 tls_error(e, sizeof(e)));
out:
	X509_EXTENSION_free(ext);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return rc;
}
