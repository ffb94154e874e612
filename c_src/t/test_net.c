/* Tests of connecting and name resolution in the C core without Perl:
 * numeric ports that do not fit, the call limit cutting a connect short,
 * and lookups kept to the connect timeout, with the caller's signal
 * handlers running while they wait. A name server that never answers is
 * made in new user, mount and network namespaces (Linux): resolv.conf
 * names 127.0.0.1, where a UDP socket takes every query and answers none.
 * Those tests are skipped where namespaces are not allowed.
 * Prints "N passed, N failed". */
#define _GNU_SOURCE 1
#include "../qmtp_int.h"
#include "fds.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* Built without resolver threads, lookups wait as long as the resolver
 * does, and the name server tests cannot pass. */
#if !defined(QMTP_NO_RESOLVER_THREAD) && defined(__linux__)
#define NAME_SERVER_TESTS 1
#endif

#ifdef NAME_SERVER_TESTS
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#endif

static int passed;
static int failed;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (cond) {                                       \
            passed++;                                     \
        } else {                                          \
            failed++;                                     \
            printf("not ok: %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                          \
            printf("\n");                                 \
        }                                                 \
    } while (0)

static int64_t since(int64_t t0)
{
    return qmtp_now_ms() - t0;
}

static int errstr_is(const qmtp_client *c, const char *want)
{
    return strcmp(qmtp_errstr(c), want) == 0;
}

/* A TCP listener on ip (port 0: any), its port in *port. With full set,
 * its accept queue is filled, so that a connect to it is never answered:
 * the kernel drops the SYN. The connections that filled it go in
 * fill[0..*nfill-1]. -1 on failure. */
static int listener(const char *ip, unsigned short *port, int full, int *fill, int *nfill)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    int i;

    *nfill = 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(*port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)(void *)&a, sizeof a) != 0 || listen(fd, full ? 0 : 16) != 0 ||
        getsockname(fd, (struct sockaddr *)(void *)&a, &alen) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(a.sin_port);
    for (i = 0; full && i < 8; i++) {
        struct pollfd p;
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

        if (connect(s, (struct sockaddr *)(void *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
            close(s);
            break;
        }
        p.fd = s;
        p.events = POLLOUT;
        p.revents = 0;
        if (poll(&p, 1, 200) == 0) {
            close(s); /* not answered: the queue is full */
            return fd;
        }
        fill[(*nfill)++] = s;
    }
    if (full) {
        close(fd);
        return -1;
    }
    return fd;
}

static void close_all(int fd, const int *fill, int nfill)
{
    int i;

    for (i = 0; i < nfill; i++) {
        close(fill[i]);
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void test_ports(void)
{
    static const char *const bad[] = { "70000", "0", "65536", "", "-1", "+209", " 209", "00",
                                       "99999999999999999999" };
    static const char *const good[] = { "1", "65535", "0209", "qmtp" };
    qmtp_client *c = qmtp_new();
    char want[128];
    size_t i;
    int rc;

    qmtp_set_timeouts(c, 2000, 2000, 100);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(want, sizeof want, "port '%s' is not a number from 1 to 65535", bad[i]);
        rc = qmtp_connect(c, "127.0.0.1", bad[i]);
        CHECK(rc == QMTP_E_ARG && qmtp_err(c) == QMTP_E_ARG && errstr_is(c, want),
              "port '%s': rc %d, '%s'", bad[i], rc, qmtp_errstr(c));
    }
    /* Whether these connect does not matter here (nothing may listen): only
     * that they are taken as ports or service names. */
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        rc = qmtp_connect(c, "127.0.0.1", good[i]);
        CHECK(rc != QMTP_E_ARG, "port '%s' is allowed: rc %d, '%s'", good[i], rc, qmtp_errstr(c));
    }
    rc = qmtp_connect(c, "/nonexistent/qmtp.sock", "70000");
    CHECK(rc == QMTP_E_CONNECT, "a socket path has no port to check: rc %d, '%s'", rc, qmtp_errstr(c));
    qmtp_free(c);
}

static void test_connect(void)
{
    qmtp_client *c = qmtp_new();
    unsigned short port = 0;
    int fill[8];
    int nfill;
    int fd = listener("127.0.0.1", &port, 0, fill, &nfill);
    char ps[8];
    char want[160];
    int64_t t0;
    int rc;

    snprintf(ps, sizeof ps, "%u", port);
    qmtp_set_timeouts(c, 2000, 2000, 100);
    rc = qmtp_connect(c, "127.0.0.1", ps);
    snprintf(want, sizeof want, "127.0.0.1 port %u", port);
    CHECK(fd >= 0 && rc == QMTP_OK && strcmp(qmtp_peer(c), want) == 0 && c->lookups == NULL,
          "an address connects: rc %d, '%s', peer '%s'", rc, qmtp_errstr(c), qmtp_peer(c));
    rc = qmtp_connect(c, "localhost", ps);
    CHECK(rc == QMTP_OK && c->lookups == NULL && c->pending_ai == NULL,
          "a name from the hosts file connects: rc %d, '%s'", rc, qmtp_errstr(c));
    close_all(fd, fill, 0);
    qmtp_close(c);

    /* The connect timeout, then the call limit, against a server that
     * never answers the SYN. */
    port = 0;
    fd = listener("127.0.0.1", &port, 1, fill, &nfill);
    snprintf(ps, sizeof ps, "%u", port);
    CHECK(fd >= 0, "a listener whose queue is full");
    qmtp_set_timeouts(c, 300, 2000, 100);
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, "127.0.0.1", ps);
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1 (127.0.0.1 port %u): timed out after 0.3 s", port);
    CHECK(rc == QMTP_E_CONNECT && errstr_is(c, want) && since(t0) >= 250 && since(t0) < 1500,
          "the connect timeout: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c), (long)since(t0));

    qmtp_set_timeouts(c, 5000, 2000, 100);
    qmtp_set_call_limit(c, 300);
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, "127.0.0.1", ps);
    snprintf(want, sizeof want,
             "timed out: the call limit of 0.3 s was reached while connecting to 127.0.0.1 (127.0.0.1 port %u)", port);
    CHECK(rc == QMTP_E_TIMEOUT && errstr_is(c, want) && since(t0) >= 250 && since(t0) < 1500,
          "the call limit cuts a connect short: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c),
          (long)since(t0));
    CHECK(qmtp_is_open(c) == 0, "... and leaves no connection");

    /* Already past: nothing is tried. */
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, "127.0.0.1", ps);
    CHECK(rc == QMTP_E_TIMEOUT &&
          errstr_is(c, "timed out: the call limit of 0.3 s was reached while resolving '127.0.0.1'") && since(t0) < 100,
          "a call limit already reached: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c), (long)since(t0));
    qmtp_set_call_limit(c, 0);
    close_all(fd, fill, nfill);
    qmtp_free(c);
}

/* Drives a connect as an event loop would: wants, poll, step. */
static int connect_by_steps(qmtp_client *c, const char *host, const char *port, int *steps)
{
    int rc = qmtp_connect_start(c, host, port);

    *steps = 0;
    while (rc == QMTP_RUNNING) {
        struct pollfd p;
        int fd;
        int events;
        int64_t deadline;
        int64_t left;
        int ready = 0;

        if (qmtp_wants(c, &fd, &events, &deadline) != QMTP_OK) {
            return -100;
        }
        left = deadline - qmtp_clock_ms();
        p.fd = fd;
        p.events = (short)(events & QMTP_WANT_WRITE ? POLLOUT : 0);
        p.revents = 0;
        if (poll(&p, fd >= 0 ? 1 : 0, left < 0 ? 0 : (int)left) > 0 && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ready = QMTP_WANT_WRITE;
        }
        rc = qmtp_step(c, ready);
        (*steps)++;
    }
    return rc;
}

/* The non-blocking connect: the same outcomes and texts as qmtp_connect. */
static void test_connect_steps(void)
{
    qmtp_client *c = qmtp_new();
    unsigned short port = 0;
    int fill[8];
    int nfill;
    int fd = listener("127.0.0.1", &port, 0, fill, &nfill);
    char ps[8];
    char want[160];
    int64_t t0;
    int steps;
    int rc;

    snprintf(ps, sizeof ps, "%u", port);
    qmtp_set_timeouts(c, 2000, 2000, 100);
    rc = connect_by_steps(c, "127.0.0.1", ps, &steps);
    snprintf(want, sizeof want, "127.0.0.1 port %u", port);
    CHECK(rc == QMTP_OK && strcmp(qmtp_peer(c), want) == 0 && !qmtp_busy(c) && qmtp_is_open(c),
          "steps: an address connects: rc %d, '%s', peer '%s'", rc, qmtp_errstr(c), qmtp_peer(c));
    rc = connect_by_steps(c, "localhost", ps, &steps);
    CHECK(rc == QMTP_OK && c->lookups == NULL && c->pending_ai == NULL && c->resolving == NULL,
          "steps: a name is looked up without blocking, and connects: rc %d, '%s' (%d steps)", rc,
          qmtp_errstr(c), steps);
    close_all(fd, fill, 0);
    qmtp_close(c);

    rc = connect_by_steps(c, "127.0.0.1", ps, &steps);
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1 (127.0.0.1 port %u): Connection refused", port);
    CHECK(rc == QMTP_E_CONNECT && errstr_is(c, want) && !qmtp_busy(c) && c->fd < 0,
          "steps: a refused connection: rc %d, '%s'", rc, qmtp_errstr(c));

    rc = connect_by_steps(c, "/nonexistent/qmtp.sock", "209", &steps);
    CHECK(rc == QMTP_E_CONNECT && errstr_is(c, "cannot connect to unix socket /nonexistent/qmtp.sock: No such file or directory"),
          "steps: a unix socket that is not there: rc %d, '%s'", rc, qmtp_errstr(c));

    port = 0;
    fd = listener("127.0.0.1", &port, 1, fill, &nfill);
    snprintf(ps, sizeof ps, "%u", port);
    qmtp_set_timeouts(c, 300, 2000, 100);
    t0 = qmtp_now_ms();
    rc = connect_by_steps(c, "127.0.0.1", ps, &steps);
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1 (127.0.0.1 port %u): timed out after 0.3 s", port);
    CHECK(fd >= 0 && rc == QMTP_E_CONNECT && errstr_is(c, want) && since(t0) >= 250 && since(t0) < 1500 && steps < 10,
          "steps: the connect timeout: rc %d, '%s' after %ld ms, %d steps", rc, qmtp_errstr(c), (long)since(t0), steps);

    qmtp_set_timeouts(c, 5000, 2000, 100);
    qmtp_set_call_limit(c, 300);
    t0 = qmtp_now_ms();
    rc = connect_by_steps(c, "127.0.0.1", ps, &steps);
    snprintf(want, sizeof want,
             "timed out: the call limit of 0.3 s was reached while connecting to 127.0.0.1 (127.0.0.1 port %u)", port);
    CHECK(rc == QMTP_E_TIMEOUT && errstr_is(c, want) && since(t0) >= 250 && since(t0) < 1500,
          "steps: the call limit: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c), (long)since(t0));
    qmtp_set_call_limit(c, 0);

    rc = qmtp_connect_start(c, "127.0.0.1", ps);
    CHECK(rc == QMTP_RUNNING && qmtp_busy(c) && c->fd >= 0, "a connect under way");
    rc = qmtp_cancel(c, "cancelled: the object was destroyed");
    CHECK(rc == QMTP_E_INTR && !qmtp_busy(c) && c->fd < 0 && errstr_is(c, "cancelled: the object was destroyed"),
          "cancelled mid-connect: no socket left, the reason is the error (rc %d, '%s')", rc, qmtp_errstr(c));
    close_all(fd, fill, nfill);
    qmtp_free(c);
}

/* A child forked just after a lookup resolves at once (glibc's
 * getaddrinfo_a, which keeps helper threads in process-wide state, could
 * block a child for ever; each lookup here runs in a thread of its own).
 * (An alarm ends the child should it block.) */
static void test_fork(void)
{
    qmtp_client *c = qmtp_new();
    unsigned short port = 0;
    int fill[8];
    int nfill;
    int fd = listener("127.0.0.1", &port, 0, fill, &nfill);
    char ps[8];
    int status = -1;
    pid_t pid;

    snprintf(ps, sizeof ps, "%u", port);
    qmtp_set_timeouts(c, 3000, 3000, 100);
    CHECK(qmtp_connect(c, "localhost", ps) == QMTP_OK, "localhost: '%s'", qmtp_errstr(c));
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int64_t t0 = qmtp_now_ms();
        int rc;

        alarm(10);
        rc = qmtp_connect(c, "localhost", ps);

        if (rc != QMTP_OK || since(t0) > 1500) {
            printf("not ok: child: rc %d, '%s' after %ld ms\n", rc, qmtp_errstr(c), (long)since(t0));
            fflush(stdout);
            _exit(1);
        }
        _exit(0);
    }
    waitpid(pid, &status, 0);
    CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a child forked just after a lookup still resolves names at once");
    close_all(fd, fill, 0);
    qmtp_free(c);
}

#ifdef NAME_SERVER_TESTS

static volatile sig_atomic_t alarms;
static int hook_calls;
static int hook_saw_alarm;
static int hook_mode; /* 0 go on, 1 stop, 2 leave by longjmp (a Perl die) */
static jmp_buf hook_jump;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static int ns_hook(void *ctx)
{
    (void)ctx;
    hook_calls++;
    if (alarms > 0) {
        hook_saw_alarm = 1;
    }
    if (hook_mode == 2) {
        longjmp(hook_jump, 1);
    }
    return hook_mode == 1;
}

static void ticking(int on)
{
    struct itimerval it;

    memset(&it, 0, sizeof it);
    if (on) {
        it.it_value.tv_usec = 50000;
        it.it_interval.tv_usec = 50000;
    }
    setitimer(ITIMER_REAL, &it, NULL);
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(text, f);
    fclose(f);
    return chmod(path, 0644);
}

static int bind_file(const char *dir, const char *name, const char *target)
{
    char path[256];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return mount(path, target, NULL, MS_BIND, NULL);
}

static void write_map(const char *file, const char *text)
{
    int fd = open(file, O_WRONLY);

    if (fd >= 0) {
        if (write(fd, text, strlen(text)) < 0) {
            /* unmapped, we still have every capability in the namespace */
        }
        close(fd);
    }
}

/* Enters the namespaces and sets them up; the files come from dir. The
 * silent name server's socket is returned, or -1 with why. */
static int enter_namespaces(const char *dir, const char **why)
{
    char map[64];
    unsigned uid = (unsigned)getuid();
    unsigned gid = (unsigned)getgid();
    struct sockaddr_in a;
    struct ifreq ifr;
    int s;

    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0) {
        *why = "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWNET)";
        return -1;
    }
    snprintf(map, sizeof map, "0 %u 1\n", uid);
    write_map("/proc/self/uid_map", map);
    write_map("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1\n", gid);
    write_map("/proc/self/gid_map", map);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        *why = "making / private";
        return -1;
    }
    if (bind_file(dir, "resolv.conf", "/etc/resolv.conf") != 0 || bind_file(dir, "hosts", "/etc/hosts") != 0) {
        *why = "bind-mounting /etc/resolv.conf and /etc/hosts";
        return -1;
    }
    if (access("/etc/nsswitch.conf", F_OK) == 0 && bind_file(dir, "nsswitch.conf", "/etc/nsswitch.conf") != 0) {
        *why = "bind-mounting /etc/nsswitch.conf";
        return -1;
    }
    /* nscd, if running, would answer from outside */
    if (access("/var/run/nscd/socket", F_OK) == 0) {
        mount("/dev/null", "/var/run/nscd/socket", NULL, MS_BIND, NULL);
    }
    s = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
        *why = "reading the flags of lo";
        return -1;
    }
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) {
        *why = "bringing lo up";
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)(void *)&a, sizeof a) != 0) {
        *why = "binding 127.0.0.1:53";
        return -1;
    }
    return s;
}

/* In the namespaces: every lookup through DNS hangs, each for about 1 s
 * (resolv.conf: timeout:1 attempts:1). */
static void ns_tests(void)
{
    const char *hangs = "name.that.hangs";
    qmtp_client *c = qmtp_new();
    qmtp_client *many[65];
    int before;
    int i;
    struct sigaction sa;
    unsigned short port = 0;
    int fill[3][8];
    int nfill[3];
    int fd[3];
    char ps[8];
    char want[160];
    int status = -1;
    pid_t pid;
    int64_t t0;
    int rc;

    qmtp_set_timeouts(c, 300, 2000, 100);
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, hangs, "209");
    CHECK(rc == QMTP_E_RESOLVE && errstr_is(c, "cannot resolve 'name.that.hangs': timed out after 0.3 s") &&
          since(t0) >= 250 && since(t0) < 1000,
          "a lookup that cannot finish in time: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c), (long)since(t0));
    CHECK(qmtp_resolver_reap(c, 0) == 1 && c->lookups != NULL,
          "... is kept while its thread runs it (getaddrinfo cannot be stopped)");
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        _exit(qmtp_resolver_reap(c, 0) == 0 && c->lookups == NULL ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a forked child frees its copy at once: the parent's resolver thread writes to the parent's");
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        t0 = qmtp_now_ms();
        alarm(10);
        rc = qmtp_connect(c, hangs, "209");
        _exit(rc == QMTP_E_RESOLVE && since(t0) >= 250 && since(t0) < 1000 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a forked child's lookup keeps to the connect timeout too (status %d)", status);

    qmtp_set_timeouts(c, 5000, 2000, 100);
    qmtp_set_call_limit(c, 300);
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, hangs, "209");
    CHECK(rc == QMTP_E_TIMEOUT &&
          errstr_is(c, "timed out: the call limit of 0.3 s was reached while resolving 'name.that.hangs'") &&
          since(t0) >= 250 && since(t0) < 1000,
          "the call limit cuts a lookup short: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c), (long)since(t0));
    qmtp_set_call_limit(c, 0);

    /* Signal handlers run while the lookup is waited for. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL); /* no SA_RESTART, like perl's */
    qmtp_set_interrupt_hook(c, ns_hook, NULL);
    qmtp_set_timeouts(c, 400, 2000, 100);
    hook_mode = 0;
    ticking(1);
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, hangs, "209");
    ticking(0);
    CHECK(rc == QMTP_E_RESOLVE && hook_calls >= 3 && hook_saw_alarm && since(t0) < 1000,
          "the hook ran %d times while waiting (saw the handler run: %d); rc %d after %ld ms", hook_calls,
          hook_saw_alarm, rc, (long)since(t0));

    hook_mode = 1;
    hook_calls = 0;
    qmtp_set_timeouts(c, 3000, 2000, 100);
    ticking(1);
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, hangs, "209");
    ticking(0);
    CHECK(rc == QMTP_E_INTR && hook_calls == 1 &&
          errstr_is(c, "resolving 'name.that.hangs' was interrupted: Interrupted system call") && since(t0) < 500,
          "a hook that asks to stop ends the lookup: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c),
          (long)since(t0));

    /* A hook that leaves by longjmp (a Perl die): the next call recovers. */
    hook_mode = 2;
    ticking(1);
    t0 = qmtp_now_ms();
    if (setjmp(hook_jump) == 0) {
        qmtp_connect(c, hangs, "209");
        ticking(0);
        CHECK(0, "the hook's longjmp was taken");
    } else {
        ticking(0);
        CHECK(c->busy == 1 && c->lookups != NULL && since(t0) < 500,
              "left by longjmp mid-lookup: the lookup is still listed (busy %d)", c->busy);
        CHECK(qmtp_is_open(c) == 0 && c->busy == 0, "... and the next call recovers");
    }
    hook_mode = 0;
    qmtp_set_interrupt_hook(c, NULL, NULL);

    /* Lookups given up by clients that are then freed go with their
     * threads, pipes and all: a daemon that retries a dead name server
     * must not run out of descriptors. */
    before = count_fds();
    for (i = 0; i < 5; i++) {
        qmtp_client *d = qmtp_new();

        qmtp_set_timeouts(d, 100, 2000, 100);
        qmtp_connect(d, hangs, "209");
        qmtp_free(d);
    }
    CHECK(count_fds() > before, "five lookups given up, their clients freed: their threads still run");
    t0 = qmtp_now_ms();
    while (count_fds() > before && since(t0) < 3000) {
        poll(NULL, 0, 20);
    }
    CHECK(count_fds() <= before, "... and free them when done: %d descriptors, %d before", count_fds(), before);

    /* A forked child's copy of a lookup its parent's thread runs is looked
     * up again in the child, by the same deadline (no thread of the
     * child's would ever end the copy). */
    qmtp_set_timeouts(c, 400, 2000, 100);
    rc = qmtp_connect_start(c, hangs, "209");
    CHECK(rc == QMTP_RUNNING, "a lookup under way: rc %d", rc);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        t0 = qmtp_now_ms();
        alarm(10);
        while ((rc = qmtp_step(c, 0)) == QMTP_RUNNING) {
            poll(NULL, 0, 5);
        }
        _exit(rc == QMTP_E_RESOLVE && strstr(qmtp_errstr(c), "timed out") != NULL && since(t0) >= 250 &&
                      since(t0) < 1000 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a forked child's copy of a running lookup: looked up again, timed out by its deadline (status %d)", status);
    qmtp_cancel(c, "done");

    /* No more than 64 lookups wait at once (those given up above may
     * still run): the next fails at once, saying why. */
    for (i = 0; i < 65; i++) {
        many[i] = qmtp_new();
        qmtp_set_timeouts(many[i], 5000, 2000, 100);
        rc = qmtp_connect_start(many[i], hangs, "209");
        if (rc != QMTP_RUNNING) {
            break;
        }
    }
    CHECK(i >= 50 && i < 65 && rc == QMTP_E_RESOLVE &&
              strstr(qmtp_errstr(many[i]), "64 lookups of this process still wait for the name server") != NULL,
          "lookup %d fails at once, saying why: rc %d, '%s'", i, rc, i < 65 ? qmtp_errstr(many[i]) : "");
    for (i = i < 65 ? i : 64; i >= 0; i--) {
        qmtp_cancel(many[i], "done");
        qmtp_free(many[i]);
    }
    t0 = qmtp_now_ms();
    while (count_fds() > before && since(t0) < 5000) {
        poll(NULL, 0, 20);
    }
    CHECK(count_fds() <= before, "... and their threads end, freeing them (%d descriptors, %d before)", count_fds(), before);

    /* Names from the hosts file still resolve at once. two.test has three
     * addresses that never answer: the connect timeout ends the first, the
     * call limit the second, and the third is not tried. */
    qmtp_set_timeouts(c, 300, 2000, 100);
    fd[0] = listener("127.0.0.1", &port, 1, fill[0], &nfill[0]);
    fd[1] = listener("127.0.0.2", &port, 1, fill[1], &nfill[1]);
    fd[2] = listener("127.0.0.3", &port, 1, fill[2], &nfill[2]);
    CHECK(fd[0] >= 0 && fd[1] >= 0 && fd[2] >= 0, "three listeners with full queues on port %u", port);
    snprintf(ps, sizeof ps, "%u", port);
    qmtp_set_call_limit(c, 450);
    t0 = qmtp_now_ms();
    rc = qmtp_connect(c, "two.test", ps);
    snprintf(want, sizeof want,
             "timed out: the call limit of 0.45 s was reached while connecting to two.test (127.0.0.2 port %u)", port);
    CHECK(rc == QMTP_E_TIMEOUT && errstr_is(c, want) && since(t0) >= 400 && since(t0) < 1200,
          "the call limit stops trying addresses: rc %d, '%s' after %ld ms", rc, qmtp_errstr(c),
          (long)since(t0));
    qmtp_set_call_limit(c, 0);
    close_all(fd[0], fill[0], nfill[0]);
    close_all(fd[1], fill[1], nfill[1]);
    close_all(fd[2], fill[2], nfill[2]);

    port = 0;
    fd[0] = listener("127.0.0.1", &port, 0, fill[0], &nfill[0]);
    snprintf(ps, sizeof ps, "%u", port);
    rc = qmtp_connect(c, "localhost", ps);
    CHECK(rc == QMTP_OK, "localhost still connects at once: rc %d, '%s'", rc, qmtp_errstr(c));
    close_all(fd[0], fill[0], 0);
    qmtp_close(c);

    /* Every lookup left to a resolver thread ends within its 1 s. */
    t0 = qmtp_now_ms();
    rc = qmtp_resolver_reap(c, 10000);
    CHECK(rc == 0 && c->lookups == NULL && since(t0) < 3000, "reaped: %d left after %ld ms", rc,
          (long)since(t0));
    qmtp_free(c);
}

/* Runs ns_tests in a child that enters the namespaces; adds its counts. */
static void test_namespaces(void)
{
    char dir[] = "/tmp/qmtp-test-net.XXXXXX";
    int counts[3] = { 0, 0, 0 };
    int pfd[2];
    int status = 0;
    pid_t pid;
    char path[sizeof dir + 32];
    static const char *const files[] = { "resolv.conf", "hosts", "nsswitch.conf" };
    size_t i;

    if (mkdtemp(dir) == NULL || chmod(dir, 0755) != 0 ||
        write_file(dir, "resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n") != 0 ||
        write_file(dir, "hosts",
                   "127.0.0.1 localhost\n127.0.0.1 two.test\n127.0.0.2 two.test\n127.0.0.3 two.test\n") != 0 ||
        write_file(dir, "nsswitch.conf", "hosts: files dns\n") != 0 || pipe(pfd) != 0) {
        CHECK(0, "temporary files for the namespaces");
        return;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        const char *why = "";
        int s;

        close(pfd[0]);
        passed = failed = 0;
        s = enter_namespaces(dir, &why);
        if (s < 0) {
            printf("skip: name server tests: %s: %s\n", why, strerror(errno));
            counts[2] = 1;
        } else {
            ns_tests();
            close(s);
            counts[0] = passed;
            counts[1] = failed;
        }
        if (write(pfd[1], counts, sizeof counts) != (ssize_t)sizeof counts) {
            exit(2);
        }
        exit(0); /* not _exit: the sanitizers' leak check runs at exit */
    }
    close(pfd[1]);
    {
        struct pollfd p;

        p.fd = pfd[0];
        p.events = POLLIN;
        p.revents = 0;
        if (pid > 0 && poll(&p, 1, 60000) == 0) {
            kill(pid, SIGKILL); /* hung: its report cannot come */
        }
    }
    if (pid < 0 || read(pfd[0], counts, sizeof counts) != (ssize_t)sizeof counts) {
        counts[0] = 0;
        counts[1] = 1;
        printf("not ok: the namespace child reported nothing\n");
    }
    close(pfd[0]);
    if (pid > 0) {
        waitpid(pid, &status, 0);
    }
    passed += counts[0];
    failed += counts[1];
    CHECK(counts[2] || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
          "the namespace child exited cleanly (status 0x%x)", (unsigned)status);
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

#else

static void test_namespaces(void)
{
    printf("skip: name server tests: they need Linux namespaces and resolver threads\n");
}

#endif

int main(void)
{
    /* First, before this process has a resolver thread that the child
     * would count without having it (see test_fork). */
    test_namespaces();
    test_ports();
    test_connect();
    test_connect_steps();
    test_fork();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
