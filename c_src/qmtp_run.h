/* Private to the send engine (qmtp_run.c reads, qmtp_write.c writes). */
#ifndef QMTP_RUN_H
#define QMTP_RUN_H

#include "qmtp_int.h"

enum qmtp_seg { SEG_HEAD, SEG_BODY, SEG_TAIL };

/* Where the writer is: package, segment, offset within the segment. */
struct qmtp_cursor {
    size_t pkg;
    enum qmtp_seg seg;
    uint64_t off;
};

struct qmtp_run {
    qmtp_client *c;
    struct qmtp_cursor w;
    uint64_t file_read;     /* bytes of the current small file read so far */
    int file_checked;       /* its end was verified */
    size_t stage_off;       /* bytes of c->stage already written */
    size_t pkgs_written;    /* packages written in full */
    size_t apkg;            /* package the next answer belongs to */
    size_t apkg_got;        /* answers it has had */
    size_t total;           /* recipients of all packages */
    uint64_t in_flight;     /* bytes of packages written in full, not yet answered */
    int64_t last_progress;
    uint64_t bytes_read;    /* answer bytes received in this run */
    int64_t spin_left_us;   /* busy-waiting this run may still do */
    int half_closed;
    int write_status;       /* what stopped the writing, or 0 */
    /* Whom answers belong to (see take_answer): the first result whose
     * attribution rests on an assumption rather than on what the answers
     * prove; SIZE_MAX for none. */
    size_t assumed_from;
    int surplus;            /* answers came that no recipient was due */
    int limit_hit;          /* the call limit, not Timeout, ended a wait */
    size_t text_budget;     /* bytes of answer text this run may still keep */
    qmtp_written_fn on_written; /* see qmtp_run_overlapped; NULL once called */
    void *written_ctx;
};

/* 1 if the writer may start on package i now: while neither this
 * connection nor the caller has said how the server answers, nothing
 * follows a several-recipient package until that one is answered, so that
 * no answer can be taken for another's. */
int qmtp_may_start(const struct qmtp_run *r, size_t i);

/* Writes what the socket takes now, from the cursor on. 0, or a negative
 * status (E_FILE: the current package's file failed; E_IO/E_EOF: the
 * connection did). */
int qmtp_write_some(struct qmtp_run *r);

/* 1 if the writer has something it may write now. */
int qmtp_wants_write(const struct qmtp_run *r);

#endif
