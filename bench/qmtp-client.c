/* The limit: a small C QMTP client that writes the same packages to the same
 * server as the Perl contenders.
 *
 *   qmtp-client [-P] [-1] [-b USEC] [-n COUNT] [-s SIZE] [-r RCPTS]
 *               [-w splice|write|each] [-c BYTES] [-N 0|1] [-S BYTES] [-R BYTES]
 *               [-B BYTES] HOST PORT
 *
 * Sequential by default (one package with one write, then its answers, like
 * send()): nothing but write(2) and read(2). -b: before each read that
 * would sleep, look for answers without sleeping for up to USEC
 * microseconds, as Net::QMTP's BusyWait does (without its backing off: this
 * server always answers at once). -1: the server answers once per package
 * (mailfront), not once per recipient.
 *
 * -P pipelines, as fast as this file knows how: a writer thread sends every
 * package while the main thread reads and checks every answer; both threads
 * run wherever the process may (bench/run pins the whole process, so both
 * share the contender CPU). It stays honest: every byte of every package
 * goes through the socket (COUNT whole packages, nothing left out or
 * shared between packages on the wire), and every answer is read and
 * checked (a complete netstring beginning with 'K'; exactly COUNT x RCPTS
 * of them, or COUNT with -1; an extra byte is an error).
 *
 *   -w splice  (default) the packages go from a prebuilt buffer of copies
 *              (-c BYTES, default 256 KiB, or one package if larger) with
 *              vmsplice(2) into a pipe and splice(2) to the socket: the
 *              kernel sends the buffer's pages without copying them. Falls
 *              back to -w write if the kernel refuses the first vmsplice.
 *   -w write   the same buffer with write(2): one copy into the kernel, many
 *              packages per call (-c BYTES, default 512 KiB).
 *   -w each    one write(2) per package (the -P of before).
 *   -N 0|1     TCP_NODELAY (default 1, as Net::QMTP sets it)
 *   -S, -R     SO_SNDBUF, SO_RCVBUF before connect (default: the kernel's
 *              autotuning)
 *   -B BYTES   the answers' read buffer (default 1 MiB)
 *
 * What was measured: 1 KiB packages to bench/qmtp-sink pinned to CPU 0,
 * this client pinned to CPU 1 (both its threads), as bench/run places them;
 * a 2-CPU AMD EPYC virtual machine, shared. Medians of 7 runs of 1 to 1.5
 * million packages; the variants of one table were measured in turn in the
 * same session, since runs drift 10-30% and only ratios measured together
 * mean much. Messages per second:
 *
 *                                             1 rcpt     10 rcpts
 *   -w each (the -P of before)                  82k        79k
 *   -w write, buffer of copies 512 KiB        2.45M      1.23M
 *   -w splice, buffer of copies 256 KiB       2.71M      1.47M   (default)
 *
 * So, at 1 KiB: 33x the -P of before with 1 recipient, 19x with 10. Each
 * step, measured the same way against the one before it (1 recipient):
 *
 *   many packages per write(2) instead of one: 16 KiB of copies 0.97M,
 *     64 KiB 1.32M, 256 KiB 1.67-1.74M, 512 KiB-1 MiB 1.8-2.0M (1.5-2.4M
 *     in other runs), 4 MiB 1.23M and 64 MiB 1.31M (the buffer no longer
 *     stays in the caches). At 10 KiB 512 KiB beat 1 MiB (210k/181k); at
 *     100 KiB 1 MiB beat 512 KiB (23.6k/15.2k): hence 1 MiB past 64 KiB.
 *   writev(2) of 1 KiB iovecs, 256 per call: 1.19M against 1.74M for the
 *     same bytes from one buffer (10 rcpts: 1.14M/1.06M, a wash): dropped.
 *   one thread, non-blocking socket and poll(2), same buffer: 1.27M
 *     (10 rcpts 0.76M) against 1.74M with two threads: dropped.
 *   send(MSG_ZEROCOPY), 1 MiB: 1.47M against 1.63M for write(2): loopback
 *     copies the pages anyway, and the completions cost: dropped.
 *   vmsplice(2) + splice(2) instead of write(2): 256 KiB 2.55-2.72M,
 *     512 KiB 2.44M, 1 MiB 2.30M; 64 MiB 1.61M. At 10 KiB 1 MiB beat
 *     256 KiB (444k/287k), at 100 KiB too (33k/26k): hence 1 MiB past
 *     2 KiB packages. At 1 MiB packages about twice write(2) (3.4k/1.7k).
 *   TCP_NODELAY off (-N 0): 2.83M against 2.87M on (splice), 2.01M/2.28M
 *     (write): no difference beyond the noise; kept on, as Net::QMTP has
 *     it. (With one write per package it matters: -w each 166k off, 71k on.)
 *   SO_SNDBUF 4 MiB: 2.73M against 2.87M autotuned (noise); 256 KiB: 0.67x
 *     (a fixed small buffer stalls the writer). SO_RCVBUF 4 MiB: 2.42M,
 *     noise. Both left to the kernel's autotuning.
 *   read buffer 64 KiB against 1 MiB: 2.93M/2.87M, noise; the answer
 *     scanner that moves only the incomplete tail once per read (not every
 *     answer, as the sequential one does) is what matters there.
 *
 * Where the limit is: with -w write this process uses 50-90% of its CPU
 * while the sink's CPU is never idle: the sink is the bottleneck, and how
 * fast it copies the packages out of the kernel depends on whether the
 * pages it reads are still cached. With -w splice the sink reads this
 * process's own buffer of copies, the same 256 KiB over and over, which
 * stays cached, and this process's CPU becomes the limit (85-98% busy);
 * with a 64 MiB buffer splice falls to the level of write(2). So at 1 KiB
 * most of what splice gains over write(2) is the sink reading hot pages, a
 * gain that identical packages allow and a queue of distinct messages
 * would not; for large messages it is also the copy saved. With 10
 * recipients the sink parses every recipient byte by byte and is the limit
 * for any writer (1.2M-1.5M).
 *
 * Prints "messages seconds". */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { W_SPLICE, W_WRITE, W_EACH };

static char *pkg;
static size_t pkg_len;
static long count = 10000;
static int fd;
static long busy_us;

/* -P: the buffer of copies, and the pipe for splice */
static int wmode = W_SPLICE;
static char *copies;
static long copies_n;
static int pp[2] = { -1, -1 };

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

/* All N bytes at P through the pipe into the socket, without copying them.
 * Returns 0 if the very first vmsplice is refused (nothing sent: the
 * caller writes instead). */
static int splice_all(const char *p, size_t n, int first)
{
    while (n > 0) {
        struct iovec v;
        ssize_t in, out = 0;
        v.iov_base = (void *)p;
        v.iov_len = n;
        in = vmsplice(pp[1], &v, 1, 0);
        if (in < 0 && errno == EINTR) {
            continue;
        }
        if (in <= 0) {
            if (first && (errno == EINVAL || errno == ENOSYS || errno == EPERM)) {
                return 0;
            }
            perror("vmsplice");
            exit(111);
        }
        first = 0;
        while (out < in) {
            ssize_t s = splice(pp[0], NULL, fd, NULL, (size_t)(in - out), 0);
            if (s < 0 && errno == EINTR) {
                continue;
            }
            if (s <= 0) {
                perror("splice");
                exit(111);
            }
            out += s;
        }
        p += in;
        n -= (size_t)in;
    }
    return 1;
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

/* Sequential: reads until `answers` netstrings have arrived, each of which
 * must be a success ("K..."), as the Perl contenders check theirs. */
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

/* Pipelined: reads with large reads and counts the complete netstrings in
 * what came, each of which must begin with 'K'; only an incomplete one is
 * moved to the front of the buffer, once per read. Exactly `answers`,
 * nothing after them. */
static void read_all_answers(long answers, size_t bufsize)
{
    char *buf = malloc(bufsize);
    size_t have = 0;
    long got = 0;
    if (!buf) {
        perror("malloc");
        exit(111);
    }
    while (got < answers) {
        size_t i = 0;
        ssize_t r = read_busy(buf + have, bufsize - have);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            fprintf(stderr, "connection closed with %ld answers missing\n", answers - got);
            exit(111);
        }
        have += (size_t)r;
        for (;;) {
            size_t j = i, len = 0;
            while (j < have && (unsigned)(buf[j] - '0') < 10 && j - i < 9) {
                len = len * 10 + (size_t)(buf[j++] - '0');
            }
            if (j + 1 + len >= have) {
                break; /* incomplete: read more */
            }
            if (j == i || buf[j] != ':' || len == 0 || buf[j + 1 + len] != ',') {
                fprintf(stderr, "malformed answer\n");
                exit(111);
            }
            if (buf[j + 1] != 'K') {
                fprintf(stderr, "not accepted: %.*s\n", (int)len, buf + j + 1);
                exit(111);
            }
            got++;
            i = j + 2 + len;
        }
        if (i == 0 && have == bufsize) {
            fprintf(stderr, "answer longer than the read buffer\n");
            exit(111);
        }
        memmove(buf, buf + i, have - i);
        have -= i;
    }
    if (got != answers || have != 0) {
        fprintf(stderr, "more answers than the %ld expected\n", answers);
        exit(111);
    }
    free(buf);
}

static void *writer(void *arg)
{
    long left = count;
    (void)arg;
    if (wmode == W_EACH) {
        for (; left > 0; left--) {
            write_all(pkg, pkg_len);
        }
        return NULL;
    }
    while (left > 0) {
        long k = left < copies_n ? left : copies_n;
        size_t n = (size_t)k * pkg_len;
        if (wmode == W_SPLICE) {
            if (!splice_all(copies, n, left == count)) {
                fprintf(stderr, "qmtp-client: vmsplice refused (%s): writing instead\n", strerror(errno));
                wmode = W_WRITE;
                continue;
            }
        } else {
            write_all(copies, n);
        }
        left -= k;
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: qmtp-client [-P] [-1] [-b USEC] [-n COUNT] [-s SIZE] [-r RCPTS]"
        " [-w splice|write|each] [-c BYTES] [-N 0|1] [-S BYTES] [-R BYTES] [-B BYTES] HOST PORT\n");
    exit(100);
}

int main(int argc, char **argv)
{
    size_t size = 1024;
    int rcpts = 1;
    int pipelined = 0;
    int per_package = 0;
    int opt;
    int nodelay = 1;
    int sndbuf = 0, rcvbuf = 0;
    long chunk = 0;
    size_t rbuf = 1 << 20;
    struct addrinfo hints, *ai;
    char head[32];
    char *body;
    char tail[4096];
    size_t tl = 0;
    int i;
    double t0;
    long answers_each;

    while ((opt = getopt(argc, argv, "Pb:n:s:r:1w:c:N:S:R:B:")) != -1) {
        switch (opt) {
        case 'P': pipelined = 1; break;
        case 'b': busy_us = atol(optarg); break;
        case 'n': count = atol(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'r': rcpts = atoi(optarg); break;
        case '1': per_package = 1; break;
        case 'w':
            if (!strcmp(optarg, "splice")) wmode = W_SPLICE;
            else if (!strcmp(optarg, "write")) wmode = W_WRITE;
            else if (!strcmp(optarg, "each")) wmode = W_EACH;
            else usage();
            break;
        case 'c': chunk = atol(optarg); break;
        case 'N': nodelay = atoi(optarg) ? 1 : 0; break;
        case 'S': sndbuf = atoi(optarg); break;
        case 'R': rcvbuf = atoi(optarg); break;
        case 'B': rbuf = (size_t)atol(optarg); break;
        default: usage();
        }
    }
    if (argc - optind != 2 || rcpts < 1 || rcpts > 100 || count < 1 || rbuf < 64) {
        usage();
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(argv[optind], argv[optind + 1], &hints, &ai) != 0) {
        fprintf(stderr, "cannot resolve\n");
        return 111;
    }
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (sndbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    if (rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        perror("connect");
        return 111;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);

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

    if (pipelined && wmode != W_EACH) {
        /* The buffer of whole copies of the package, made before timing. */
        long k;
        if (chunk <= 0) { /* the best measured (see the top) */
            if (wmode == W_SPLICE) {
                chunk = pkg_len <= 2048 ? 256 * 1024 : 1024 * 1024;
            } else {
                chunk = pkg_len <= 64 * 1024 ? 512 * 1024 : 1024 * 1024;
            }
        }
        copies_n = (long)((size_t)chunk / pkg_len);
        if (copies_n < 1) {
            copies_n = 1;
        }
        if (copies_n > count) {
            copies_n = count;
        }
        if (copies_n == 1) {
            copies = pkg; /* a large package: itself */
        } else {
            copies = malloc((size_t)copies_n * pkg_len);
            if (!copies) {
                perror("malloc");
                return 111;
            }
            for (k = 0; k < copies_n; k++) {
                memcpy(copies + (size_t)k * pkg_len, pkg, pkg_len);
            }
        }
        if (wmode == W_SPLICE) {
            if (pipe(pp) != 0) {
                perror("pipe");
                return 111;
            }
            /* as large as allowed, up to 1 MiB (the default is 64 KiB) */
            for (k = 1 << 20; k >= 1 << 16; k >>= 1) {
                if (fcntl(pp[1], F_SETPIPE_SZ, (int)k) >= 0) {
                    break;
                }
            }
        }
    }

    answers_each = per_package ? 1 : rcpts;
    t0 = now();
    if (pipelined) {
        pthread_t th;
        pthread_create(&th, NULL, writer, NULL);
        read_all_answers(count * answers_each, rbuf);
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
