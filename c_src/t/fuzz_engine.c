/* libFuzzer target: the send engine (qmtp_run, QMTP §2 and §5) against a
 * scripted peer on a socketpair, with an oracle on every input.
 *
 * The input is decoded into 1 to 4 connections of one client (so that what
 * it learns of the "server" carries from one to the next, as it does for
 * reconnects to one host). Each connection has a peer that answers once per
 * recipient or once per package, a declared mode (AUTO, or the peer's real
 * one: declarations are trusted, so never a false one), one or two batches
 * (the second on the same connection, if the first left it open) of 1 to 4
 * packages with 1 to 4 recipients (duplicates and odd bytes included),
 * memory, file, empty file and >64 KiB (sendfile) bodies, files that the
 * peer truncates or appends to while the client works, and a script per
 * answer: K/Z/D with a text (up to 3000 bytes), delays, pieces (down to
 * byte by byte), closes, stalls, answers cut off, garbage, answers before
 * their package is complete, surplus answers; the peer reads in big, tiny
 * or slow chunks, may stop reading at any byte, hangs up by close or by
 * shutdown, and reacts to the client's half-close by sending what it owes
 * (or not) and hanging up. Optionally qmtp_run_overlapped, no busy wait, a
 * small response limit, an interrupt hook that asks to stop.
 *
 * The peer runs in a thread and records facts, never intentions: which
 * bytes it received, which answers it sent in full for which package, and
 * how it hung up. Wrappers (linked with --wrap) record whether the client
 * half-closed (shutdown) and how far its writes had begun (sendmsg,
 * sendfile) when the peer changed a file. After the run the oracle checks,
 * from those facts alone, so that every racy but legitimate outcome passes:
 *  - invariant 1: a received answer belongs to its recipient: it is the
 *    peer's answer number j for that package (per recipient reading), or
 *    the package's only answer with per_package=1 where that is earned:
 *    declared PACKAGE, or AUTO when the client half-closed and the peer sent
 *    nothing after that answer and hung up; everything else must be 'Z'
 *    with received=0;
 *  - invariant 2: the peer receives the packages' exact bytes, except inside
 *    the body of a file it changed, and such a package is never completed
 *    on the wire (unless the file changed after the client had begun
 *    writing that package's last bytes: sendfile hands over the file's
 *    pages, not a copy); a package the peer has in full has status 0;
 *    status 0 means the peer got it in full whenever the peer read to the
 *    end; a package with bytes on the wire is not NOTSENT; after the first
 *    package not written in full all are NOTSENT; E_FILE only for a changed
 *    file, E_INTR only when the hook asked;
 *  - invariant 3: the run returns within the call limit plus some slack;
 *  - the return value, result count, first_result, qmtp_pkg_error,
 *    on_written, the connection closed after a failure or a half-close;
 *  - no descriptor leaks (body files closed when the run returns, nothing
 *    left after the batch is reset), no SIGPIPE delivered.
 *
 * Input (bytes past the end read as 0; see decode*): one byte of options
 * (connections-1, no busy wait, max response, overlapped, hook [+1 byte]);
 * per connection two bytes (peer mode, declared, runs, hang-up style, end
 * behaviour, reads; packages per run, stop reading [+2 bytes]); per
 * package three bytes (recipients, encoding, body kind, sender; body
 * length; recipients) [+1 byte for files: change, trigger, where], then two
 * bytes per answer the peer owes it (code, event, delay; text length,
 * pieces, variant).
 *
 * Environment: FUZZ_ENGINE_VERBOSE=1 prints every transcript;
 * FUZZ_ENGINE_SKIP=timing,pkgerror,sendfile,sigpipe leaves those checks out. */
#define _GNU_SOURCE 1
#include "../qmtp_int.h"
#include "fds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_CONNS 4
#define MAX_RUN_PKGS 4
#define MAX_PKGS (2 * MAX_RUN_PKGS)
#define MAX_RCPTS 4
#define MAX_ANSWERS (MAX_RCPTS + 4) /* per package, surplus included */
#define MAX_TEXT 3000 /* longest scripted answer text */
#define SHOW_TEXT 40  /* bytes of a text kept for the transcript */

#define CONNECT_MS 100
#define IO_MS 60
#define STALL_MS 15
#define CALL_LIMIT_MS 200
#define SLACK_MS 150
#define PEER_CAP_MS 3000 /* the peer gives up on its own after this */

enum event { EV_NORMAL, EV_CLOSE, EV_STALL, EV_CUT, EV_GARBAGE, EV_EARLY, EV_EXTRA, EV_LONG };
enum split { SPLIT_NONE, SPLIT_MIDDLE, SPLIT_FIRST, SPLIT_LAST, SPLIT_BYTES };
enum body_kind { BODY_MEM, BODY_FILE, BODY_EMPTY_FILE, BODY_BIG_FILE };
enum mod_kind { MOD_NONE, MOD_TRUNCATE, MOD_APPEND };
enum trigger { AT_START, AT_PREVIOUS, AT_BODY };
enum end_kind { END_WAIT, END_CLOSE, END_RUDE };

/* The script of one answer. */
struct action {
    char code;
    int event;
    int garbage;    /* variant, for EV_GARBAGE */
    int delay_ms;   /* before it */
    int gap_ms;     /* between its pieces */
    int split;
    size_t text_len;
    unsigned id;    /* tells the answers of one input apart */
    unsigned seed;
    int stall_done;
};

/* An answer the peer wrote in full. */
struct answer {
    char code;
    size_t len;
    uint64_t hash;
    unsigned char head[SHOW_TEXT];
    uint64_t end; /* the peer's output offset just after it */
};

struct pkgdef {
    int run;
    char enc;
    int kind;
    size_t body_len;
    unsigned char *body; /* memory body, or the file's content when queued */
    char path[256];
    char sender[8];
    size_t sender_len;
    size_t nrcpt;
    int rcpt[MAX_RCPTS];
    int mod;
    int trigger;
    size_t mod_at;  /* body bytes received before AT_BODY fires */
    size_t mod_arg; /* truncate to / bytes to append */
    int modified;   /* set by the peer just before it changes the file */
    uint64_t mod_attempt; /* how far the client's writing had begun then */
    size_t start, body_start, body_end, end; /* in the connection's stream */
    size_t wrong;   /* bytes of its file body that reached the peer altered */
    size_t wrong_at;
    size_t nact;
    struct action act[MAX_RCPTS];
    size_t nans;
    struct answer ans[MAX_ANSWERS];
};

struct result {
    char code;
    int received;
    int per_package;
    size_t len;
    uint64_t hash;
    unsigned char head[SHOW_TEXT];
};

/* What one qmtp_run reported. */
struct runrec {
    int rc;
    int written_calls; /* of the on_written hook */
    int hook_stopped;  /* the interrupt hook asked to stop */
    int files_open;    /* descriptors of body files still open after it */
    int64_t ms;
    int open_after;
    int half_closed;
    int err;
    char errstr[256];
    size_t npk;
    int status[MAX_RUN_PKGS];
    char pkg_error[MAX_RUN_PKGS][80];
    size_t first_result[MAX_RUN_PKGS];
    size_t nres;
    struct result res[MAX_RUN_PKGS * MAX_RCPTS];
};

struct conn {
    int index;
    int per_pkg;
    int declared;
    int nruns;
    int hangup_shut;
    int end;
    size_t read_chunk;
    int read_gap_ms;
    int read_close;
    unsigned rc_pkg, rc_frac;
    size_t read_close_at;
    size_t nrun_pkgs[2];
    size_t npkgs;
    struct pkgdef pk[MAX_PKGS];
    unsigned char *exp;
    size_t exp_len;

    /* the peer's state and the facts it records */
    int fd;
    int64_t t0;
    int64_t hard;
    size_t got;      /* stream bytes received */
    int mismatch;    /* a byte that no change of a file explains */
    size_t mismatch_at;
    size_t ncomplete;
    size_t ans_pkg;
    size_t ans_k;
    int eof;         /* the client's writing side ended */
    int drained;     /* ... and the peer read everything it wrote */
    int stalled;
    int hung_up;
    int done;
    int dead;
    uint64_t sent;

    size_t runs_done;
    struct runrec run[2];
};

struct input {
    size_t nconns;
    int busy_wait;
    size_t max_response; /* 0: the default */
    int overlapped;      /* qmtp_run_overlapped with an on_written hook */
    int hook;            /* an interrupt hook ... */
    int hook_stop_at;    /* ... that asks to stop at this call of a run (0: never) */
    struct conn conn[MAX_CONNS];
};

static char tmpdir[128];
static int verbose;
static int skip_timing;
static int skip_pkgerror;
static int skip_sendfile;
static struct input in;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[32768];
static size_t loglen;
static int64_t log_t0;

/* The client socket being watched (linked with --wrap): whether it was
 * half-closed, how many bytes the client wrote, and how far the write it
 * last began would reach (stream offsets). The peer reads the latter under
 * wire_lock when it changes a file: sendfile(2) hands the socket the file's
 * pages, not a copy, so a file truncated after the client wrote it can
 * still reach the peer altered. */
static int watch_fd = -1;
static int half_closed;
static pthread_mutex_t wire_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t client_written;
static uint64_t client_attempt;

int __real_shutdown(int fd, int how);
int __wrap_shutdown(int fd, int how);
ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __real_sendfile(int out, int in, off_t *off, size_t count);
ssize_t __wrap_sendfile(int out, int in, off_t *off, size_t count);

int __wrap_shutdown(int fd, int how)
{
    if (fd == watch_fd && fd >= 0 && (how == SHUT_WR || how == SHUT_RDWR)) {
        half_closed = 1;
    }
    return __real_shutdown(fd, how);
}

static void wire_begin(int fd, uint64_t len)
{
    if (fd == watch_fd && fd >= 0) {
        pthread_mutex_lock(&wire_lock);
        client_attempt = client_written + len;
        pthread_mutex_unlock(&wire_lock);
    }
}

static void wire_end(int fd, ssize_t n)
{
    if (fd == watch_fd && fd >= 0 && n > 0) {
        pthread_mutex_lock(&wire_lock);
        client_written += (uint64_t)n;
        pthread_mutex_unlock(&wire_lock);
    }
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    uint64_t len = 0;
    size_t i;
    ssize_t n;
    int e;

    for (i = 0; i < (size_t)msg->msg_iovlen; i++) {
        len += msg->msg_iov[i].iov_len;
    }
    wire_begin(fd, len);
    n = __real_sendmsg(fd, msg, flags);
    e = errno;
    wire_end(fd, n);
    errno = e;
    return n;
}

ssize_t __wrap_sendfile(int out, int in, off_t *off, size_t count)
{
    ssize_t n;
    int e;

    wire_begin(out, count);
    n = __real_sendfile(out, in, off, count);
    e = errno;
    wire_end(out, n);
    errno = e;
    return n;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void tlog(const char *who, const char *fmt, ...)
{
    va_list ap;
    int n;

    pthread_mutex_lock(&log_lock);
    if (loglen < sizeof logbuf - 200) {
        n = snprintf(logbuf + loglen, sizeof logbuf - loglen, "%5ld ms %-6s ", (long)(now_ms() - log_t0), who);
        if (n > 0) {
            loglen += (size_t)n;
        }
        va_start(ap, fmt);
        n = vsnprintf(logbuf + loglen, sizeof logbuf - loglen, fmt, ap);
        va_end(ap);
        if (n > 0) {
            loglen += (size_t)n < sizeof logbuf - loglen ? (size_t)n : sizeof logbuf - loglen - 1;
        }
        if (loglen < sizeof logbuf - 1) {
            logbuf[loglen++] = '\n';
        }
        logbuf[loglen] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
}

static void show_bytes(char *out, size_t outlen, const unsigned char *p, size_t len)
{
    size_t o = 0;
    size_t i;

    for (i = 0; i < len && o + 6 < outlen; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
            out[o++] = (char)p[i];
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
        }
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}

/* Removes the message files and the directory (unlink and rmdir only:
 * also called from the SIGPIPE handler). */
static void remove_files(void)
{
    size_t i;
    size_t g;

    for (i = 0; i < MAX_CONNS; i++) {
        for (g = 0; g < MAX_PKGS; g++) {
            if (in.conn[i].pk[g].path[0] != '\0') {
                unlink(in.conn[i].pk[g].path);
            }
        }
    }
    if (tmpdir[0] != '\0') {
        rmdir(tmpdir);
    }
}

static void fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "\n==== fuzz_engine: transcript ====\n%s", logbuf);
    fprintf(stderr, "==== fuzz_engine: ORACLE VIOLATION: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    remove_files();
    abort();
}

static void must(int rc, const char *what)
{
    if (rc != QMTP_OK) {
        fprintf(stderr, "fuzz_engine: harness: %s failed: %d\n", what, rc);
        abort();
    }
}

static void on_sigpipe(int sig)
{
    static const char msg[] = "fuzz_engine: ORACLE VIOLATION: SIGPIPE was delivered\n";

    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing more to do */
    }
    remove_files();
    abort();
}


static void *peer_thread(void *arg);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sigaction sa;
    const char *skip = getenv("FUZZ_ENGINE_SKIP");
    const char *t = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    snprintf(tmpdir, sizeof tmpdir, "%s/fuzz_engine.XXXXXX", t != NULL && t[0] != '\0' ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("fuzz_engine: mkdtemp");
        abort();
    }
    atexit(remove_files);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = skip != NULL && strstr(skip, "sigpipe") != NULL ? SIG_IGN : on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    {
        pthread_t th;

        if (pthread_create(&th, NULL, peer_thread, NULL) != 0) {
            perror("fuzz_engine: pthread_create");
            abort();
        }
        pthread_detach(th);
    }
    verbose = getenv("FUZZ_ENGINE_VERBOSE") != NULL;
    skip_timing = skip != NULL && strstr(skip, "timing") != NULL;
    skip_pkgerror = skip != NULL && strstr(skip, "pkgerror") != NULL;
    skip_sendfile = skip != NULL && strstr(skip, "sendfile") != NULL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding the script. Bytes past the end read as 0: a short input is a
 * plain, well-behaved exchange. */

struct reader {
    const uint8_t *p;
    size_t left;
};

static unsigned next_byte(struct reader *r)
{
    if (r->left == 0) {
        return 0;
    }
    r->left--;
    return *r->p++;
}

static const char *const rcpt_pool[] = { "a@x", "bob@example.net", "", "x:y,z\n" };
static const size_t rcpt_pool_len[] = { 3, 15, 0, 6 };
static const unsigned char text_pool[] = "ok\0,:\n#9 Z\r\xff";

static void decode_action(struct action *a, unsigned a0, unsigned a1, unsigned id)
{
    static const char codes[] = "KKZD";
    int d = (int)((a0 >> 5) & 7);

    memset(a, 0, sizeof *a);
    a->code = codes[a0 & 3];
    switch ((a0 >> 2) & 7) {
    case 4:
        a->event = EV_CLOSE;
        break;
    case 5:
        a->event = EV_STALL;
        break;
    case 6:
        a->event = EV_CUT;
        break;
    case 7:
        a->garbage = (int)((a1 >> 5) & 7);
        a->event = a->garbage < 5 ? EV_GARBAGE : a->garbage == 5 ? EV_EARLY : a->garbage == 6 ? EV_EXTRA : EV_LONG;
        break;
    default:
        a->event = EV_NORMAL;
        break;
    }
    a->split = (int)((a1 >> 3) & 3);
    a->gap_ms = a->split != SPLIT_NONE && ((a1 >> 5) & 1) ? 1 : 0;
    a->delay_ms = d == 4 ? 1 : d == 5 ? 4 : d == 6 ? 25 : 0;
    if (d == 7) {
        /* Byte by byte; rarely slower than the call limit allows in all,
         * each byte well within the inactivity timeout. */
        a->gap_ms = a->split == SPLIT_LAST ? 45 : 1;
        a->split = SPLIT_BYTES;
    }
    a->text_len = a->event != EV_LONG ? (a1 & 7) : (a1 & 1) ? MAX_TEXT : 100;
    if (a->text_len > 100 && a->split == SPLIT_BYTES) {
        a->split = SPLIT_MIDDLE;
    }
    a->id = id;
    a->seed = a1 >> 6;
}

static void gen_text(const struct action *a, unsigned char *out)
{
    size_t i;

    for (i = 0; i < a->text_len; i++) {
        /* The first bytes tell the answers apart. */
        out[i] = i == 0 ? (unsigned char)('a' + a->id % 26)
               : i == 1 ? (unsigned char)('a' + (a->id / 26) % 26)
               : text_pool[(i * 5 + a->seed) % (sizeof text_pool - 1)];
    }
}

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    size_t i;

    for (i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h;
}

static void decode_pkg(struct reader *rd, struct conn *c, struct pkgdef *p, int run, size_t g)
{
    static const size_t sender_lens[] = { 0, 1, 3, 7 };
    unsigned p0 = next_byte(rd);
    unsigned p1 = next_byte(rd);
    unsigned p2 = next_byte(rd);
    unsigned kind = (p0 >> 3) & 3;
    size_t i;

    p->run = run;
    p->nrcpt = 1 + (p0 & 3);
    p->enc = (p0 & 4) ? '\r' : '\n';
    p->kind = kind < 2 ? BODY_MEM : kind == 2 ? BODY_FILE : ((p0 >> 5) & 1) ? BODY_BIG_FILE : BODY_EMPTY_FILE;
    p->sender_len = sender_lens[(p0 >> 6) & 3];
    memcpy(p->sender, "s@x.org", 7);
    switch (p->kind) {
    case BODY_MEM:
        p->body_len = p1 % 48;
        break;
    case BODY_FILE:
        p->body_len = p1;
        break;
    case BODY_EMPTY_FILE:
        p->body_len = 0;
        break;
    default:
        p->body_len = 65537 + (size_t)p1 * 512;
        break;
    }
    for (i = 0; i < p->nrcpt; i++) {
        p->rcpt[i] = (int)((p2 >> (2 * i)) & 3);
    }
    if (p->kind != BODY_MEM) {
        unsigned p3 = next_byte(rd);
        unsigned frac = p3 >> 4;

        p->mod = (p3 & 3) == 1 ? MOD_TRUNCATE : (p3 & 3) == 2 ? MOD_APPEND : MOD_NONE;
        p->trigger = ((p3 >> 2) & 3) == 0 ? AT_START : ((p3 >> 2) & 3) == 2 ? AT_BODY : AT_PREVIOUS;
        if (p->mod == MOD_TRUNCATE && p->body_len == 0) {
            p->mod = MOD_APPEND;
        }
        p->mod_at = p->body_len * frac / 16;
        p->mod_arg = p->mod == MOD_TRUNCATE ? p->body_len * frac / 16 : 1 + frac;
        if (p->trigger == AT_PREVIOUS && g == 0) {
            p->trigger = AT_START;
        }
        /* A second batch's files are opened after the first run: changed
         * before that, they would simply be sent as they are then. */
        if (run > 0 && p->trigger != AT_BODY) {
            p->trigger = AT_BODY;
            p->mod_at = 0;
        }
    }
    p->nact = c->per_pkg ? 1 : p->nrcpt;
    for (i = 0; i < p->nact; i++) {
        unsigned a0 = next_byte(rd);
        unsigned a1 = next_byte(rd);
        decode_action(&p->act[i], a0, a1, (unsigned)(c->index * 64 + g * 8 + i));
    }
}

static void decode_conn(struct reader *rd, struct conn *c)
{
    unsigned c0 = next_byte(rd);
    unsigned c1 = next_byte(rd);
    unsigned e = (c0 >> 4) & 3;
    unsigned rmode = (c0 >> 6) & 3;
    size_t i;
    size_t g = 0;
    int run;

    c->per_pkg = c0 & 1;
    c->declared = (c0 & 2) ? (c->per_pkg ? QMTP_ANSWERS_PACKAGE : QMTP_ANSWERS_RECIPIENT) : QMTP_ANSWERS_AUTO;
    c->nruns = 1 + ((c0 >> 2) & 1);
    c->hangup_shut = (c0 >> 3) & 1;
    c->end = e == 1 ? END_CLOSE : e == 2 ? END_RUDE : END_WAIT;
    c->read_chunk = rmode == 1 ? 7 : rmode == 2 ? 4096 : 65536;
    c->read_gap_ms = rmode == 2 ? 1 : 0;
    c->nrun_pkgs[0] = 1 + (c1 & 3);
    c->nrun_pkgs[1] = c->nruns > 1 ? 1 + ((c1 >> 2) & 3) : 0;
    c->read_close = ((c1 >> 4) & 3) == 3;
    if (c->read_close) {
        c->rc_pkg = next_byte(rd);
        c->rc_frac = next_byte(rd);
    }
    for (run = 0; run < c->nruns; run++) {
        for (i = 0; i < c->nrun_pkgs[run]; i++, g++) {
            decode_pkg(rd, c, &c->pk[g], run, g);
        }
    }
    c->npkgs = g;
}

static void decode(const uint8_t *data, size_t size)
{
    struct reader rd;
    unsigned b;
    size_t i;

    rd.p = data;
    rd.left = size;
    b = next_byte(&rd);
    in.nconns = 1 + (b & 3);
    in.busy_wait = (b >> 2) & 1;
    in.max_response = ((b >> 3) & 7) == 7 ? 4 : ((b >> 3) & 7) == 6 ? 4096 : 0;
    in.overlapped = (b >> 6) & 1;
    in.hook = (b >> 7) & 1;
    if (in.hook) {
        in.hook_stop_at = (int)next_byte(&rd);
    }
    for (i = 0; i < in.nconns; i++) {
        in.conn[i].index = (int)i;
        decode_conn(&rd, &in.conn[i]);
    }
}

/* ------------------------------------------------------------------ */
/* The bytes a package must be on the wire (QMTP §4), built here without
 * the library's encoder. */

static void put(unsigned char *buf, size_t *len, const void *p, size_t n)
{
    if (buf != NULL) {
        memcpy(buf + *len, p, n);
    }
    *len += n;
}

static void put_header(unsigned char *buf, size_t *len, size_t n)
{
    char h[32];
    int k = snprintf(h, sizeof h, "%zu:", n);

    put(buf, len, h, (size_t)k);
}

/* Lays out package p at buf+*len (buf NULL: only counts). */
static void layout(unsigned char *buf, size_t *len, struct pkgdef *p)
{
    size_t inner = 0;
    size_t i;

    p->start = *len;
    put_header(buf, len, p->body_len + 1);
    put(buf, len, &p->enc, 1);
    p->body_start = *len;
    put(buf, len, p->body, p->body_len);
    p->body_end = *len;
    put(buf, len, ",", 1);
    put_header(buf, len, p->sender_len);
    put(buf, len, p->sender, p->sender_len);
    put(buf, len, ",", 1);
    for (i = 0; i < p->nrcpt; i++) {
        put_header(NULL, &inner, rcpt_pool_len[p->rcpt[i]]);
        inner += rcpt_pool_len[p->rcpt[i]] + 1;
    }
    put_header(buf, len, inner);
    for (i = 0; i < p->nrcpt; i++) {
        put_header(buf, len, rcpt_pool_len[p->rcpt[i]]);
        put(buf, len, rcpt_pool[p->rcpt[i]], rcpt_pool_len[p->rcpt[i]]);
        put(buf, len, ",", 1);
    }
    put(buf, len, ",", 1);
    p->end = *len;
}

static void prepare_conn(struct conn *c)
{
    size_t i;
    size_t len = 0;

    for (i = 0; i < c->npkgs; i++) {
        struct pkgdef *p = &c->pk[i];
        size_t k;

        p->body = malloc(p->body_len + 1);
        for (k = 0; k < p->body_len; k++) {
            p->body[k] = k % 17 == 16 ? '\n' : (unsigned char)('a' + (k * 7 + i) % 26);
        }
        if (p->kind != BODY_MEM) {
            int fd;

            snprintf(p->path, sizeof p->path, "%s/c%dp%zu", tmpdir, c->index, i);
            fd = open(p->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0 || write(fd, p->body, p->body_len) != (ssize_t)p->body_len) {
                perror("fuzz_engine: harness: writing a body file");
                abort();
            }
            close(fd);
        }
    }
    for (i = 0; i < c->npkgs; i++) {
        layout(NULL, &len, &c->pk[i]);
    }
    c->exp = malloc(len + 1);
    c->exp_len = 0;
    for (i = 0; i < c->npkgs; i++) {
        layout(c->exp, &c->exp_len, &c->pk[i]);
    }
    if (c->read_close) {
        struct pkgdef *p = &c->pk[c->rc_pkg % c->npkgs];
        c->read_close_at = p->start + (p->end - p->start) * c->rc_frac / 255;
    }
}

static void release_conn(struct conn *c)
{
    size_t i;

    for (i = 0; i < c->npkgs; i++) {
        if (c->pk[i].kind != BODY_MEM) {
            unlink(c->pk[i].path);
        }
        free(c->pk[i].body);
        c->pk[i].body = NULL;
    }
    free(c->exp);
    c->exp = NULL;
}

/* ------------------------------------------------------------------ */
/* The peer. */

static void modify(struct conn *c, struct pkgdef *p)
{
    pthread_mutex_lock(&wire_lock);
    p->modified = 1; /* before the change: the client may see it at once */
    p->mod_attempt = client_attempt;
    if (p->mod == MOD_TRUNCATE) {
        tlog("peer", "truncates the file of package %zu to %zu bytes", (size_t)(p - c->pk), p->mod_arg);
        if (truncate(p->path, (off_t)p->mod_arg) != 0) {
            perror("fuzz_engine: harness: truncate");
            abort();
        }
    } else {
        static const char more[] = "appended bytes, appended bytes\n";
        int fd = open(p->path, O_WRONLY | O_APPEND | O_CLOEXEC);

        tlog("peer", "appends %zu bytes to the file of package %zu", p->mod_arg, (size_t)(p - c->pk));
        if (fd < 0 || write(fd, more, p->mod_arg) != (ssize_t)p->mod_arg) {
            perror("fuzz_engine: harness: append");
            abort();
        }
        close(fd);
    }
    pthread_mutex_unlock(&wire_lock);
}

static void triggers(struct conn *c)
{
    size_t i;

    for (i = 0; i < c->npkgs; i++) {
        struct pkgdef *p = &c->pk[i];
        int fire;

        if (p->kind == BODY_MEM || p->mod == MOD_NONE || p->modified) {
            continue;
        }
        fire = p->trigger == AT_START ||
               (p->trigger == AT_PREVIOUS && c->ncomplete >= i) ||
               (p->trigger == AT_BODY && c->got >= p->body_start + p->mod_at);
        if (fire) {
            modify(c, p);
        }
    }
}

/* The package holding stream offset at, or NULL past the last. */
static struct pkgdef *pkg_at(struct conn *c, size_t at)
{
    size_t i;

    for (i = 0; i < c->npkgs; i++) {
        if (at < c->pk[i].end) {
            return &c->pk[i];
        }
    }
    return NULL;
}

/* Takes bytes from the client. A wrong byte is tolerated here only inside
 * the body of a file that the peer changed (the oracle then asks whether
 * that package was completed); anywhere else it is a violation. */
static void consume(struct conn *c, const unsigned char *buf, size_t n)
{
    size_t k;

    for (k = 0; k < n; k++) {
        size_t at = c->got + k;
        struct pkgdef *p;

        if (at < c->exp_len && buf[k] == c->exp[at]) {
            continue;
        }
        p = at < c->exp_len ? pkg_at(c, at) : NULL;
        if (p != NULL && p->kind != BODY_MEM && p->modified && at >= p->body_start && at < p->body_end) {
            if (p->wrong++ == 0) {
                p->wrong_at = at;
                tlog("peer", "received an altered byte of the changed file of package %zu at stream offset %zu "
                     "(0x%02x)", (size_t)(p - c->pk), at, buf[k]);
            }
        } else if (!c->mismatch) {
            c->mismatch = 1;
            c->mismatch_at = at;
            tlog("peer", "received a wrong byte at stream offset %zu (0x%02x)", at, buf[k]);
        }
    }
    c->got += n;
    while (c->ncomplete < c->npkgs && c->got >= c->pk[c->ncomplete].end) {
        tlog("peer", "has package %zu in full (%zu bytes)", c->ncomplete,
             c->pk[c->ncomplete].end - c->pk[c->ncomplete].start);
        c->ncomplete++;
    }
    triggers(c);
}

/* Waits up to ms for the client's bytes and takes what is there. */
static void pump(struct conn *c, int ms)
{
    static __thread unsigned char buf[65536];
    struct pollfd pf;
    size_t want = c->read_chunk;
    ssize_t r;

    if (c->fd < 0 || c->eof) {
        return;
    }
    pf.fd = c->fd;
    pf.events = POLLIN;
    pf.revents = 0;
    if (poll(&pf, 1, ms) <= 0) {
        return;
    }
    if (c->read_close && c->got < c->read_close_at && want > c->read_close_at - c->got) {
        want = c->read_close_at - c->got; /* stop exactly there */
    }
    r = recv(c->fd, buf, want, MSG_DONTWAIT);
    if (r > 0) {
        consume(c, buf, (size_t)r);
        if (c->read_gap_ms > 0) {
            sleep_ms(c->read_gap_ms);
        }
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        /* A Unix socket delivers everything written before a reset. */
        c->eof = 1;
        c->drained = r == 0 || errno == ECONNRESET;
        tlog("peer", "sees the client's end (%s), %zu bytes in all", r == 0 ? "EOF" : strerror(errno), c->got);
    }
}

/* Lets ms pass while reading; stop_on_eof: return early at the client's end. */
static void peer_wait(struct conn *c, int ms, int stop_on_eof)
{
    int64_t until = now_ms() + ms;

    for (;;) {
        int64_t left = until - now_ms();

        if (left <= 0) {
            return;
        }
        if (c->fd < 0 || c->eof) {
            if (stop_on_eof) {
                return;
            }
            sleep_ms((int)left);
            return;
        }
        pump(c, (int)left);
    }
}

static int peer_write(struct conn *c, const void *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n;

        if (c->fd < 0 || now_ms() >= c->hard) {
            return -1;
        }
        n = send(c->fd, (const char *)buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            c->sent += (uint64_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            pump(c, 5);
        } else {
            tlog("peer", "cannot write: %s", strerror(errno));
            c->dead = 1;
            return -1;
        }
    }
    return 0;
}

static void hangup(struct conn *c)
{
    c->hung_up = 1;
    c->done = 1;
    c->read_close = 0;
    if (c->fd < 0) {
        return;
    }
    if (c->hangup_shut) {
        /* The client sees EOF; the peer still records what it writes. */
        tlog("peer", "hangs up (shutdown, keeps reading)");
        shutdown(c->fd, SHUT_WR);
        while (!c->eof && now_ms() < c->hard) {
            pump(c, 20);
        }
    } else {
        tlog("peer", "hangs up (close)");
    }
    close(c->fd);
    c->fd = -1;
}

static size_t answers_due(const struct conn *c, const struct pkgdef *p)
{
    return c->per_pkg ? 1 : p->nrcpt;
}

static void record(struct pkgdef *p, char code, const unsigned char *text, size_t len, uint64_t end)
{
    struct answer *a;

    if (p->nans >= MAX_ANSWERS) {
        abort(); /* harness: more answers than planned */
    }
    a = &p->ans[p->nans++];
    a->code = code;
    a->len = len;
    a->hash = fnv(text, len);
    memcpy(a->head, text, len < SHOW_TEXT ? len : SHOW_TEXT);
    a->end = end;
}

/* Where piece k of an answer of n bytes ends (the last piece ends at n). */
static size_t piece_end(int split, size_t n, size_t k)
{
    switch (split) {
    case SPLIT_MIDDLE:
        return k == 0 ? n / 2 : n;
    case SPLIT_FIRST:
        return k == 0 ? 1 : n;
    case SPLIT_LAST:
        return k == 0 ? n - 1 : n;
    case SPLIT_BYTES:
        return k + 1 < n ? k + 1 : n;
    default:
        return n;
    }
}

/* Writes one answer as scripted; 0, or -1 when the peer is done. */
static int send_answer(struct conn *c, struct pkgdef *p, struct action *a)
{
    static const char *const garbage[] = { "3:Xab,", "0:,", "abc", "4:Kab;", "1234567890:" };
    unsigned char buf[MAX_TEXT + 32];
    size_t g = (size_t)(p - c->pk);
    size_t n;
    size_t from = 0;
    size_t k;
    char shown[3 * SHOW_TEXT];

    if (a->event == EV_GARBAGE) {
        const char *gs = garbage[a->garbage];
        tlog("peer", "sends garbage \"%s\" for package %zu", gs, g);
        return peer_write(c, gs, strlen(gs)) == 0 ? 0 : -1;
    }
    n = (size_t)snprintf((char *)buf, sizeof buf, "%zu:", a->text_len + 1);
    buf[n++] = (unsigned char)a->code;
    gen_text(a, buf + n);
    n += a->text_len;
    buf[n++] = ',';
    show_bytes(shown, sizeof shown, buf, n < SHOW_TEXT ? n : SHOW_TEXT);
    if (a->event == EV_CUT) {
        size_t cut = a->split == SPLIT_FIRST ? 1 : a->split == SPLIT_LAST ? n - 1 : n / 2;
        tlog("peer", "sends %zu of %zu bytes of \"%s\" for package %zu, then hangs up", cut, n, shown, g);
        if (peer_write(c, buf, cut) == 0) {
            hangup(c);
        }
        return -1;
    }
    tlog("peer", "sends \"%s\"%s (%zu bytes) for package %zu (answer %zu)%s", shown, n > SHOW_TEXT ? "..." : "", n, g,
         p->nans, a->split != SPLIT_NONE ? " in pieces" : "");
    for (k = 0; from < n; k++) {
        size_t to = piece_end(a->split, n, k);

        if (k > 0 && a->gap_ms > 0) {
            peer_wait(c, a->gap_ms, 0);
        }
        if (peer_write(c, buf + from, to - from) != 0) {
            return -1;
        }
        from = to;
    }
    record(p, a->code, buf + n - 1 - a->text_len, a->text_len, c->sent);
    /* A surplus answer is only told apart from the next package's when
     * nothing follows, and never under a declaration (it would be false). */
    if (a->event == EV_EXTRA && c->declared == QMTP_ANSWERS_AUTO && g + 1 == c->npkgs) {
        static const unsigned char extra[] = "extra";
        tlog("peer", "sends a surplus answer \"6:Kextra,\" for package %zu", g);
        if (peer_write(c, "6:Kextra,", 9) != 0) {
            return -1;
        }
        record(p, 'K', extra, 5, c->sent);
    }
    return 0;
}

static void advance(struct conn *c)
{
    if (++c->ans_k >= answers_due(c, &c->pk[c->ans_pkg])) {
        c->ans_pkg++;
        c->ans_k = 0;
    }
}

static void answer_one(struct conn *c)
{
    struct pkgdef *p = &c->pk[c->ans_pkg];
    struct action *a = &p->act[c->ans_k];

    if (a->event == EV_CLOSE) {
        tlog("peer", "hangs up before answer %zu of package %zu", c->ans_k, c->ans_pkg);
        hangup(c);
        return;
    }
    if (a->event == EV_STALL && !a->stall_done) {
        tlog("peer", "stalls before answer %zu of package %zu", c->ans_k, c->ans_pkg);
        a->stall_done = 1;
        c->stalled = 1;
        return;
    }
    if (a->delay_ms > 0) {
        peer_wait(c, a->delay_ms, 1);
        if (c->eof || c->fd < 0) {
            return; /* the reaction sends it */
        }
    }
    if (send_answer(c, p, a) == 0) {
        advance(c);
    } else {
        c->done = 1;
    }
}

/* The client's writing side ended (half-close or close): answer what was
 * received, as qmail-qmtpd and mailfront do, then hang up. */
static void react(struct conn *c)
{
    if (c->end == END_RUDE || c->mismatch) {
        tlog("peer", "answers nothing more");
        hangup(c);
        return;
    }
    while (!c->done && c->ans_pkg < c->ncomplete) {
        struct pkgdef *p = &c->pk[c->ans_pkg];
        struct action *a = &p->act[c->ans_k];

        if (a->event == EV_CLOSE) {
            hangup(c);
            return;
        }
        if (send_answer(c, p, a) != 0) {
            c->done = 1;
            break;
        }
        advance(c);
    }
    if (!c->done) {
        hangup(c);
    }
}

static void peer_main(struct conn *c)
{
    triggers(c);
    while (!c->done) {
        if (now_ms() >= c->hard) {
            tlog("peer", "gives up");
            hangup(c);
            break;
        }
        if (c->read_close && c->got >= c->read_close_at) {
            tlog("peer", "stops reading at stream offset %zu", c->got);
            hangup(c);
            break;
        }
        if (c->dead) {
            break;
        }
        if (c->eof) {
            react(c);
            break;
        }
        if (!c->stalled && !c->mismatch && c->ans_pkg < c->ncomplete) {
            answer_one(c);
            continue;
        }
        if (!c->stalled && !c->mismatch && c->ans_pkg == c->ncomplete && c->ans_pkg < c->npkgs && c->ans_k == 0) {
            struct pkgdef *p = &c->pk[c->ans_pkg];

            /* An answer before its package's last byte (§2 forbids it): a
             * client that reads it only after writing that byte cannot tell,
             * so it counts as the package's first answer. */
            if (p->act[0].event == EV_EARLY && c->got > p->start + (p->end - p->start) / 2 && c->got < p->end) {
                tlog("peer", "answers package %zu before it has all of it", c->ans_pkg);
                if (send_answer(c, p, &p->act[0]) == 0) {
                    advance(c);
                } else {
                    c->done = 1;
                }
                continue;
            }
        }
        if (!c->stalled && c->end == END_CLOSE && c->ans_pkg >= c->npkgs) {
            tlog("peer", "hangs up after its last answer");
            hangup(c);
            break;
        }
        pump(c, 20);
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

/* One peer thread for the whole process, handed a connection at a time (a
 * thread per connection would cost more than most inputs, and its memory
 * would make libFuzzer run each input twice to look for leaks). */
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
static struct conn *work;
static int work_done;

static void *peer_thread(void *arg)
{
    (void)arg;
    for (;;) {
        struct conn *c;

        pthread_mutex_lock(&work_lock);
        while (work == NULL) {
            pthread_cond_wait(&work_cond, &work_lock);
        }
        c = work;
        pthread_mutex_unlock(&work_lock);
        peer_main(c);
        pthread_mutex_lock(&work_lock);
        work = NULL;
        work_done = 1;
        pthread_cond_broadcast(&work_cond);
        pthread_mutex_unlock(&work_lock);
    }
    return NULL;
}

static void peer_start(struct conn *c)
{
    pthread_mutex_lock(&work_lock);
    work_done = 0;
    work = c;
    pthread_cond_broadcast(&work_cond);
    pthread_mutex_unlock(&work_lock);
}

static void peer_wait_done(void)
{
    pthread_mutex_lock(&work_lock);
    while (!work_done) {
        pthread_cond_wait(&work_cond, &work_lock);
    }
    pthread_mutex_unlock(&work_lock);
}

/* ------------------------------------------------------------------ */
/* The client side. */

static int hook_calls;
static int hook_stopped;
static int written_calls;

static int interrupt_hook(void *ctx)
{
    (void)ctx;
    hook_calls++;
    if (in.hook_stop_at > 0 && hook_calls >= in.hook_stop_at) {
        hook_stopped = 1;
        return 1;
    }
    return 0;
}

static void on_written(void *ctx)
{
    (void)ctx;
    written_calls++;
}

/* Descriptors open on files of the temporary directory (the peer opens
 * one only under wire_lock, in modify). */
static int count_body_fds(void)
{
    DIR *d;
    struct dirent *e;
    size_t dl = strlen(tmpdir);
    int n = 0;

    pthread_mutex_lock(&wire_lock);
    d = opendir("/proc/self/fd");
    while (d != NULL && (e = readdir(d)) != NULL) {
        char link[64];
        char target[512];
        ssize_t len;

        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        len = readlink(link, target, sizeof target - 1);
        if (len > 0 && (size_t)len > dl && memcmp(target, tmpdir, dl) == 0 && target[dl] == '/') {
            n++;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    pthread_mutex_unlock(&wire_lock);
    return n;
}

static void build_batch(qmtp_client *q, struct conn *c, int run)
{
    size_t i;
    size_t k;

    qmtp_batch_reset(q);
    for (i = 0; i < c->npkgs; i++) {
        struct pkgdef *p = &c->pk[i];

        if (p->run != run) {
            continue;
        }
        must(qmtp_pkg_begin(q, p->enc, p->sender, p->sender_len), "qmtp_pkg_begin");
        for (k = 0; k < p->nrcpt; k++) {
            must(qmtp_pkg_recipient(q, rcpt_pool[p->rcpt[k]], rcpt_pool_len[p->rcpt[k]]), "qmtp_pkg_recipient");
        }
        if (p->kind == BODY_MEM) {
            must(qmtp_pkg_body(q, (const char *)p->body, p->body_len), "qmtp_pkg_body");
        } else {
            must(qmtp_pkg_file(q, p->path), "qmtp_pkg_file");
        }
        must(qmtp_pkg_end(q), "qmtp_pkg_end");
    }
}

static void run_once(qmtp_client *q, struct conn *c, int run)
{
    struct runrec *rec = &c->run[run];
    int64_t t0;
    size_t i;

    half_closed = 0;
    qmtp_set_call_limit(q, CALL_LIMIT_MS);
    tlog("client", "run %d: %zu package(s), mode hint %d", run, qmtp_pkg_count(q), qmtp_server_mode(q));
    hook_calls = 0;
    hook_stopped = 0;
    written_calls = 0;
    t0 = now_ms();
    rec->rc = in.overlapped ? qmtp_run_overlapped(q, on_written, NULL) : qmtp_run(q);
    rec->ms = now_ms() - t0;
    rec->hook_stopped = hook_stopped;
    rec->written_calls = written_calls;
    rec->files_open = count_body_fds();
    rec->half_closed = half_closed;
    rec->open_after = qmtp_is_open(q);
    rec->err = qmtp_err(q);
    snprintf(rec->errstr, sizeof rec->errstr, "%s", qmtp_errstr(q));
    rec->npk = qmtp_pkg_count(q);
    for (i = 0; i < rec->npk && i < MAX_RUN_PKGS; i++) {
        rec->status[i] = qmtp_pkg_status(q, i);
        snprintf(rec->pkg_error[i], sizeof rec->pkg_error[i], "%s", qmtp_pkg_error(q, i));
        rec->first_result[i] = qmtp_pkg_first_result(q, i);
    }
    rec->nres = qmtp_result_count(q);
    for (i = 0; i < rec->nres && i < MAX_RUN_PKGS * MAX_RCPTS; i++) {
        qmtp_result r;
        struct result *o = &rec->res[i];

        must(qmtp_result_get(q, i, &r), "qmtp_result_get");
        o->code = r.code;
        o->received = r.received;
        o->per_package = r.per_package;
        o->len = r.len;
        o->hash = fnv((const unsigned char *)r.text, r.len);
        memcpy(o->head, r.text, r.len < SHOW_TEXT ? r.len : SHOW_TEXT);
    }
    tlog("client", "run %d returned %d after %ld ms (err %d \"%s\"), %s, %s, mode hint now %d, on_written %d, "
         "hook %s", run, rec->rc, (long)rec->ms, rec->err, rec->errstr, rec->half_closed ? "half-closed" : "no half-close",
         rec->open_after ? "still open" : "closed", qmtp_server_mode(q), rec->written_calls,
         rec->hook_stopped ? "stopped it" : "did not stop it");
    for (i = 0; i < rec->npk && i < MAX_RUN_PKGS; i++) {
        tlog("client", "  package %zu: status %d \"%s\"", i, rec->status[i], rec->pkg_error[i]);
    }
    for (i = 0; i < rec->nres && i < MAX_RUN_PKGS * MAX_RCPTS; i++) {
        char shown[3 * SHOW_TEXT];
        struct result *o = &rec->res[i];

        show_bytes(shown, sizeof shown, o->head, o->len < SHOW_TEXT ? o->len : SHOW_TEXT);
        tlog("client", "  result %zu: %c received=%d per_package=%d \"%s\"", i, o->code, o->received,
             o->per_package, shown);
    }
    c->runs_done = (size_t)run + 1;
}

/* ------------------------------------------------------------------ */
/* The oracle. */

static int same(const struct answer *a, const struct result *r)
{
    return a->code == r->code && a->len == r->len && a->hash == r->hash;
}

/* One answer may stand for all of package g's recipients. */
static int spread_earned(const struct conn *c, const struct runrec *rec, const struct pkgdef *p)
{
    if (p->nans < 1) {
        return 0;
    }
    if (c->declared == QMTP_ANSWERS_PACKAGE) {
        return 1;
    }
    return c->declared == QMTP_ANSWERS_AUTO && rec->half_closed && p->nans == 1 && p->ans[0].end == c->sent &&
           c->hung_up;
}

static int status_allowed(int st, int intr)
{
    if (st == QMTP_E_INTR) {
        return intr;
    }
    switch (st) {
    case QMTP_OK:
    case QMTP_E_FILE:
    case QMTP_E_IO:
    case QMTP_E_EOF:
    case QMTP_E_TIMEOUT:
    case QMTP_E_NOTSENT:
    case QMTP_E_PROTO:
    case QMTP_E_ANSWERS:
        return 1;
    default:
        return 0;
    }
}

static void check_conn(const struct conn *c)
{
    size_t base = 0;
    size_t r;

    if (c->mismatch) {
        size_t g;
        for (g = 0; g < c->npkgs && c->pk[g].end <= c->mismatch_at; g++) {
        }
        fail("connection %d: the peer received a byte that is not the package's: stream offset %zu, package %zu "
             "(bytes %zu..%zu)", c->index, c->mismatch_at, g, g < c->npkgs ? c->pk[g].start : 0,
             g < c->npkgs ? c->pk[g].end : 0);
    }
    for (r = 0; r < c->npkgs; r++) {
        const struct pkgdef *p = &c->pk[r];

        if (p->wrong == 0 || c->got < p->end) {
            continue; /* altered bytes of a package that was never completed: dropped */
        }
        if (p->mod_attempt < p->body_end) {
            fail("connection %d: package %zu was completed on the wire with %zu altered byte(s) of its file body "
                 "(first at stream offset %zu); the file was %s before the client began writing the body's last "
                 "byte (its writing had begun up to offset %lu; body ends at %zu)", c->index, r, p->wrong,
                 p->wrong_at, p->mod == MOD_TRUNCATE ? "truncated" : "appended to", (unsigned long)p->mod_attempt,
                 p->body_end);
        }
        if (p->mod_attempt < p->end && !skip_sendfile) {
            fail("connection %d: package %zu was completed on the wire with %zu altered byte(s) of its file body "
                 "(first at stream offset %zu): the file was %s after sendfile(2) had taken the whole body "
                 "(writing begun up to offset %lu) but before the client began writing the tail (at %zu..%zu); "
                 "the client did not notice that the file had shrunk", c->index, r, p->wrong, p->wrong_at,
                 p->mod == MOD_TRUNCATE ? "truncated" : "appended to", (unsigned long)p->mod_attempt,
                 p->body_end, p->end);
        }
        tlog("oracle", "package %zu: %zu altered byte(s) reached the peer; the file changed after the client had "
             "begun writing the tail: sendfile(2) sends the file's pages as they are when they leave", r, p->wrong);
    }
    for (r = 0; r < c->runs_done; r++) {
        const struct runrec *rec = &c->run[r];
        size_t n = c->nrun_pkgs[r];
        size_t total = 0;
        long first_bad = -1;
        int want_rc;
        size_t i;
        size_t slot = 0;

        if (rec->npk != n) {
            fail("connection %d run %zu: qmtp_pkg_count %zu, %zu queued", c->index, r, rec->npk, n);
        }
        for (i = 0; i < n; i++) {
            const struct pkgdef *p = &c->pk[base + i];
            int st = rec->status[i];
            int complete = c->got >= p->end;
            int started = c->got > p->start;

            if (!status_allowed(st, rec->hook_stopped)) {
                fail("connection %d run %zu: package %zu has status %d (%s)", c->index, r, i, st, qmtp_strerror(st));
            }
            if (st == QMTP_E_FILE && (p->kind == BODY_MEM || !p->modified)) {
                fail("connection %d run %zu: package %zu failed with E_FILE though its %s", c->index, r, i,
                     p->kind == BODY_MEM ? "body is in memory" : "file never changed");
            }
            if (first_bad < 0 && st != QMTP_OK) {
                first_bad = (long)i;
            } else if (first_bad >= 0 && st != QMTP_E_NOTSENT) {
                fail("connection %d run %zu: package %zu has status %d after package %ld was not written in full",
                     c->index, r, i, st, first_bad);
            }
            if (complete && st != QMTP_OK) {
                fail("connection %d run %zu: the peer received package %zu in full, but its status is %d",
                     c->index, r, i, st);
            }
            if (started && st == QMTP_E_NOTSENT) {
                fail("connection %d run %zu: package %zu is NOTSENT, but the peer received %zu of its bytes",
                     c->index, r, i, (c->got < p->end ? c->got : p->end) - p->start);
            }
            if (st == QMTP_OK && c->drained && !complete) {
                fail("connection %d run %zu: package %zu has status 0, but the peer, which read everything the "
                     "client wrote, got %zu of its %zu bytes", c->index, r, i, c->got > p->start ? c->got - p->start : 0,
                     p->end - p->start);
            }
            if (!skip_pkgerror && (st == QMTP_OK) != (rec->pkg_error[i][0] == '\0')) {
                fail("connection %d run %zu: package %zu has status %d and qmtp_pkg_error \"%s\"", c->index, r, i,
                     st, rec->pkg_error[i]);
            }
            if (rec->first_result[i] != total) {
                fail("connection %d run %zu: qmtp_pkg_first_result(%zu) is %zu, not %zu", c->index, r, i,
                     rec->first_result[i], total);
            }
            total += p->nrcpt;
        }
        want_rc = first_bad < 0 ? QMTP_OK : rec->status[first_bad];
        if (in.overlapped && rec->written_calls != (first_bad < 0)) {
            fail("connection %d run %zu: on_written ran %d time(s), and %s package was written in full", c->index, r,
                 rec->written_calls, first_bad < 0 ? "every" : "not every");
        }
        if (rec->rc != want_rc) {
            fail("connection %d run %zu: qmtp_run returned %d, the first package not written in full says %d",
                 c->index, r, rec->rc, want_rc);
        }
        if (rec->rc != QMTP_OK && rec->open_after) {
            fail("connection %d run %zu: qmtp_run returned %d but left the connection open", c->index, r, rec->rc);
        }
        if (rec->half_closed && rec->open_after) {
            fail("connection %d run %zu: the client half-closed, but left the connection open", c->index, r);
        }
        if (rec->files_open != 0) {
            fail("connection %d run %zu: %d descriptor(s) of message files still open after qmtp_run returned",
                 c->index, r, rec->files_open);
        }
        if (rec->nres != total) {
            fail("connection %d run %zu: %zu results for %zu recipients", c->index, r, rec->nres, total);
        }
        for (i = 0; i < n; i++) {
            const struct pkgdef *p = &c->pk[base + i];
            size_t j;

            for (j = 0; j < p->nrcpt; j++, slot++) {
                const struct result *res = &rec->res[slot];
                int by_rcpt;
                int by_pkg;

                if (res->code != 'K' && res->code != 'Z' && res->code != 'D') {
                    fail("connection %d run %zu: result %zu has code 0x%02x", c->index, r, slot,
                         (unsigned)(unsigned char)res->code);
                }
                if (!res->received) {
                    if (res->code != 'Z' || res->per_package) {
                        fail("connection %d run %zu: result %zu (package %zu recipient %zu) was not received but is "
                             "'%c' per_package=%d", c->index, r, slot, i, j, res->code, res->per_package);
                    }
                    continue;
                }
                by_rcpt = j < p->nans && same(&p->ans[j], res) && (!res->per_package || p->nrcpt == 1);
                by_pkg = res->per_package && p->nans >= 1 && same(&p->ans[0], res) && spread_earned(c, rec, p);
                if (!by_rcpt && !by_pkg) {
                    fail("connection %d run %zu: result %zu (package %zu recipient %zu) is '%c' received "
                         "per_package=%d, but the peer sent %zu answer(s) for that package (%s mode, declared %d%s%s)",
                         c->index, r, slot, i, j, res->code, res->per_package, p->nans,
                         c->per_pkg ? "per package" : "per recipient", c->declared,
                         rec->half_closed ? ", client half-closed" : "", c->hung_up ? ", peer hung up" : "");
                }
            }
        }
        if (!skip_timing && rec->ms > CALL_LIMIT_MS + SLACK_MS) {
            fail("connection %d run %zu: qmtp_run took %ld ms, the call limit is %d ms", c->index, r, (long)rec->ms,
                 CALL_LIMIT_MS);
        }
        base += n;
    }
}

static void describe(void)
{
    size_t i;
    size_t g;

    tlog("script", "%zu connection(s), busy wait %s, max response %zu, %s, hook %s (stops at call %d)", in.nconns,
         in.busy_wait ? "0" : "default", in.max_response, in.overlapped ? "overlapped" : "plain",
         in.hook ? "set" : "none", in.hook_stop_at);
    for (i = 0; i < in.nconns; i++) {
        const struct conn *c = &in.conn[i];

        tlog("script", "connection %zu: peer %s, declared %d, %d run(s), hang-up by %s, end %d, reads of %zu%s",
             i, c->per_pkg ? "per package" : "per recipient", c->declared, c->nruns,
             c->hangup_shut ? "shutdown" : "close", c->end, c->read_chunk, c->read_gap_ms ? " slowly" : "");
        if (c->read_close) {
            tlog("script", "  peer stops reading at stream offset %zu", c->read_close_at);
        }
        for (g = 0; g < c->npkgs; g++) {
            const struct pkgdef *p = &c->pk[g];
            size_t k;

            tlog("script", "  package %zu (run %d): %zu rcpt, enc %s, %s body of %zu, sender %zu bytes, bytes %zu..%zu, "
                 "mod %d trigger %d at %zu arg %zu", g, p->run, p->nrcpt, p->enc == '\n' ? "LF" : "CR",
                 p->kind == BODY_MEM ? "memory" : p->kind == BODY_FILE ? "file" : p->kind == BODY_EMPTY_FILE
                 ? "empty file" : "big file", p->body_len, p->sender_len, p->start, p->end, p->mod, p->trigger,
                 p->mod_at, p->mod_arg);
            for (k = 0; k < p->nact; k++) {
                const struct action *a = &p->act[k];
                tlog("script", "    answer %zu: %c text %zu, event %d/%d, delay %d, split %d gap %d", k, a->code,
                     a->text_len, a->event, a->garbage, a->delay_ms, a->split, a->gap_ms);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qmtp_client *q;
    size_t i;

    memset(&in, 0, sizeof in);
    decode(data, size);
    loglen = 0;
    logbuf[0] = '\0';
    log_t0 = now_ms();
    q = qmtp_new();
    if (q == NULL) {
        return 0;
    }
    qmtp_set_timeouts(q, CONNECT_MS, IO_MS, STALL_MS);
    if (in.busy_wait) {
        qmtp_set_busy_wait(q, 0);
    }
    if (in.max_response > 0) {
        qmtp_set_max_response(q, in.max_response);
    }
    if (in.hook) {
        qmtp_set_interrupt_hook(q, interrupt_hook, NULL);
    }
    for (i = 0; i < in.nconns; i++) {
        struct conn *c = &in.conn[i];
        int fds_before = count_fds();
        int fds_after;
        int sv[2];
        int run;

        prepare_conn(c);
        if (i == 0) {
            describe();
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            perror("fuzz_engine: harness: socketpair");
            abort();
        }
        /* As qmtp_connect leaves it: non-blocking. */
        fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
        q->fd = sv[0];
        q->connected_at = qmtp_now_ms();
        must(qmtp_set_answers(q, c->declared), "qmtp_set_answers");
        build_batch(q, c, 0); /* before the peer starts changing files */
        c->fd = sv[1];
        c->t0 = now_ms();
        c->hard = c->t0 + PEER_CAP_MS;
        pthread_mutex_lock(&wire_lock);
        client_written = 0;
        client_attempt = 0;
        watch_fd = q->fd;
        pthread_mutex_unlock(&wire_lock);
        tlog("client", "connection %zu opened", i);
        peer_start(c);
        for (run = 0; run < c->nruns; run++) {
            if (run > 0) {
                if (!qmtp_is_open(q) || !qmtp_idle_check(q)) {
                    tlog("client", "no second run: the connection is closed");
                    break;
                }
                build_batch(q, c, run);
            }
            run_once(q, c, run);
        }
        qmtp_close(q);
        peer_wait_done();
        watch_fd = -1;
        qmtp_batch_reset(q);
        release_conn(c);
        fds_after = count_fds();
        if (fds_after != fds_before) {
            fail("connection %zu: %d descriptors open before, %d after", i, fds_before, fds_after);
        }
        check_conn(c);
    }
    qmtp_free(q);
    if (verbose) {
        fprintf(stderr, "%s---- ok\n", logbuf);
    }
    return 0;
}
