/* Tests of the C core without Perl: the netstring codec against every
 * truncation of every vector, with each input ending exactly at a guard
 * page so that any read past its end faults; then the engine against a
 * forked peer on a socketpair. Prints "N passed, N failed". */
#define _GNU_SOURCE 1
#include "../qmtp_int.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int passed;
static int open_after_run;
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

static char *guard_base;
static size_t page;

/* Copies len bytes so that they end right before an unreadable page. */
static const char *at_guard(const char *bytes, size_t len)
{
    char *dst = guard_base + page - len;
    memcpy(dst, bytes, len);
    return dst;
}

struct vec {
    const char *in;
    size_t len;
    long want;           /* consumed, or a QMTP_NS_* status for the full input */
    const char *payload;
    size_t plen;
};

#define V(s, w, p, pl) { s, sizeof(s) - 1, w, p, pl }

static void test_decode(void)
{
    static const struct vec good[] = {
        V("0:,", 3, "", 0),
        V("1:a,", 4, "a", 1),
        V("12:hello world!,", 16, "hello world!", 12),
        V("5:a\0b\nc,", 8, "a\0b\nc", 5),
        V("3:Kok,3:Zno,", 6, "Kok", 3),
    };
    static const struct vec bad[] = {
        V(":", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("a:", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("-1:a,", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("+1:a,", QMTP_NS_BAD_LENGTH, NULL, 0),
        V(" 1:a,", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("1 :a,", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("01:a,", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("00:,", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("1234567890:", QMTP_NS_BAD_LENGTH, NULL, 0),
        V("3:abc;", QMTP_NS_NO_COMMA, NULL, 0),
        V("3:abcd,", QMTP_NS_NO_COMMA, NULL, 0),
        V("0:x", QMTP_NS_NO_COMMA, NULL, 0),
    };
    size_t i;
    size_t cut;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        const struct vec *v = &good[i];
        for (cut = 0; cut <= v->len; cut++) {
            const char *pl = NULL;
            size_t plen = 99;
            long n = qmtp_ns_decode(at_guard(v->in, cut), cut, 1000, &pl, &plen);
            size_t whole = (size_t)v->want;
            if (cut < whole) {
                CHECK(n == QMTP_NS_PARTIAL, "good[%zu] cut %zu: want partial, got %ld", i, cut, n);
            } else {
                CHECK(n == v->want && plen == v->plen && memcmp(pl, v->payload, plen) == 0,
                      "good[%zu] cut %zu: got %ld", i, cut, n);
            }
        }
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct vec *v = &bad[i];
        const char *pl = NULL;
        size_t plen = 0;
        long n = qmtp_ns_decode(at_guard(v->in, v->len), v->len, 1000, &pl, &plen);
        CHECK(n == v->want, "bad[%zu] \"%s\": want %ld, got %ld", i, v->in, v->want, n);
        /* Every prefix is either still partial or already refused the same way. */
        for (cut = 0; cut < v->len; cut++) {
            long m = qmtp_ns_decode(at_guard(v->in, cut), cut, 1000, &pl, &plen);
            CHECK(m == QMTP_NS_PARTIAL || m == v->want, "bad[%zu] cut %zu: got %ld", i, cut, m);
        }
    }
    {
        const char *pl = NULL;
        size_t plen = 0;
        CHECK(qmtp_ns_decode(at_guard("17:", 3), 3, 16, &pl, &plen) == QMTP_NS_TOO_LONG,
              "a length over the cap is refused at the colon");
        CHECK(qmtp_ns_decode(at_guard("16:", 3), 3, 16, &pl, &plen) == QMTP_NS_PARTIAL,
              "a length at the cap waits for the payload");
        CHECK(qmtp_ns_decode(at_guard("999999999:", 10), 10, (size_t)-1, &pl, &plen) == QMTP_NS_PARTIAL,
              "nine digits are accepted");
    }
}

static void test_encode(void)
{
    char buf[QMTP_NS_HEADER_MAX];
    size_t total = 0;
    size_t n;

    n = qmtp_ns_header(buf, 0);
    CHECK(n == 2 && memcmp(buf, "0:", 2) == 0, "header of 0");
    n = qmtp_ns_header(buf, 1234567);
    CHECK(n == 8 && memcmp(buf, "1234567:", 8) == 0, "header of 1234567");
    n = qmtp_ns_header(buf, (size_t)-1);
    CHECK(n == (sizeof(size_t) == 8 ? 21u : 11u) && buf[n - 1] == ':', "header of SIZE_MAX");
    CHECK(qmtp_ns_encoded_size(5, &total) == 0 && total == 8, "encoded size of 5");
    CHECK(qmtp_ns_encoded_size((size_t)-1 - 3, &total) == -1, "encoded size overflow is refused");
}

/* Microseconds the peer waits before it answers, and between the bytes of
 * its answer (0: all at once). */
static useconds_t peer_delay_us;
static useconds_t peer_trickle_us;

/* The peer: reads one package's worth of bytes (expect_len), checks them,
 * then (after peer_delay_us) writes reply (reply_len bytes) and behaves as
 * told. */
static void serve(int fd, const char *expect, size_t expect_len, const char *reply,
                  size_t reply_len, int wait_for_eof)
{
    char buf[4096];
    size_t got = 0;
    char junk;

    while (got < expect_len) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n <= 0) {
            _exit(2);
        }
        got += (size_t)n;
    }
    if (got != expect_len || memcmp(buf, expect, expect_len) != 0) {
        _exit(3);
    }
    if (peer_delay_us > 0) {
        usleep(peer_delay_us);
    }
    if (peer_trickle_us > 0) {
        size_t i;
        for (i = 0; i < reply_len; i++) {
            if (write(fd, reply + i, 1) != 1) {
                _exit(4);
            }
            usleep(peer_trickle_us);
        }
    } else if (reply_len > 0 && write(fd, reply, reply_len) != (ssize_t)reply_len) {
        _exit(4);
    }
    if (wait_for_eof) {
        while (read(fd, &junk, 1) > 0) {
        }
    } else {
        sleep(5);
    }
    _exit(0);
}

/* What the on_written hook saw: how often it ran, and how many answers
 * had been taken by then (none may have: it runs before the wait). */
static int written_calls;
static size_t written_answers;

static void count_written(void *ctx)
{
    written_calls++;
    written_answers = ((qmtp_client *)ctx)->nslots;
}

/* 1: runs are driven as an event loop drives them (qmtp_run_start,
 * qmtp_wants, poll, qmtp_step), not by qmtp_run. The engine tests run
 * both ways and must see the same. */
static int stepped;
static int steps_taken;

static int run_by_steps(qmtp_client *c)
{
    int rc = qmtp_run_start(c);

    steps_taken = 0;
    while (rc == QMTP_RUNNING) {
        struct pollfd p;
        int fd;
        int events;
        int64_t deadline;
        int64_t left;
        int ready = 0;

        if (qmtp_wants(c, &fd, &events, &deadline) != QMTP_OK || fd < 0 || !(events & QMTP_WANT_READ)) {
            return -100; /* a run always reads, on its connection */
        }
        left = deadline - qmtp_clock_ms();
        p.fd = fd;
        p.events = (short)((events & QMTP_WANT_READ ? POLLIN : 0) | (events & QMTP_WANT_WRITE ? POLLOUT : 0));
        p.revents = 0;
        if (poll(&p, 1, left < 0 ? 0 : (int)left) > 0) {
            ready = (p.revents & (POLLIN | POLLHUP | POLLERR) ? QMTP_WANT_READ : 0) |
                    (p.revents & (POLLOUT | POLLERR) ? QMTP_WANT_WRITE : 0);
        }
        rc = qmtp_step(c, ready);
        steps_taken++;
    }
    return rc;
}

static int run_against(qmtp_client *c, const char *expect, const char *reply, size_t reply_len,
                       int wait_for_eof, int *peer_status)
{
    int sv[2];
    pid_t pid;
    int rc;

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        serve(sv[1], expect, strlen(expect), reply, reply_len, wait_for_eof);
    }
    close(sv[1]);
    c->fd = sv[0];
    c->connected_at = qmtp_now_ms();
    written_calls = 0;
    written_answers = 0;
    rc = stepped ? run_by_steps(c) : qmtp_run_overlapped(c, count_written, c);
    open_after_run = qmtp_is_open(c);
    qmtp_close(c);
    kill(pid, SIGKILL);
    waitpid(pid, peer_status, 0);
    return rc;
}

static void package(qmtp_client *c, const char *msg, int nrcpt)
{
    static const char *rcpts[] = { "a@x", "b@x", "c@x" };
    int i;

    qmtp_batch_reset(c);
    qmtp_pkg_begin(c, '\n', "s@x", 3);
    for (i = 0; i < nrcpt; i++) {
        qmtp_pkg_recipient(c, rcpts[i], 3);
    }
    qmtp_pkg_body(c, msg, strlen(msg));
    qmtp_pkg_end(c);
}

static int result_is(qmtp_client *c, size_t i, char code, const char *text, int received, int per_package)
{
    qmtp_result r;

    return qmtp_result_get(c, i, &r) == 0 && r.code == code && r.len == strlen(text) &&
           memcmp(r.text, text, r.len) == 0 && r.received == received && r.per_package == per_package;
}

static void test_engine(void)
{
    qmtp_client *c = qmtp_new();
    const char *pkg3 = "6:\ntest\n,3:s@x,18:3:a@x,3:b@x,3:c@x,,";
    int st = 0;
    int rc;

    qmtp_set_timeouts(c, 1000, 1000, 100);

    package(c, "test\n", 3);
    rc = run_against(c, pkg3, "3:Kok,5:Zwait,3:Dno,", 20, 0, &st);
    CHECK(rc == 0 && qmtp_result_count(c) == 3, "three answers: rc %d", rc);
    CHECK(result_is(c, 0, 'K', "ok", 1, 0) && result_is(c, 1, 'Z', "wait", 1, 0) &&
          result_is(c, 2, 'D', "no", 1, 0), "K, Z and D in recipient order");
    CHECK(stepped || (written_calls == 1 && written_answers == 0),
          "on_written ran once, before any answer was taken (%d calls, %lu answers)", written_calls,
          (unsigned long)written_answers);

    /* The server was seen answering per recipient just now: one answer and
     * a hang-up is not taken for the package (the hint only sets waiting). */
    package(c, "test\n", 3);
    rc = run_against(c, pkg3, "5:Kfine,", 8, 1, &st);
    CHECK(rc == 0 && result_is(c, 0, 'K', "fine", 1, 0) && qmtp_err(c) == QMTP_E_ANSWERS,
          "seen per recipient before: one answer then a hang-up is a mismatch (rc %d, err %d)", rc, qmtp_err(c));
    CHECK(result_is(c, 1, 'Z', "no response received: the server's answers did not match its packages: one answer "
                                "for 3 recipients, then it hung up, though it was seen answering once per recipient before",
                    0, 0) && result_is(c, 2, 'Z', "no response received: the server's answers did not match its "
                    "packages: one answer for 3 recipients, then it hung up, though it was seen answering once per "
                    "recipient before", 0, 0),
          "the other recipients are deferrals saying so");
    CHECK(qmtp_server_mode(c) == 0, "a contradicted hint is forgotten");

    package(c, "test\n", 3);
    rc = run_against(c, pkg3, "5:Kfine,", 8, 1, &st);
    CHECK(rc == 0 && result_is(c, 0, 'K', "fine", 1, 1) && result_is(c, 2, 'K', "fine", 1, 1),
          "one answer then a hang-up after our half-close stands for the package");
    CHECK(qmtp_server_mode(c) == 2, "the client learnt that the server answers per package");

    {
        int64_t t0 = qmtp_now_ms();
        package(c, "test\n", 3);
        rc = run_against(c, pkg3, "5:Kfine,", 8, 1, &st);
        CHECK(rc == 0 && result_is(c, 1, 'K', "fine", 1, 1) && qmtp_now_ms() - t0 < 90,
              "seen per package before: the half-close comes at once, the hang-up still decides");
    }

    package(c, "test\n", 3);
    rc = run_against(c, pkg3, "5:Kfine,", 8, 0, &st);
    CHECK(rc == QMTP_OK && result_is(c, 0, 'K', "fine", 1, 0) && result_is(c, 1, 'Z', "no response received: "
          "timed out: no progress for 1 s waiting for responses", 0, 0),
          "a connection that shows nothing: the hint never attributes one answer to all");

    qmtp_set_answers(c, QMTP_ANSWERS_PACKAGE);
    package(c, "test\n", 3);
    rc = run_against(c, pkg3, "5:Kfine,", 8, 0, &st);
    CHECK(rc == 0 && result_is(c, 1, 'K', "fine", 1, 1) && open_after_run,
          "declared per package: one answer stands for the package at once, and the connection stays open");
    package(c, "test\n", 3);
    rc = run_against(c, pkg3, "3:Kok,3:Kok,", 12, 0, &st);
    CHECK(rc == 0 && qmtp_err(c) == QMTP_E_ANSWERS && result_is(c, 0, 'Z', "no response received: the server's "
          "answers did not match its packages: more answers than recipients", 0, 0) && !open_after_run,
          "declared per package, but two answers: a mismatch, nothing is trusted");
    qmtp_set_answers(c, QMTP_ANSWERS_AUTO);
    c->mode = QMTP_MODE_UNKNOWN;

    package(c, "test\n", 3);
    rc = run_against(c, pkg3, "3:Kok,3:Kok,", 12, 1, &st);
    CHECK(rc == 0 && result_is(c, 1, 'K', "ok", 1, 0) && qmtp_result_count(c) == 3, "two of three: rc %d", rc);
    CHECK(result_is(c, 2, 'Z', "no response received: connection closed by the server", 0, 0),
          "the third, never answered, is a deferral");
    CHECK(qmtp_server_mode(c) == 1, "two answers for one package: the server answers per recipient");

    package(c, "test\n", 2);
    rc = run_against(c, "6:\ntest\n,3:s@x,12:3:a@x,3:b@x,,", "hello", 5, 0, &st);
    CHECK(rc == 0 && !qmtp_is_open(c), "garbage closes the connection");
    CHECK(result_is(c, 0, 'Z', "no response received: protocol violation: response 1 has a malformed length", 0, 0),
          "garbage is a deferral saying why");

    package(c, "test\n", 1);
    rc = run_against(c, "6:\ntest\n,3:s@x,6:3:a@x,,", "", 0, 0, &st);
    CHECK(rc == 0 && result_is(c, 0, 'Z', "no response received: timed out: no progress for 1 s waiting for responses", 0, 0),
          "silence past the timeout is a deferral");

    {
        /* An empty file as the first package of a new client: nothing has
         * been staged yet (UBSan saw NULL + 0 here). */
        qmtp_client *e = qmtp_new();
        char path[] = "/tmp/qmtp-empty-XXXXXX";
        int fd = mkstemp(path);

        qmtp_set_timeouts(e, 1000, 1000, 100);
        qmtp_pkg_begin(e, '\n', "s@x", 3);
        qmtp_pkg_recipient(e, "a@x", 3);
        CHECK(fd >= 0 && qmtp_pkg_file(e, path) == 0 && qmtp_pkg_end(e) == 0, "an empty file is a package");
        rc = run_against(e, "1:\n,3:s@x,6:3:a@x,,", "3:Kok,", 6, 0, &st);
        CHECK(rc == 0 && result_is(e, 0, 'K', "ok", 1, 0), "an empty file goes out as an empty message (rc %d)", rc);
        unlink(path);
        if (fd >= 0) {
            close(fd);
        }
        qmtp_free(e);
    }

    package(c, "test\n", 1);
    written_calls = 0;
    rc = qmtp_run_overlapped(c, count_written, c);
    CHECK(rc == QMTP_E_NOTSENT && written_calls == 0, "on_written does not run when nothing was written");

    package(c, "test\n", 1);
    CHECK(qmtp_run_start(c) == QMTP_E_NOTSENT && !qmtp_busy(c) && result_is(c, 0, 'Z', "no response received: not connected", 0, 0),
          "a run started without a connection is over at once, as qmtp_run's");
    {
        int fd;
        int events;
        int64_t deadline;
        CHECK(qmtp_wants(c, &fd, &events, &deadline) == QMTP_E_STATE && qmtp_step(c, 0) == QMTP_E_STATE &&
              qmtp_cancel(c, "x") == QMTP_E_STATE, "nothing under way: wants, step and cancel say so");
    }

    qmtp_free(c);
}

/* A run cancelled mid-way, as destroying a pending send does: the answer
 * read is kept, the rest deferred with the reason, a package not written
 * in full is marked, and the connection is closed. */
static void test_cancel(void)
{
    qmtp_client *c = qmtp_new();
    static char big[1 << 20];
    int sv[2];
    int rc;
    int i;

    qmtp_set_timeouts(c, 1000, 1000, 100);
    qmtp_set_answers(c, QMTP_ANSWERS_RECIPIENT);
    memset(big, 'x', sizeof big);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    c->fd = sv[0];
    c->connected_at = qmtp_now_ms();
    qmtp_batch_reset(c);
    qmtp_pkg_begin(c, '\n', "s@x", 3);
    qmtp_pkg_recipient(c, "a@x", 3);
    qmtp_pkg_body(c, "hi\n", 3);
    qmtp_pkg_end(c);
    qmtp_pkg_begin(c, '\n', "s@x", 3);
    qmtp_pkg_recipient(c, "b@x", 3);
    qmtp_pkg_body(c, big, sizeof big);
    qmtp_pkg_end(c);
    rc = qmtp_run_start(c);
    for (i = 0; i < 4 && rc == QMTP_RUNNING; i++) {
        rc = qmtp_step(c, QMTP_WANT_WRITE); /* the peer reads nothing: the big one sticks */
    }
    CHECK(rc == QMTP_RUNNING && qmtp_busy(c) && write(sv[1], "3:Kok,", 6) == 6, "a run under way, one answer sent");
    rc = qmtp_step(c, QMTP_WANT_READ);
    CHECK(rc == QMTP_RUNNING, "the answer is taken, the run goes on (rc %d)", rc);
    CHECK(qmtp_pkg_begin(c, '\n', "s@x", 3) == QMTP_E_STATE && qmtp_pkg_recipient(c, "c@x", 3) == QMTP_E_STATE &&
          qmtp_pkg_end(c) == QMTP_E_STATE && strcmp(qmtp_errstr(c), "a send or connect is under way") == 0,
          "no package is added to a run under way");
    rc = qmtp_cancel(c, "cancelled: the object was destroyed");
    CHECK(!qmtp_busy(c) && c->fd < 0, "cancelled: over, and the connection is closed");
    CHECK(result_is(c, 0, 'K', "ok", 1, 0) && qmtp_pkg_status(c, 0) == QMTP_OK, "the answer read is kept");
    CHECK(rc == QMTP_E_INTR && qmtp_pkg_status(c, 1) == QMTP_E_INTR &&
          result_is(c, 1, 'Z', "no response received: cancelled: the object was destroyed", 0, 0),
          "the package cut short is marked and deferred with the reason (rc %d, status %d)", rc, qmtp_pkg_status(c, 1));
    close(sv[1]);
    qmtp_free(c);
}

/* The interrupt hook: counts its calls, and asks to stop when told to. */
static int hook_calls;
static int hook_stops;

static int count_hook(void *ctx)
{
    (void)ctx;
    hook_calls++;
    return hook_stops;
}

static void test_busy_wait(void)
{
    qmtp_client *c = qmtp_new();
    const char *pkg1 = "6:\ntest\n,3:s@x,6:3:a@x,,";
    int st = 0;
    int rc;

    qmtp_set_timeouts(c, 1000, 1000, 100);
    CHECK(qmtp_interrupt_ctx(c) == NULL, "no hook context until one is set");
    qmtp_set_interrupt_hook(c, count_hook, &hook_calls);
    CHECK(qmtp_interrupt_ctx(c) == &hook_calls, "the hook context is handed back as given");
    CHECK(c->spin_us == 50, "busy-waits 50 us by default (%ld)", (long)c->spin_us);

    /* An answer that comes long after the budget: a miss, then backing off. */
    peer_delay_us = 20000;
    package(c, "test\n", 1);
    hook_calls = 0;
    rc = run_against(c, pkg1, "3:Kok,", 6, 0, &st);
    CHECK(rc == 0 && result_is(c, 0, 'K', "ok", 1, 0), "a slow answer is still taken: rc %d", rc);
    CHECK(hook_calls > 0, "the busy wait asked the hook about pending signals (%d calls)", hook_calls);
    CHECK(c->spin_misses == 1 && c->spin_skip == 2, "one miss: the next 2 waits sleep at once (%u, %u)",
          c->spin_misses, c->spin_skip);
    package(c, "test\n", 1);
    hook_calls = 0;
    rc = run_against(c, pkg1, "3:Kok,", 6, 0, &st);
    CHECK(rc == 0 && hook_calls == 0 && c->spin_skip == 1, "a wait after a miss sleeps at once (%d calls)",
          hook_calls);
    c->spin_misses = 6;
    c->spin_skip = 0;
    package(c, "test\n", 1);
    rc = run_against(c, pkg1, "3:Kok,", 6, 0, &st);
    CHECK(rc == 0 && c->spin_misses == 6 && c->spin_skip == 64, "backing off stops at 64 waits (%u)",
          c->spin_skip);

    /* A look that finds the answer ends the backing off. */
    peer_delay_us = 0;
    qmtp_set_busy_wait(c, 1000000);
    c->spin_misses = 3;
    package(c, "test\n", 1);
    rc = run_against(c, pkg1, "3:Kok,", 6, 0, &st);
    CHECK(rc == 0 && result_is(c, 0, 'K', "ok", 1, 0) && c->spin_misses == 0 && c->spin_skip == 0,
          "an answer found while busy-waiting resets the misses (%u)", c->spin_misses);

    /* The hook may end the run while busy-waiting, as on EINTR. */
    peer_delay_us = 200000;
    hook_stops = 1;
    package(c, "test\n", 1);
    rc = run_against(c, pkg1, "3:Kok,", 6, 0, &st);
    CHECK(rc == 0 && result_is(c, 0, 'Z', "no response received: interrupted: Interrupted system call", 0, 0) &&
          !open_after_run,
          "a hook that asks to stop ends the busy wait: the answer is deferred, the connection closed "
          "(rc %d, %d results, '%s', open %d)", rc, (int)qmtp_result_count(c), qmtp_errstr(c), open_after_run);
    hook_stops = 0;

    /* An answer trickling in byte by byte, each byte well within the
     * budget: the looks of one run still add up to the budget at most. */
    {
        struct timespec t0, t1;
        double cpu_ms;

        peer_delay_us = 0;
        peer_trickle_us = 10000;
        qmtp_set_busy_wait(c, 20000);
        package(c, "test\n", 1);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
        rc = run_against(c, pkg1, "3:Kok,", 6, 0, &st);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
        cpu_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        CHECK(rc == 0 && result_is(c, 0, 'K', "ok", 1, 0), "a trickled answer is taken: rc %d", rc);
        CHECK(cpu_ms < 40, "busy-waiting for it took %.1f ms of CPU, not the 50 ms it trickled for", cpu_ms);
        peer_trickle_us = 0;
    }

    /* 0: never. */
    qmtp_set_busy_wait(c, 0);
    peer_delay_us = 20000;
    package(c, "test\n", 1);
    hook_calls = 0;
    rc = run_against(c, pkg1, "3:Kok,", 6, 0, &st);
    CHECK(rc == 0 && hook_calls == 0 && c->spin_skip == 0, "busy wait 0 sleeps at once (%d calls)", hook_calls);
    qmtp_set_busy_wait(c, -5);
    CHECK(c->spin_us == 0, "a negative busy wait is none");
    qmtp_set_busy_wait(c, 5000000);
    CHECK(c->spin_us == 1000000, "a busy wait is at most 1 s");
    peer_delay_us = 0;
    qmtp_free(c);
}

/* Each vector converted where its last byte sits just before the guard
 * page: a read past the end would fault. */
static void test_crlf_to_lf(void)
{
    static const struct { const char *in, *out; } v[] = {
        { "", "" },
        { "\r", "\r" },
        { "\n", "\n" },
        { "\r\n", "\n" },
        { "a\r\nb\r\n", "a\nb\n" },
        { "\r\r\n", "\r\n" },
        { "\r\n\r\n", "\n\n" },
        { "a\rb\n\r", "a\rb\n\r" },
        { "no line end", "no line end" },
        { "\n\r\r\n\r", "\n\r\n\r" },
    };
    size_t i;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t len = strlen(v[i].in), got;
        char *buf = (char *)at_guard(v[i].in, len);

        got = qmtp_crlf_to_lf(buf, len);
        CHECK(got == strlen(v[i].out) && memcmp(buf, v[i].out, got) == 0,
              "crlf_to_lf vector %u: length %u", (unsigned)i, (unsigned)got);
    }
}

int main(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    guard_base = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_base == MAP_FAILED || mprotect(guard_base + page, page, PROT_NONE) != 0) {
        perror("guard page");
        return 2;
    }
    test_decode();
    test_encode();
    test_engine();
    stepped = 1; /* the same, as an event loop drives it */
    test_engine();
    test_cancel();
    stepped = 0;
    test_busy_wait();
    test_crlf_to_lf();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
