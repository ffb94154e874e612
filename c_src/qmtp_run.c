/* The send engine, QMTP §2 and §5: write queued packages and read the
 * answers in one poll loop, so that no mix of package sizes and server
 * behaviour can leave both sides blocked on a write (the spec puts that duty
 * on a pipelining client). Every wait ends at a deadline on the monotonic
 * clock; every answer not received becomes a temporary failure. Writing is
 * in qmtp_write.c.
 *
 * Whom an answer belongs to is decided here alone (take_answer, and for a
 * server that hangs up after one answer, finish_failed), from what this
 * connection showed or the caller declared; what was learnt of the server
 * on earlier connections (c->mode) only sets how long to wait. */
#define _GNU_SOURCE 1
#include "qmtp_run.h"
#include "response.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define NONE SIZE_MAX

static const char text_limit[] = "no response kept: the server's answers exceeded the text limit of this send";

static int add_slot(qmtp_client *c, char code, int received, int per_package,
                    const char *text, size_t len)
{
    struct qmtp_slot *s = &c->slots[c->nslots];

    if (qmtp_buf_append(&c->texts, text, len) != QMTP_OK) {
        return QMTP_E_NOMEM;
    }
    s->code = code;
    s->received = (unsigned char)received;
    s->per_package = (unsigned char)per_package;
    s->off = c->texts.len - len;
    s->len = len;
    c->nslots++;
    return QMTP_OK;
}

/* Everything still unanswered becomes a temporary failure saying why. */
static void defer_rest(struct qmtp_run *r, const char *why)
{
    qmtp_client *c = r->c;
    char text[300];
    int n = snprintf(text, sizeof text, "no response received: %s", why);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof text ? sizeof text - 1 : (size_t)n;

    while (c->nslots < r->total) {
        if (add_slot(c, 'Z', 0, 0, text, len) != QMTP_OK) {
            add_slot(c, 'Z', 0, 0, "", 0); /* the slot itself exists already */
        }
    }
}

/* Results from slot 'from' on were attributed in a way that the server's
 * answers have since contradicted: none of them counts as an answer. */
static void untrust_from(struct qmtp_run *r, size_t from)
{
    qmtp_client *c = r->c;
    char text[300];
    int n = snprintf(text, sizeof text, "no response received: %s", c->errstr);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof text ? sizeof text - 1 : (size_t)n;
    size_t off = c->texts.len;
    size_t i;

    if (qmtp_buf_append(&c->texts, text, len) != QMTP_OK) {
        len = 0;
    }
    for (i = from; i < c->nslots; i++) {
        c->slots[i].code = 'Z';
        c->slots[i].received = 0;
        c->slots[i].per_package = 0;
        c->slots[i].off = off;
        c->slots[i].len = len;
    }
}

/* Where attribution starts to rest on an assumption (the caller's
 * declaration, or the style this connection showed earlier) rather than on
 * what the answers themselves prove. */
static void note_assumed(struct qmtp_run *r, size_t slot)
{
    if (r->assumed_from == NONE) {
        r->assumed_from = slot;
    }
}

/* The package's one answer stands for all its recipients. */
static void spread_answer(struct qmtp_run *r)
{
    qmtp_client *c = r->c;
    const struct qmtp_pkg *p = &c->pkgs[r->apkg];
    struct qmtp_slot first = c->slots[p->first_slot];
    size_t i;

    for (i = p->first_slot; i < p->first_slot + p->nrcpt; i++) {
        c->slots[i] = first;
        c->slots[i].per_package = 1;
    }
    c->nslots = p->first_slot + p->nrcpt;
    r->apkg_got = p->nrcpt;
}

static void next_package(struct qmtp_run *r)
{
    const struct qmtp_pkg *p = &r->c->pkgs[r->apkg];

    r->in_flight -= p->head_len + p->body_len + p->tail_len;
    r->apkg++;
    r->apkg_got = 0;
}

/* Takes one answer for the package being answered: the one place that
 * decides whom an answer belongs to while answers come. One answer stands
 * for several recipients only when declared (finish_failed decides it for
 * a server that hangs up); a second answer for a package proves that the
 * server answers per recipient only if no later package was complete yet,
 * so that it cannot be another package's. */
static int take_answer(struct qmtp_run *r, char code, const char *text, size_t len)
{
    qmtp_client *c = r->c;
    const struct qmtp_pkg *p = &c->pkgs[r->apkg];
    int later_complete = r->pkgs_written > r->apkg + 1;
    int rc;

    if (len <= r->text_budget) {
        r->text_budget -= len;
        rc = add_slot(c, code, 1, 0, text, len);
    } else {
        r->text_budget = 0;
        rc = add_slot(c, 'Z', 0, 0, text_limit, sizeof text_limit - 1);
    }
    if (rc != QMTP_OK) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    r->apkg_got++;
    if (p->nrcpt > 1 && c->answers == QMTP_ANSWERS_PACKAGE) {
        note_assumed(r, p->first_slot + 1);
        spread_answer(r);
    } else if (p->nrcpt > 1 && r->apkg_got == 2) {
        if (!later_complete) {
            c->shown = QMTP_MODE_PER_RCPT;
            c->mode = QMTP_MODE_PER_RCPT;
        } else {
            /* Pipelined: the second answer may be the next package's. */
            note_assumed(r, p->first_slot + 1);
        }
    } else if (p->nrcpt == 1 && (c->answers == QMTP_ANSWERS_PACKAGE ||
                                 (c->answers == QMTP_ANSWERS_AUTO && c->mode == QMTP_MODE_PER_PKG))) {
        c->slots[c->nslots - 1].per_package = 1;
    }
    if (r->apkg_got == p->nrcpt) {
        next_package(r);
    }
    return QMTP_OK;
}

/* Takes every complete answer out of the input buffer. */
static int parse_answers(struct qmtp_run *r)
{
    qmtp_client *c = r->c;
    size_t used = 0;
    int rc = QMTP_OK;

    while (used < c->in.len) {
        const char *text = NULL;
        size_t text_len = 0;
        char code = 0;
        long n;

        if (r->apkg >= r->pkgs_written && c->nslots == 0) {
            /* §2: no answer may come before the last byte of its package. */
            rc = qmtp_fail(c, QMTP_E_PROTO, 0,
                           "protocol violation: the server sent %lu bytes before a package was complete",
                           (unsigned long)(c->in.len - used));
            break;
        }
        if (r->apkg >= r->pkgs_written) {
            /* More answers than recipients: any answer taken could be the
             * one out of place (see settle). */
            r->surplus = 1;
            rc = qmtp_fail(c, QMTP_E_ANSWERS, 0,
                           "the server's answers did not match its packages: more answers than recipients");
            break;
        }
        n = qmtp_response_parse(c->in.p + used, c->in.len - used, c->max_response, &code,
                                &text, &text_len);
        if (n == QMTP_NS_PARTIAL) {
            break;
        }
        if (n < 0) {
            rc = qmtp_fail(c, QMTP_E_PROTO, 0, "protocol violation: response %lu %s",
                           (unsigned long)c->nslots + 1, qmtp_response_strerror(n));
            break;
        }
        rc = take_answer(r, code, text, text_len);
        if (rc != QMTP_OK) {
            break;
        }
        used += (size_t)n;
    }
    memmove(c->in.p, c->in.p + used, c->in.len - used);
    c->in.len -= used;
    return rc;
}

/* Reads what is there (flags: for recv(2)). QMTP_E_EOF when the server
 * has closed. */
static int read_some(struct qmtp_run *r, int flags)
{
    qmtp_client *c = r->c;
    ssize_t n;
    int rc;

    if (qmtp_buf_reserve(&c->in, READ_CHUNK) != QMTP_OK) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    if (c->tls != NULL) {
        n = qmtp_tls_read(c, c->in.p + c->in.len, c->in.cap - c->in.len);
        /* Decrypted bytes may wait inside OpenSSL, where poll cannot see
         * them: take them all now. */
        while (n > 0 && qmtp_tls_pending(c) && qmtp_buf_reserve(&c->in, (size_t)n + READ_CHUNK) == QMTP_OK) {
            ssize_t more = qmtp_tls_read(c, c->in.p + c->in.len + n, c->in.cap - c->in.len - (size_t)n);
            if (more <= 0) {
                break;
            }
            n += more;
        }
        if (n == -2) {
            return qmtp_fail(c, QMTP_E_EOF, 0, "%s", qmtp_tls_broken(c));
        }
    } else {
        do {
            n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, flags);
        } while (n < 0 && errno == EINTR);
    }
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
    r->bytes_read += (uint64_t)n;
    r->last_progress = qmtp_now_ms();
    rc = parse_answers(r);
#ifdef TCP_QUICKACK
    if (rc == QMTP_OK && r->apkg < r->pkgs_written) {
        /* More answers are due. A server without TCP_NODELAY (mailfront)
         * holds each until the last is ACKed: ACK now, not 40 ms later. */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
#endif
    return rc;
}

/* After a failure, takes whatever answers already arrived: they are real. */
static void drain_pending(struct qmtp_run *r)
{
    qmtp_client *c = r->c;
    int saved_err = c->err;
    int saved_errno = c->sys_errno;
    char saved[sizeof c->errstr];

    memcpy(saved, c->errstr, sizeof saved);
    while (c->fd >= 0 && c->nslots < r->total) {
        struct pollfd p;

        p.fd = c->fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 0) <= 0 || read_some(r, 0) != QMTP_OK) {
            break;
        }
    }
    c->err = saved_err;
    c->sys_errno = saved_errno;
    memcpy(c->errstr, saved, sizeof saved);
}

/* The answers of a package written have stopped after some but not all,
 * and nothing more is to be written: the moment to half-close (see qmtp.h), unless
 * the answering style is declared per package (then the rest is simply not
 * due). A server answering per recipient sends the rest then. A server seen
 * answering per package before is half-closed at once; that only saves
 * waiting, its hang-up still has to confirm it. */
static int stall_point(const struct qmtp_run *r, int64_t *at)
{
    const qmtp_client *c = r->c;

    /* Stopped between packages: suspicious only where answers were taken
     * on an assumption (a slow server is no reason to end a connection). */
    int suspect_gap = r->apkg_got == 0 && r->assumed_from != NONE;

    if (r->half_closed || c->answers == QMTP_ANSWERS_PACKAGE || (r->apkg_got == 0 && !suspect_gap) ||
        r->apkg >= r->pkgs_written || qmtp_wants_write(r)) {
        return 0;
    }
    *at = r->last_progress;
    if (c->answers == QMTP_ANSWERS_RECIPIENT || c->mode != QMTP_MODE_PER_PKG) {
        *at += c->stall_ms;
    }
    return 1;
}

static void set_pkg_error(qmtp_client *c, size_t i, const char *text)
{
    size_t n = strlen(text) + 1;

    if (c->pkgs[i].error == NULL && (c->pkgs[i].error = malloc(n)) != NULL) {
        memcpy(c->pkgs[i].error, text, n);
    }
}

/* Marks the packages written in full as sent, the one being written with
 * why it stopped, and the rest as not begun; each one not sent keeps the
 * text of why (its own failure, or what ended the run before it). */
static void record_status(struct qmtp_run *r, int why)
{
    qmtp_client *c = r->c;
    size_t i;

    for (i = 0; i < c->npkgs; i++) {
        if (i < r->pkgs_written) {
            c->pkgs[i].status = QMTP_OK;
            continue;
        }
        if (i == r->w.pkg && (r->w.seg != SEG_HEAD || r->w.off > 0 || why == QMTP_E_FILE)) {
            c->pkgs[i].status = why;
        } else {
            c->pkgs[i].status = QMTP_E_NOTSENT;
        }
        set_pkg_error(c, i, c->errstr);
    }
}

/* Answers that did not fit what was expected: every recipient they could
 * belong to is a deferral. More answers than recipients: any of them can
 * be the one out of place. Fewer, then a hang-up or a timeout, where
 * answers to a package of several recipients were taken while a later one
 * was complete: from there on, an answer may have been another package's.
 * (A declaration of once per package is taken at its word: fewer answers
 * then are just answers not received.) */
static void settle(struct qmtp_run *r)
{
    qmtp_client *c = r->c;

    if (r->surplus) {
        untrust_from(r, 0);
    } else if (c->nslots < r->total && r->assumed_from != NONE && c->answers != QMTP_ANSWERS_PACKAGE) {
        char why[sizeof c->errstr];

        memcpy(why, c->errstr, sizeof why); /* qmtp_fail writes c->errstr */
        qmtp_fail(c, QMTP_E_ANSWERS, 0,
                  "the server's answers did not match its packages: fewer answers than recipients, then %s", why);
        untrust_from(r, r->assumed_from);
    }
}

/* A server that sent one answer for a package of several recipients and
 * hung up after the half-close answers once per package, if nothing says
 * otherwise: not this connection, not the caller, not an earlier one. */
static void one_answer_then_hangup(struct qmtp_run *r)
{
    qmtp_client *c = r->c;

    if (c->answers == QMTP_ANSWERS_AUTO && c->shown == QMTP_MODE_UNKNOWN && c->mode != QMTP_MODE_PER_RCPT) {
        c->shown = QMTP_MODE_PER_PKG;
        c->mode = QMTP_MODE_PER_PKG;
        spread_answer(r);
        next_package(r);
        return;
    }
    qmtp_fail(c, QMTP_E_ANSWERS, 0,
              "the server's answers did not match its packages: one answer for %lu recipients, then it hung up, "
              "though it %s",
              (unsigned long)c->pkgs[r->apkg].nrcpt,
              c->answers == QMTP_ANSWERS_RECIPIENT ? "was declared to answer once per recipient"
                                                   : "was seen answering once per recipient before");
    if (c->answers == QMTP_ANSWERS_AUTO) {
        c->mode = QMTP_MODE_UNKNOWN; /* contradicted: let the next connection show it */
    }
}

/* Ends a run that cannot go on: keep real answers, defer the rest, close.
 * Returns the status of the first package not written in full, or 0; the
 * client's error says what ended the run either way. */
static int finish_failed(struct qmtp_run *r, int status)
{
    qmtp_client *c = r->c;
    int every_answer_in;
    int first_bad;

    if (status == QMTP_E_TIMEOUT && r->limit_hit) {
        qmtp_fail(c, QMTP_E_TIMEOUT, 0, "timed out: the call limit of %.3g s was reached %s", CALL_LIMIT_S(c),
                  qmtp_wants_write(r) ? "while sending" : "waiting for responses");
    } else if (status == QMTP_E_TIMEOUT) {
        qmtp_fail(c, QMTP_E_TIMEOUT, 0, "timed out: no progress for %.3g s %s",
                  (double)c->io_ms / 1000.0, qmtp_wants_write(r) ? "while sending" : "waiting for responses");
    }
    if (status != QMTP_E_PROTO && !r->surplus) {
        drain_pending(r);
    }
    /* Only a clean hang-up after exactly one whole answer can mean "one
     * answer per package": bytes of a second answer show the server was
     * answering per recipient, and then the rest were simply not received. */
    /* Not over TLS: a wrapper may answer our close_notify with its own at
     * once and drop what the server behind it still had to say (TLS 1.2
     * lets it), so that end proves nothing of the server's answers. */
    if (status == QMTP_E_EOF && r->half_closed && c->tls == NULL && r->apkg < c->npkgs && r->apkg_got == 1 &&
        c->in.len == 0 && r->apkg + 1 == r->pkgs_written) {
        one_answer_then_hangup(r);
    }
    settle(r);
    every_answer_in = c->nslots == r->total;
    defer_rest(r, c->errstr);
    record_status(r, r->write_status != QMTP_OK ? r->write_status : status);
    qmtp_close(c);
    qmtp_pkgs_close_files(c);
    first_bad = r->pkgs_written < c->npkgs ? c->pkgs[r->pkgs_written].status : QMTP_OK;
    if (first_bad == QMTP_OK && every_answer_in && c->err != QMTP_E_ANSWERS) {
        c->err = QMTP_OK; /* nothing was lost: the hang-up was the end */
        c->sys_errno = 0;
        c->errstr[0] = '\0';
    }
    return first_bad;
}

/* A fast server answers within microseconds, sooner than the two wakeups
 * a sleep in poll(2) costs (tens of microseconds on a virtual machine), so
 * look for the answers without sleeping for up to spin_us first. Each miss
 * in a row doubles the number of later waits that sleep at once (up to 64):
 * a slow or distant server soon costs next to nothing. The looks of one run
 * add up to spin_us at most, so that a server trickling its answers byte
 * by byte cannot keep the client busy. Sets *got when answer bytes came;
 * returns 0 or the status that ends the run. */
static int busy_wait(struct qmtp_run *r, int *got)
{
    qmtp_client *c = r->c;
    uint64_t before = r->bytes_read;
    int64_t start;

    *got = 0;
    if (r->spin_left_us <= 0) {
        return QMTP_OK;
    }
    if (c->spin_skip > 0) {
        c->spin_skip--;
        return QMTP_OK;
    }
    start = qmtp_now_us();
    for (;;) {
        int rc = read_some(r, MSG_DONTWAIT);
        int64_t spent = qmtp_now_us() - start;

        if (rc != QMTP_OK) {
            return rc;
        }
        if (r->bytes_read != before) {
            r->spin_left_us -= spent;
            c->spin_misses = 0;
            *got = 1;
            return QMTP_OK;
        }
        /* No EINTR here to run a pending signal handler: ask. */
        rc = qmtp_interrupted(c);
        if (rc != QMTP_OK) {
            return rc;
        }
        if (spent >= r->spin_left_us) {
            r->spin_left_us = 0;
            break;
        }
    }
    if (c->spin_misses < 6) {
        c->spin_misses++;
    }
    c->spin_skip = 1u << c->spin_misses;
    return QMTP_OK;
}

static int prepare(struct qmtp_run *r)
{
    qmtp_client *c = r->c;
    size_t i;

    for (i = 0; i < c->npkgs; i++) {
        if (c->pkgs[i].nrcpt > SIZE_MAX / sizeof *c->slots - r->total) {
            return qmtp_fail(c, QMTP_E_TOOBIG, 0, "too many recipients");
        }
        c->pkgs[i].first_slot = r->total;
        c->pkgs[i].status = QMTP_E_NOTSENT;
        if (c->tls != NULL) {
            c->pkgs[i].no_sendfile = 1; /* its bytes go through TLS */
        }
        free(c->pkgs[i].error);
        c->pkgs[i].error = NULL;
        r->total += c->pkgs[i].nrcpt;
    }
    r->text_budget = QMTP_ANSWER_TEXT_BASE > c->max_response ? QMTP_ANSWER_TEXT_BASE : c->max_response;
    r->text_budget += r->total < (SIZE_MAX - r->text_budget) / QMTP_ANSWER_TEXT_PER_RCPT
                          ? r->total * QMTP_ANSWER_TEXT_PER_RCPT
                          : SIZE_MAX - r->text_budget;
    if (r->total > c->slotcap) {
        struct qmtp_slot *s = realloc(c->slots, r->total * sizeof *s);
        if (s == NULL) {
            return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
        }
        c->slots = s;
        c->slotcap = r->total;
    }
    return QMTP_OK;
}

/* Every answer due is in: reads, without waiting, whatever else is there
 * already (a server that answers per recipient, declared per package,
 * shows itself so), leaving the client's error as it was otherwise. */
static void look_for_surplus(struct qmtp_run *r)
{
    qmtp_client *c = r->c;
    int saved_err = c->err;
    char saved[sizeof c->errstr];

    memcpy(saved, c->errstr, sizeof saved);
    if (c->fd >= 0 && read_some(r, MSG_DONTWAIT) != QMTP_OK && !r->surplus) {
        qmtp_close(c); /* closed or failed: the next send starts afresh */
    }
    if (!r->surplus) {
        c->err = saved_err;
        memcpy(c->errstr, saved, sizeof saved);
    }
}

/* A run that ended with every package written in full: checks for
 * answers beyond the due ones, settles attribution, marks the packages. */
static int finish_ok(struct qmtp_run *r)
{
    qmtp_client *c = r->c;

    /* Answers beyond the due ones that are here already: a declaration
     * relied on, or pipelined packages whose answers one surplus answer
     * would have shifted. A look that costs no wait (see qmtp_run). */
    if ((r->assumed_from != NONE || c->npkgs > 1) && c->in.len == 0 && !r->half_closed) {
        look_for_surplus(r);
    }
    if (c->in.len > 0) {
        r->surplus = 1;
        qmtp_fail(c, QMTP_E_ANSWERS, 0,
                  "the server's answers did not match its packages: more answers than recipients");
    }
    settle(r);
    record_status(r, QMTP_OK);
    qmtp_pkgs_close_files(c);
    if (r->half_closed || r->surplus) {
        /* Half-closed, or more answers than recipients: not reusable. */
        qmtp_close(c);
    }
    return QMTP_OK;
}

/* The run is over: with status rc (0: every answer due is in). Returns
 * what qmtp_run returns. */
static int run_end(struct qmtp_run *r, int rc)
{
    r->c->run_active = 0;
    return rc == QMTP_OK ? finish_ok(r) : finish_failed(r, rc);
}

/* What ends the run or changes its course without any I/O: all answers
 * in, writing stopped, a half-close due, a deadline passed. QMTP_RUNNING
 * or the run's end (run_end). */
static int run_check(struct qmtp_run *r)
{
    qmtp_client *c = r->c;
    int64_t now;
    int64_t stall_at;
    int64_t deadline;

    if (c->nslots >= r->total) {
        return run_end(r, QMTP_OK);
    }
    if (r->write_status != QMTP_OK && r->apkg >= r->pkgs_written) {
        return run_end(r, r->write_status); /* every package written in full is answered */
    }
    if (r->half_closed && r->apkg >= r->pkgs_written) {
        /* A half-close taught how the server answers; what was held back
         * behind it must go on a new connection. */
        return run_end(r, qmtp_fail(c, QMTP_E_NOTSENT, 0,
                                    "not sent: the connection was ended to learn how the server answers"));
    }
    now = qmtp_now_ms();
    if (stall_point(r, &stall_at) && now >= stall_at) {
        if (c->tls != NULL) {
            qmtp_tls_half_close(c); /* close_notify, then the socket's FIN */
        }
        shutdown(c->fd, SHUT_WR);
        r->half_closed = 1;
        r->last_progress = now;
    }
    deadline = qmtp_deadline(c, r->last_progress + c->io_ms);
    if (now >= deadline) {
        r->limit_hit = deadline < r->last_progress + c->io_ms;
        return run_end(r, QMTP_E_TIMEOUT);
    }
    return QMTP_RUNNING;
}

static int run_begin(qmtp_client *c, qmtp_written_fn on_written, void *ctx)
{
    struct qmtp_run *r;
    int rc;

    qmtp_recover(c);
    if (c->run_active || c->connect_active) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "a %s is under way", c->run_active ? "send" : "connect");
    }
    if (c->run == NULL && (c->run = malloc(sizeof *c->run)) == NULL) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    r = c->run;
    memset(r, 0, sizeof *r);
    r->c = c;
    r->assumed_from = NONE;
    r->on_written = on_written;
    r->written_ctx = ctx;
    c->nslots = 0;
    c->texts.len = 0;
    c->in.len = 0;
    c->stage.len = 0;
    if (c->building) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "a package was begun but not ended");
    }
    rc = prepare(r);
    if (rc != QMTP_OK) {
        return rc;
    }
    if (c->fd < 0) {
        qmtp_fail(c, QMTP_E_STATE, 0, "not connected");
        defer_rest(r, "not connected");
        qmtp_pkgs_close_files(c);
        return QMTP_E_NOTSENT;
    }
    c->err = QMTP_OK;
    c->errstr[0] = '\0';
    r->last_progress = qmtp_now_ms();
    r->spin_left_us = c->spin_us;
    c->run_active = 1;
    c->started_by = getpid();
    return run_check(r);
}

/* 1 until the run's first byte is written. */
static int nothing_written(const struct qmtp_run *r)
{
    return r->pkgs_written == 0 && r->w.pkg == 0 && r->w.seg == SEG_HEAD && r->w.off == 0;
}

int qmtp_run_start(qmtp_client *c)
{
    return run_begin(c, NULL, NULL);
}

int qmtp_run_step(qmtp_client *c, int ready)
{
    struct qmtp_run *r = c->run;
    int rc;

    if (!c->run_active) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "no send is under way");
    }
    if ((ready & QMTP_WANT_WRITE) && !(ready & QMTP_WANT_READ) && nothing_written(r)) {
        /* A loop may report writable alone (one callback per watcher): a
         * connection that the server closed while idle must show so before
         * the first byte goes, so that the packages come back not begun
         * (to go on a new connection), as the blocking loop's poll sees. */
        struct pollfd p;

        p.fd = c->fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 0) > 0) {
            ready |= QMTP_WANT_READ;
        }
    }
    if (ready & QMTP_WANT_READ) {
        rc = read_some(r, 0);
        if (rc != QMTP_OK) {
            return run_end(r, rc);
        }
    }
    if ((ready & QMTP_WANT_WRITE) && qmtp_wants_write(r)) {
        rc = qmtp_write_some(r);
        if (rc == QMTP_E_FILE) {
            /* Stop writing, but collect the answers of the packages
             * already written before closing to abort this one. */
            set_pkg_error(c, r->w.pkg, c->errstr);
            r->write_status = rc;
            r->last_progress = qmtp_now_ms();
        } else if (rc != QMTP_OK) {
            return run_end(r, rc);
        }
        if (r->on_written != NULL && r->pkgs_written == c->npkgs) {
            qmtp_written_fn fn = r->on_written;

            r->on_written = NULL;
            fn(r->written_ctx); /* before the wait for the answers */
        }
    }
    return run_check(r);
}

/* When the run's next deadline is: the inactivity timeout (bounded by the
 * call limit), or an earlier half-close. */
static int64_t run_deadline(const struct qmtp_run *r)
{
    int64_t deadline = qmtp_deadline(r->c, r->last_progress + r->c->io_ms);
    int64_t stall_at;

    if (stall_point(r, &stall_at) && stall_at < deadline) {
        deadline = stall_at;
    }
    if (qmtp_tls_pending(r->c)) {
        deadline = qmtp_now_ms(); /* step now: the bytes are there */
    }
    return deadline;
}

int qmtp_run_wants(const qmtp_client *c, int *events, int64_t *deadline_ms)
{
    if (!c->run_active) {
        return QMTP_E_STATE;
    }
    *events = QMTP_WANT_READ | (qmtp_wants_write(c->run) ? QMTP_WANT_WRITE : 0);
    *deadline_ms = run_deadline(c->run);
    return QMTP_OK;
}

int qmtp_run_cancel(qmtp_client *c, const char *why)
{
    if (!c->run_active) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "no send is under way");
    }
    qmtp_fail(c, QMTP_E_INTR, 0, "%s", why);
    return run_end(c->run, QMTP_E_INTR);
}

void qmtp_run_free(qmtp_client *c)
{
    free(c->run);
    c->run = NULL;
    c->run_active = 0;
}

/* Sleeps in poll(2) until the descriptor is ready or the run's next
 * deadline; *ready gets QMTP_WANT_* (0: the deadline, or a signal). The
 * caller's signal handlers run on EINTR. 0 or the status ending the run. */
static int wait_ready(struct qmtp_run *r, int *ready)
{
    qmtp_client *c = r->c;
    struct pollfd p;
    int64_t now = qmtp_now_ms();
    int64_t wake = run_deadline(r);
    int rc;

    *ready = 0;
    if (qmtp_tls_pending(c)) {
        *ready = QMTP_WANT_READ;
        return QMTP_OK;
    }
    if (now >= wake) {
        return QMTP_OK; /* run_check acts on it */
    }
    p.fd = c->fd;
    p.events = POLLIN;
    if (qmtp_wants_write(r)) {
        p.events |= POLLOUT;
    }
    p.revents = 0;
    rc = poll(&p, 1, wake - now > 1000000 ? 1000000 : (int)(wake - now));
    if (rc < 0 && errno == EINTR) {
        return qmtp_interrupted(c);
    }
    if (rc < 0) {
        return qmtp_fail(c, QMTP_E_IO, errno, "poll failed");
    }
    if (rc > 0) {
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            *ready |= QMTP_WANT_READ;
        }
        if (p.revents & (POLLOUT | POLLERR)) {
            *ready |= QMTP_WANT_WRITE;
        }
    }
    return QMTP_OK;
}

int qmtp_run(qmtp_client *c)
{
    return qmtp_run_overlapped(c, NULL, NULL);
}

/* The blocking run: the same steps as a caller's event loop takes, with
 * poll(2) around them, and the busy-wait that only a caller who may block
 * can afford. */
int qmtp_run_overlapped(qmtp_client *c, qmtp_written_fn on_written, void *ctx)
{
    struct qmtp_run *r;
    int rc = run_begin(c, on_written, ctx);

    if (rc != QMTP_RUNNING) {
        return rc;
    }
    r = c->run;
    c->busy = 1;
    while (rc == QMTP_RUNNING) {
        int ready;

        /* Only for the answers of the last package written: while earlier
         * ones are due, a sleep lets them pile up, to be read in one go. */
        if (r->apkg + 1 == r->pkgs_written && !qmtp_wants_write(r)) {
            int got;

            rc = busy_wait(r, &got);
            if (rc != QMTP_OK) {
                rc = run_end(r, rc);
                break;
            }
            if (got) {
                rc = run_check(r);
                continue;
            }
        }
        rc = wait_ready(r, &ready);
        if (rc != QMTP_OK) {
            rc = run_end(r, rc);
            break;
        }
        rc = qmtp_run_step(c, ready);
    }
    c->busy = 0;
    return rc;
}
