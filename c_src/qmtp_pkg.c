/* Building packages (QMTP §4): NS(ENC MESSAGE) NS(SENDER) NS(NS(RCPT)...).
 * Head and tail bytes are laid out here once; the body is never copied. */
#define _GNU_SOURCE 1
#include "qmtp_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* The packages of a run under way are the engine's: none is added or
 * changed until it is over (its results are sized by them). */
static int busy(qmtp_client *c)
{
    return qmtp_busy(c) ? qmtp_fail(c, QMTP_E_STATE, 0, "a send or connect is under way") : QMTP_OK;
}

static struct qmtp_pkg *current(qmtp_client *c)
{
    return c->building && !qmtp_busy(c) ? &c->pkgs[c->npkgs - 1] : NULL;
}

void qmtp_pkgs_close_files(qmtp_client *c)
{
    size_t i;

    for (i = 0; i < c->npkgs; i++) {
        if (c->pkgs[i].fd >= 0) {
            close(c->pkgs[i].fd);
            c->pkgs[i].fd = -1;
        }
    }
}

void qmtp_pkgs_clear(qmtp_client *c)
{
    size_t i;

    qmtp_pkgs_close_files(c);
    for (i = 0; i < c->npkgs; i++) {
        free(c->pkgs[i].path);
        free(c->pkgs[i].error);
    }
    c->npkgs = 0;
    c->out.len = 0;
    c->building = 0;
}

int qmtp_pkg_begin(qmtp_client *c, char enc, const char *sender, size_t sender_len)
{
    struct qmtp_pkg *p;

    if (qmtp_busy(c)) {
        return busy(c);
    }
    if (enc != '\n' && enc != '\r') {
        return qmtp_fail(c, QMTP_E_ARG, 0, "encoding byte must be LF or CR, not 0x%02x",
                         (unsigned)(unsigned char)enc);
    }
    /* An unfinished package is dropped, not sent half-built. */
    qmtp_pkg_abandon(c);
    if (c->npkgs == c->pkgcap) {
        size_t cap = c->pkgcap ? c->pkgcap * 2 : 4;
        struct qmtp_pkg *n;

        if (cap > SIZE_MAX / sizeof *n) {
            return qmtp_fail(c, QMTP_E_TOOBIG, 0, "too many packages");
        }
        n = realloc(c->pkgs, cap * sizeof *n);
        if (n == NULL) {
            return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
        }
        c->pkgs = n;
        c->pkgcap = cap;
    }
    c->sender.len = 0;
    c->rcpts.len = 0;
    if (qmtp_buf_append(&c->sender, sender, sender_len) != QMTP_OK) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    p = &c->pkgs[c->npkgs++];
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->enc = enc;
    c->building = 1;
    c->body_set = 0;
    return QMTP_OK;
}

void qmtp_pkg_abandon(qmtp_client *c)
{
    struct qmtp_pkg *p = current(c);

    if (p == NULL) {
        return;
    }
    if (p->fd >= 0) {
        close(p->fd);
    }
    free(p->path);
    free(p->error);
    c->npkgs--;
    c->building = 0;
}

static int append_netstring(struct qmtp_buf *b, const char *s, size_t len)
{
    char head[QMTP_NS_HEADER_MAX];
    size_t total;
    size_t n;

    if (qmtp_ns_encoded_size(len, &total) != 0) {
        return QMTP_E_TOOBIG;
    }
    if (qmtp_buf_reserve(b, total) != QMTP_OK) {
        return QMTP_E_NOMEM;
    }
    n = qmtp_ns_header(head, len);
    qmtp_buf_append(b, head, n);
    qmtp_buf_append(b, s, len);
    qmtp_buf_append(b, ",", 1);
    return QMTP_OK;
}

int qmtp_pkg_recipient(qmtp_client *c, const char *rcpt, size_t len)
{
    struct qmtp_pkg *p = current(c);
    int rc;

    if (p == NULL) {
        return qmtp_busy(c) ? busy(c) : qmtp_fail(c, QMTP_E_STATE, 0, "no package begun");
    }
    rc = append_netstring(&c->rcpts, rcpt, len);
    if (rc != QMTP_OK) {
        return qmtp_fail(c, rc, 0, "recipient list too large");
    }
    p->nrcpt++;
    return QMTP_OK;
}

int qmtp_pkg_body(qmtp_client *c, const char *msg, size_t len)
{
    struct qmtp_pkg *p = current(c);

    if (p == NULL) {
        return qmtp_busy(c) ? busy(c) : qmtp_fail(c, QMTP_E_STATE, 0, "no package begun");
    }
    p->body = msg != NULL ? msg : "";
    p->body_len = len;
    c->body_set = 1;
    return QMTP_OK;
}

int qmtp_pkg_file(qmtp_client *c, const char *path)
{
    struct qmtp_pkg *p = current(c);
    struct stat st;
    size_t plen = strlen(path);
    int fd;

    if (p == NULL) {
        return qmtp_busy(c) ? busy(c) : qmtp_fail(c, QMTP_E_STATE, 0, "no package begun");
    }
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
     * anything but a regular file is refused below, and reading a regular
     * file ignores the flag. */
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return qmtp_fail(c, QMTP_E_FILE, errno, "Cannot open file '%s'", path);
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qmtp_fail(c, QMTP_E_FILE, e, "Cannot stat file '%s'", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qmtp_fail(c, QMTP_E_FILE, 0, "File '%s' is %s, not a regular file", path,
                         S_ISDIR(st.st_mode) ? "a directory" : "special");
    }
    p->path = malloc(plen + 1);
    if (p->path == NULL) {
        close(fd);
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    memcpy(p->path, path, plen + 1);
    if (p->fd >= 0) {
        close(p->fd);
    }
    p->fd = fd;
    p->body = NULL;
    p->body_len = (uint64_t)st.st_size;
    c->body_set = 1;
    return QMTP_OK;
}

size_t qmtp_crlf_to_lf(char *buf, size_t len)
{
    char *src = buf, *dst = buf, *end = buf + len;

    if (len == 0) {
        return 0;
    }
    while (src < end) {
        char *cr = memchr(src, '\r', (size_t)(end - src));
        size_t run = cr != NULL ? (size_t)(cr - src) : (size_t)(end - src);

        if (dst != src) {
            memmove(dst, src, run);
        }
        dst += run;
        src += run;
        if (cr == NULL) {
            break;
        }
        if (src + 1 < end && src[1] == '\n') {
            src++; /* the CR of a pair goes; its LF is copied next */
        } else {
            *dst++ = *src++;
        }
    }
    return (size_t)(dst - buf);
}

int qmtp_pkg_end(qmtp_client *c)
{
    struct qmtp_pkg *p = current(c);
    char head[QMTP_NS_HEADER_MAX];
    size_t n;
    size_t before = c->out.len;
    int rc;

    if (p == NULL) {
        return qmtp_busy(c) ? busy(c) : qmtp_fail(c, QMTP_E_STATE, 0, "no package begun");
    }
    if (!c->body_set) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "package has no message");
    }
    if (p->nrcpt == 0) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "package has no recipient");
    }
    if (p->body_len >= (uint64_t)(SIZE_MAX - QMTP_NS_HEADER_MAX)) {
        return qmtp_fail(c, QMTP_E_TOOBIG, 0, "message too large");
    }
    /* The encoding byte counts in the message netstring's length. */
    n = qmtp_ns_header(head, (size_t)p->body_len + 1);
    head[n++] = p->enc;
    p->head_off = c->out.len;
    p->head_len = n;
    rc = qmtp_buf_append(&c->out, head, n);
    p->tail_off = c->out.len;
    if (rc == QMTP_OK) {
        rc = qmtp_buf_append(&c->out, ",", 1);
    }
    if (rc == QMTP_OK) {
        rc = append_netstring(&c->out, c->sender.p != NULL ? c->sender.p : "", c->sender.len);
    }
    if (rc == QMTP_OK) {
        rc = append_netstring(&c->out, c->rcpts.p, c->rcpts.len);
    }
    if (rc != QMTP_OK) {
        c->out.len = before;
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    p->tail_len = c->out.len - p->tail_off;
    c->building = 0;
    return QMTP_OK;
}
