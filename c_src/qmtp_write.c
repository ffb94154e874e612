/* The writing half of the send engine: packages go out from a cursor, as
 * few writes as the socket allows (one sendmsg gathers heads, memory bodies
 * and tails of consecutive packages), so that a small package leaves in a
 * single segment. Large files go with sendfile(2), small ones are read into
 * a staging buffer and gathered like memory. A file must be exactly as long
 * as announced: the message netstring's length is on the wire before its
 * bytes, so a file that changed size can only abort the package (§2: close
 * before its last byte). */
#define _GNU_SOURCE 1
#include "qmtp_run.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(__linux__)
#include <pthread.h>
#include <sys/sendfile.h>
#define HAVE_SENDFILE 1
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#ifndef MSG_MORE
#define MSG_MORE 0
#endif

#define STAGE_CHUNK (256 * 1024)
#define SMALL_FILE (64 * 1024) /* up to this, a file is staged and gathered */
#define SENDFILE_CHUNK (4 * 1024 * 1024)
#define MAX_IOV 64
/* Unanswered bytes beyond which no new package starts: enough to keep any
 * link busy, small enough that a stream of large messages does not sit in
 * socket buffers (loopback and user-space stacks slow down then). */
#define PIPELINE_WINDOW (4 * 1024 * 1024)

static uint64_t seg_len(const struct qmtp_pkg *p, enum qmtp_seg s)
{
    return s == SEG_HEAD ? p->head_len : s == SEG_BODY ? p->body_len : p->tail_len;
}

static int by_sendfile(const struct qmtp_pkg *p)
{
#ifdef HAVE_SENDFILE
    return p->fd >= 0 && p->body_len > SMALL_FILE && !p->no_sendfile;
#else
    (void)p;
    return 0;
#endif
}

int qmtp_may_start(const struct qmtp_run *r, size_t i)
{
    const qmtp_client *c = r->c;

    if (i >= c->npkgs || r->write_status != QMTP_OK) {
        return 0;
    }
    if (i > r->apkg && r->in_flight >= PIPELINE_WINDOW) {
        return 0;
    }
    if (c->answers != QMTP_ANSWERS_AUTO || c->shown == QMTP_MODE_PER_RCPT || i == 0) {
        return 1;
    }
    /* Everything before i that has several recipients must be answered. */
    return c->pkgs[i - 1].nrcpt < 2 || r->apkg >= i;
}

int qmtp_wants_write(const struct qmtp_run *r)
{
    if (r->w.pkg >= r->c->npkgs || r->write_status != QMTP_OK || r->half_closed) {
        return 0;
    }
    return r->w.seg != SEG_HEAD || r->w.off != 0 || qmtp_may_start(r, r->w.pkg);
}

static int fail_file(struct qmtp_run *r, const struct qmtp_pkg *p, int e, const char *what)
{
    return qmtp_fail(r->c, QMTP_E_FILE, e, "File '%s' %s", p->path ? p->path : "?", what);
}

/* All announced bytes are read or sent: the file must end here, and must
 * not have shrunk meanwhile. A read at the announced end sees a file that
 * grew; only its size shows one that was cut short after its bytes were
 * handed to sendfile(2), which sends pages of the file itself (a truncate
 * zeroes them). Checked before the tail goes, so a changed file's package
 * is never completed; a file cut short after that is beyond any client. */
static int check_file_end(struct qmtp_run *r, const struct qmtp_pkg *p)
{
    struct stat st;
    char extra;
    ssize_t n;

    r->file_checked = 1;
    if (fstat(p->fd, &st) != 0) {
        return fail_file(r, p, errno, "could not be read");
    }
    if ((uint64_t)st.st_size < p->body_len) {
        return fail_file(r, p, 0, "shrank while being sent");
    }
    do {
        n = pread(p->fd, &extra, 1, (off_t)p->body_len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return fail_file(r, p, errno, "could not be read");
    }
    return n == 0 && (uint64_t)st.st_size == p->body_len ? QMTP_OK : fail_file(r, p, 0, "grew while being sent");
}

/* Makes sure the writer has bytes of a small file to gather. */
static int fill_stage(struct qmtp_run *r, struct qmtp_pkg *p)
{
    qmtp_client *c = r->c;
    uint64_t left = p->body_len - r->file_read;
    size_t want;

    if (r->stage_off < c->stage.len) {
        return QMTP_OK;
    }
    if (left == 0) {
        return r->file_checked ? QMTP_OK : check_file_end(r, p);
    }
    c->stage.len = 0;
    r->stage_off = 0;
    want = left < STAGE_CHUNK ? (size_t)left : STAGE_CHUNK;
    if (qmtp_buf_reserve(&c->stage, want) != QMTP_OK) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    while (c->stage.len < want) {
        ssize_t n = pread(p->fd, c->stage.p + c->stage.len, want - c->stage.len,
                          (off_t)(r->file_read + c->stage.len));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return fail_file(r, p, errno, "could not be read");
        }
        if (n == 0) {
            return fail_file(r, p, 0, "shrank while being sent");
        }
        c->stage.len += (size_t)n;
    }
    r->file_read += want;
    return r->file_read == p->body_len ? check_file_end(r, p) : QMTP_OK;
}

/* Gathers what may be written from the cursor on, without moving it: up to
 * MAX_IOV pieces, stopping at a package that may not start yet, at a file
 * body that is not staged, and at anything sendfile will send. */
static int gather(const struct qmtp_run *r, struct iovec *iov)
{
    const qmtp_client *c = r->c;
    struct qmtp_cursor w = r->w;
    int n = 0;

    while (w.pkg < c->npkgs && n < MAX_IOV) {
        const struct qmtp_pkg *p = &c->pkgs[w.pkg];
        uint64_t len = seg_len(p, w.seg);
        const char *from;
        uint64_t avail;

        if (w.seg == SEG_HEAD && w.off == 0 && !qmtp_may_start(r, w.pkg)) {
            break;
        }
        if (w.seg == SEG_BODY && p->fd >= 0) {
            if (w.pkg != r->w.pkg || by_sendfile(p)) {
                break; /* only the current package's file is staged */
            }
            from = c->stage.p != NULL ? c->stage.p + r->stage_off : "";
            avail = c->stage.len - r->stage_off;
        } else {
            from = w.seg == SEG_HEAD ? c->out.p + p->head_off
                 : w.seg == SEG_TAIL ? c->out.p + p->tail_off
                 : p->body;
            from += w.off;
            avail = len - w.off;
        }
        if (avail > 0) {
            iov[n].iov_base = (void *)from;
            iov[n].iov_len = (size_t)avail;
            n++;
        }
        if (w.off + avail < len) {
            break;
        }
        w.off = 0;
        if (w.seg == SEG_TAIL) {
            w.seg = SEG_HEAD;
            w.pkg++;
        } else {
            w.seg = (enum qmtp_seg)(w.seg + 1);
        }
    }
    return n;
}

/* Moves the cursor past n written bytes, and past empty segments. */
static void advance(struct qmtp_run *r, uint64_t n)
{
    qmtp_client *c = r->c;

    while (r->w.pkg < c->npkgs) {
        struct qmtp_pkg *p = &c->pkgs[r->w.pkg];
        uint64_t left = seg_len(p, r->w.seg) - r->w.off;
        uint64_t step = left < n ? left : n;

        r->w.off += step;
        n -= step;
        if (r->w.seg == SEG_BODY && p->fd >= 0 && !by_sendfile(p)) {
            r->stage_off += (size_t)step;
        }
        if (r->w.off < seg_len(p, r->w.seg)) {
            break;
        }
        if (r->w.seg == SEG_BODY && p->fd >= 0 && !r->file_checked) {
            break; /* a file's end is checked before its tail goes, empty or not */
        }
        r->w.off = 0;
        if (r->w.seg != SEG_TAIL) {
            r->w.seg = (enum qmtp_seg)(r->w.seg + 1);
            continue;
        }
        r->pkgs_written++;
        r->in_flight += p->head_len + p->body_len + p->tail_len;
        r->w.seg = SEG_HEAD;
        r->w.pkg++;
        c->stage.len = 0;
        r->stage_off = 0;
        r->file_read = 0;
        r->file_checked = 0;
        if (n == 0 && (r->w.pkg >= c->npkgs || !qmtp_may_start(r, r->w.pkg))) {
            break;
        }
    }
}

static int lost(qmtp_client *c, int e)
{
    return qmtp_fail(c, e == EPIPE ? QMTP_E_EOF : QMTP_E_IO, e, "connection lost while sending the package");
}

#ifdef HAVE_SENDFILE
/* sendfile(2) has no MSG_NOSIGNAL: block SIGPIPE in this thread around it,
 * and take back one it raised, so that none is ever delivered. */
static ssize_t sendfile_quietly(int out, int in, off_t *off, size_t len)
{
    sigset_t pipe_only;
    sigset_t old;
    sigset_t pending;
    int was_pending;
    ssize_t n;
    int e;

    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    n = sendfile(out, in, off, len);
    e = errno;
    /* Even a sendfile that returns a count may have raised it, for a later
     * part that failed: take back any that was not pending before. */
    sigpending(&pending);
    if (!was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec none = { 0, 0 };
        sigtimedwait(&pipe_only, NULL, &none);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return n;
}

static int send_file_part(struct qmtp_run *r, struct qmtp_pkg *p)
{
    qmtp_client *c = r->c;
    uint64_t left = p->body_len - r->w.off;
    off_t off = (off_t)r->w.off;
    ssize_t n;

    if (left == 0) {
        int rc = check_file_end(r, p);
        if (rc == QMTP_OK) {
            advance(r, 0);
        }
        return rc;
    }
    do {
        n = sendfile_quietly(c->fd, p->fd, &off, left < SENDFILE_CHUNK ? (size_t)left : SENDFILE_CHUNK);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return QMTP_OK;
    }
    if (n < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        p->no_sendfile = 1; /* e.g. a file system without it: read instead */
        r->file_read = r->w.off;
        r->file_checked = 0;
        c->stage.len = 0;
        r->stage_off = 0;
        return QMTP_OK;
    }
    if (n < 0) {
        return errno == EIO ? fail_file(r, p, errno, "could not be read") : lost(c, errno);
    }
    if (n == 0) {
        return fail_file(r, p, 0, "shrank while being sent");
    }
    r->last_progress = qmtp_now_ms();
    advance(r, (uint64_t)n);
    return QMTP_OK;
}
#endif

int qmtp_write_some(struct qmtp_run *r)
{
    qmtp_client *c = r->c;
    struct iovec iov[MAX_IOV];
    struct msghdr msg;
    struct qmtp_pkg *p = &c->pkgs[r->w.pkg];
    int flags = MSG_NOSIGNAL;
    int niov;
    ssize_t n;
    int rc;

#ifdef HAVE_SENDFILE
    if (r->w.seg == SEG_BODY && by_sendfile(p)) {
        return send_file_part(r, p);
    }
#endif
    if (p->fd >= 0 && !by_sendfile(p) && r->w.seg != SEG_TAIL) {
        rc = fill_stage(r, p);
        if (rc != QMTP_OK) {
            return rc;
        }
    }
    niov = gather(r, iov);
    if (niov == 0) {
        advance(r, 0);
        return QMTP_OK;
    }
    if (by_sendfile(p) && r->w.seg == SEG_HEAD) {
        flags |= MSG_MORE; /* the head waits for the file's first bytes */
    }
    if (c->tls != NULL) {
        n = qmtp_tls_write(c, iov, niov);
    } else {
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)niov;
        do {
            n = sendmsg(c->fd, &msg, flags);
        } while (n < 0 && errno == EINTR);
    }
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? QMTP_OK : lost(c, errno);
    }
    r->last_progress = qmtp_now_ms();
    advance(r, (uint64_t)n);
    return QMTP_OK;
}
