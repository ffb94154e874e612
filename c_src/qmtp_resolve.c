/* Name resolution by a deadline: getaddrinfo in a thread of the lookup's
 * own, waited for in poll(2) against the connect timeout and the call
 * limit, so that a name server that does not answer cannot hold a call,
 * and the caller's signal handlers run meanwhile. Built with
 * QMTP_NO_RESOLVER_THREAD: plain getaddrinfo, as long as it takes. */
#define _GNU_SOURCE 1
#include "qmtp_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static int resolve_timed_out(qmtp_client *c, const char *host)
{
    if (qmtp_call_limit_reached(c)) {
        return qmtp_fail(c, QMTP_E_TIMEOUT, 0, CALL_LIMIT_TEXT "resolving '%s'", CALL_LIMIT_S(c), host);
    }
    return qmtp_fail(c, QMTP_E_RESOLVE, 0, "cannot resolve '%s': timed out after %.3g s", host,
                     (double)c->connect_ms / 1000.0);
}

#ifndef QMTP_NO_RESOLVER_THREAD

/* A lookup runs getaddrinfo in a thread of its own, started for it: any
 * process can start one (glibc's getaddrinfo_a keeps helper threads in
 * process-wide state that a forked child inherits without the threads,
 * and can then hang in it for ever). The thread writes only to its
 * lookup, wakes the waiter by a byte on the lookup's pipe, and at last
 * marks it done; the lookup is on the client's list from before the
 * thread starts and freed only once done, because the wait may give up,
 * or be left by longjmp from the interrupt hook, while the thread runs. */
struct qmtp_lookup {
    struct addrinfo hints;
    struct addrinfo *result;
    int gai;
    int gai_errno;           /* errno of EAI_SYSTEM, in the thread */
    int state;               /* RUNNING, DONE or ORPHANED (atomic) */
    int wake[2];             /* the thread writes a byte to wake[1] */
    struct qmtp_lookup *next;
    pid_t pid;               /* of the process whose thread runs it */
    char names[];            /* host NUL port NUL */
};

enum { RUNNING = 0, DONE = 1, ORPHANED = 2 };

/* Lookups whose thread runs, in this process: a name server that never
 * answers, and a caller that tries again and again, must not pile up
 * threads without end. Past the limit a lookup fails at once. The count
 * is the process's: a forked child starts it afresh (its parent's
 * threads are not its own). Process-wide, as threads are. */
#define MAX_LOOKUPS 64
static int lookups_running;
static pid_t lookups_pid;

static void count_lookup(int by)
{
    pid_t me = getpid();

    if (__atomic_load_n(&lookups_pid, __ATOMIC_ACQUIRE) != me) {
        __atomic_store_n(&lookups_running, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&lookups_pid, me, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&lookups_running, by, __ATOMIC_ACQ_REL);
}

static void lookup_free(struct qmtp_lookup *q)
{
    if (q->result != NULL) {
        freeaddrinfo(q->result);
    }
    close(q->wake[0]);
    close(q->wake[1]);
    free(q);
}

static void *lookup_run(void *arg)
{
    struct qmtp_lookup *q = arg;
    const char *host = q->names;
    const char *port = q->names + strlen(q->names) + 1;
    char byte = 0;
    ssize_t w;

    q->gai = getaddrinfo(host, port, &q->hints, &q->result);
    q->gai_errno = q->gai == EAI_SYSTEM ? errno : 0;
    /* The byte first: once done is seen, the pipe may be closed. */
    w = write(q->wake[1], &byte, 1);
    (void)w;
    count_lookup(-1);
    /* The owner gave q up (qmtp_free) while this ran: it is this thread's. */
    if (__atomic_exchange_n(&q->state, DONE, __ATOMIC_ACQ_REL) == ORPHANED) {
        lookup_free(q);
    }
    return NULL;
}

static void lookup_unlink(qmtp_client *c, const struct qmtp_lookup *q)
{
    struct qmtp_lookup **pp = &c->lookups;

    while (*pp != q) {
        pp = &(*pp)->next;
    }
    *pp = q->next;
}

/* 1 once no thread will touch q again: it is done, or q is a forked
 * child's copy (the thread writes to the parent's). */
static int lookup_released(const struct qmtp_lookup *q)
{
    return q->pid != getpid() || __atomic_load_n(&q->state, __ATOMIC_ACQUIRE) == DONE;
}

/* 1 when q is a forked child's copy of a lookup its parent's thread was
 * still running: no thread here will ever finish it. */
static int lookup_foreign_unfinished(const struct qmtp_lookup *q)
{
    return q->pid != getpid() && __atomic_load_n(&q->state, __ATOMIC_ACQUIRE) != DONE;
}

/* Gives up on q: freed now if it can be, else left listed for reaping. */

static void lookup_abandon(qmtp_client *c, struct qmtp_lookup *q)
{
    if (lookup_released(q)) {
        lookup_unlink(c, q);
        lookup_free(q);
    }
}

static int pipe_for_wake(int fd[2])
{
    int i;

#ifdef __linux__
    /* At once close-on-exec: another thread may fork and exec meanwhile. */
    if (pipe2(fd, O_CLOEXEC | O_NONBLOCK) == 0) {
        return 0;
    }
#endif
    if (pipe(fd) != 0) {
        return -1;
    }
    for (i = 0; i < 2; i++) {
        int fl = fcntl(fd[i], F_GETFL);

        if (fl < 0 || fcntl(fd[i], F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd[i], F_SETFD, FD_CLOEXEC) != 0) {
            close(fd[0]);
            close(fd[1]);
            return -1;
        }
    }
    return 0;
}

/* Starts looking up host and port: 0, with the lookup listed in *out;
 * else QMTP_E_RESOLVE with the client's error saying why no thread could
 * be started for it (too many running, no memory, descriptors, threads):
 * never a lookup without its deadline instead. */
static int lookup_start(qmtp_client *c, const char *host, const char *port, struct qmtp_lookup **out)
{
    size_t hlen = strlen(host) + 1;
    size_t plen = strlen(port) + 1;
    struct qmtp_lookup *q = malloc(sizeof *q + hlen + plen);
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all;
    sigset_t old;
    int rc;

    if (q == NULL) {
        return qmtp_fail(c, QMTP_E_RESOLVE, 0, "cannot resolve '%s': out of memory", host);
    }
    memset(q, 0, sizeof *q);
    if (pipe_for_wake(q->wake) != 0) {
        int e = errno;

        free(q);
        return qmtp_fail(c, QMTP_E_RESOLVE, e, "cannot resolve '%s': no pipe for the lookup", host);
    }
    memcpy(q->names, host, hlen);
    memcpy(q->names + hlen, port, plen);
    q->hints.ai_family = AF_UNSPEC;
    q->hints.ai_socktype = SOCK_STREAM;
    q->pid = getpid();
    q->next = c->lookups;
    c->lookups = q;
    count_lookup(1);
    if (__atomic_load_n(&lookups_running, __ATOMIC_ACQUIRE) > MAX_LOOKUPS) {
        count_lookup(-1);
        lookup_unlink(c, q);
        lookup_free(q);
        return qmtp_fail(c, QMTP_E_RESOLVE, 0,
                         "cannot resolve '%s': %d lookups of this process still wait for the name server", host,
                         MAX_LOOKUPS);
    }
    /* Signals stay with the caller's threads: the lookup's blocks them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&tid, &attr, lookup_run, q);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        count_lookup(-1);
        lookup_unlink(c, q);
        lookup_free(q);
        return qmtp_fail(c, QMTP_E_RESOLVE, rc, "cannot resolve '%s': no thread for the lookup", host);
    }
    *out = q;
    return QMTP_OK;
}

/* A forked child's copy of a lookup its parent's thread still runs is
 * started again here (no thread of this process would end it). 0, or
 * the status of a start that failed (*q is NULL then). */
static int lookup_own(qmtp_client *c, struct qmtp_lookup **q)
{
    struct qmtp_lookup *copy = *q;
    int rc;

    if (!lookup_foreign_unfinished(copy)) {
        return QMTP_OK;
    }
    rc = lookup_start(c, copy->names, copy->names + strlen(copy->names) + 1, q);
    if (rc != QMTP_OK) {
        *q = NULL;
    }
    lookup_abandon(c, copy);
    return rc;
}

/* Waits up to ms (> 0) for q's thread to wake it. EINTR when a signal
 * came, else 0 (q may not be done). */
static int lookup_wait(const struct qmtp_lookup *q, int64_t ms)
{
    struct pollfd p;

    p.fd = q->wake[0];
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, ms > 1000000 ? 1000000 : (int)ms) < 0 && errno == EINTR) {
        return EINTR;
    }
    return 0;
}

/* The lookup q is done: its addresses go to c->pending_ai, and q is
 * freed. 0 or QMTP_E_RESOLVE. */
static int lookup_result(qmtp_client *c, struct qmtp_lookup *q)
{
    lookup_unlink(c, q);
    if (q->gai != 0) {
        int rc = qmtp_fail(c, QMTP_E_RESOLVE, q->gai_errno, "cannot resolve '%s' port '%s': %s", q->names,
                           q->names + strlen(q->names) + 1, gai_strerror(q->gai));

        lookup_free(q);
        return rc;
    }
    c->pending_ai = q->result;
    q->result = NULL;
    lookup_free(q);
    return QMTP_OK;
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

/* Looks host and port up by the connect timeout and the call limit,
 * running the caller's signal handlers on EINTR. 0 with the addresses in
 * c->pending_ai, or a status with the client's error set. */
int qmtp_resolve(qmtp_client *c, const char *host, const char *port)
{
    int64_t deadline = qmtp_deadline(c, qmtp_now_ms() + c->connect_ms);
    struct qmtp_lookup *q = NULL;

    if (qmtp_call_limit_reached(c)) {
        return resolve_timed_out(c, host);
    }
    if (numeric(c, host, port) == 0) {
        return QMTP_OK;
    }
    if (lookup_start(c, host, port, &q) != QMTP_OK) {
        return c->err;
    }
    for (;;) {
        int64_t now = qmtp_now_ms();

        /* A signal handler may have forked meanwhile. */
        if (lookup_own(c, &q) != QMTP_OK) {
            return c->err;
        }
        if (lookup_released(q)) {
            break;
        }

        if (now >= deadline) {
            lookup_abandon(c, q);
            return resolve_timed_out(c, host);
        }
        if (lookup_wait(q, deadline - now) == EINTR && qmtp_interrupted(c) != QMTP_OK) {
            lookup_abandon(c, q);
            return qmtp_fail(c, QMTP_E_INTR, EINTR, "resolving '%s' was interrupted", host);
        }
    }
    return lookup_result(c, q);
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
    if (lookup_start(c, host, port, &q) != QMTP_OK) {
        return c->err;
    }
    c->resolving = q;
    c->resolve_deadline = deadline;
    return QMTP_RUNNING;
}

int qmtp_resolve_poll(qmtp_client *c)
{
    struct qmtp_lookup *q = c->resolving;

    if (q == NULL) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "no lookup is under way");
    }
    if (lookup_own(c, &c->resolving) != QMTP_OK) {
        return c->err;
    }
    q = c->resolving;
    if (!lookup_released(q)) {
        if (qmtp_now_ms() < c->resolve_deadline) {
            return QMTP_RUNNING;
        }
        qmtp_resolve_abandon(c);
        return resolve_timed_out(c, c->host);
    }
    c->resolving = NULL;
    return lookup_result(c, q);
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
        lookup_wait(running, until - now);
    }
}

void qmtp_resolver_drop(qmtp_client *c)
{
    while (c->lookups != NULL) {
        struct qmtp_lookup *q = c->lookups;

        c->lookups = q->next;
        if (q->pid != getpid()) {
            lookup_free(q);
        } else if (__atomic_exchange_n(&q->state, ORPHANED, __ATOMIC_ACQ_REL) == DONE) {
            lookup_free(q); /* its thread ended meanwhile */
        }
        /* else its thread frees it when done */
    }
    c->resolving = NULL;
}

#else /* no threads: the lookup waits as long as the resolver does */

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

void qmtp_resolver_drop(qmtp_client *c)
{
    (void)c;
}

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
