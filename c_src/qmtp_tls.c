/* QMTPS: TLS from the first byte of the connection (as s/qmail's
 * qmail-remote speaks it, port 6209), through OpenSSL, behind the
 * engine's own reads and writes, so that the run, pipelining, the
 * deadlines, the half-close and the steps of a non-blocking caller work
 * the same. The socket stays non-blocking: OpenSSL's "want read" and
 * "want write" become what qmtp_wants asks for. Built with QMTP_TLS
 * (Makefile.PL defines it when OpenSSL is found); without it, TLS is
 * refused with a text saying so. */
#define _GNU_SOURCE 1
#include "qmtp_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef QMTP_TLS

#include <arpa/inet.h>
#include <pthread.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* OpenSSL writes to the socket with write(2), which raises SIGPIPE on a
 * connection the server reset: around every OpenSSL call that may write,
 * SIGPIPE is blocked in this thread and one it raised is taken back, so
 * that none is ever delivered (as around sendfile in qmtp_write.c). */
struct quiet {
    sigset_t old;
    int was_pending;
};

static void quiet_begin(struct quiet *q)
{
    sigset_t pipe_only;
    sigset_t pending;

    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigpending(&pending);
    q->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &q->old);
}

static void quiet_end(const struct quiet *q)
{
    sigset_t pipe_only;
    sigset_t pending;
    int e = errno;

    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigpending(&pending);
    if (!q->was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec none = { 0, 0 };
        sigtimedwait(&pipe_only, NULL, &none);
    }
    pthread_sigmask(SIG_SETMASK, &q->old, NULL);
    errno = e;
}

/* Bytes gathered for one SSL_write at most: a few records. */
#define TLS_CHUNK (64 * 1024)

struct qmtp_tls {
    SSL_CTX *ctx;
    SSL *ssl;
    int verify;
    char *server_name;       /* the name checked and sent; NULL: the host connected to */
    unsigned char *pins;     /* SHA-256 fingerprints, 32 bytes each */
    size_t npins;
    pid_t pid;               /* the process whose connection ssl is */
    int established;         /* the handshake is done */
    int shut;                /* our close_notify is sent */
    char broken[160];        /* why the server's stream ended uncleanly; "": it did not */
    /* What was handed to SSL_write and not yet taken (a write that wanted
     * to wait): OpenSSL wants the same bytes again, and the engine's cursor
     * moves only past bytes taken. */
    struct qmtp_buf pend;
};

int qmtp_tls_available(void)
{
    return 1;
}

static char *copy(const char *s)
{
    size_t n;
    char *p;

    if (s == NULL) {
        return NULL;
    }
    n = strlen(s) + 1;
    p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

/* OpenSSL's reason for the last failure, or fallback. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    return r != NULL ? r : fallback;
}

/* The key's password, for OpenSSL's PEM reader. Without one, the reader
 * would prompt on the terminal and wait there for ever: an encrypted key
 * is refused instead, and the refusal recorded for the error text. */
struct key_password {
    const char *password;
    int asked;
    int room;        /* OpenSSL's buffer, when the password did not fit */
};

static int give_key_password(char *buf, int size, int rwflag, void *arg)
{
    struct key_password *k = arg;
    size_t n;

    (void)rwflag;
    if (k == NULL) {
        return -1;
    }
    k->asked = 1;
    if (k->password == NULL || size <= 0) {
        return -1;
    }
    if ((n = strlen(k->password)) > (size_t)size) {
        k->room = size;
        return -1;
    }
    memcpy(buf, k->password, n);
    return (int)n;
}

static void tls_free(struct qmtp_tls *t)
{
    if (t == NULL) {
        return;
    }
    if (t->ssl != NULL) {
        SSL_free(t->ssl);
    }
    SSL_CTX_free(t->ctx);
    free(t->server_name);
    free(t->pins);
    qmtp_buf_free(&t->pend);
    free(t);
}

void qmtp_tls_free(qmtp_client *c)
{
    tls_free(c->tls);
    c->tls = NULL;
}

/* OpenSSL's file readers open(2) without O_NONBLOCK, and a FIFO would
 * hold them until a writer came: only a regular file is given to them.
 * 0, or QMTP_E_ARG naming the file (what: its role). */
static int regular_file(qmtp_client *c, const char *path, const char *what)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        return qmtp_fail(c, QMTP_E_ARG, errno, "the %s %s cannot be used", what, path);
    }
    if (!S_ISREG(st.st_mode)) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "the %s %s cannot be used: not a regular file", what, path);
    }
    return QMTP_OK;
}

/* OpenSSL looks into CA directories only when a certificate is checked:
 * each of path's (separated by ':', as OpenSSL takes them) that is not a
 * directory is named now, not at connect. 0 or QMTP_E_ARG/QMTP_E_NOMEM. */
static int ca_directories(qmtp_client *c, const char *path)
{
    char *list = copy(path);
    char *dir = list;
    int rc = QMTP_OK;

    if (list == NULL) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    while (dir != NULL && rc == QMTP_OK) {
        char *next = strchr(dir, ':');
        struct stat st;

        if (next != NULL) {
            *next++ = '\0';
        }
        if (*dir != '\0') {
            int e = stat(dir, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;

            if (e != 0) {
                rc = qmtp_fail(c, QMTP_E_ARG, e, "the CA directory %s cannot be used", dir);
            }
        }
        dir = next;
    }
    free(list);
    return rc;
}

/* The client key (PEM, in key; for the certificate already in ctx): read
 * here, with the password given or none, never a prompt. 0 or QMTP_E_ARG
 * saying which of encrypted, wrong password, unreadable, not the
 * certificate's key. */
static int use_client_key(qmtp_client *c, SSL_CTX *ctx, const char *key, const char *cert, const char *password)
{
    struct key_password kp;
    EVP_PKEY *pkey;
    BIO *in;
    int ok;

    if (regular_file(c, key, "client key") != QMTP_OK) {
        return c->err;
    }
    memset(&kp, 0, sizeof kp);
    kp.password = password;
    ERR_clear_error();
    if ((in = BIO_new_file(key, "r")) == NULL) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "the client key %s cannot be used: %s", key, ssl_reason("unreadable"));
    }
    pkey = PEM_read_bio_PrivateKey(in, NULL, give_key_password, &kp);
    BIO_free(in);
    if (pkey == NULL) {
        if (kp.room > 0) {
            return qmtp_fail(c, QMTP_E_ARG, 0, "the password given for the client key %s is longer than OpenSSL takes (%d bytes)",
                             key, kp.room);
        }
        if (kp.asked && password == NULL) {
            return qmtp_fail(c, QMTP_E_ARG, 0, "the client key %s is encrypted, and no password was given for it", key);
        }
        if (kp.asked) {
            return qmtp_fail(c, QMTP_E_ARG, 0, "the client key %s cannot be decrypted with the password given: %s", key,
                             ssl_reason("bad decrypt"));
        }
        return qmtp_fail(c, QMTP_E_ARG, 0, "the client key %s cannot be used: %s", key, ssl_reason("no private key in it"));
    }
    ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    if (!ok) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "the client key %s is not the key of the client certificate %s: %s", key, cert,
                         ssl_reason("unusable"));
    }
    return QMTP_OK;
}

int qmtp_set_tls(qmtp_client *c, const qmtp_tls_options *o)
{
    struct qmtp_tls *t;
    int min = o != NULL && o->min_version != 0 ? o->min_version : TLS1_2_VERSION;

    if (qmtp_busy(c) || c->fd >= 0) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "TLS settings change only while not connected");
    }
    qmtp_tls_free(c);
    if (o == NULL || !o->enable) {
        return QMTP_OK;
    }
    if (min != TLS1_2_VERSION && min != TLS1_3_VERSION) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "unknown minimum TLS version 0x%04x", (unsigned)min);
    }
    if ((t = calloc(1, sizeof *t)) == NULL) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL || SSL_CTX_set_min_proto_version(t->ctx, min) != 1) {
        tls_free(t);
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "TLS cannot be set up: %s", ssl_reason("no TLS context"));
    }
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* No reader of this context prompts for a password (OpenSSL's default
     * would, on the terminal); the client key's reader has its own. */
    SSL_CTX_set_default_passwd_cb(t->ctx, give_key_password);
    SSL_CTX_set_default_passwd_cb_userdata(t->ctx, NULL);
    t->verify = o->verify;
    if (o->verify && ((o->ca_path != NULL && ca_directories(c, o->ca_path) != QMTP_OK) ||
                      (o->ca_file != NULL && regular_file(c, o->ca_file, "CA certificates") != QMTP_OK))) {
        tls_free(t);
        return c->err;
    }
    if (o->verify) {
        int ok = o->ca_file != NULL || o->ca_path != NULL
            ? SSL_CTX_load_verify_locations(t->ctx, o->ca_file, o->ca_path)
            : SSL_CTX_set_default_verify_paths(t->ctx);
        if (ok != 1) {
            tls_free(t);
            return qmtp_fail(c, QMTP_E_ARG, 0, "the CA certificates %s%s%s cannot be loaded: %s",
                             o->ca_file != NULL ? o->ca_file : "", o->ca_file != NULL && o->ca_path != NULL ? " and " : "",
                             o->ca_path != NULL ? o->ca_path : o->ca_file != NULL ? "" : "of the system",
                             ssl_reason("unreadable"));
        }
    }
    SSL_CTX_set_verify(t->ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (o->cert_file != NULL) {
        int rc = regular_file(c, o->cert_file, "client certificate");

        if (rc == QMTP_OK && SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
            rc = qmtp_fail(c, QMTP_E_ARG, 0, "the client certificate %s cannot be used: %s", o->cert_file,
                           ssl_reason("unreadable"));
        }
        if (rc == QMTP_OK) {
            rc = use_client_key(c, t->ctx, o->key_file != NULL ? o->key_file : o->cert_file, o->cert_file, o->key_password);
        }
        if (rc != QMTP_OK) {
            tls_free(t);
            return rc;
        }
    }
    if (o->npins > 0) {
        if (o->npins > SIZE_MAX / 32 || (t->pins = malloc(o->npins * 32)) == NULL) {
            tls_free(t);
            return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
        }
        memcpy(t->pins, o->pins, o->npins * 32);
        t->npins = o->npins;
    }
    if (o->server_name != NULL && (t->server_name = copy(o->server_name)) == NULL) {
        tls_free(t);
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    c->tls = t;
    return QMTP_OK;
}

static int is_ip(const char *s)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int qmtp_tls_begin(qmtp_client *c, const char *host)
{
    struct qmtp_tls *t = c->tls;
    const char *name = t->server_name != NULL ? t->server_name : host;

    ERR_clear_error();
    if (t->ssl != NULL) {
        SSL_free(t->ssl);
    }
    t->established = 0;
    t->shut = 0;
    t->broken[0] = '\0';
    t->pend.len = 0;
    t->pid = getpid();
    t->ssl = SSL_new(t->ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, c->fd) != 1) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "TLS cannot be set up: %s", ssl_reason("no TLS session"));
    }
    if (name == NULL || name[0] == '/') {
        if (t->verify) {
            return qmtp_fail(c, QMTP_E_TLS, 0, "TLS: no server name to check the certificate against "
                                               "(a Unix socket): give one");
        }
        return QMTP_OK;
    }
    if (!is_ip(name) && SSL_set_tlsext_host_name(t->ssl, name) != 1) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "TLS: '%s' cannot be sent as the server name", name);
    }
    if (t->verify) {
        int ok = is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name)
                             : SSL_set1_host(t->ssl, name);
        if (ok != 1) {
            return qmtp_fail(c, QMTP_E_ARG, 0, "TLS: '%s' cannot be checked as the server name", name);
        }
    }
    return QMTP_OK;
}

/* The server's certificate against the pins, if any. */
static int check_pins(qmtp_client *c, const char *where)
{
    struct qmtp_tls *t = c->tls;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * 32 + 1];
    X509 *cert;
    size_t i;

    if (t->npins == 0) {
        return QMTP_OK;
    }
    cert = SSL_get1_peer_certificate(t->ssl);
    if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        X509_free(cert);
        return qmtp_fail(c, QMTP_E_TLS, 0, "TLS: the server at %s showed no certificate to check against the pinned fingerprint", where);
    }
    X509_free(cert);
    for (i = 0; i < t->npins; i++) {
        if (memcmp(t->pins + 32 * i, md, 32) == 0) {
            return QMTP_OK;
        }
    }
    for (i = 0; i < 32; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return qmtp_fail(c, QMTP_E_TLS, 0, "TLS: the certificate of the server at %s matches no pinned fingerprint "
                                       "(its SHA-256 fingerprint is %s)", where, hex);
}

int qmtp_tls_handshake(qmtp_client *c, int *want, const char *where)
{
    struct qmtp_tls *t = c->tls;
    int r;
    int e;

    struct quiet q;

    ERR_clear_error();
    quiet_begin(&q);
    r = SSL_connect(t->ssl);
    quiet_end(&q);
    if (r == 1) {
        t->established = 1;
        *want = 0;
        return check_pins(c, where);
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? QMTP_WANT_READ : QMTP_WANT_WRITE;
        return QMTP_RUNNING;
    }
    if (t->verify && SSL_get_verify_result(t->ssl) != X509_V_OK) {
        long v = SSL_get_verify_result(t->ssl);
        return qmtp_fail(c, QMTP_E_TLS, 0, "TLS: the certificate of the server at %s was not accepted: %s", where,
                         X509_verify_cert_error_string(v));
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        return qmtp_fail(c, QMTP_E_TLS, errno == 0 ? 0 : errno,
                         "TLS: the handshake with the server at %s failed: the connection was closed", where);
    }
    return qmtp_fail(c, QMTP_E_TLS, 0, "TLS: the handshake with the server at %s failed: %s", where,
                     ssl_reason("not a TLS server?"));
}

const char *qmtp_tls_broken(const qmtp_client *c)
{
    return c->tls != NULL && c->tls->broken[0] != '\0' ? c->tls->broken : "connection ended uncleanly by the server";
}

static int unexpected_eof(int ssl_error)
{
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        return 1;
    }
#endif
    return ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0;
}

ssize_t qmtp_tls_read(qmtp_client *c, void *buf, size_t len)
{
    struct qmtp_tls *t = c->tls;
    int n;
    int e;

    struct quiet q;

    if (t->broken[0] != '\0') {
        errno = ECONNABORTED;
        return -2; /* the session is over: OpenSSL would not say why again */
    }
    ERR_clear_error();
    errno = 0; /* OpenSSL 1.1 tells an end without close_notify by errno 0 */
    quiet_begin(&q);
    n = SSL_read(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    quiet_end(&q);
    if (n > 0) {
        return n;
    }
    e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0; /* close_notify: the server ended the stream */
    }
    if (e == SSL_ERROR_SYSCALL && errno != 0 && ERR_peek_error() == 0) {
        return -1; /* reset, and the like: errno says */
    }
    /* Not a clean end of what the server sent: an end without close_notify
     * (OpenSSL 3 reports it as an error, 1.1 as a syscall error without an
     * errno), or bytes that are no record of this session. */
    if (unexpected_eof(e)) {
        snprintf(t->broken, sizeof t->broken, "connection closed by the server without ending TLS (no close_notify)");
    } else if (ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_SSL &&
               ERR_GET_REASON(ERR_peek_last_error()) >= SSL_AD_REASON_OFFSET) {
        snprintf(t->broken, sizeof t->broken, "connection ended by the server with a TLS alert: %s", ssl_reason("unknown"));
    } else {
        snprintf(t->broken, sizeof t->broken, "connection ended by a bad TLS record from the server: %s",
                 ssl_reason("unreadable"));
    }
    errno = ECONNABORTED;
    return -2;
}

ssize_t qmtp_tls_write(qmtp_client *c, const struct iovec *iov, int niov)
{
    struct qmtp_tls *t = c->tls;
    int n;
    int e;
    struct quiet q;

    if (t->pend.len == 0) {
        int i;

        for (i = 0; i < niov && t->pend.len < TLS_CHUNK; i++) {
            size_t take = iov[i].iov_len < TLS_CHUNK - t->pend.len ? iov[i].iov_len : TLS_CHUNK - t->pend.len;

            if (qmtp_buf_append(&t->pend, iov[i].iov_base, take) != QMTP_OK) {
                errno = ENOMEM;
                return -1;
            }
        }
    }
    ERR_clear_error();
    quiet_begin(&q);
    n = SSL_write(t->ssl, t->pend.p, (int)t->pend.len);
    quiet_end(&q);
    if (n > 0) {
        memmove(t->pend.p, t->pend.p + n, t->pend.len - (size_t)n);
        t->pend.len -= (size_t)n;
        return n;
    }
    e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (errno == 0 || ERR_peek_error() != 0) {
        errno = EPIPE;
    }
    return -1;
}

int qmtp_tls_foreign(const qmtp_client *c)
{
    return c->tls != NULL && c->tls->ssl != NULL && c->tls->pid != getpid();
}

int qmtp_tls_pending(const qmtp_client *c)
{
    return c->tls != NULL && c->tls->ssl != NULL && c->tls->established && SSL_pending(c->tls->ssl) > 0;
}

void qmtp_tls_half_close(qmtp_client *c)
{
    struct qmtp_tls *t = c->tls;

    if (t->ssl != NULL && t->established && !t->shut) {
        struct quiet q;

        t->shut = 1;
        ERR_clear_error();
        quiet_begin(&q);
        SSL_shutdown(t->ssl); /* our close_notify; what the server sends is still read */
        quiet_end(&q);
    }
}

void qmtp_tls_end(qmtp_client *c)
{
    struct qmtp_tls *t = c->tls;

    if (t == NULL || t->ssl == NULL) {
        return;
    }
    /* A forked child's copy must not end its parent's session: only the
     * process that made it says close_notify. */
    if (t->pid == getpid() && t->established && !t->shut) {
        struct quiet q;

        ERR_clear_error();
        quiet_begin(&q);
        SSL_shutdown(t->ssl);
        quiet_end(&q);
    }
    SSL_free(t->ssl);
    t->ssl = NULL;
    t->established = 0;
    t->pend.len = 0;
    ERR_clear_error();
}

int qmtp_tls_idle_check(qmtp_client *c)
{
    struct qmtp_tls *t = c->tls;
    char byte;
    int n;
    int e;

    struct quiet q;

    ERR_clear_error();
    quiet_begin(&q);
    n = SSL_peek(t->ssl, &byte, 1);
    quiet_end(&q);
    if (n > 0) {
        return qmtp_fail(c, QMTP_E_PROTO, 0, "the server sent bytes on an idle connection");
    }
    e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return QMTP_OK; /* nothing, or only TLS's own messages (session tickets) */
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return qmtp_fail(c, QMTP_E_EOF, 0, "the server closed the idle connection");
    }
    return qmtp_fail(c, QMTP_E_IO, 0, "the idle connection failed: %s", ssl_reason("TLS error"));
}

#else /* built without OpenSSL */

int qmtp_tls_available(void)
{
    return 0;
}

int qmtp_set_tls(qmtp_client *c, const qmtp_tls_options *o)
{
    if (o == NULL || !o->enable) {
        return QMTP_OK;
    }
    return qmtp_fail(c, QMTP_E_ARG, 0, "this build has no TLS (it was built without OpenSSL)");
}

void qmtp_tls_free(qmtp_client *c)
{
    (void)c;
}

int qmtp_tls_begin(qmtp_client *c, const char *host)
{
    (void)host;
    return qmtp_fail(c, QMTP_E_ARG, 0, "this build has no TLS");
}

int qmtp_tls_handshake(qmtp_client *c, int *want, const char *where)
{
    (void)want;
    (void)where;
    return qmtp_fail(c, QMTP_E_ARG, 0, "this build has no TLS");
}

const char *qmtp_tls_broken(const qmtp_client *c)
{
    (void)c;
    return "this build has no TLS";
}

ssize_t qmtp_tls_read(qmtp_client *c, void *buf, size_t len)
{
    (void)c;
    (void)buf;
    (void)len;
    errno = ENOTSUP;
    return -1;
}

ssize_t qmtp_tls_write(qmtp_client *c, const struct iovec *iov, int niov)
{
    (void)c;
    (void)iov;
    (void)niov;
    errno = ENOTSUP;
    return -1;
}

int qmtp_tls_foreign(const qmtp_client *c)
{
    (void)c;
    return 0;
}

int qmtp_tls_pending(const qmtp_client *c)
{
    (void)c;
    return 0;
}

void qmtp_tls_half_close(qmtp_client *c)
{
    (void)c;
}

void qmtp_tls_end(qmtp_client *c)
{
    (void)c;
}

int qmtp_tls_idle_check(qmtp_client *c)
{
    (void)c;
    return QMTP_OK;
}

#endif
