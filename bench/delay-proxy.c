/* A TCP relay for loopback that adds latency, for benchmarks on a kernel
 * without netem: every chunk read from one side is held for MS
 * milliseconds before it is written to the other, in both directions at
 * once, so a request and its answer get 2*MS added (-d 2.5 gives a 5 ms
 * round trip).
 *
 *   delay-proxy [-d MS] [-q BYTES] TARGET_PORT
 *
 * Listens on 127.0.0.1 on a port the kernel picks and prints it, then
 * serves each connection in a child: it connects to 127.0.0.1:TARGET_PORT
 * and relays with poll() and, per direction, a queue of timestamped chunks.
 * Bytes keep their order; an end of stream (one side shut down writing)
 * travels through the queue like data, and the other side is shut down for
 * writing once everything before it has been written, so half-closes work.
 * At most -q BYTES (default 8 MiB) wait per direction; past that the relay
 * stops reading that side until the queue drains (TCP flow control then
 * slows the sender). A reset or write error on either side ends the
 * connection. Loopback only: it never connects anywhere but 127.0.0.1. */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)
#define MAX_IOV 64

struct chunk {
    struct chunk *next;
    long long due;      /* ns, CLOCK_MONOTONIC; when it may be written */
    size_t len;         /* 0: end of stream */
    size_t off;         /* bytes already written */
    char data[];
};

struct dir {
    int from;
    int to;
    int eof_read;       /* read() on `from` returned 0: no more reading */
    int done;           /* end of stream written on: `to` shut down */
    size_t queued;      /* bytes in the queue, not yet written */
    struct chunk *head;
    struct chunk *tail;
};

static long long delay_ns;
static size_t queue_limit = 8u * 1024 * 1024;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    _exit(111);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        die("delay-proxy: fcntl");
    }
}

static void enqueue(struct dir *d, struct chunk *c)
{
    c->next = NULL;
    c->due = now_ns() + delay_ns;
    c->off = 0;
    if (d->tail) {
        d->tail->next = c;
    } else {
        d->head = c;
    }
    d->tail = c;
    d->queued += c->len;
}

/* One read from d->from into a new chunk. Returns -1 when the connection
 * must end (a reset or other error). */
static int pump_in(struct dir *d)
{
    struct chunk *c = malloc(sizeof *c + READ_SIZE);
    ssize_t n;

    if (!c) {
        die("delay-proxy: malloc");
    }
    do {
        n = read(d->from, c->data, READ_SIZE);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        free(c);
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    if (n == 0) {
        d->eof_read = 1;
        c->len = 0; /* the end of stream marker, delayed like data */
        enqueue(d, c);
        return 0;
    }
    if ((size_t)n < READ_SIZE / 2) {
        struct chunk *s = realloc(c, sizeof *c + (size_t)n);
        if (s) {
            c = s;
        }
    }
    c->len = (size_t)n;
    enqueue(d, c);
    return 0;
}

/* Writes every chunk that is due, in order, as far as the socket takes it.
 * Returns -1 when the connection must end. */
static int pump_out(struct dir *d, long long now)
{
    while (d->head && d->head->due <= now) {
        struct iovec iov[MAX_IOV];
        int cnt = 0;
        struct chunk *c;
        ssize_t n;

        if (d->head->len == 0) { /* end of stream, everything before it written */
            struct chunk *eos = d->head;
            d->head = eos->next;
            if (!d->head) {
                d->tail = NULL;
            }
            free(eos);
            shutdown(d->to, SHUT_WR);
            d->done = 1;
            continue;
        }
        for (c = d->head; c && c->len && c->due <= now && cnt < MAX_IOV; c = c->next) {
            iov[cnt].iov_base = c->data + c->off;
            iov[cnt].iov_len = c->len - c->off;
            cnt++;
        }
        do {
            n = writev(d->to, iov, cnt);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        d->queued -= (size_t)n;
        while (n > 0) { /* drop what was written; keep a partial chunk's rest */
            c = d->head;
            if ((size_t)n >= c->len - c->off) {
                n -= (ssize_t)(c->len - c->off);
                d->head = c->next;
                if (!d->head) {
                    d->tail = NULL;
                }
                free(c);
            } else {
                c->off += (size_t)n;
                n = 0;
            }
        }
        if (d->head && d->head->len && d->head->off) {
            return 0; /* short write: the socket is full, wait for POLLOUT */
        }
    }
    return 0;
}

static void relay(int client, int server)
{
    struct dir dirs[2];
    int k;

    memset(dirs, 0, sizeof dirs);
    dirs[0].from = client;
    dirs[0].to = server;
    dirs[1].from = server;
    dirs[1].to = client;
    set_nonblock(client);
    set_nonblock(server);

    while (!(dirs[0].done && dirs[1].done)) {
        struct pollfd pfd[2];
        long long now = now_ns();
        long long wake = -1; /* earliest due time of a chunk not yet due */
        struct timespec ts, *tsp = NULL;
        int r;

        pfd[0].fd = client;
        pfd[1].fd = server;
        pfd[0].events = pfd[1].events = 0;
        pfd[0].revents = pfd[1].revents = 0;
        for (k = 0; k < 2; k++) {
            /* Read to its end and written to its end: a socket with
             * nothing left to do, whose POLLHUP must not wake us. */
            if (dirs[k].eof_read && dirs[1 - k].done) {
                pfd[k].fd = -1;
            }
        }
        for (k = 0; k < 2; k++) {
            struct dir *d = &dirs[k];
            struct pollfd *in = &pfd[k];       /* dirs[k].from is pfd[k].fd */
            struct pollfd *out = &pfd[1 - k];  /* dirs[k].to is the other */
            if (!d->eof_read && d->queued < queue_limit) {
                in->events |= POLLIN;
            }
            if (d->head) {
                if (d->head->due <= now) {
                    out->events |= POLLOUT;
                } else if (wake < 0 || d->head->due < wake) {
                    wake = d->head->due;
                }
            }
        }
        if (wake >= 0) {
            long long wait = wake - now;
            ts.tv_sec = (time_t)(wait / 1000000000LL);
            ts.tv_nsec = (long)(wait % 1000000000LL);
            tsp = &ts;
        }
        r = ppoll(pfd, 2, tsp, NULL);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("delay-proxy: poll");
        }
        now = now_ns();
        for (k = 0; k < 2; k++) {
            struct dir *d = &dirs[k];
            short ev = pfd[k].revents;
            if (ev & POLLNVAL) {
                _exit(111);
            }
            /* POLLHUP/POLLERR: read to learn whether it is an end of
             * stream (0) or a reset (error), even when not polling for
             * input; a reset ends the connection. */
            if (!d->eof_read && (ev & (POLLIN | POLLHUP | POLLERR))) {
                if (pump_in(d) < 0) {
                    _exit(0);
                }
            } else if (d->eof_read && (ev & (POLLHUP | POLLERR))) {
                /* Both ways closed on this socket: nothing can be written
                 * to it any more. If data is still waiting for it, that is
                 * a lost peer; otherwise the other direction is done. */
                if (dirs[1 - k].head || (ev & POLLERR)) {
                    _exit(0);
                }
            }
        }
        for (k = 0; k < 2; k++) {
            if (pump_out(&dirs[k], now) < 0) {
                _exit(0);
            }
        }
    }
    close(client);
    close(server);
}

static void usage(void)
{
    fprintf(stderr, "usage: delay-proxy [-d MS] [-q BYTES] TARGET_PORT\n");
    exit(100);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa, ta;
    socklen_t salen = sizeof sa;
    double ms = 0;
    int one = 1;
    int opt;
    int lfd;
    long target;
    char *end;

    while ((opt = getopt(argc, argv, "d:q:")) != -1) {
        if (opt == 'd') {
            ms = strtod(optarg, &end);
            if (*end || ms < 0 || ms > 60000) {
                usage();
            }
        } else if (opt == 'q') {
            queue_limit = (size_t)strtoul(optarg, &end, 10);
            if (*end || queue_limit == 0) {
                usage();
            }
        } else {
            usage();
        }
    }
    if (argc - optind != 1) {
        usage();
    }
    target = strtol(argv[optind], &end, 10);
    if (*end || target < 1 || target > 65535) {
        usage();
    }
    delay_ns = (long long)(ms * 1e6 + 0.5);

    signal(SIGCHLD, SIG_IGN); /* children reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) {
        die("delay-proxy: socket");
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 128) != 0) {
        die("delay-proxy: bind/listen");
    }
    getsockname(lfd, (struct sockaddr *)&sa, &salen);
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    memset(&ta, 0, sizeof ta);
    ta.sin_family = AF_INET;
    ta.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ta.sin_port = htons((unsigned short)target);

    for (;;) {
        int cfd = accept(lfd, NULL, NULL);
        pid_t pid;

        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            die("delay-proxy: accept");
        }
        pid = fork();
        if (pid < 0) {
            close(cfd);
            continue;
        }
        if (pid == 0) {
            int sfd = socket(AF_INET, SOCK_STREAM, 0);
            close(lfd);
            if (sfd < 0 || connect(sfd, (struct sockaddr *)&ta, sizeof ta) != 0) {
                perror("delay-proxy: connect to target");
                _exit(111); /* the client sees its connection closed */
            }
            setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            relay(cfd, sfd);
            _exit(0);
        }
        close(cfd);
    }
}
