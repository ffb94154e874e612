/* The limit: a small C QMTP client that writes the same packages to the same
 * server as the Perl contenders, with nothing but write(2) and read(2).
 *
 *   qmtp-client [-P] [-1] [-b USEC] [-n COUNT] [-s SIZE] [-r RCPTS] HOST PORT
 *
 * Sequential by default (one package, then its answers, like send()); -P
 * pipelines: a writer thread sends every package while the main thread
 * reads answers. -b: before each read that would sleep, look for answers
 * without sleeping for up to USEC microseconds, as Net::QMTP's BusyWait
 * does (without its backing off: this server always answers at once).
 * Prints "messages seconds". */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char *pkg;
static size_t pkg_len;
static long count = 10000;
static int fd;
static long busy_us;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            perror("write");
            exit(111);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* read(2), after looking without sleeping for up to busy_us. */
static ssize_t read_busy(char *p, size_t n)
{
    double until = now() + busy_us / 1e6;
    while (busy_us > 0) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            return r;
        }
        if (now() >= until) {
            break;
        }
    }
    return read(fd, p, n);
}

/* Reads until `answers` netstrings have arrived, each of which must be a
 * success ("K..."), as the Perl contenders check theirs. */
static void read_answers(long answers)
{
    static char buf[1 << 16];
    static size_t have;
    while (answers > 0) {
        ssize_t r;
        for (;;) {
            size_t i = 0, len = 0, used;
            while (i < have && buf[i] >= '0' && buf[i] <= '9' && len < 100000) {
                len = len * 10 + (size_t)(buf[i++] - '0');
            }
            if (answers == 0 || i == have || i + 1 + len >= have) {
                break; /* incomplete: read more */
            }
            if (i == 0 || buf[i] != ':' || buf[i + 1 + len] != ',' || len == 0) {
                fprintf(stderr, "malformed answer\n");
                exit(111);
            }
            if (buf[i + 1] != 'K') {
                fprintf(stderr, "not accepted: %.*s\n", (int)len, buf + i + 1);
                exit(111);
            }
            used = i + 2 + len;
            memmove(buf, buf + used, have - used);
            have -= used;
            answers--;
        }
        if (answers == 0) {
            break;
        }
        r = read_busy(buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            fprintf(stderr, "connection closed with %ld answers missing\n", answers);
            exit(111);
        }
        have += (size_t)r;
    }
}

static void *writer(void *arg)
{
    long i;
    (void)arg;
    for (i = 0; i < count; i++) {
        write_all(pkg, pkg_len);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t size = 1024;
    int rcpts = 1;
    int pipelined = 0;
    int per_package = 0;
    int opt;
    int one = 1;
    struct addrinfo hints, *ai;
    char head[32];
    char *body;
    char tail[4096];
    size_t tl = 0;
    int i;
    double t0;
    long answers_each;

    while ((opt = getopt(argc, argv, "Pb:n:s:r:1")) != -1) {
        switch (opt) {
        case 'P': pipelined = 1; break;
        case 'b': busy_us = atol(optarg); break;
        case 'n': count = atol(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'r': rcpts = atoi(optarg); break;
        case '1': per_package = 1; break;
        default:
            fprintf(stderr, "usage: qmtp-client [-P] [-1] [-b USEC] [-n COUNT] [-s SIZE] [-r RCPTS] HOST PORT\n");
            return 100;
        }
    }
    if (argc - optind != 2 || rcpts < 1 || rcpts > 100) {
        fprintf(stderr, "usage: qmtp-client [-P] [-1] [-b USEC] [-n COUNT] [-s SIZE] [-r RCPTS] HOST PORT\n");
        return 100;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(argv[optind], argv[optind + 1], &hints, &ai) != 0) {
        fprintf(stderr, "cannot resolve\n");
        return 111;
    }
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        perror("connect");
        return 111;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    /* The package: same bytes as the Perl benchmark sends. */
    body = malloc(size);
    memset(body, 'x', size);
    {
        char rl[4096];
        size_t rn = 0;
        for (i = 0; i < rcpts; i++) {
            char r[64];
            int n = snprintf(r, sizeof r, "rcpt%d@example.org", i);
            rn += (size_t)snprintf(rl + rn, sizeof rl - rn, "%d:%s,", n, r);
        }
        tl = (size_t)snprintf(tail, sizeof tail, ",%d:%s,%zu:%.*s,", 18, "sender@example.org", rn, (int)rn, rl);
    }
    snprintf(head, sizeof head, "%zu:\n", size + 1);
    pkg_len = strlen(head) + size + tl;
    pkg = malloc(pkg_len);
    memcpy(pkg, head, strlen(head));
    memcpy(pkg + strlen(head), body, size);
    memcpy(pkg + strlen(head) + size, tail, tl);

    answers_each = per_package ? 1 : rcpts;
    t0 = now();
    if (pipelined) {
        pthread_t th;
        pthread_create(&th, NULL, writer, NULL);
        read_answers(count * answers_each);
        pthread_join(th, NULL);
    } else {
        long k;
        for (k = 0; k < count; k++) {
            write_all(pkg, pkg_len);
            read_answers(answers_each);
        }
    }
    printf("%ld %.6f\n", count, now() - t0);
    return 0;
}
