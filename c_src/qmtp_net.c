/* Connections: name resolution, connect with a deadline, idle checks.
 * Every socket is non-blocking and close-on-exec; all waiting is poll(2)
 * against a monotonic deadline, never alarm(2) or SO_RCVTIMEO. Names are
 * looked up with glibc's getaddrinfo_a where there is one, so that the
 * connect timeout and the call limit bound the lookup too; elsewhere with
 * getaddrinfo, which waits as long as the resolver does. */
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
    if (c->busy) {
        c->busy = 0;
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


/* One address: 0 connected, else the errno that stopped it (ETIMEDOUT for
 * our own deadline: the connect timeout, or the call limit). The socket
 * sits in c->fd from the start, so that a hook leaving by longjmp cannot
 * leak it. */
static int connect_one(qmtp_client *c, const struct addrinfo *ai)
{
    int64_t deadline = qmtp_deadline(c, qmtp_now_ms() + c->connect_ms);
    int soerr = 0;
    socklen_t soerrlen = sizeof soerr;
    int one = 1;
    int fd;

    c->fd = fd = open_socket(ai->ai_family);
    if (fd < 0) {
        return errno;
    }
    if (c->local != NULL && ai->ai_family != AF_UNIX) {
        int e = bind_local(c, fd, ai->ai_family);
        if (e != 0) {
            qmtp_close(c);
            c->bind_failed = 1;
            return e;
        }
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            int e = errno;
            qmtp_close(c);
            return e;
        }
        for (;;) {
            struct pollfd p;
            int64_t left = deadline - qmtp_now_ms();
            int r;

            if (left <= 0) {
                qmtp_close(c);
                return ETIMEDOUT;
            }
            p.fd = fd;
            p.events = POLLOUT;
            p.revents = 0;
            r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
            if (r > 0) {
                break;
            }
            if (r < 0 && (errno != EINTR || qmtp_interrupted(c) != QMTP_OK)) {
                int e = errno;
                qmtp_close(c);
                return e;
            }
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerrlen) != 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            qmtp_close(c);
            return soerr;
        }
    }
    /* A package must leave at once, not wait for the previous one's ACK. */
    if (ai->ai_family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return 0;
}

/* A server on this machine at a Unix-domain socket path. */
static int connect_unix(qmtp_client *c, const char *path)
{
    struct sockaddr_un sun;
    struct addrinfo ai;
    int e;

    if (strlen(path) >= sizeof sun.sun_path) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "socket path '%s' is too long", path);
    }
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    memset(&ai, 0, sizeof ai);
    ai.ai_family = AF_UNIX;
    ai.ai_socktype = SOCK_STREAM;
    ai.ai_addr = (struct sockaddr *)(void *)&sun;
    ai.ai_addrlen = sizeof sun;
    c->busy = 1;
    e = connect_one(c, &ai);
    c->busy = 0;
    if (e == ETIMEDOUT && qmtp_call_limit_reached(c)) {
        return qmtp_fail(c, QMTP_E_TIMEOUT, 0, CALL_LIMIT_TEXT "connecting to unix socket %s", path);
    }
    if (e != 0) {
        return e == ETIMEDOUT
            ? qmtp_fail(c, QMTP_E_CONNECT, 0, "cannot connect to unix socket %s: timed out", path)
            : qmtp_fail(c, QMTP_E_CONNECT, e, "cannot connect to unix socket %s", path);
    }
    c->connected_at = qmtp_now_ms();
    snprintf(c->peer, sizeof c->peer, "unix socket %s", path);
    return QMTP_OK;
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

static int same_server(const qmtp_client *c, const char *host, const char *port)
{
    return c->host != NULL && c->port != NULL && strcmp(c->host, host) == 0 &&
           strcmp(c->port, port) == 0;
}

int qmtp_connect(qmtp_client *c, const char *host, const char *port)
{
    const struct addrinfo *ai;
    int last_errno = 0;
    int limit_hit = 0;
    int rc;
    char where[sizeof c->peer] = "";

    qmtp_recover(c);
    qmtp_close(c);
    c->err = QMTP_OK;
    if (host[0] != '/' && check_port(c, port) != QMTP_OK) {
        return c->err;
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
    if (host[0] == '/') {
        return connect_unix(c, host);
    }
    c->bind_failed = 0;
    c->busy = 1;
    rc = qmtp_resolve(c, host, port);
    if (rc != QMTP_OK) {
        c->busy = 0;
        return rc;
    }
    for (ai = c->pending_ai; ai != NULL; ai = ai->ai_next) {
        describe_address(ai->ai_addr, where, sizeof where);
        last_errno = connect_one(c, ai);
        if (last_errno == 0 || c->err == QMTP_E_INTR) {
            break;
        }
        if (last_errno == ETIMEDOUT && qmtp_call_limit_reached(c)) {
            limit_hit = 1; /* no time left for the other addresses */
            break;
        }
    }
    freeaddrinfo(c->pending_ai);
    c->pending_ai = NULL;
    c->busy = 0;
    if (last_errno == 0) {
        c->connected_at = qmtp_now_ms();
        memcpy(c->peer, where, sizeof c->peer);
        c->err = QMTP_OK;
        return QMTP_OK;
    }
    if (c->err == QMTP_E_INTR) {
        return qmtp_fail(c, QMTP_E_INTR, EINTR, "connecting to %s was interrupted", host);
    }
    if (limit_hit) {
        return qmtp_fail(c, QMTP_E_TIMEOUT, 0, CALL_LIMIT_TEXT "connecting to %s (%s)", host, where);
    }
    if (last_errno == ETIMEDOUT) {
        return qmtp_fail(c, QMTP_E_CONNECT, 0, "cannot connect to %s (%s): timed out after %.3g s",
                         host, where, (double)c->connect_ms / 1000.0);
    }
    if (c->bind_failed) {
        return qmtp_fail(c, QMTP_E_CONNECT, last_errno, "cannot connect to %s (%s) from local address '%s'",
                         host, where, c->local);
    }
    return qmtp_fail(c, QMTP_E_CONNECT, last_errno, "cannot connect to %s (%s)", host, where);
}

int qmtp_close(qmtp_client *c)
{
    if (c->fd < 0) {
        return 0;
    }
    /* close(2) even on EINTR: retrying could close a descriptor another
     * thread has just been given. */
    close(c->fd);
    c->fd = -1;
    c->peer[0] = '\0';
    c->shown = QMTP_MODE_UNKNOWN; /* what a connection showed dies with it */
    return 1;
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
