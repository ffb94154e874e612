/* Connections: name resolution, connect with a deadline, idle checks.
 * Every socket is non-blocking and close-on-exec; all waiting is poll(2)
 * against a monotonic deadline, never alarm(2) or SO_RCVTIMEO. Names are
 * looked up in a thread of the lookup's own (qmtp_resolve.c), so that the
 * connect timeout and the call limit bound the lookup too. */
#define _GNU_SOURCE 1
#include "qmtp_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int64_t qmtp_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t qmtp_now_ms(void)
{
    return qmtp_now_us() / 1000;
}

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void describe_address(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    unsigned port = 0;
    const void *addr = NULL;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        addr = &in->sin_addr;
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        addr = &in6->sin6_addr;
        port = ntohs(in6->sin6_port);
    }
    if (addr == NULL || inet_ntop(sa->sa_family, addr, host, sizeof host) == NULL) {
        snprintf(out, outlen, "(unknown address)");
        return;
    }
    snprintf(out, outlen, "%s port %u", host, port);
}

/* Binds fd to the client's local address of the given family. 0 or errno. */
static int bind_local(qmtp_client *c, int fd, int family)
{
    struct addrinfo hints;
    struct addrinfo *list = NULL;
    int gai;
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    gai = getaddrinfo(c->local, NULL, &hints, &list);
    if (gai != 0 || list == NULL) {
        return EADDRNOTAVAIL; /* no address of this family: try the next remote one */
    }
    rc = bind(fd, list->ai_addr, list->ai_addrlen) == 0 ? 0 : errno;
    freeaddrinfo(list);
    return rc;
}

static int open_socket(int family)
{
    int fd;

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
    fd = socket(family, SOCK_STREAM, 0);
    if (fd >= 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
#endif
    return fd;
}

void qmtp_recover(qmtp_client *c)
{
    /* A TLS session is state that two processes cannot share: in a forked
     * child, the copy is closed (without close_notify, which would end the
     * parent's), and the child connects anew when it sends. */
    if (c->tls != NULL && c->fd >= 0 && !c->busy && qmtp_tls_foreign(c)) {
        qmtp_close(c);
    }
    if (c->busy) {
        c->busy = 0;
        c->run_active = 0;
        c->connect_active = 0;
        qmtp_close(c);
        if (c->pending_ai != NULL) {
            freeaddrinfo(c->pending_ai);
            c->pending_ai = NULL;
        }
    }
    /* A lookup such a call was waiting for, or one that timed out while a
     * resolver thread was running it: freed once that thread is done. */
    if (c->lookups != NULL) {
        qmtp_resolver_reap(c, 0);
    }
}

int qmtp_interrupted(qmtp_client *c)
{
    if (c->on_interrupt == NULL || c->on_interrupt(c->interrupt_ctx) == 0) {
        return QMTP_OK;
    }
    return qmtp_fail(c, QMTP_E_INTR, EINTR, "interrupted");
}

/* A port given as a number must be one: getaddrinfo would take "70000" as
 * 70000 modulo 65536 (glibc reads it with strtoul, which also takes signs
 * and spaces). Anything else is a service name for getaddrinfo. */
static int check_port(qmtp_client *c, const char *port)
{
    const char *digits = port + strspn(port, " \t\n\v\f\r+-");
    unsigned long value = 0;
    const char *p;

    if (digits[0] != '\0' && digits[strspn(digits, "0123456789")] != '\0') {
        return QMTP_OK; /* a service name, such as "qmtp" */
    }
    for (p = digits; *p != '\0' && value <= 65535; p++) {
        value = value * 10 + (unsigned long)(*p - '0');
    }
    if (digits != port || digits[0] == '\0' || value < 1 || value > 65535) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "port '%s' is not a number from 1 to 65535", port);
    }
    return QMTP_OK;
}


static int same_server(const qmtp_client *c, const char *host, const char *port)
{
    return c->host != NULL && c->port != NULL && strcmp(c->host, host) == 0 &&
           strcmp(c->port, port) == 0;
}

/* A connect under way: the addresses, the one being tried and until
 * when, and what the ones before it said. */
struct qmtp_connecting {
    const struct addrinfo *ai; /* being tried: in c->pending_ai, or unix_ai */
    int64_t attempt_deadline;  /* of the address being tried */
    int64_t resolve_deadline;  /* of the lookup, while one runs */
    int64_t look_at;           /* the next look at the lookup */
    int64_t look_every;
    int resolving;
    int handshaking;           /* TLS: the connection is made, its handshake under way */
    int tls_want;              /* what the handshake waits for (QMTP_WANT_*) */
    int unix_socket;
    int last_errno;
    int tls_status;            /* an earlier address's failed handshake (0: none), its text in tls_why */
    int tls_errno;
    int limit_hit;
    char where[sizeof ((qmtp_client *)0)->peer];
    struct addrinfo unix_ai;
    struct sockaddr_un unix_sa;
    char tls_why[sizeof ((qmtp_client *)0)->errstr];
};

/* Opens a socket for ai into c->fd (from the start, so that a hook leaving
 * by longjmp cannot leak it) and starts connecting it. 0 connected,
 * EINPROGRESS under way, else the errno that stopped it. */
static int connect_begin(qmtp_client *c, const struct addrinfo *ai)
{
    int fd;

    c->fd = fd = open_socket(ai->ai_family);
    if (fd < 0) {
        return errno;
    }
    c->serial++;
    if (c->local != NULL && ai->ai_family != AF_UNIX) {
        int e = bind_local(c, fd, ai->ai_family);
        if (e != 0) {
            qmtp_close(c);
            c->bind_failed = 1;
            return e;
        }
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int e = errno == EINTR || errno == EAGAIN ? EINPROGRESS : errno;

        if (e != EINPROGRESS) {
            qmtp_close(c);
        }
        return e;
    }
    return 0;
}

static int connect_failed(qmtp_client *c, int status);
static int try_addresses(qmtp_client *c);

/* The handshake with the address being tried failed (rc, its text set).
 * Another address of the name may be another server or wrapper: the next
 * is tried, as after a refused connection, unless the time is up. */
static int handshake_failed(qmtp_client *c, int rc)
{
    struct qmtp_connecting *k = c->connecting;

    if (rc != QMTP_E_TLS || k->unix_socket || k->ai->ai_next == NULL || qmtp_call_limit_reached(c)) {
        return connect_failed(c, rc);
    }
    k->tls_status = rc;
    k->tls_errno = c->sys_errno;
    memcpy(k->tls_why, c->errstr, sizeof k->tls_why);
    qmtp_close(c);
    k->handshaking = 0;
    k->ai = k->ai->ai_next;
    return try_addresses(c);
}

/* The connection is made, and over TLS its handshake done. */
static int connected_done(qmtp_client *c)
{
    struct qmtp_connecting *k = c->connecting;

    k->handshaking = 0;
    if (c->pending_ai != NULL) {
        freeaddrinfo(c->pending_ai);
        c->pending_ai = NULL;
    }
    c->connect_active = 0;
    c->connected_at = qmtp_now_ms();
    memcpy(c->peer, k->where, sizeof c->peer);
    c->err = QMTP_OK;
    return QMTP_OK;
}

/* Moves the TLS handshake on: QMTP_RUNNING, or the connect's end. */
static int handshake(qmtp_client *c)
{
    struct qmtp_connecting *k = c->connecting;
    int rc = qmtp_tls_handshake(c, &k->tls_want, k->where);

    if (rc == QMTP_RUNNING) {
        return rc;
    }
    return rc == QMTP_OK ? connected_done(c) : handshake_failed(c, rc);
}

/* The connection is made: over TLS, the handshake starts, with a connect
 * timeout of its own. */
static int connected(qmtp_client *c)
{
    struct qmtp_connecting *k = c->connecting;
    int one = 1;
    int rc;

    /* A package must leave at once, not wait for the previous one's ACK. */
    if (!k->unix_socket) {
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (c->tls == NULL) {
        return connected_done(c);
    }
    rc = qmtp_tls_begin(c, c->host);
    if (rc != QMTP_OK) {
        return connect_failed(c, rc);
    }
    k->handshaking = 1;
    k->attempt_deadline = qmtp_deadline(c, qmtp_now_ms() + c->connect_ms);
    return handshake(c);
}

/* No address accepted a connection (or the call limit or the caller ended
 * the tries): the error says why, in terms of the last address tried. */
static int connect_failed(qmtp_client *c, int status)
{
    struct qmtp_connecting *k = c->connecting;
    const char *host = c->host;
    int e = k->last_errno;

    qmtp_close(c);
    if (c->pending_ai != NULL) {
        freeaddrinfo(c->pending_ai);
        c->pending_ai = NULL;
    }
    c->connect_active = 0;
    if (status != QMTP_OK) {
        return status; /* its text is set */
    }
    if (k->tls_status != QMTP_OK && !k->limit_hit) {
        /* A server answered at an earlier address: what its handshake
         * said tells more than the refusals after it. */
        c->err = k->tls_status;
        c->sys_errno = k->tls_errno;
        memcpy(c->errstr, k->tls_why, sizeof c->errstr);
        return c->err;
    }
    if (k->unix_socket) {
        if (k->limit_hit) {
            return qmtp_fail(c, QMTP_E_TIMEOUT, 0, CALL_LIMIT_TEXT "connecting to unix socket %s", CALL_LIMIT_S(c), host);
        }
        return e == ETIMEDOUT
            ? qmtp_fail(c, QMTP_E_CONNECT, 0, "cannot connect to unix socket %s: timed out", host)
            : qmtp_fail(c, QMTP_E_CONNECT, e, "cannot connect to unix socket %s", host);
    }
    if (k->limit_hit) {
        return qmtp_fail(c, QMTP_E_TIMEOUT, 0, CALL_LIMIT_TEXT "connecting to %s (%s)", CALL_LIMIT_S(c), host, k->where);
    }
    if (e == ETIMEDOUT) {
        return qmtp_fail(c, QMTP_E_CONNECT, 0, "cannot connect to %s (%s): timed out after %.3g s",
                         host, k->where, (double)c->connect_ms / 1000.0);
    }
    if (c->bind_failed) {
        return qmtp_fail(c, QMTP_E_CONNECT, e, "cannot connect to %s (%s) from local address '%s'",
                         host, k->where, c->local);
    }
    return qmtp_fail(c, QMTP_E_CONNECT, e, "cannot connect to %s (%s)", host, k->where);
}

/* Starts on k->ai and the addresses after it until one is connecting or
 * connected. QMTP_RUNNING, or the connect's end. */
static int try_addresses(qmtp_client *c)
{
    struct qmtp_connecting *k = c->connecting;

    for (; k->ai != NULL; k->ai = k->ai->ai_next) {
        int e;

        if (k->unix_socket) {
            snprintf(k->where, sizeof k->where, "unix socket %s", c->host);
        } else {
            describe_address(k->ai->ai_addr, k->where, sizeof k->where);
        }
        e = connect_begin(c, k->ai);
        if (e == 0) {
            return connected(c);
        }
        if (e == EINPROGRESS) {
            k->attempt_deadline = qmtp_deadline(c, qmtp_now_ms() + c->connect_ms);
            return QMTP_RUNNING;
        }
        k->last_errno = e;
    }
    return connect_failed(c, QMTP_OK);
}

/* The address being tried failed with errno e: on to the next. */
static int next_address(qmtp_client *c, int e)
{
    struct qmtp_connecting *k = c->connecting;

    qmtp_close(c);
    k->last_errno = e;
    if (e == ETIMEDOUT && qmtp_call_limit_reached(c)) {
        k->limit_hit = 1; /* no time left for the other addresses */
        return connect_failed(c, QMTP_OK);
    }
    k->ai = k->ai->ai_next;
    return try_addresses(c);
}

/* The lookup is over (0: its addresses in c->pending_ai). */
static int resolved(qmtp_client *c, int rc)
{
    struct qmtp_connecting *k = c->connecting;

    k->resolving = 0;
    if (rc != QMTP_OK) {
        return connect_failed(c, rc);
    }
    k->ai = c->pending_ai;
    return try_addresses(c);
}

/* What qmtp_connect and qmtp_connect_start share: checks, the server's
 * names kept, the state reset. QMTP_RUNNING to go on, else the end. */
static int connect_prepare(qmtp_client *c, const char *host, const char *port)
{
    struct qmtp_connecting *k;

    qmtp_recover(c);
    qmtp_abandon(c);
    qmtp_close(c);
    c->err = QMTP_OK;
    if (host[0] != '/' && check_port(c, port) != QMTP_OK) {
        return c->err;
    }
    if (host[0] == '/' && strlen(host) >= sizeof k->unix_sa.sun_path) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "socket path '%s' is too long", host);
    }
    if (!same_server(c, host, port)) {
        char *h = copy_string(host);
        char *p = copy_string(port);

        if (h == NULL || p == NULL) {
            free(h);
            free(p);
            return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
        }
        free(c->host);
        free(c->port);
        c->host = h;
        c->port = p;
        c->mode = QMTP_MODE_UNKNOWN;
    }
    if (c->connecting == NULL && (c->connecting = malloc(sizeof *c->connecting)) == NULL) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    k = c->connecting;
    memset(k, 0, sizeof *k);
    c->bind_failed = 0;
    if (host[0] == '/') {
        k->unix_socket = 1;
        k->unix_sa.sun_family = AF_UNIX;
        memcpy(k->unix_sa.sun_path, host, strlen(host) + 1);
        k->unix_ai.ai_family = AF_UNIX;
        k->unix_ai.ai_socktype = SOCK_STREAM;
        k->unix_ai.ai_addr = (struct sockaddr *)(void *)&k->unix_sa;
        k->unix_ai.ai_addrlen = sizeof k->unix_sa;
        k->ai = &k->unix_ai;
    }
    c->connect_active = 1;
    c->started_by = getpid();
    return QMTP_RUNNING;
}

int qmtp_connect_start(qmtp_client *c, const char *host, const char *port)
{
    struct qmtp_connecting *k;
    int rc = connect_prepare(c, host, port);

    if (rc != QMTP_RUNNING) {
        return rc;
    }
    k = c->connecting;
    if (k->unix_socket) {
        return try_addresses(c);
    }
    k->resolve_deadline = qmtp_deadline(c, qmtp_now_ms() + c->connect_ms);
    rc = qmtp_resolve_start(c, host, port, k->resolve_deadline);
    if (rc != QMTP_RUNNING) {
        return resolved(c, rc);
    }
    k->resolving = 1;
    k->look_every = 1;
    k->look_at = qmtp_now_ms() + k->look_every;
    return QMTP_RUNNING;
}

int qmtp_connect_wants(const qmtp_client *c, int *fd, int *events, int64_t *deadline_ms)
{
    const struct qmtp_connecting *k = c->connecting;

    if (!c->connect_active) {
        return QMTP_E_STATE;
    }
    if (k->resolving) {
        *fd = -1;
        *events = 0;
        *deadline_ms = k->look_at < k->resolve_deadline ? k->look_at : k->resolve_deadline;
    } else if (k->handshaking) {
        *fd = c->fd;
        *events = k->tls_want;
        *deadline_ms = k->attempt_deadline;
    } else {
        *fd = c->fd;
        *events = QMTP_WANT_WRITE;
        *deadline_ms = k->attempt_deadline;
    }
    return QMTP_OK;
}

int qmtp_connect_step(qmtp_client *c, int ready)
{
    struct qmtp_connecting *k = c->connecting;
    int soerr = 0;
    socklen_t soerrlen = sizeof soerr;

    if (!c->connect_active) {
        return qmtp_fail(c, QMTP_E_STATE, 0, "no connect is under way");
    }
    if (k->resolving) {
        int rc = qmtp_resolve_poll(c);

        if (rc != QMTP_RUNNING) {
            return resolved(c, rc);
        }
        /* Looked at ever less often, up to every 20 ms. */
        if (k->look_every < 20) {
            k->look_every *= 2;
        }
        k->look_at = qmtp_now_ms() + k->look_every;
        return QMTP_RUNNING;
    }
    if (k->handshaking) {
        if (ready != 0 || qmtp_now_ms() < k->attempt_deadline) {
            return handshake(c);
        }
        if (qmtp_call_limit_reached(c)) {
            return connect_failed(c, qmtp_fail(c, QMTP_E_TIMEOUT, 0, CALL_LIMIT_TEXT "in the TLS handshake with %s (%s)", CALL_LIMIT_S(c),
                                               c->host, k->where));
        }
        return handshake_failed(c, qmtp_fail(c, QMTP_E_TLS, 0, "TLS: the handshake with the server at %s timed out after %.3g s",
                                             k->where, (double)c->connect_ms / 1000.0));
    }
    if (ready == 0) {
        if (qmtp_now_ms() < k->attempt_deadline) {
            return QMTP_RUNNING;
        }
        return next_address(c, ETIMEDOUT);
    }
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &soerrlen) != 0) {
        soerr = errno;
    }
    if (soerr == 0) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;

        if (getpeername(c->fd, (struct sockaddr *)(void *)&peer, &len) == 0) {
            return connected(c);
        }
        if (errno == ENOTCONN) {
            return QMTP_RUNNING; /* woken early: not connected yet */
        }
        soerr = errno;
    }
    return next_address(c, soerr);
}

int qmtp_connect_cancel(qmtp_client *c, const char *why)
{
    if (!c->connect_active) {
        return QMTP_E_STATE;
    }
    if (c->connecting->resolving) {
        qmtp_resolve_abandon(c);
    }
    return connect_failed(c, qmtp_fail(c, QMTP_E_INTR, 0, "%s", why));
}

void qmtp_connecting_free(qmtp_client *c)
{
    free(c->connecting);
    c->connecting = NULL;
    c->connect_active = 0;
}

int qmtp_set_local_addr(qmtp_client *c, const char *addr)
{
    char *copy = NULL;

    if (addr != NULL && (copy = copy_string(addr)) == NULL) {
        return qmtp_fail(c, QMTP_E_NOMEM, 0, "out of memory");
    }
    free(c->local);
    c->local = copy;
    return QMTP_OK;
}

int qmtp_connect(qmtp_client *c, const char *host, const char *port)
{
    int rc = connect_prepare(c, host, port);

    if (rc != QMTP_RUNNING) {
        return rc;
    }
    c->busy = 1;
    if (!c->connecting->unix_socket) {
        rc = qmtp_resolve(c, host, port);
        if (rc != QMTP_OK) {
            c->busy = 0;
            c->connect_active = 0;
            return rc;
        }
        c->connecting->ai = c->pending_ai;
    }
    /* The same steps as qmtp_connect_start's, waited for in poll(2). */
    rc = try_addresses(c);
    while (rc == QMTP_RUNNING) {
        struct pollfd p;
        int fd;
        int events;
        int64_t deadline;
        int64_t left;
        int ready = 0;

        qmtp_connect_wants(c, &fd, &events, &deadline);
        left = deadline - qmtp_now_ms();
        if (left > 0) {
            int n;

            p.fd = fd;
            p.events = (short)((events & QMTP_WANT_READ ? POLLIN : 0) | (events & QMTP_WANT_WRITE ? POLLOUT : 0));
            p.revents = 0;
            n = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
            if (n < 0 && errno != EINTR) {
                rc = next_address(c, errno);
                continue;
            }
            if (n < 0 && qmtp_interrupted(c) != QMTP_OK) {
                qmtp_connect_cancel(c, "interrupted");
                rc = qmtp_fail(c, QMTP_E_INTR, EINTR, "connecting to %s was interrupted", host);
                break;
            }
            ready = n > 0 ? QMTP_WANT_READ | QMTP_WANT_WRITE : 0;
        }
        rc = qmtp_connect_step(c, ready);
    }
    c->busy = 0;
    return rc;
}

int qmtp_close(qmtp_client *c)
{
    if (c->fd < 0) {
        return 0;
    }
    if (c->tls != NULL) {
        qmtp_tls_end(c);
    }
    /* close(2) even on EINTR: retrying could close a descriptor another
     * thread has just been given. */
    close(c->fd);
    c->fd = -1;
    c->peer[0] = '\0';
    c->shown = QMTP_MODE_UNKNOWN; /* what a connection showed dies with it */
    return 1;
}

unsigned long qmtp_connection_serial(const qmtp_client *c)
{
    return c->serial;
}

int qmtp_is_open(qmtp_client *c)
{
    qmtp_recover(c);
    return c->fd >= 0;
}

int64_t qmtp_age_ms(const qmtp_client *c)
{
    return c->fd >= 0 ? qmtp_now_ms() - c->connected_at : -1;
}

const char *qmtp_peer(const qmtp_client *c)
{
    return c->peer;
}

int qmtp_idle_check(qmtp_client *c)
{
    struct pollfd p;
    char byte;
    ssize_t n;

    qmtp_recover(c);
    if (c->fd < 0) {
        return 0;
    }
    p.fd = c->fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 0) <= 0) {
        return 1; /* nothing to read: the usual healthy state */
    }
    if (c->tls != NULL) {
        if (qmtp_tls_idle_check(c) == QMTP_OK) {
            return 1;
        }
        qmtp_close(c);
        return 0;
    }
    do {
        n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 1;
    }
    if (n == 0) {
        qmtp_fail(c, QMTP_E_EOF, 0, "the server closed the idle connection");
    } else if (n < 0) {
        qmtp_fail(c, QMTP_E_IO, errno, "the idle connection failed");
    } else {
        qmtp_fail(c, QMTP_E_PROTO, 0, "the server sent bytes on an idle connection");
    }
    qmtp_close(c);
    return 0;
}
