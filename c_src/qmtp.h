/* QMTP client core (D. J. Bernstein, "Quick Mail Transfer Protocol").
 *
 * Plain C99 + POSIX sockets; knows nothing of Perl. One convention for
 * errors: functions return 0 (QMTP_OK) or a negative qmtp_status, and the
 * client keeps the details (qmtp_errstr, qmtp_sys_errno). A transport
 * failure closes the connection: it is never reused.
 *
 * Sending is batch shaped so that pipelining (§2) and a single send() share
 * one engine: describe packages with qmtp_pkg_*, then qmtp_run writes them
 * and reads the answers in one poll loop.
 *
 * What a run guarantees, whatever the server does (each enforced in one
 * place, named here):
 *  1. A recipient is 'K' only when a K arrived on the same connection that
 *     belongs to that recipient's own package with certainty: one answer
 *     stands for several recipients only when this connection showed that
 *     the server answers once per package, or the caller declared it
 *     (qmtp_set_answers). Answers that do not fit are deferrals.
 *     [qmtp_run.c: take_answer, settle]
 *  2. The server receives exactly the bytes given for a package, or the
 *     connection is closed before its last byte (a file that changed size
 *     aborts its package; one cut short after its tail was handed to the
 *     socket cannot be: sendfile(2) sends the file's own pages).
 *     [qmtp_write.c: advance, check_file_end]
 *  3. Every wait ends at a deadline on the monotonic clock: Timeout of
 *     inactivity, the call limit (qmtp_set_call_limit), the connect timeout
 *     (name resolution included where the platform allows).
 *     [qmtp_net.c, qmtp_run.c: wait_ready]
 *  4. Nothing given is changed: sender and recipients are copied, bodies
 *     only read. */
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
    QMTP_E_NOTSENT = -13, /* a package not begun: the connection ended before */
    QMTP_E_ANSWERS = -14, /* the server's answers did not match its packages */
    QMTP_E_TLS = -15      /* TLS: the handshake failed, or the server's certificate was not accepted */
} qmtp_status;

/* How the server answers a package with several recipients. QMTP says
 * once per recipient; mailfront answers once per package. */
typedef enum qmtp_answers {
    QMTP_ANSWERS_AUTO = 0,      /* learn it on each connection (see qmtp_run) */
    QMTP_ANSWERS_RECIPIENT = 1, /* declared: once per recipient, strictly */
    QMTP_ANSWERS_PACKAGE = 2    /* declared: once per package */
} qmtp_answers;

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

/* Declares how the server answers (default QMTP_ANSWERS_AUTO); QMTP_E_ARG
 * for anything else. A declaration is trusted: answers are attributed by
 * it, and only answers that cannot fit it are deferrals. */
int qmtp_set_answers(qmtp_client *c, int how);

/* From now on, every wait ends within ms milliseconds in all (connecting,
 * resolving, writing, reading: a server that moves one byte just inside
 * every Timeout cannot hold a call longer); ms <= 0 removes the limit.
 * Callers set it at the start of each call of their own. */
void qmtp_set_call_limit(qmtp_client *c, int64_t ms);

/* Largest response netstring payload accepted (default 65536, at most
 * 999999999). A longer one is a protocol violation. The texts of one run's
 * answers are kept up to 16 MiB (or this, if larger) plus 1 KiB per
 * recipient in all; an answer beyond that is a deferral. */
void qmtp_set_max_response(qmtp_client *c, size_t max);

/* Closes any connection, then looks host up (within the connect timeout,
 * the lookup in a thread of its own) and tries every address (IPv4 and
 * IPv6, in resolver order), each with the connect timeout, until one
 * accepts (over TLS: until one's handshake succeeds; when none does, the
 * error is the last handshake's); the call limit bounds it all. A host
 * starting with '/' is the path of a Unix-domain socket (port unused). A
 * numeric port must be 1 to 65535. host and port are copied. Returns 0 or
 * QMTP_E_RESOLVE/QMTP_E_CONNECT/QMTP_E_TLS/QMTP_E_TIMEOUT (the call
 * limit)/QMTP_E_INTR/QMTP_E_ARG/QMTP_E_NOMEM. */
int qmtp_connect(qmtp_client *c, const char *host, const char *port);

/* QMTPS: TLS from the first byte of each later connection (see
 * qmtp_set_tls). Every string is copied; pins are SHA-256 fingerprints of
 * the server's certificate (DER), 32 bytes each, npins of them. */
typedef struct qmtp_tls_options {
    int enable;                /* 0: plain QMTP (the other fields are ignored) */
    int verify;                /* 1: the certificate chain and the server name are checked; 0: neither (unsafe) */
    const char *ca_file;       /* CA certificates (PEM), or NULL */
    const char *ca_path;       /* a hashed CA directory, or NULL; neither: the system's store */
    const char *server_name;   /* checked and sent as SNI; NULL: the host given to qmtp_connect */
    const unsigned char *pins; /* the certificate must match one of them (checked with verify 0 too) */
    size_t npins;
    const char *cert_file;     /* a client certificate chain (PEM), or NULL */
    const char *key_file;      /* its key (PEM); NULL: in cert_file */
    const char *key_password;  /* decrypts an encrypted key (borrowed for the call); NULL: one is refused */
    int min_version;           /* 0x0303 TLS 1.2 (0: the default), 0x0304 TLS 1.3 */
} qmtp_tls_options;

/* 1 if this build has TLS (OpenSSL), else 0. */
int qmtp_tls_available(void);

/* Sets TLS for the connections made after it (o NULL or not enabled: none).
 * Files are read now, never prompting for a password: 0, or QMTP_E_ARG
 * with errstr naming the one that cannot be used (an encrypted key without
 * key_password; or saying the build has no TLS), QMTP_E_STATE while
 * connected. Over TLS, files are read and written through it (no
 * sendfile); the half-close sends close_notify, then shuts the socket's
 * writing side; an end of the server's stream without close_notify is
 * never taken for a once-per-package answer. In a forked child, the copy
 * of a TLS connection is closed at the child's first call (the session's
 * state cannot be shared), without close_notify. A failed handshake or
 * certificate is QMTP_E_TLS, errstr saying why (for the certificate,
 * OpenSSL's reason: expired, unknown issuer, name mismatch, ...). */
int qmtp_set_tls(qmtp_client *c, const qmtp_tls_options *o);

/* The local address (a name or numeric address, copied) that later
 * connections bind to; remote addresses of another family are skipped.
 * NULL: let the system choose. 0 or QMTP_E_NOMEM. */
int qmtp_set_local_addr(qmtp_client *c, const char *addr);

#define QMTP_ANSWER_TEXT_BASE (16u * 1024 * 1024)
#define QMTP_ANSWER_TEXT_PER_RCPT 1024

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

/* After a call that may have been left by longjmp from the interrupt hook
 * (or a batch abandoned before its run): closes the connection such a call
 * was using and the files of queued packages; results are kept. Cheap, and
 * a no-op after a run that returned. */
void qmtp_unwind(qmtp_client *c);

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

/* Turns each CR LF pair in buf into LF, in place (a lone CR or LF stays),
 * for messages made with CR LF that go with the unix encoding. Returns the
 * new length; buf is not NUL-terminated by it. */
size_t qmtp_crlf_to_lf(char *buf, size_t len);

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
 * Whom an answer belongs to is decided by this connection alone (what was
 * learnt of the server before, qmtp_server_mode, only decides how long to
 * wait). With QMTP_ANSWERS_AUTO, nothing follows a package with several
 * recipients until it is answered, unless this connection has shown that
 * the server answers per recipient (two answers for a package when nothing
 * after it was written). When its answers stop after one, the writing side
 * is half-closed (after the stall time, or at once if the server was seen
 * answering once per package before): a server answering per recipient
 * then sends the rest; one answering per package hangs up, and then its one
 * answer stands for the package (per_package=1), unless the server was seen
 * answering per recipient before. Declared modes pipeline freely.
 * Answers that do not fit (too many; too few, then a hang-up, where they
 * were attributed by a declaration) make every recipient they could belong
 * to a 'Z' with received=0; qmtp_err is then QMTP_E_ANSWERS. Too many is
 * seen when the surplus has arrived by the time the last answer due is
 * read; one the server holds back shows only on the connection's next use
 * (bytes before a package is complete: the connection is closed), after
 * this run's results are out. A server answering in order, one answer per
 * recipient (or per package when declared), is what a run relies on.
 * Returns 0 when every package was written in full (qmtp_err is then 0, or
 * why some answers are missing); otherwise the status of the first that was
 * not (see qmtp_pkg_status), and the connection is closed once the answers
 * of the packages written in full are in. */
int qmtp_run(qmtp_client *c);

/* qmtp_run, calling on_written(ctx) once when every package has been written
 * in full and only answers are left to wait for (not at all if the run ends
 * before), so that the caller's own work overlaps the server's. on_written
 * must not use c, and must return (no longjmp). */
int qmtp_run_overlapped(qmtp_client *c, qmtp_written_fn on_written, void *ctx);

/* Non-blocking use: the same runs and connects, in steps that never wait,
 * for a caller with an event loop of its own. Start one, then repeatedly
 * ask qmtp_wants what to wait for, wait in the loop, and report with
 * qmtp_step what came (or that the deadline passed) until it returns
 * something other than QMTP_RUNNING; that is then what the blocking call
 * (qmtp_connect, qmtp_run) would have returned, with the same results.
 * Timeouts, the call limit and every guarantee above are the engine's, as
 * in the blocking calls; the busy-wait and the interrupt hook are not used
 * (there is no wait to interrupt). One run or connect at a time. */
#define QMTP_RUNNING 1

enum { QMTP_WANT_READ = 1, QMTP_WANT_WRITE = 2 };

/* qmtp_run without waiting: QMTP_RUNNING, or the run is over already (not
 * connected, nothing to send) and this is what qmtp_run returns. */
int qmtp_run_start(qmtp_client *c);

/* qmtp_connect without waiting: QMTP_RUNNING, or what qmtp_connect
 * returns. A name (not a numeric address) is looked up by getaddrinfo in
 * a thread of its own, and qmtp_wants asks to be stepped every few
 * milliseconds (fd -1) until it is done; only a build without threads
 * (QMTP_NO_RESOLVER_THREAD) blocks in the lookup. */
int qmtp_connect_start(qmtp_client *c, const char *host, const char *port);

/* What the run or connect under way waits for: *fd (-1: only the
 * deadline), *events (QMTP_WANT_*) and *deadline_ms (on the qmtp_clock_ms
 * clock: step then, ready or not). 0, or QMTP_E_STATE when none is under
 * way. */
int qmtp_wants(const qmtp_client *c, int *fd, int *events, int64_t *deadline_ms);

/* Moves the run or connect under way on, never waiting: ready is what the
 * descriptor showed (QMTP_WANT_*; an error or hang-up counts as both), 0
 * when only time passed. QMTP_RUNNING, or it is over: see above. */
int qmtp_step(qmtp_client *c, int ready);

/* Ends the run or connect under way now, as a failure whose text is why
 * (copied): answers already read are kept, the others are deferrals, the
 * packages not written in full are marked (QMTP_E_INTR, or not begun), and
 * the connection is closed. Returns what the run returns then, or
 * QMTP_E_STATE when none is under way. In a process forked after it
 * started, it only closes this copy's descriptor (QMTP_E_STATE): the
 * parent's answers are not read. Also done by qmtp_free, qmtp_connect and
 * qmtp_batch_reset. */
int qmtp_cancel(qmtp_client *c, const char *why);

/* 1 while a run or connect started with the calls above is under way. */
int qmtp_busy(const qmtp_client *c);

/* A number that changes whenever the client opens a socket: a descriptor
 * number seen before may be a new connection (an event loop must watch it
 * afresh) when this has changed. */
unsigned long qmtp_connection_serial(const qmtp_client *c);

/* The monotonic clock of the deadlines, in milliseconds. */
int64_t qmtp_clock_ms(void);

/* Packages of the last run, and for each: 0 if it was written in full (its
 * results are answers or deferrals), else why not: QMTP_E_FILE (its file
 * failed), E_IO/E_EOF/E_TIMEOUT/E_INTR (the connection failed during it), or
 * QMTP_E_NOTSENT (not a byte written: safe to send again). */
size_t qmtp_pkg_count(const qmtp_client *c);
int qmtp_pkg_status(const qmtp_client *c, size_t i);

/* Why package i of the last run was not written in full, as text
 * (borrowed, valid until the next run, qmtp_batch_reset or qmtp_free); ""
 * when it was. */
const char *qmtp_pkg_error(const qmtp_client *c, size_t i);

/* Index of package i's first recipient among the results. */
size_t qmtp_pkg_first_result(const qmtp_client *c, size_t i);

/* Results of the last qmtp_run. qmtp_result_get returns 0 and fills *out
 * (pointers borrowed as documented on qmtp_result), or QMTP_E_ARG. */
size_t qmtp_result_count(const qmtp_client *c);
int qmtp_result_get(const qmtp_client *c, size_t i, qmtp_result *out);

/* What the client has learnt of the server (kept across reconnects to the
 * same host and port): 0 nothing yet, 1 it answers once per recipient, 2 once
 * per package. A hint for how long to wait, never for whom an answer is. */
int qmtp_server_mode(const qmtp_client *c);

/* Last error: status, text (borrowed, always NUL-terminated), saved errno. */
int qmtp_err(const qmtp_client *c);
const char *qmtp_errstr(const qmtp_client *c);
int qmtp_sys_errno(const qmtp_client *c);

/* A static English description of a status. */
const char *qmtp_strerror(int status);

#endif
