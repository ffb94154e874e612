/* The send engine, QMTP §2 and §5: write queued packages and read the
 * answers in one poll loop, so that no mix of package sizes and server
 * behaviour can leave both sides blocked on a write. Every wait ends at a
 * deadline on the monotonic clock; every answer not received becomes a
 * temporary failure. */
#define _GNU_SOURCE 1
#include "qmtp_int.h"
#include "response.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* the BSDs use SO_NOSIGPIPE, set at connect */
#endif

#define READ_CHUNK 16384
#define STAGE_CHUNK (256 * 1024)
#define MAX_IOV 64

enum seg { SEG_HEAD, SEG_BODY, SEG_TAIL };

/* Where the writer is: package, segment, offset within the segment. */
struct cursor {
    size_t pkg;
    enum seg seg;
    uint64_t off;
};

struct run {
    qmtp_client *c;
    struct cursor w;
    uint64_t file_read;     /* bytes of the current file body read so far */
    int file_checked;       /* its end was verified */
    size_t stage_off;       /* bytes of c->stage already written */
    size_t rcpts_written;   /* recipients of packages written in full */
    size_t answered;        /* slots filled from the server's answers */
    size_t total;
    size_t apkg;            /* package the next answer belongs to */
    size_t apkg_first;      /* its first slot */
    int64_t last_progress;
    int half_closed;
    int write_status;       /* what stopped the writing, or 0 */
};

static uint64_t seg_len(const struct qmtp_pkg *p, enum seg s)
{
    return s == SEG_HEAD ? p->head_len : s == SEG_BODY ? p->body_len : p->tail_len;
}

static int add_slot(struct run *r, char code, int received, const char *text, size_t len)
{
    qmtp_client *c = r->c;
    struct qmtp_slot *s = &c->slots[c->nslots];

    if (qmtp_buf_append(&c->texts, text, len) != QMTP_OK) {
        return QMTP_E_NOMEM;
    }
    s->code = code;
    s->received = (unsigned char)received;
    s->per_package = 0;
    s->off = c->texts.len - len;
    s->len = len;
    c->nslots++;
    return QMTP_OK;
}

/* Everything still unanswered becomes a temporary failure saying why. */
static void defer_rest(struct run *r, const char *why)
{
    char text[300];
    int n = snprintf(text, sizeof text, "no response received: %s", why);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof text ? sizeof text - 1 : (size_t)n;

    while (r->c->nslots < r->total) {
        if (add_slot(r, 'Z', 0, text, len) != QMTP_OK) {
            add_slot(r, 'Z', 0, "", 0); /* room for the slot exists already */
        }
    }
}

/* The server's single answer stands for every recipient of its package. */
static void spread_package_answer(struct run *r)
{
    qmtp_client *c = r->c;
    struct qmtp_slot first = c->slots[r->apkg_first];
    size_t end = r->apkg_first + c->pkgs[r->apkg].nrcpt;
    size_t i;

    for (i = r->apkg_first; i < end; i++) {
        c->slots[i] = first;
        c->slots[i].per_package = 1;
    }
    c->nslots = end;
    r->answered = end;
    c->saw_per_package = 1;
    c->per_package_server = 1;
}

static int fail_file(struct run *r, const struct qmtp_pkg *p, int e, const char *what)
{
    return qmtp_fail(r->c, QMTP_E_FILE, e, "File '%s' %s", p->path ? p->path : "?", what);
}

/* All announced bytes are read: the file must end here. */
static int check_file_end(struct run *r, const struct qmtp_pkg *p)
{
    char extra;
    ssize_t n;

    do {
        n = read(p->fd, &extra, 1);
    } while (n < 0 && errno == EINTR);
    r->file_checked = 1;
    if (n < 0) {
        return fail_file(r, p, errno, "could not be read");
    }
    return n == 0 ? QMTP_OK : fail_file(r, p, 0, "grew while being sent");
}

/* Makes sure the writer has file bytes to send. At the end of the file it
 * checks that the file is exactly as long as announced: the message
 * netstring's length is already on the wire, so a file that changed size
 * can only abort the package (§2: close before its last byte). */
static int fill_stage(struct run *r, struct qmtp_pkg *p)
{
    qmtp_client *c = r->c;
    uint64_t left = p->body_len - r->file_read;
    size_t want;
    ssize_t n;

    if (r->stage_off < c->stage.len) {
        return QMTP_OK;
    }
    if (left == 0) {
        return r->file_checked ? QMTP_OK : check_file_end(r, p);
    }
    c->stage.len = 0;
    r->stage_off = 0;
    want = left < STAGE_CHUNK ? (size_t)left : STAGE_CHUNK;
    if (qmtp_buf_reserve(&c->stage, want + 1) != QMTP_OK) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    while (c->stage.len < want) {
        n = read(p->fd, c->stage.p + c->stage.len, want - c->stage.len);
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

/* Gathers what can be written from cursor w on, without moving it. A file
 * body contributes only what is staged, and nothing after it is added until
 * all of it is. */
static int gather(const struct run *r, struct iovec *iov)
{
    const qmtp_client *c = r->c;
    struct cursor w = r->w;
    int n = 0;

    while (w.pkg < c->npkgs && n < MAX_IOV) {
        const struct qmtp_pkg *p = &c->pkgs[w.pkg];
        uint64_t len = seg_len(p, w.seg);
        const char *from;
        uint64_t avail;

        if (w.seg == SEG_BODY && p->fd >= 0) {
            if (w.pkg != r->w.pkg) {
                break; /* only the current package's file is staged */
            }
            from = c->stage.p + r->stage_off;
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
            w.seg = (enum seg)(w.seg + 1);
        }
    }
    return n;
}

/* Moves the cursor past n written bytes. */
static void advance(struct run *r, size_t n)
{
    qmtp_client *c = r->c;

    while (n > 0 || (r->w.pkg < c->npkgs && r->w.off == seg_len(&c->pkgs[r->w.pkg], r->w.seg))) {
        struct qmtp_pkg *p = &c->pkgs[r->w.pkg];
        uint64_t left = seg_len(p, r->w.seg) - r->w.off;
        size_t step = left < n ? (size_t)left : n;

        r->w.off += step;
        n -= step;
        if (r->w.seg == SEG_BODY && p->fd >= 0) {
            r->stage_off += step;
        }
        if (r->w.off < seg_len(p, r->w.seg)) {
            continue;
        }
        r->w.off = 0;
        if (r->w.seg == SEG_TAIL) {
            r->rcpts_written += p->nrcpt;
            r->w.seg = SEG_HEAD;
            r->w.pkg++;
            c->stage.len = 0;
            r->stage_off = 0;
            r->file_read = 0;
            r->file_checked = 0;
        } else {
            r->w.seg = (enum seg)(r->w.seg + 1);
        }
        if (r->w.pkg == c->npkgs) {
            break;
        }
    }
}

static int write_some(struct run *r)
{
    qmtp_client *c = r->c;
    struct iovec iov[MAX_IOV];
    struct msghdr msg;
    int niov;
    ssize_t n;
    int rc;

    if (r->w.seg == SEG_BODY || r->w.seg == SEG_HEAD) {
        struct qmtp_pkg *p = &c->pkgs[r->w.pkg];
        if (p->fd >= 0) {
            rc = fill_stage(r, p);
            if (rc != QMTP_OK) {
                return rc;
            }
        }
    }
    niov = gather(r, iov);
    if (niov == 0) {
        advance(r, 0);
        return QMTP_OK;
    }
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)niov;
    do {
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return QMTP_OK;
        }
        return qmtp_fail(c, errno == EPIPE ? QMTP_E_EOF : QMTP_E_IO, errno,
                         "connection lost while sending the package");
    }
    r->last_progress = qmtp_now_ms();
    advance(r, (size_t)n);
    return QMTP_OK;
}

/* Takes every complete answer out of the input buffer. */
static int parse_answers(struct run *r)
{
    qmtp_client *c = r->c;
    size_t used = 0;
    int rc = QMTP_OK;

    while (used < c->in.len) {
        const char *text = NULL;
        size_t text_len = 0;
        char code = 0;
        long n;

        if (r->answered == r->rcpts_written) {
            /* §2: no answer may come before the last byte of its package. */
            rc = qmtp_fail(c, QMTP_E_PROTO, 0,
                           "protocol violation: the server sent %lu bytes before a package was complete",
                           (unsigned long)(c->in.len - used));
            break;
        }
        n = qmtp_response_parse(c->in.p + used, c->in.len - used, c->max_response, &code,
                                &text, &text_len);
        if (n == QMTP_NS_PARTIAL) {
            break;
        }
        if (n < 0) {
            rc = qmtp_fail(c, QMTP_E_PROTO, 0, "protocol violation: response %lu %s",
                           (unsigned long)r->answered + 1, qmtp_response_strerror(n));
            break;
        }
        if (add_slot(r, code, 1, text, text_len) != QMTP_OK) {
            rc = qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
            break;
        }
        r->answered++;
        while (r->apkg < c->npkgs && r->answered == r->apkg_first + c->pkgs[r->apkg].nrcpt) {
            r->apkg_first = r->answered;
            r->apkg++;
        }
        used += (size_t)n;
    }
    memmove(c->in.p, c->in.p + used, c->in.len - used);
    c->in.len -= used;
    return rc;
}

/* Reads what is there. QMTP_E_EOF when the server has closed. */
static int read_some(struct run *r)
{
    qmtp_client *c = r->c;
    ssize_t n;

    if (qmtp_buf_reserve(&c->in, READ_CHUNK) != QMTP_OK) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    do {
        n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return QMTP_OK;
        }
        return qmtp_fail(c, QMTP_E_IO, errno, "connection failed while reading responses");
    }
    if (n == 0) {
        return qmtp_fail(c, QMTP_E_EOF, 0, c->in.len > 0 ? "connection closed by the server in the middle of a response"
                                                          : "connection closed by the server");
    }
    c->in.len += (size_t)n;
    r->last_progress = qmtp_now_ms();
    return parse_answers(r);
}

/* After a failure, takes whatever answers already arrived: they are real. */
static void drain_pending(struct run *r)
{
    int saved_err = r->c->err;
    int saved_errno = r->c->sys_errno;
    char saved[sizeof r->c->errstr];

    memcpy(saved, r->c->errstr, sizeof saved);
    while (r->c->fd >= 0 && r->answered < r->total) {
        struct pollfd p;

        p.fd = r->c->fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 0) <= 0 || read_some(r) != QMTP_OK) {
            break;
        }
    }
    r->c->err = saved_err;
    r->c->sys_errno = saved_errno;
    memcpy(r->c->errstr, saved, sizeof saved);
}

static int answers_stalled(const struct run *r, int64_t now)
{
    const qmtp_client *c = r->c;
    size_t got;
    int64_t wait;

    if (r->half_closed || r->w.pkg < c->npkgs || r->apkg >= c->npkgs) {
        return 0;
    }
    got = r->answered - r->apkg_first;
    if (got == 0 || got >= c->pkgs[r->apkg].nrcpt) {
        return 0;
    }
    wait = c->per_package_server ? 0 : c->stall_ms;
    return now - r->last_progress >= wait;
}

/* Ends a run that cannot go on: keep real answers, defer the rest, close. */
static int finish_failed(struct run *r, int status)
{
    int writing = r->w.pkg < r->c->npkgs;

    if (status == QMTP_E_TIMEOUT) {
        qmtp_fail(r->c, QMTP_E_TIMEOUT, 0, "timed out: no progress for %.3g s %s",
                  (double)r->c->io_ms / 1000.0, writing ? "while sending" : "waiting for responses");
    }
    if (status != QMTP_E_PROTO) {
        drain_pending(r);
    }
    /* Only a clean hang-up after exactly one whole answer reads as "one
     * answer per package": bytes of a second answer show the server was
     * answering per recipient, and then the rest were simply not received. */
    if (status == QMTP_E_EOF && r->half_closed && r->apkg < r->c->npkgs &&
        r->answered - r->apkg_first == 1 && r->c->in.len == 0) {
        spread_package_answer(r);
    }
    defer_rest(r, r->c->errstr);
    qmtp_close(r->c);
    qmtp_pkgs_clear(r->c);
    if (r->answered == r->total && !writing) {
        r->c->err = QMTP_OK;
        return QMTP_OK;
    }
    return writing ? status : QMTP_OK;
}

static int wait_ready(struct run *r, short *revents)
{
    qmtp_client *c = r->c;
    struct pollfd p;
    int64_t now = qmtp_now_ms();
    int64_t deadline = r->last_progress + c->io_ms;
    int64_t wake = deadline;
    int rc;

    if (!r->half_closed && r->w.pkg == c->npkgs && r->apkg < c->npkgs &&
        r->answered > r->apkg_first) {
        int64_t stall_at = r->last_progress + (c->per_package_server ? 0 : c->stall_ms);
        if (stall_at < wake) {
            wake = stall_at;
        }
    }
    if (now >= deadline) {
        return QMTP_E_TIMEOUT;
    }
    p.fd = c->fd;
    p.events = POLLIN;
    if (r->w.pkg < c->npkgs) {
        p.events |= POLLOUT;
    }
    p.revents = 0;
    rc = poll(&p, 1, wake <= now ? 0 : (int)(wake - now > 1000000 ? 1000000 : wake - now));
    if (rc < 0 && errno == EINTR) {
        return qmtp_interrupted(c);
    }
    if (rc < 0) {
        return qmtp_fail(c, QMTP_E_IO, errno, "poll failed");
    }
    *revents = rc > 0 ? p.revents : 0;
    return QMTP_OK;
}

int qmtp_run(qmtp_client *c)
{
    struct run r;
    size_t i;
    int rc = QMTP_OK;

    qmtp_recover(c);
    memset(&r, 0, sizeof r);
    r.c = c;
    c->nslots = 0;
    c->texts.len = 0;
    c->in.len = 0;
    c->stage.len = 0;
    c->saw_per_package = 0;
    if (c->building) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "a package was begun but not ended");
    }
    for (i = 0; i < c->npkgs; i++) {
        if (c->pkgs[i].nrcpt > SIZE_MAX / sizeof *c->slots - r.total) {
            return qmtp_fail(c, QMTP_E_TOOBIG, 0, "too many recipients");
        }
        r.total += c->pkgs[i].nrcpt;
    }
    if (r.total > c->slotcap) {
        struct qmtp_slot *s = realloc(c->slots, r.total * sizeof *s);
        if (s == NULL) {
            return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
        }
        c->slots = s;
        c->slotcap = r.total;
    }
    if (c->fd < 0) {
        qmtp_fail(c, QMTP_E_STATE, 0, "not connected");
        defer_rest(&r, "not connected");
        qmtp_pkgs_clear(c);
        return QMTP_E_STATE;
    }
    c->err = QMTP_OK;
    c->errstr[0] = '\0';
    r.last_progress = qmtp_now_ms();
    c->busy = 1;

    while (r.answered < r.total) {
        short ev = 0;

        if (answers_stalled(&r, qmtp_now_ms())) {
            /* A spec server still sends every pending answer after this;
             * one that answers once per package hangs up instead. */
            shutdown(c->fd, SHUT_WR);
            r.half_closed = 1;
            r.last_progress = qmtp_now_ms();
        }
        rc = wait_ready(&r, &ev);
        if (rc != QMTP_OK) {
            break;
        }
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
            rc = read_some(&r);
            if (rc != QMTP_OK) {
                break;
            }
        }
        if ((ev & (POLLOUT | POLLERR)) && r.w.pkg < c->npkgs) {
            rc = write_some(&r);
            if (rc != QMTP_OK) {
                break;
            }
        }
    }
    c->busy = 0;
    if (rc != QMTP_OK) {
        return finish_failed(&r, rc);
    }
    if (r.half_closed || c->in.len > 0) {
        /* Half-closed, or more answers than recipients: not reusable. */
        qmtp_close(c);
    }
    qmtp_pkgs_clear(c);
    return QMTP_OK;
}
