/* Name resolution by a deadline: glibc's getaddrinfo_a, waited for with
 * gai_suspend against the connect timeout and the call limit, so that a
 * name server that does not answer cannot hold a call, and the caller's
 * signal handlers run meanwhile. Elsewhere, plain getaddrinfo. */
#define _GNU_SOURCE 1
#include "qmtp_int.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* getaddrinfo, waiting as long as the resolver does. 0 with the addresses
 * in c->pending_ai, or QMTP_E_RESOLVE. */
static int resolve_blocking(qmtp_client *c, const char *host, const char *port)
{
    struct addrinfo hints;
    struct addrinfo *list = NULL;
    int gai;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    gai = getaddrinfo(host, port, &hints, &list);
    if (gai != 0) {
        return qmtp_fail(c, QMTP_E_RESOLVE, gai == EAI_SYSTEM ? errno : 0,
                         "cannot resolve '%s' port '%s': %s", host, port, gai_strerror(gai));
    }
    c->pending_ai = list;
    return QMTP_OK;
}

static int resolve_timed_out(qmtp_client *c, const char *host)
{
    if (qmtp_call_limit_reached(c)) {
        return qmtp_fail(c, QMTP_E_TIMEOUT, 0, CALL_LIMIT_TEXT "resolving '%s'", CALL_LIMIT_S(c), host);
    }
    return qmtp_fail(c, QMTP_E_RESOLVE, 0, "cannot resolve '%s': timed out after %.3g s", host,
                     (double)c->connect_ms / 1000.0);
}

#if defined(GAI_NOWAIT) && !defined(QMTP_NO_GETADDRINFO_A)

/* A lookup a resolver thread may still write to, until gai_error says it
 * has ended: on the heap and on the client's list from before it starts,
 * because the wait for it may give up, or be left by longjmp from the
 * interrupt hook, while that thread runs. */
struct qmtp_lookup {
    struct gaicb cb; /* first: glibc holds a pointer to it */
    struct addrinfo hints;
    struct qmtp_lookup *next;
    pid_t pid;       /* of the process whose resolver runs it */
    char names[];    /* host NUL port NUL, for cb */
};

/* glibc keeps the state of getaddrinfo_a process-wide: its helper
 * threads, which idle for a second after a lookup, and the condition
 * variable they wait on. A forked child inherits that state without the
 * threads, and its first getaddrinfo_a can then block for ever (signalling
 * waiters it does not have). So getaddrinfo_a is used only by the first
 * process that uses it here; its children use getaddrinfo. The one piece
 * of process-wide state in the core, because glibc's is. */
static pid_t gai_owner;

static int may_use_gai(void)
{
    pid_t me = getpid();
    pid_t owner = 0;

    /* The threads of one process that race here all claim the same pid. */
    __atomic_compare_exchange_n(&gai_owner, &owner, me, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return owner == 0 || owner == me;
}

static void lookup_free(struct qmtp_lookup *q)
{
    if (q->cb.ar_result != NULL) {
        freeaddrinfo(q->cb.ar_result);
    }
    free(q);
}

static void lookup_unlink(qmtp_client *c, const struct qmtp_lookup *q)
{
    struct qmtp_lookup **pp = &c->lookups;

    while (*pp != q) {
        pp = &(*pp)->next;
    }
    *pp = q->next;
}

/* 1 once no resolver thread will touch q again: it has ended, or it is
 * dropped now before one took it up, or it is a forked child's copy (the
 * thread writes to the parent's). 0 while one runs it: glibc cannot stop
 * that thread, so q must wait for it. */
static int lookup_released(struct qmtp_lookup *q)
{
    return q->pid != getpid() || gai_error(&q->cb) != EAI_INPROGRESS ||
           gai_cancel(&q->cb) != EAI_NOTCANCELED;
}

/* Gives up on q: freed now if it can be, else left listed for reaping. */
static void lookup_abandon(qmtp_client *c, struct qmtp_lookup *q)
{
    if (lookup_released(q)) {
        lookup_unlink(c, q);
        lookup_free(q);
    }
}

/* Starts looking up host and port. 0, with the lookup listed in *out, or
 * -1 when getaddrinfo_a cannot take it (no memory, no thread). */
static int lookup_start(qmtp_client *c, const char *host, const char *port, struct qmtp_lookup **out)
{
    size_t hlen = strlen(host) + 1;
    size_t plen = strlen(port) + 1;
    struct qmtp_lookup *q = malloc(sizeof *q + hlen + plen);
    struct gaicb *list[1];
    struct sigevent sev;

    if (q == NULL) {
        return -1;
    }
    memset(q, 0, sizeof *q);
    memcpy(q->names, host, hlen);
    memcpy(q->names + hlen, port, plen);
    q->hints.ai_family = AF_UNSPEC;
    q->hints.ai_socktype = SOCK_STREAM;
    q->cb.ar_name = q->names;
    q->cb.ar_service = q->names + hlen;
    q->cb.ar_request = &q->hints;
    q->pid = getpid();
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_NONE;
    list[0] = &q->cb;
    q->next = c->lookups;
    c->lookups = q;
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
        /* It may have been queued all the same (glibc fails when it cannot
         * allocate the notification after queueing). */
        lookup_abandon(c, q);
        return -1;
    }
    *out = q;
    return 0;
}

/* Waits up to ms (> 0) for cb to end. EAI_INTR when a signal came, else 0
 * (it may not have ended). */
static int lookup_wait(const struct gaicb *cb, int64_t ms)
{
    const struct gaicb *list[1];
    struct timespec ts;
    int64_t before = qmtp_now_ms();
    int r;

    list[0] = cb;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    r = gai_suspend(list, 1, &ts);
    if (r == EAI_INTR) {
        return EAI_INTR;
    }
    /* A wait that timed out was seen to say EAI_SYSTEM, not EAI_AGAIN
     * (glibc 2.36); one that comes back at once, whatever it says, must
     * not make the caller spin. */
    if (r != 0 && qmtp_now_ms() == before) {
        poll(NULL, 0, 1);
    }
    return 0;
}

/* The lookup q has ended with gai: its addresses go to c->pending_ai,
 * and q is freed. 0 or QMTP_E_RESOLVE. */
static int lookup_result(qmtp_client *c, struct qmtp_lookup *q, int gai)
{
    lookup_unlink(c, q);
    if (gai != 0) {
        int rc = qmtp_fail(c, QMTP_E_RESOLVE, 0, "cannot resolve '%s' port '%s': %s", q->names,
                           q->names + strlen(q->names) + 1, gai_strerror(gai));

        /* errno of EAI_SYSTEM stayed in the resolver thread */
        lookup_free(q);
        return rc;
    }
    c->pending_ai = q->cb.ar_result;
    q->cb.ar_result = NULL;
    lookup_free(q);
    return QMTP_OK;
}

/* Looks host and port up by the connect timeout and the call limit,
 * running the caller's signal handlers on EINTR. 0 with the addresses in
 * c->pending_ai, or a status with the client's error set. */
int qmtp_resolve(qmtp_client *c, const char *host, const char *port)
{
    int64_t deadline = qmtp_deadline(c, qmtp_now_ms() + c->connect_ms);
    struct qmtp_lookup *q = NULL;
    int gai;

    if (qmtp_call_limit_reached(c)) {
        return resolve_timed_out(c, host);
    }
    if (!may_use_gai() || lookup_start(c, host, port, &q) != 0) {
        return resolve_blocking(c, host, port);
    }
    while ((gai = gai_error(&q->cb)) == EAI_INPROGRESS) {
        int64_t now = qmtp_now_ms();

        if (now >= deadline) {
            lookup_abandon(c, q);
            return resolve_timed_out(c, host);
        }
        if (lookup_wait(&q->cb, deadline - now) == EAI_INTR && qmtp_interrupted(c) != QMTP_OK) {
            lookup_abandon(c, q);
            return qmtp_fail(c, QMTP_E_INTR, EINTR, "resolving '%s' was interrupted", host);
        }
    }
    return lookup_result(c, q, gai);
}

/* A numeric address needs no lookup, and no thread: 0 with the address
 * in c->pending_ai, or -1 when host is a name. */
static int numeric(qmtp_client *c, const char *host, const char *port)
{
    struct addrinfo hints;
    struct addrinfo *list = NULL;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(host, port, &hints, &list) != 0) {
        return -1;
    }
    c->pending_ai = list;
    return 0;
}

int qmtp_resolve_start(qmtp_client *c, const char *host, const char *port, int64_t deadline)
{
    struct qmtp_lookup *q = NULL;

    if (qmtp_call_limit_reached(c)) {
        return resolve_timed_out(c, host);
    }
    if (numeric(c, host, port) == 0) {
        return QMTP_OK;
    }
    if (!may_use_gai() || lookup_start(c, host, port, &q) != 0) {
        return resolve_blocking(c, host, port);
    }
    c->resolving = q;
    c->resolve_deadline = deadline;
    return QMTP_RUNNING;
}

int qmtp_resolve_poll(qmtp_client *c)
{
    struct qmtp_lookup *q = c->resolving;
    int gai;

    if (q == NULL) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "no lookup is under way");
    }
    gai = gai_error(&q->cb);
    if (gai == EAI_INPROGRESS) {
        if (qmtp_now_ms() < c->resolve_deadline) {
            return QMTP_RUNNING;
        }
        qmtp_resolve_abandon(c);
        return resolve_timed_out(c, c->host);
    }
    c->resolving = NULL;
    return lookup_result(c, q, gai);
}

void qmtp_resolve_abandon(qmtp_client *c)
{
    if (c->resolving != NULL) {
        lookup_abandon(c, c->resolving);
        c->resolving = NULL;
    }
}

int qmtp_resolver_reap(qmtp_client *c, int64_t wait_ms)
{
    int64_t until = qmtp_now_ms() + wait_ms;

    for (;;) {
        struct qmtp_lookup **pp = &c->lookups;
        const struct qmtp_lookup *running = NULL;
        int left = 0;
        int64_t now;

        while (*pp != NULL) {
            struct qmtp_lookup *q = *pp;

            if (lookup_released(q)) {
                *pp = q->next;
                lookup_free(q);
            } else {
                running = q;
                left++;
                pp = &q->next;
            }
        }
        now = qmtp_now_ms();
        if (running == NULL || now >= until) {
            return left;
        }
        lookup_wait(&running->cb, until - now);
    }
}

#else /* no getaddrinfo_a: the lookup waits as long as the resolver does */

int qmtp_resolve_start(qmtp_client *c, const char *host, const char *port, int64_t deadline)
{
    (void)deadline;
    return qmtp_resolve(c, host, port);
}

int qmtp_resolve_poll(qmtp_client *c)
{
    return qmtp_fail(c, QMTP_E_STATE, 0, "no lookup is under way");
}

void qmtp_resolve_abandon(qmtp_client *c)
{
    (void)c;
}

int qmtp_resolve(qmtp_client *c, const char *host, const char *port)
{
    if (qmtp_call_limit_reached(c)) {
        return resolve_timed_out(c, host);
    }
    return resolve_blocking(c, host, port);
}

int qmtp_resolver_reap(qmtp_client *c, int64_t wait_ms)
{
    (void)c;
    (void)wait_ms;
    return 0;
}

#endif
