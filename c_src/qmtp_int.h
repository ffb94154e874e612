/* Private to c_src/: the client's layout and the helpers its files share.
 * Nothing outside c_src/ may include this. */
#ifndef QMTP_INT_H
#define QMTP_INT_H

#include "qmtp.h"

#include <sys/types.h>

/* One package waiting to be written. Head and tail bytes live in the
 * client's out buffer (offsets, because the buffer may move when it grows);
 * the body is either borrowed memory or a file read while writing. */
struct qmtp_pkg {
    size_t head_off;
    size_t head_len;   /* "LEN:" and the encoding byte */
    size_t tail_off;
    size_t tail_len;   /* "," NS(sender) NS(recipients) */
    const char *body;  /* memory body, or NULL for a file */
    uint64_t body_len; /* bytes of message, encoding byte excluded */
    int fd;            /* file body, or -1 */
    char *path;        /* for error texts; owned */
    size_t nrcpt;
    size_t first_slot; /* its recipients' results start here */
    int status;        /* after a run: 0 written in full, else why not */
    char *error;       /* after a run: why not, as text (owned), or NULL */
    int no_sendfile;   /* sendfile refused this file: read and write it */
    char enc;          /* '\n' or '\r' */
};

/* How the server answers, as seen (QMTP says once per recipient; mailfront
 * answers once per package). */
enum qmtp_mode { QMTP_MODE_UNKNOWN, QMTP_MODE_PER_RCPT, QMTP_MODE_PER_PKG };

struct qmtp_slot {     /* one recipient's result */
    char code;
    unsigned char received;
    unsigned char per_package;
    size_t off;        /* text in the client's texts buffer */
    size_t len;
};

struct qmtp_buf {
    char *p;
    size_t len;
    size_t cap;
};

struct qmtp_client {
    int fd;
    int64_t connected_at;   /* monotonic ms */
    char peer[80];
    char *host;             /* of the last connect, to know if the server changed */
    char *port;
    char *local;            /* address to bind before connecting, or NULL */
    int bind_failed;        /* the last connect failed binding it */

    int64_t connect_ms;
    int64_t io_ms;
    int64_t stall_ms;
    size_t max_response;
    enum qmtp_mode mode;    /* learnt of the server at host/port: a hint for waiting */
    enum qmtp_mode shown;   /* shown by the open connection: decides attribution */
    int answers;            /* qmtp_answers, as declared */
    int64_t call_deadline;  /* monotonic ms by which every wait ends, or 0 */
    int64_t call_ms;        /* the limit it was set from, for error texts */
    int64_t spin_us;        /* busy-wait budget of a run, or 0 */
    unsigned spin_misses;   /* busy-waits in a row that found nothing */
    unsigned spin_skip;     /* waits left that sleep at once */

    qmtp_interrupt_fn on_interrupt;
    void *interrupt_ctx;
    /* Set while a call may block; still set at entry means the last call
     * was left by longjmp from the hook, mid-way through. */
    int busy;
    struct addrinfo *pending_ai; /* resolver results of a connect under way */
    struct qmtp_lookup *lookups; /* name lookups not yet reaped (qmtp_net.c) */
    struct qmtp_lookup *resolving; /* the lookup of qmtp_resolve_start, while it runs */
    int64_t resolve_deadline;

    int err;
    int sys_errno;
    char errstr[256];

    struct qmtp_buf out;    /* heads and tails of queued packages */
    struct qmtp_buf rcpts;  /* NS(rcpt)... of the package being built */
    struct qmtp_buf sender; /* sender of the package being built */
    struct qmtp_buf in;     /* bytes read, not yet parsed */
    struct qmtp_buf texts;  /* response texts of the last run */
    struct qmtp_buf stage;  /* file bytes read, not yet written */

    struct qmtp_pkg *pkgs;
    size_t npkgs;
    size_t pkgcap;
    int building;           /* a package is begun but not ended */
    int body_set;

    struct qmtp_slot *slots;
    size_t nslots;
    size_t slotcap;

    struct qmtp_run *run;   /* the run's state (qmtp_run.c), kept for reuse */
    int run_active;         /* a run is started and not yet over */
    struct qmtp_connecting *connecting; /* a connect's state (qmtp_net.c) */
    int connect_active;     /* a connect is started and not yet over */
    unsigned long serial;   /* counts the sockets opened (qmtp_connection_serial) */
    pid_t started_by;       /* the process that started the run or connect under way */
    struct qmtp_tls *tls;   /* TLS settings and session (qmtp_tls.c), or NULL: plain QMTP */
};

struct addrinfo;

/* TLS (qmtp_tls.c), used only where c->tls is set. qmtp_tls_begin makes
 * the session on c->fd (0 or a status); qmtp_tls_handshake moves it on:
 * QMTP_RUNNING with *want (QMTP_WANT_*), 0 done and pins checked, or
 * QMTP_E_TLS. Reads and writes are recv(2)/send(2)-like: -1 with errno
 * (EAGAIN: wait), and a read returns 0 at close_notify, -2 at an end of
 * the stream without it. A write gathers iov only when nothing it took
 * earlier waits (that goes again first). */
void qmtp_tls_free(qmtp_client *c);
int qmtp_tls_begin(qmtp_client *c, const char *host);
int qmtp_tls_handshake(qmtp_client *c, int *want, const char *where);
struct iovec;
/* Decrypted bytes into buf: > 0; 0 at the server's close_notify; -1 with
 * errno (EAGAIN: try again when qmtp_wants says); -2, from then on, for an
 * end that is no clean one (no close_notify, a bad record). */
ssize_t qmtp_tls_read(qmtp_client *c, void *buf, size_t len);
/* After a -2 from qmtp_tls_read: why, as text (static or in the client). */
const char *qmtp_tls_broken(const qmtp_client *c);
ssize_t qmtp_tls_write(qmtp_client *c, const struct iovec *iov, int niov);
int qmtp_tls_pending(const qmtp_client *c);     /* 1: decrypted bytes wait in OpenSSL, unseen by poll */
int qmtp_tls_foreign(const qmtp_client *c);     /* 1: the session is another process's (a forked child's copy) */
void qmtp_tls_half_close(qmtp_client *c);       /* sends close_notify */
void qmtp_tls_end(qmtp_client *c);              /* close_notify (if ours and not sent), free the session */
int qmtp_tls_idle_check(qmtp_client *c);        /* 0 healthy, else why not (errstr) */

/* Frees the run's and the connect's state (qmtp_free). */
void qmtp_run_free(qmtp_client *c);
void qmtp_connecting_free(qmtp_client *c);

/* The run's (qmtp_run.c) and the connect's (qmtp_net.c) parts of
 * qmtp_wants, qmtp_step and qmtp_cancel (qmtp.c picks the one under way). */
int qmtp_run_wants(const qmtp_client *c, int *events, int64_t *deadline_ms);
int qmtp_run_step(qmtp_client *c, int ready);
int qmtp_run_cancel(qmtp_client *c, const char *why);
int qmtp_connect_wants(const qmtp_client *c, int *fd, int *events, int64_t *deadline_ms);
int qmtp_connect_step(qmtp_client *c, int ready);
int qmtp_connect_cancel(qmtp_client *c, const char *why);

/* Ends a run or a connect under way, if any, as cancelled. */
void qmtp_abandon(qmtp_client *c);

/* Closes what an interrupted call left behind (see busy). */
void qmtp_recover(qmtp_client *c);

/* Looks host and port up within the connect timeout and the call limit,
 * running the caller's signal handlers on EINTR (qmtp_resolve.c). 0 with
 * the addresses in c->pending_ai, or a status with the client's error set. */
int qmtp_resolve(qmtp_client *c, const char *host, const char *port);

/* qmtp_resolve without waiting: QMTP_RUNNING with a lookup under way (see
 * qmtp_resolve_poll), or what qmtp_resolve returns (a numeric address, or
 * no thread could be started for it: looked up at once). The lookup ends
 * by deadline (monotonic ms). */
int qmtp_resolve_start(qmtp_client *c, const char *host, const char *port, int64_t deadline);

/* Looks at the lookup under way, without waiting: QMTP_RUNNING, or what
 * qmtp_resolve returns. */
int qmtp_resolve_poll(qmtp_client *c);

/* Gives up on the lookup under way, if any. */
void qmtp_resolve_abandon(qmtp_client *c);

/* 1 if the call limit (qmtp_set_call_limit), rather than a step's own
 * timeout, has run out. */
int qmtp_call_limit_reached(const qmtp_client *c);

/* How a step the call limit cut short begins its text (QMTP_E_TIMEOUT);
 * its first argument is CALL_LIMIT_S(c), the limit in seconds. */
#define CALL_LIMIT_TEXT "timed out: the call limit of %.3g s was reached while "
#define CALL_LIMIT_S(c) ((double)(c)->call_ms / 1000.0)

/* Frees the name lookups of this client that have ended; waits up to
 * wait_ms (<= 0: not at all) for those whose thread is still running.
 * Returns how many are still running: they stay listed (qmtp_free must
 * leave them: their thread still writes to them). qmtp_recover calls it
 * with 0. */
int qmtp_resolver_reap(qmtp_client *c, int64_t wait_ms);

/* For qmtp_free: every lookup is let go; one still running is freed by
 * its thread when done. */
void qmtp_resolver_drop(qmtp_client *c);

/* Called on EINTR: 0 to go on, else the status to stop with. */
int qmtp_interrupted(qmtp_client *c);

/* Monotonic clock in milliseconds, and in microseconds. */
int64_t qmtp_now_ms(void);
int64_t qmtp_now_us(void);

/* The earlier of deadline and the call limit (see qmtp_set_call_limit). */
int64_t qmtp_deadline(const qmtp_client *c, int64_t deadline);

/* Records an error (errno-free when sys_errno is 0) and returns status. */
int qmtp_fail(qmtp_client *c, int status, int sys_errno, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Grows b to hold at least need more bytes. 0 or QMTP_E_NOMEM/E_TOOBIG. */
int qmtp_buf_reserve(struct qmtp_buf *b, size_t need);
int qmtp_buf_append(struct qmtp_buf *b, const void *p, size_t len);
void qmtp_buf_free(struct qmtp_buf *b);

/* Closes queued files and forgets queued packages (not the results). */
void qmtp_pkgs_clear(qmtp_client *c);

/* Closes the files of queued packages, keeping the packages. */
void qmtp_pkgs_close_files(qmtp_client *c);

#endif
