/* QMTP client core (D. J. Bernstein, "Quick Mail Transfer Protocol").
 *
 * Plain C99 + POSIX sockets; knows nothing of Perl. One convention for
 * errors: functions return 0 (QMTP_OK) or a negative qmtp_status, and the
 * client keeps the details (qmtp_errstr, qmtp_sys_errno). A transport
 * failure closes the connection: it is never reused.
 *
 * Sending is batch shaped so that pipelining (§2) and a single send() share
 * one engine: describe packages with qmtp_pkg_*, then qmtp_run writes them
 * and reads the answers in one poll loop. */
#ifndef QMTP_H
#define QMTP_H

#include <stddef.h>
#include <stdint.h>

#include "netstring.h"

typedef struct qmtp_client qmtp_client;

typedef enum qmtp_status {
    QMTP_OK = 0,
    QMTP_E_NOMEM = -1,   /* out of memory */
    QMTP_E_RESOLVE = -2, /* host name did not resolve */
    QMTP_E_CONNECT = -3, /* no address accepted a connection */
    QMTP_E_IO = -4,      /* read or write failed (reset, broken pipe, ...) */
    QMTP_E_TIMEOUT = -5, /* no progress within the timeout */
    QMTP_E_EOF = -6,     /* the server closed the connection */
    QMTP_E_PROTO = -7,   /* the server broke the protocol */
    QMTP_E_TOOBIG = -8,  /* a length that cannot be represented */
    QMTP_E_STATE = -9,   /* called in the wrong state (e.g. not connected) */
    QMTP_E_ARG = -10,    /* bad argument (e.g. encoding byte) */
    QMTP_E_FILE = -11,   /* message file unusable, or changed while being sent */
    QMTP_E_INTR = -12,   /* the interrupt hook asked to stop */
    QMTP_E_NOTSENT = -13 /* a package not begun: the connection ended before */
} qmtp_status;

/* Called when a wait is interrupted by a signal (EINTR), and between looks
 * while busy-waiting (see qmtp_set_busy_wait), so that the caller can run
 * its pending signal handlers; it must be cheap when none is pending.
 * Return 0 to go on waiting, nonzero to stop (QMTP_E_INTR). The hook may
 * also leave by longjmp (a Perl die): the client notices at its next call,
 * and closes the connection it was using. */
typedef int (*qmtp_interrupt_fn)(void *ctx);

/* Called by qmtp_run_overlapped once every package is written, while the
 * server works on them: see there. */
typedef void (*qmtp_written_fn)(void *ctx);

/* One recipient's outcome, in recipient order across the whole batch. */
typedef struct qmtp_result {
    char code;          /* 'K' accepted, 'Z' temporary, 'D' permanent */
    int received;       /* 1: the server's own answer; 0: none came (code 'Z') */
    int per_package;    /* 1: the server's one answer for the whole package */
    const char *text;   /* borrowed: valid until the next qmtp_run/qmtp_batch_reset/qmtp_free */
    size_t len;         /* text length; text may hold any byte, NUL included */
} qmtp_result;

/* A new client with default limits (connect 120 s, I/O 120 s, responses up
 * to 64 KiB, half-close after 0.5 s of stalled answers). Files of more than
 * 64 KiB are sent with sendfile(2) where the kernel allows it; a SIGPIPE that
 * sendfile raises is blocked in the calling thread and discarded, never
 * delivered, and no signal handler or disposition is touched. NULL only when out
 * of memory. Free with qmtp_free. */
qmtp_client *qmtp_new(void);

/* Closes the connection (close(2) only, never shutdown: a forked child's
 * copy must not end the parent's session) and frees everything. NULL is ok. */
void qmtp_free(qmtp_client *c);

/* Timeouts in milliseconds; 0 means "no waiting at all" is not allowed, so
 * values below 1 are raised to 1. io_ms is an inactivity limit: any byte
 * moved in either direction restarts it. stall_ms: see qmtp_run. */
void qmtp_set_timeouts(qmtp_client *c, int64_t connect_ms, int64_t io_ms, int64_t stall_ms);

/* How long, in microseconds, a run may look for answers without sleeping
 * (in all: however they trickle in) before it sleeps in poll(2); 0: never
 * (default 50, at most 1 s).
 * A fast server then costs no wakeups; a look that finds nothing makes the
 * following ones rarer (after k misses in a row, the next 2^k waits sleep
 * at once, up to 64), so a slow or distant server costs almost nothing. */
void qmtp_set_busy_wait(qmtp_client *c, int64_t usec);

/* Installs the interrupt hook (NULL: none, EINTR just resumes). ctx is
 * passed through untouched. */
void qmtp_set_interrupt_hook(qmtp_client *c, qmtp_interrupt_fn fn, void *ctx);

/* The ctx given to qmtp_set_interrupt_hook (NULL if none): the caller's
 * own state beside the client, owned by the caller. */
void *qmtp_interrupt_ctx(const qmtp_client *c);

/* Largest response netstring payload accepted (default 65536, at most
 * 999999999). A longer one is a protocol violation. */
void qmtp_set_max_response(qmtp_client *c, size_t max);

/* Closes any connection, then tries every address of host (IPv4 and IPv6,
 * in resolver order), each with the connect timeout, until one accepts. A
 * host starting with '/' is the path of a Unix-domain socket (port unused).
 * host and port are copied. Returns 0 or QMTP_E_RESOLVE/QMTP_E_CONNECT/
 * QMTP_E_ARG/QMTP_E_NOMEM. */
int qmtp_connect(qmtp_client *c, const char *host, const char *port);

/* The local address (a name or numeric address, copied) that later
 * connections bind to; remote addresses of another family are skipped.
 * NULL: let the system choose. 0 or QMTP_E_NOMEM. */
int qmtp_set_local_addr(qmtp_client *c, const char *addr);

/* Closes the connection if open (close(2) only). Returns 1 if one was open. */
int qmtp_close(qmtp_client *c);

/* 1 if a connection is open, else 0 (after closing one that a call left
 * by longjmp from the interrupt hook was using). */
int qmtp_is_open(qmtp_client *c);

/* Milliseconds since the open connection was made (monotonic), or -1. */
int64_t qmtp_age_ms(const qmtp_client *c);

/* Checks, without blocking, that an idle open connection is still usable.
 * Returns 1 if so; 0 after closing one the server hung up, reset or wrote
 * unrequested bytes on (errstr says which); 0 also when none is open. */
int qmtp_idle_check(qmtp_client *c);

/* The peer of the open connection as "ADDR port N" (borrowed, valid until
 * the next connect/free); "" when not connected. */
const char *qmtp_peer(const qmtp_client *c);

/* Forgets every queued package and result; closes files of unsent ones. */
void qmtp_batch_reset(qmtp_client *c);

/* Starts a package. enc must be '\n' or '\r' (QMTP_E_ARG otherwise). The
 * sender bytes are copied. Returns 0 or a negative status. */
int qmtp_pkg_begin(qmtp_client *c, char enc, const char *sender, size_t sender_len);

/* Adds one recipient (copied) to the package begun last. */
int qmtp_pkg_recipient(qmtp_client *c, const char *rcpt, size_t len);

/* Sets the message from memory. msg is BORROWED: it must stay valid and
 * unchanged until qmtp_run returns. */
int qmtp_pkg_body(qmtp_client *c, const char *msg, size_t len);

/* Sets the message from a file, opened now (regular files only) and read
 * while sending. Returns QMTP_E_FILE with errstr naming the problem. */
int qmtp_pkg_file(qmtp_client *c, const char *path);

/* Completes the package begun last (it needs a body and a recipient). */
int qmtp_pkg_end(qmtp_client *c);

/* Drops the package begun last if it was not completed (closing its file),
 * so that a batch can go on without it. */
void qmtp_pkg_abandon(qmtp_client *c);

/* Writes every queued package, without waiting between them (§2 pipelining),
 * and reads the answers, all in one poll loop. Afterwards every recipient has
 * a result: an answer the server did not give (it closed, stalled past the
 * timeout, or broke the protocol) is a 'Z' with received=0, and the
 * connection is closed.
 * Servers that answer once per package: when the answers of the last package
 * written stall after some but not all, the writing side is half-closed; a
 * server that answers per recipient then sends the rest, one that answers per
 * package hangs up, and its single answer stands for the package
 * (per_package=1). The client remembers this for the server: later packages
 * expect one answer each. While it does not know yet, it writes nothing after
 * a package with several recipients until that one is answered.
 * Returns 0 when every package was written in full; otherwise the status of
 * the first that was not (see qmtp_pkg_status), and the connection is closed
 * once the answers of the packages written in full are in. */
int qmtp_run(qmtp_client *c);

/* qmtp_run, calling on_written(ctx) once when every package has been written
 * in full and only answers are left to wait for (not at all if the run ends
 * before), so that the caller's own work overlaps the server's. on_written
 * must not use c, and must return (no longjmp). */
int qmtp_run_overlapped(qmtp_client *c, qmtp_written_fn on_written, void *ctx);

/* Packages of the last run, and for each: 0 if it was written in full (its
 * results are answers or deferrals), else why not: QMTP_E_FILE (its file
 * failed), E_IO/E_EOF/E_TIMEOUT/E_INTR (the connection failed during it), or
 * QMTP_E_NOTSENT (not a byte written: safe to send again). */
size_t qmtp_pkg_count(const qmtp_client *c);
int qmtp_pkg_status(const qmtp_client *c, size_t i);

/* Index of package i's first recipient among the results. */
size_t qmtp_pkg_first_result(const qmtp_client *c, size_t i);

/* Results of the last qmtp_run. qmtp_result_get returns 0 and fills *out
 * (pointers borrowed as documented on qmtp_result), or QMTP_E_ARG. */
size_t qmtp_result_count(const qmtp_client *c);
int qmtp_result_get(const qmtp_client *c, size_t i, qmtp_result *out);

/* What the client has learnt of the server (kept across reconnects to the
 * same host and port): 0 nothing yet, 1 it answers once per recipient, 2 once
 * per package. */
int qmtp_server_mode(const qmtp_client *c);

/* Last error: status, text (borrowed, always NUL-terminated), saved errno. */
int qmtp_err(const qmtp_client *c);
const char *qmtp_errstr(const qmtp_client *c);
int qmtp_sys_errno(const qmtp_client *c);

/* A static English description of a status. */
const char *qmtp_strerror(int status);

#endif
