/* Client lifecycle, growable buffers and result access. */
#include "qmtp_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 120000
#define DEFAULT_STALL_MS 500
#define DEFAULT_MAX_RESPONSE 65536
#define DEFAULT_BUSY_WAIT_US 50
#define MAX_BUSY_WAIT_US 1000000

qmtp_client *qmtp_new(void)
{
    qmtp_client *c = calloc(1, sizeof *c);

    if (c == NULL) {
        return NULL;
    }
    c->fd = -1;
    c->connect_ms = DEFAULT_TIMEOUT_MS;
    c->io_ms = DEFAULT_TIMEOUT_MS;
    c->stall_ms = DEFAULT_STALL_MS;
    c->max_response = DEFAULT_MAX_RESPONSE;
    c->spin_us = DEFAULT_BUSY_WAIT_US;
    return c;
}

void qmtp_free(qmtp_client *c)
{
    if (c == NULL) {
        return;
    }
    qmtp_recover(c);
    qmtp_abandon(c);
    qmtp_close(c);
    qmtp_pkgs_clear(c);
    qmtp_run_free(c);
    qmtp_connecting_free(c);
    qmtp_tls_free(c);
    qmtp_resolver_drop(c);
    free(c->pkgs);
    free(c->slots);
    free(c->host);
    free(c->port);
    free(c->local);
    qmtp_buf_free(&c->out);
    qmtp_buf_free(&c->rcpts);
    qmtp_buf_free(&c->sender);
    qmtp_buf_free(&c->in);
    qmtp_buf_free(&c->texts);
    qmtp_buf_free(&c->stage);
    free(c);
}

static int64_t at_least_1(int64_t ms)
{
    return ms < 1 ? 1 : ms;
}

void qmtp_set_timeouts(qmtp_client *c, int64_t connect_ms, int64_t io_ms, int64_t stall_ms)
{
    c->connect_ms = at_least_1(connect_ms);
    c->io_ms = at_least_1(io_ms);
    c->stall_ms = at_least_1(stall_ms);
}

void qmtp_set_busy_wait(qmtp_client *c, int64_t usec)
{
    c->spin_us = usec < 0 ? 0 : usec > MAX_BUSY_WAIT_US ? MAX_BUSY_WAIT_US : usec;
    c->spin_misses = 0;
    c->spin_skip = 0;
}

void qmtp_set_interrupt_hook(qmtp_client *c, qmtp_interrupt_fn fn, void *ctx)
{
    c->on_interrupt = fn;
    c->interrupt_ctx = ctx;
}

void *qmtp_interrupt_ctx(const qmtp_client *c)
{
    return c->interrupt_ctx;
}

int qmtp_set_answers(qmtp_client *c, int how)
{
    if (how != QMTP_ANSWERS_AUTO && how != QMTP_ANSWERS_RECIPIENT && how != QMTP_ANSWERS_PACKAGE) {
        return qmtp_fail(c, QMTP_E_ARG, 0, "unknown answering mode %d", how);
    }
    c->answers = how;
    return QMTP_OK;
}

void qmtp_set_call_limit(qmtp_client *c, int64_t ms)
{
    c->call_deadline = ms > 0 ? qmtp_now_ms() + ms : 0;
    c->call_ms = ms > 0 ? ms : 0;
}

int qmtp_call_limit_reached(const qmtp_client *c)
{
    return c->call_deadline != 0 && qmtp_now_ms() >= c->call_deadline;
}

int64_t qmtp_deadline(const qmtp_client *c, int64_t deadline)
{
    return c->call_deadline != 0 && c->call_deadline < deadline ? c->call_deadline : deadline;
}

void qmtp_set_max_response(qmtp_client *c, size_t max)
{
    c->max_response = max > 999999999 ? 999999999 : max;
}

int qmtp_buf_reserve(struct qmtp_buf *b, size_t need)
{
    size_t cap;
    char *p;

    if (need <= b->cap - b->len) {
        return QMTP_OK;
    }
    if (need > SIZE_MAX / 2 - b->len) {
        return QMTP_E_TOOBIG;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < need) {
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (p == NULL) {
        return QMTP_E_NOMEM;
    }
    b->p = p;
    b->cap = cap;
    return QMTP_OK;
}

int qmtp_buf_append(struct qmtp_buf *b, const void *p, size_t len)
{
    int rc = qmtp_buf_reserve(b, len);

    if (rc != QMTP_OK) {
        return rc;
    }
    if (len > 0) {
        memcpy(b->p + b->len, p, len);
    }
    b->len += len;
    return QMTP_OK;
}

void qmtp_buf_free(struct qmtp_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

void qmtp_batch_reset(qmtp_client *c)
{
    qmtp_abandon(c);
    qmtp_pkgs_clear(c);
    c->nslots = 0;
    c->texts.len = 0;
}

void qmtp_unwind(qmtp_client *c)
{
    qmtp_recover(c);
    qmtp_pkgs_close_files(c);
}

size_t qmtp_result_count(const qmtp_client *c)
{
    return c->nslots;
}

int qmtp_result_get(const qmtp_client *c, size_t i, qmtp_result *out)
{
    const struct qmtp_slot *s;

    if (i >= c->nslots) {
        return QMTP_E_ARG;
    }
    s = &c->slots[i];
    out->code = s->code;
    out->received = s->received;
    out->per_package = s->per_package;
    out->text = c->texts.p != NULL ? c->texts.p + s->off : "";
    out->len = s->len;
    return QMTP_OK;
}

int qmtp_server_mode(const qmtp_client *c)
{
    return (int)c->mode;
}

size_t qmtp_pkg_count(const qmtp_client *c)
{
    return c->npkgs;
}

int qmtp_pkg_status(const qmtp_client *c, size_t i)
{
    return i < c->npkgs ? c->pkgs[i].status : QMTP_E_ARG;
}

const char *qmtp_pkg_error(const qmtp_client *c, size_t i)
{
    return i < c->npkgs && c->pkgs[i].error != NULL ? c->pkgs[i].error : "";
}

size_t qmtp_pkg_first_result(const qmtp_client *c, size_t i)
{
    return i < c->npkgs ? c->pkgs[i].first_slot : c->nslots;
}

int qmtp_wants(const qmtp_client *c, int *fd, int *events, int64_t *deadline_ms)
{
    if (c->run_active) {
        *fd = c->fd;
        return qmtp_run_wants(c, events, deadline_ms);
    }
    if (c->connect_active) {
        return qmtp_connect_wants(c, fd, events, deadline_ms);
    }
    return QMTP_E_STATE;
}

int qmtp_step(qmtp_client *c, int ready)
{
    if (c->run_active) {
        return qmtp_run_step(c, ready);
    }
    if (c->connect_active) {
        return qmtp_connect_step(c, ready);
    }
    return qmtp_fail(c, QMTP_E_STATE, 0, "nothing is under way");
}

int qmtp_cancel(qmtp_client *c, const char *why)
{
    if ((c->run_active || c->connect_active) && c->started_by != getpid()) {
        /* A forked child's copy: the run is its parent's, whose answers
         * are not to be read here. Its descriptor is only closed. */
        c->run_active = 0;
        c->connect_active = 0;
        qmtp_close(c);
        return qmtp_fail(c, QMTP_E_STATE, 0, "the send under way is the parent process's");
    }
    if (c->run_active) {
        return qmtp_run_cancel(c, why);
    }
    if (c->connect_active) {
        return qmtp_connect_cancel(c, why);
    }
    return QMTP_E_STATE;
}

void qmtp_abandon(qmtp_client *c)
{
    if (c->run_active || c->connect_active) {
        qmtp_cancel(c, "cancelled");
    }
}

int qmtp_busy(const qmtp_client *c)
{
    return c->run_active || c->connect_active;
}

int64_t qmtp_clock_ms(void)
{
    return qmtp_now_ms();
}
