/* A minimal, fast QMTP server for benchmarks and soak tests: it reads
 * packages, discards them and answers "K" once per recipient (or, with -1,
 * once per package, as mailfront does). Loopback only. Prints the port it
 * listens on, then serves each connection in a child process.
 *
 *   qmtp-sink [-p PORT] [-1] [-w MS]
 *
 * -w MS makes it a slow server: before answering each package it sends
 * the answers already due, then waits MS milliseconds (usleep), so that
 * every package costs MS ms of the connection's time, pipelined or not.
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int per_package;
static unsigned long wait_ms; /* -w: added delay per package answered */

/* usleep() need not take a second or more: wait in pieces below that. */
static void wait_a_while(unsigned long ms)
{
    unsigned long long us = (unsigned long long)ms * 1000ULL;

    while (us > 0) {
        useconds_t step = us > 500000ULL ? 500000U : (useconds_t)us;
        usleep(step); /* an interrupted wait is only shorter */
        us -= step;
    }
}

/* Parser state across reads: which netstring of the package, how many
 * bytes of it remain, and how recipients are counted inside the third. */
enum { LEN, BODY, COMMA };

struct parser {
    int field;          /* 0 message, 1 sender, 2 recipients */
    int state;
    unsigned long len;
    unsigned long left;
    int digits;
    unsigned long rcpts;
    /* inside the recipient list: a nested netstring scanner */
    int rstate;
    unsigned long rlen;
    unsigned long rleft;
};

static void die_proto(void)
{
    _exit(1);
}

static void rcpt_byte(struct parser *p, unsigned char ch)
{
    if (p->rstate == LEN) {
        if (ch == ':') {
            p->rleft = p->rlen;
            p->rstate = p->rlen ? BODY : COMMA;
        } else if (ch >= '0' && ch <= '9') {
            p->rlen = p->rlen * 10 + (ch - '0');
        } else {
            die_proto();
        }
    } else if (p->rstate == BODY) {
        if (--p->rleft == 0) {
            p->rstate = COMMA;
        }
    } else {
        if (ch != ',') {
            die_proto();
        }
        p->rcpts++;
        p->rstate = LEN;
        p->rlen = 0;
    }
}

static void flush(int fd, char *out, size_t *olen)
{
    size_t off = 0;

    while (off < *olen) {
        ssize_t n = write(fd, out + off, *olen - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(0);
        }
        off += (size_t)n;
    }
    *olen = 0;
}

static void serve(int fd)
{
    static char in[1 << 18];
    static char out[1 << 16];
    size_t olen = 0;
    struct parser p;

    memset(&p, 0, sizeof p);
    for (;;) {
        ssize_t n = read(fd, in, sizeof in);
        ssize_t i = 0;

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            flush(fd, out, &olen);
            return;
        }
        while (i < n) {
            unsigned char ch = (unsigned char)in[i];

            if (p.state == BODY) {
                /* skip whole runs of payload at once */
                size_t run = (size_t)(n - i) < p.left ? (size_t)(n - i) : p.left;
                if (p.field == 2) {
                    size_t k;
                    for (k = 0; k < run; k++) {
                        rcpt_byte(&p, (unsigned char)in[i + k]);
                    }
                }
                p.left -= run;
                i += (ssize_t)run;
                if (p.left == 0) {
                    p.state = COMMA;
                }
                continue;
            }
            i++;
            if (p.state == LEN) {
                if (ch == ':') {
                    p.left = p.len;
                    p.state = p.len ? BODY : COMMA;
                } else if (ch >= '0' && ch <= '9' && p.digits < 12) {
                    p.len = p.len * 10 + (ch - '0');
                    p.digits++;
                } else {
                    die_proto();
                }
                continue;
            }
            if (ch != ',') {
                die_proto();
            }
            p.state = LEN;
            p.len = 0;
            p.digits = 0;
            if (++p.field == 3) {
                unsigned long k;
                unsigned long answers = per_package ? 1 : p.rcpts;
                if (wait_ms) {
                    /* A slow server: what is due goes first, then the wait. */
                    flush(fd, out, &olen);
                    wait_a_while(wait_ms);
                }
                for (k = 0; k < answers; k++) {
                    if (olen + 8 > sizeof out) {
                        flush(fd, out, &olen);
                    }
                    memcpy(out + olen, "3:Kok,", 6);
                    olen += 6;
                }
                p.field = 0;
                p.rcpts = 0;
                p.rstate = LEN;
                p.rlen = 0;
            }
        }
        /* Answer what is complete before waiting for more bytes. */
        flush(fd, out, &olen);
    }
}

/* -w's argument: whole milliseconds, at most an hour. */
static int parse_ms(const char *arg, unsigned long *ms)
{
    char *end;

    if (arg[0] < '0' || arg[0] > '9') {
        return 0;
    }
    errno = 0;
    *ms = strtoul(arg, &end, 10);
    return errno == 0 && *end == '\0' && *ms <= 3600000UL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof sa;
    int port = 0;
    int one = 1;
    int opt;
    int lfd;

    while ((opt = getopt(argc, argv, "p:1w:")) != -1) {
        if (opt == 'p') {
            port = atoi(optarg);
        } else if (opt == '1') {
            per_package = 1;
        } else if (opt == 'w' && parse_ms(optarg, &wait_ms)) {
            continue;
        } else {
            fprintf(stderr, "usage: qmtp-sink [-p PORT] [-1] [-w MS]\n");
            return 100;
        }
    }
    signal(SIGCHLD, SIG_IGN); /* a benchmark tool, not a library: reap children */
    signal(SIGPIPE, SIG_IGN);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((unsigned short)port);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 128) != 0) {
        perror("qmtp-sink: bind/listen");
        return 111;
    }
    getsockname(lfd, (struct sockaddr *)&sa, &salen);
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fork() == 0) {
            close(lfd);
            serve(fd);
            _exit(0);
        }
        close(fd);
    }
}
