/* Perl glue for the QMTP core in c_src/: unpack arguments, call the core,
 * build return values. Policy lives in lib/Net/QMTP.pm. */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#define NEED_mg_findext
#include "ppport.h"

#include "qmtp.h"

/* Beside each C client, what the glue needs during a send: whether one is
 * under way (a signal handler may not use the object meanwhile), and which
 * message buffers the core is writing from (see hold_still). It is the
 * client's interrupt-hook context, and is freed with the client. */
struct glue {
#ifdef PERL_IMPLICIT_CONTEXT
    PerlInterpreter *perl;
#endif
    int sending;
    SV *held; /* during a send: a mortal buffer of struct held, else NULL */
};

struct held {
    SV *sv;
    const char *pv;
    STRLEN len;
};

static struct glue *glue_of(const qmtp_client *c)
{
    return (struct glue *)qmtp_interrupt_ctx(c);
}

/* The C client rides on the object's hash as ext magic, so the object
 * stays a plain blessed hash that subclasses can extend. */
static int client_free(pTHX_ SV *sv, MAGIC *mg)
{
    qmtp_client *c = (qmtp_client *)mg->mg_ptr;

    PERL_UNUSED_ARG(sv);
    if (c != NULL) {
        Safefree(glue_of(c));
        qmtp_free(c);
    }
    mg->mg_ptr = NULL;
    return 0;
}

/* Perl lets utf8::upgrade() reallocate a read-only string, so a handler
 * can still move a held message: true if one has moved or changed size. */
static int held_moved(pTHX_ const struct glue *g)
{
    const struct held *h = (const struct held *)SvPVX(g->held);
    size_t n = SvCUR(g->held) / sizeof *h;
    size_t i;

    for (i = 0; i < n; i++) {
        if (!SvPOK(h[i].sv) || SvPVX(h[i].sv) != h[i].pv || SvCUR(h[i].sv) != h[i].len) {
            return 1;
        }
    }
    return 0;
}

/* Lets the caller's signal handlers run while the core waits, as perl's
 * own I/O does: a handler that dies (alarm with die) ends the send, and
 * the core closes the connection it was using at its next call. One that
 * moved a message the core is writing from ends it the same way, before
 * another byte is read from the old buffer. */
static int run_signal_handlers(void *ctx)
{
    struct glue *g = (struct glue *)ctx;
#ifdef PERL_IMPLICIT_CONTEXT
    dTHXa(g->perl);
#endif
    int pending = PL_sig_pending;

    PERL_ASYNC_CHECK();
    if (pending && g->held != NULL && held_moved(aTHX_ g)) {
        croak("Net::QMTP: a signal handler changed a message while it was being sent; "
              "the connection is closed before the rest goes out");
    }
    return 0;
}

static MGVTBL client_vtbl = { NULL, NULL, NULL, NULL, client_free, NULL, NULL, NULL };

static qmtp_client *find_client(pTHX_ SV *sv)
{
    MAGIC *mg;

    if (!SvROK(sv) || SvTYPE(SvRV(sv)) != SVt_PVHV) {
        return NULL;
    }
    mg = mg_findext(SvRV(sv), PERL_MAGIC_ext, &client_vtbl);
    return mg != NULL ? (qmtp_client *)mg->mg_ptr : NULL;
}

/* The one checked way from an object to its client. Unless only reading,
 * the object must not be in the middle of a send: a signal handler that
 * used it then would close or reuse what the send is working with. */
static qmtp_client *sv_to_client(pTHX_ SV *sv, const char *func, int reading)
{
    qmtp_client *c = find_client(aTHX_ sv);

    if (c == NULL) {
        croak("%s: not a Net::QMTP object", func);
    }
    if (!reading && glue_of(c)->sending) {
        croak("Net::QMTP: this object is in the middle of a send; "
              "a signal handler cannot use it until the send returns");
    }
    return c;
}

/* Bytes of a string argument; croaks, naming it, if it holds characters
 * above 0xFF (a netstring length counts bytes, not characters). */
static const char *bytes_of(pTHX_ SV *sv, const char *what, STRLEN *len)
{
    if (!SvOK(sv)) {
        croak("Undefined %s", what);
    }
    if (SvUTF8(sv) && !sv_utf8_downgrade(sv, TRUE)) {
        croak("Wide character in %s", what);
    }
    return SvPVbyte(sv, *len);
}

/* Milliseconds, bounded before converting: a huge or NaN number of seconds
 * must not overflow the integer (30 years is "forever" here). */
static int64_t seconds_to_ms(NV seconds)
{
    if (!(seconds > 0)) {
        return 1;
    }
    return seconds > 1e9 ? (int64_t)1e12 : (int64_t)(seconds * 1000);
}

/* The encoding byte in a string (0.06 keeps "\n" or "\r"); anything else
 * gives a byte the core refuses, naming it. */
static char encoding_byte(pTHX_ SV *enc)
{
    STRLEN len;
    const char *p = bytes_of(aTHX_ enc, "encoding", &len);

    return len == 1 ? p[0] : '\0';
}

/* Undoes hold_still when the scope it was called in ends, however it ends. */
static void let_go(pTHX_ void *p)
{
    SV *sv = (SV *)p;

    SvREADONLY_off(sv);
    SvREFCNT_dec(sv);
}

/* A message's bytes are written from its own buffer, without a copy, while
 * the caller's signal handlers may run: until the enclosing LEAVE, the
 * message is kept alive and read-only, so that a handler that tries to
 * change it in place (which would free or move the buffer being written)
 * dies instead; and where it is, is noted for run_signal_handlers to check
 * (a read-only string can still be upgraded to UTF-8). */
static void hold_still(pTHX_ qmtp_client *c, SV *message, const char *pv, STRLEN len)
{
    struct glue *g = glue_of(c);
    struct held h;

    /* Bytes not in the message's own buffer (an object's string form) are
     * in a temporary that no handler can reach. */
    if (g->held != NULL && SvPOK(message) && SvPVX(message) == pv) {
        h.sv = message;
        h.pv = pv;
        h.len = len;
        sv_catpvn(g->held, (const char *)&h, sizeof h);
    }
    if (SvREADONLY(message)) {
        sv_2mortal(SvREFCNT_inc_simple_NN(message)); /* only to keep it alive */
        return;
    }
    SvREADONLY_on(message);
    SAVEDESTRUCTOR_X(let_go, SvREFCNT_inc_simple_NN(message));
}

/* A qmtp_written_fn: every package is written, so no message buffer is
 * read from here on. */
static void let_messages_change(void *ctx)
{
    ((struct glue *)ctx)->held = NULL;
}

/* Marks c as sending until the enclosing LEAVE, however that comes: its
 * messages are held from here, and a signal handler may not use it. */
static struct glue *begin_sending(pTHX_ qmtp_client *c)
{
    struct glue *g = glue_of(c);

    SAVEINT(g->sending);
    SAVEVPTR(g->held);
    g->sending = 1;
    g->held = sv_2mortal(newSVpvs(""));
    return g;
}

/* Lays out one package in the client. The message's bytes are borrowed
 * until qmtp_run returns, and held still until the caller's LEAVE. */
static int fill_package(pTHX_ qmtp_client *c, char enc_byte, SV *sender, AV *rcpts, SV *message, SV *file)
{
    STRLEN len;
    const char *p;
    SSize_t i;
    SSize_t last = av_len(rcpts);
    int rc;

    p = bytes_of(aTHX_ sender, "sender", &len);
    rc = qmtp_pkg_begin(c, enc_byte, p, len);
    for (i = 0; rc == QMTP_OK && i <= last; i++) {
        SV **rcpt = av_fetch(rcpts, i, 0);
        if (rcpt == NULL) {
            croak("Undefined recipient");
        }
        p = bytes_of(aTHX_ *rcpt, "recipient", &len);
        rc = qmtp_pkg_recipient(c, p, len);
    }
    if (rc == QMTP_OK && SvOK(file)) {
        rc = qmtp_pkg_file(c, bytes_of(aTHX_ file, "file name", &len));
    } else if (rc == QMTP_OK) {
        p = bytes_of(aTHX_ message, "message", &len); /* may downgrade it */
        hold_still(aTHX_ c, message, p, len);
        rc = qmtp_pkg_body(c, p, len);
    }
    return rc == QMTP_OK ? qmtp_pkg_end(c) : rc;
}

/* A result in 0.06's form: "success: text", "deferral: ..." or "failure: ...". */
static void set_prefixed(pTHX_ SV *sv, const qmtp_result *r)
{
    static const char *const prefix[] = { "success: ", "deferral: ", "failure: " };
    const char *pre = prefix[r->code == 'K' ? 0 : r->code == 'Z' ? 1 : 2];
    size_t pre_len = strlen(pre);
    char *p;

    /* Lengths here are bounded: the prefix by the table, the text by the
     * client's response limit (at most 999999999). */
    SvUPGRADE(sv, SVt_PV);
    p = SvGROW(sv, pre_len + r->len + 1);
    memcpy(p, pre, pre_len);
    memcpy(p + pre_len, r->text, r->len);
    p[pre_len + r->len] = '\0';
    SvCUR_set(sv, pre_len + r->len);
    SvPOK_only(sv);
}

static SV *prefixed(pTHX_ const qmtp_result *r)
{
    SV *value = newSV(0);

    set_prefixed(aTHX_ value, r);
    return value;
}

/* The 0.06 result hash (recipient => prefixed answer) of the results
 * first .. first+n-1. Its entries can be made while the server works on
 * the package (make_entries, from qmtp_run_overlapped's hook), so that
 * only the values are left to fill in once the answers are in. */
struct result_build {
#ifdef PERL_IMPLICIT_CONTEXT
    PerlInterpreter *perl;
#endif
    AV *rcpts;
    size_t first;
    size_t n;
    HV *hv;      /* mortal until returned; NULL until made */
    SV **values; /* recipient i's value in hv (NULL: no entry), in a mortal buffer */
    SV *last;    /* where the object keeps the last result, or NULL */
    struct glue *glue;
};

static void result_build_init(pTHX_ struct result_build *b, AV *rcpts, size_t first, size_t n)
{
#ifdef PERL_IMPLICIT_CONTEXT
    b->perl = aTHX;
#endif
    b->rcpts = rcpts;
    b->first = first;
    b->n = n;
    b->hv = NULL;
    b->values = NULL;
    b->last = NULL;
    b->glue = NULL;
}

/* Room for a typical answer ("success: ok 1700000000 qp 12345"), made
 * ahead so that filling it in needs no allocation. */
#define VALUE_ROOM 64

/* One entry per recipient; a duplicate recipient shares its entry, so that
 * filling the values in order leaves the last answer (as 0.06 did). Only
 * mortals are made: a die later on frees them. */
static void make_entries(pTHX_ struct result_build *b)
{
    /* n is the length of an existing array of pointers: n * sizeof(SV *)
     * cannot overflow. */
    SV *buffer = sv_2mortal(newSV(b->n * sizeof(SV *) + 1));
    size_t i;

    b->values = (SV **)SvPVX(buffer);
    b->hv = (HV *)sv_2mortal((SV *)newHV());
    if (b->n > 8) {
        hv_ksplit(b->hv, (IV)b->n);
    }
    for (i = 0; i < b->n; i++) {
        SV **rcpt = av_fetch(b->rcpts, (SSize_t)i, 0);
        HE *entry = rcpt != NULL ? hv_fetch_ent(b->hv, *rcpt, 1, 0) : NULL;

        b->values[i] = entry != NULL ? HeVAL(entry) : NULL;
        if (b->values[i] != NULL && !SvPOK(b->values[i])) {
            SvUPGRADE(b->values[i], SVt_PV);
            SvGROW(b->values[i], VALUE_ROOM);
        }
    }
}

/* The qmtp_written_fn: the hash's entries, made while the answers are due;
 * and the last result, kept by the object so that freeing it (when the
 * caller has dropped it) happens now too, not between two messages. */
static void make_entries_now(void *ctx)
{
    struct result_build *b = (struct result_build *)ctx;
#ifdef PERL_IMPLICIT_CONTEXT
    dTHXa(b->perl);
#endif
    if (b->glue != NULL) {
        let_messages_change(b->glue);
    }
    if (b->last != NULL && SvOK(b->last)) {
        sv_setsv(b->last, &PL_sv_undef);
    }
    make_entries(aTHX_ b);
}

/* The finished hash, as a reference: one entry per recipient that has a
 * result (all of them, unless the package never went out). */
static SV *result_hash(pTHX_ const qmtp_client *c, struct result_build *b)
{
    size_t count = qmtp_result_count(c);
    size_t have = count > b->first ? count - b->first : 0;
    size_t i;

    if (have > b->n) {
        have = b->n;
    }
    if (b->hv == NULL || have < b->n) {
        b->n = have;
        make_entries(aTHX_ b);
    }
    for (i = 0; i < b->n; i++) {
        qmtp_result r;

        if (b->values[i] != NULL && qmtp_result_get(c, b->first + i, &r) == QMTP_OK) {
            set_prefixed(aTHX_ b->values[i], &r);
        }
    }
    return newRV_inc((SV *)b->hv);
}

/* responses() entries for the results first .. first+n-1. */
static SV *response_list(pTHX_ const qmtp_client *c, AV *rcpts, size_t first, size_t n)
{
    AV *list = newAV();
    size_t i;

    for (i = 0; i < n; i++) {
        qmtp_result r;
        SV **rcpt = av_fetch(rcpts, (SSize_t)i, 0);
        HV *one;

        if (qmtp_result_get(c, first + i, &r) != QMTP_OK) {
            break;
        }
        one = newHV();
        (void)hv_stores(one, "recipient", rcpt != NULL ? newSVsv(*rcpt) : newSV(0));
        (void)hv_stores(one, "code", newSVpvn(&r.code, 1));
        (void)hv_stores(one, "text", newSVpvn(r.text, r.len));
        (void)hv_stores(one, "response", prefixed(aTHX_ &r));
        (void)hv_stores(one, "received", newSViv(r.received));
        (void)hv_stores(one, "per_package", newSViv(r.per_package));
        av_push(list, newRV_noinc((SV *)one));
    }
    return newRV_noinc((SV *)list);
}

/* send_many's jobs, as the caller gave them: hashes of sender, recipients,
 * message or file, and encoding ("unix" or "dos"; else the object's). */
static const char *const job_keys[] = { "sender", "recipients", "message", "file", "encoding" };

static HV *job_at(pTHX_ AV *jobs, SSize_t i)
{
    SV **sv = av_fetch(jobs, i, 0);

    if (sv == NULL || !SvROK(*sv) || SvTYPE(SvRV(*sv)) != SVt_PVHV) {
        return NULL;
    }
    return (HV *)SvRV(*sv);
}

static SV *hash_field(pTHX_ HV *hv, const char *key)
{
    SV **sv = hv_fetch(hv, key, (I32)strlen(key), 0);

    return sv != NULL ? *sv : &PL_sv_undef;
}

static int is_job_key(const char *key, I32 len)
{
    size_t i;

    for (i = 0; i < sizeof job_keys / sizeof job_keys[0]; i++) {
        if ((size_t)len == strlen(job_keys[i]) && memcmp(key, job_keys[i], (size_t)len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* 1 if the string can go out as bytes (no character above 0xFF). Read in
 * place, neither changed nor copied (a message may be large): in UTF-8, a
 * character above 0xFF starts with a byte above 0xC3. */
static int fits_bytes(pTHX_ SV *sv)
{
    STRLEN len;
    const U8 *p;
    STRLEN i;

    if (!SvUTF8(sv)) {
        return 1;
    }
    p = (const U8 *)SvPV_const(sv, len);
    for (i = 0; i < len; i++) {
        if (p[i] > 0xC3) {
            return 0;
        }
    }
    return 1;
}

/* 'unix' or 'dos', exactly (a NUL byte does not end a Perl string). */
static int is_encoding_name(pTHX_ SV *enc)
{
    STRLEN len;
    const char *p = SvPV(enc, len);

    return (len == 4 && memEQ(p, "unix", 4)) || (len == 3 && memEQ(p, "dos", 3));
}

/* What is wrong with job n (counted from 1), as a mortal message, or NULL. */
static SV *job_problem(pTHX_ SV *job_sv, IV n)
{
    HV *job;
    HE *he;
    SV *unknown = NULL;
    SV *rcpts;
    SV *enc;
    SSize_t i;

    if (!SvROK(job_sv) || SvTYPE(SvRV(job_sv)) != SVt_PVHV) {
        return sv_2mortal(newSVpvf("send_many: job %" IVdf " is not a hash reference", n));
    }
    job = (HV *)SvRV(job_sv);
    hv_iterinit(job);
    while ((he = hv_iternext(job)) != NULL) {
        I32 len;
        const char *key = hv_iterkey(he, &len);
        /* The first unknown key in sorted order, so the message is stable. */
        if (!is_job_key(key, len) && (unknown == NULL || sv_cmp(hv_iterkeysv(he), unknown) < 0)) {
            unknown = sv_2mortal(newSVsv(hv_iterkeysv(he)));
        }
    }
    if (unknown != NULL) {
        return sv_2mortal(newSVpvf("send_many: job %" IVdf ": unknown key '%" SVf "'", n, SVfARG(unknown)));
    }
    if (!SvOK(hash_field(aTHX_ job, "sender"))) {
        return sv_2mortal(newSVpvf("send_many: job %" IVdf ": no sender", n));
    }
    rcpts = hash_field(aTHX_ job, "recipients");
    if (!SvROK(rcpts) || SvTYPE(SvRV(rcpts)) != SVt_PVAV || av_len((AV *)SvRV(rcpts)) < 0) {
        return sv_2mortal(newSVpvf("send_many: job %" IVdf ": recipients must be a non-empty array reference", n));
    }
    if (SvOK(hash_field(aTHX_ job, "message")) == SvOK(hash_field(aTHX_ job, "file"))) {
        return sv_2mortal(newSVpvf("send_many: job %" IVdf ": give exactly one of message and file", n));
    }
    enc = hash_field(aTHX_ job, "encoding");
    if (SvOK(enc) && !is_encoding_name(aTHX_ enc)) {
        return sv_2mortal(newSVpvf("send_many: job %" IVdf ": Unknown encoding: '%" SVf "'", n, SVfARG(enc)));
    }
    for (i = 0; i <= av_len((AV *)SvRV(rcpts)); i++) {
        SV **r = av_fetch((AV *)SvRV(rcpts), i, 0);
        if (r == NULL || !SvOK(*r)) {
            return sv_2mortal(newSVpvf("send_many: job %" IVdf ": undefined recipient", n));
        }
        if (!fits_bytes(aTHX_ *r)) {
            return sv_2mortal(newSVpvf("Wide character in recipient (job %" IVdf ")", n));
        }
    }
    if (!fits_bytes(aTHX_ hash_field(aTHX_ job, "sender"))) {
        return sv_2mortal(newSVpvf("Wide character in sender (job %" IVdf ")", n));
    }
    if (SvOK(hash_field(aTHX_ job, "message")) && !fits_bytes(aTHX_ hash_field(aTHX_ job, "message"))) {
        return sv_2mortal(newSVpvf("Wide character in message (job %" IVdf ")", n));
    }
    return NULL;
}

/* The encoding byte of a checked job: its own, or the object's. */
static char job_encoding(pTHX_ HV *job, char default_enc)
{
    SV *enc = hash_field(aTHX_ job, "encoding");

    if (!SvOK(enc)) {
        return default_enc;
    }
    return strEQ(SvPV_nolen(enc), "dos") ? '\015' : '\012';
}

/* Job i's recipients. The jobs were checked, but the caller's code can run
 * since (a signal handler, say): a job that changed must not crash us. */
static AV *job_rcpts(pTHX_ AV *jobs, SSize_t i)
{
    HV *job = job_at(aTHX_ jobs, i);
    SV *rcpts = job != NULL ? hash_field(aTHX_ job, "recipients") : &PL_sv_undef;

    if (!SvROK(rcpts) || SvTYPE(SvRV(rcpts)) != SVt_PVAV) {
        croak("send_many: job %ld was changed while it was being sent", (long)i + 1);
    }
    return (AV *)SvRV(rcpts);
}

/* Lays out a package per job (all checked by job_problem). A job that
 * cannot be laid out (its file cannot be opened, say) is left out, and the
 * others go on. Returns a mortal array: for each job, its package index,
 * or [status, error]. */
static AV *build_batch(pTHX_ qmtp_client *c, AV *jobs, char default_enc)
{
    AV *built = (AV *)sv_2mortal((SV *)newAV());
    SSize_t njobs = av_len(jobs) + 1;
    SSize_t i;
    IV npkg = 0;

    qmtp_batch_reset(c);
    av_extend(built, njobs);
    for (i = 0; i < njobs; i++) {
        AV *rcpts = job_rcpts(aTHX_ jobs, i);
        HV *job = job_at(aTHX_ jobs, i);
        int rc = fill_package(aTHX_ c, job_encoding(aTHX_ job, default_enc), hash_field(aTHX_ job, "sender"),
                              rcpts, hash_field(aTHX_ job, "message"), hash_field(aTHX_ job, "file"));

        if (rc == QMTP_OK) {
            av_push(built, newSViv(npkg++));
        } else {
            AV *why = newAV();
            qmtp_pkg_abandon(c);
            av_push(why, newSViv(rc));
            av_push(why, newSVpv(qmtp_errstr(c), 0));
            av_push(built, newRV_noinc((SV *)why));
        }
    }
    return built;
}

static SV *av_elem(pTHX_ AV *av, SSize_t i)
{
    SV **sv = av_fetch(av, i, 0);

    return sv != NULL ? *sv : &PL_sv_undef;
}

/* For each job, its result as send_many returns it: { result => \%hash or
 * undef, responses => \@list, error => text or undef }. *failed gets
 * [index, status] for each job that was not answered in full. */
static AV *batch_outcomes(pTHX_ const qmtp_client *c, AV *jobs, AV *built, AV *failed)
{
    AV *out = (AV *)sv_2mortal((SV *)newAV()); /* mortal: job_rcpts may croak */
    SSize_t njobs = av_len(jobs) + 1;
    SSize_t i;

    av_extend(out, njobs);
    for (i = 0; i < njobs; i++) {
        AV *rcpts = job_rcpts(aTHX_ jobs, i);
        SV *b = av_elem(aTHX_ built, i);
        HV *one = newHV();
        int status;

        if (SvROK(b)) {
            AV *why = (AV *)SvRV(b);
            status = (int)SvIV(av_elem(aTHX_ why, 0));
            (void)hv_stores(one, "result", newSV(0));
            (void)hv_stores(one, "responses", newRV_noinc((SV *)newAV()));
            (void)hv_stores(one, "error", newSVsv(av_elem(aTHX_ why, 1)));
        } else {
            size_t p = (size_t)SvIV(b);
            size_t first = qmtp_pkg_first_result(c, p);
            size_t n = (size_t)(av_len(rcpts) + 1);
            struct result_build hash;

            status = qmtp_pkg_status(c, p);
            result_build_init(aTHX_ &hash, rcpts, first, n);
            if (status == QMTP_OK) {
                (void)hv_stores(one, "result", result_hash(aTHX_ c, &hash));
                (void)hv_stores(one, "error", newSV(0));
            } else {
                (void)hv_stores(one, "result", newSV(0));
                (void)hv_stores(one, "error", newSVpv(qmtp_errstr(c), 0));
            }
            (void)hv_stores(one, "responses", response_list(aTHX_ c, rcpts, first, n));
        }
        if (status != QMTP_OK) {
            AV *f = newAV();
            av_push(f, newSViv((IV)i));
            av_push(f, newSViv(status));
            av_push(failed, newRV_noinc((SV *)f));
        }
        av_push(out, newRV_noinc((SV *)one));
    }
    return out;
}

/* An open connection may start no new package once this old (SessionLimit). */
static int past_session_limit(const qmtp_client *c, NV limit_s)
{
    return (NV)qmtp_age_ms(c) >= limit_s * 1000;
}

/* $hv->{key} = value, in place. */
static void set_field(pTHX_ HV *hv, const char *key, SV *value)
{
    SV **slot = hv_fetch(hv, key, (I32)strlen(key), 1);

    if (slot != NULL) {
        sv_setsv(*slot, value);
    }
}

/* One package, sent and answered: the status, and in *hash (a new
 * reference) the 0.06 result hash, also kept in last (if not NULL) until
 * the next package's answers are due. */
static int send_one(pTHX_ qmtp_client *c, SV *enc, SV *sender, AV *rcpts, SV *message, SV *file,
                    SV *last, SV **hash)
{
    struct result_build b;
    int rc;

    /* The recipients are read while the answers are due, and a signal
     * handler may run meanwhile: whatever it does to the object, they stay
     * alive until the caller's statement ends; the message, see hold_still. */
    sv_2mortal(SvREFCNT_inc_simple_NN((SV *)rcpts));
    qmtp_batch_reset(c);
    result_build_init(aTHX_ &b, rcpts, 0, (size_t)(av_len(rcpts) + 1));
    if (last != NULL) {
        b.last = sv_2mortal(SvREFCNT_inc_simple_NN(last));
    }
    ENTER;
    b.glue = begin_sending(aTHX_ c);
    rc = fill_package(aTHX_ c, encoding_byte(aTHX_ enc), sender, rcpts, message, file);
    if (rc == QMTP_OK) {
        rc = qmtp_run_overlapped(c, make_entries_now, &b);
    }
    LEAVE;
    *hash = result_hash(aTHX_ c, &b);
    if (last != NULL) {
        sv_setsv(last, *hash);
    }
    return rc;
}

/* A client only read from (see sv_to_client): its typemap entry lets a
 * signal handler look at an object in the middle of a send. */
typedef qmtp_client qmtp_reader;

MODULE = Net::QMTP    PACKAGE = Net::QMTP    PREFIX = xs_

PROTOTYPES: DISABLE

void
_attach(self)
    SV *self
  PREINIT:
    qmtp_client *c;
    struct glue *g;
  CODE:
    if (!SvROK(self) || SvTYPE(SvRV(self)) != SVt_PVHV || find_client(aTHX_ self) != NULL) {
        croak("Net::QMTP::_attach: needs a new Net::QMTP hash");
    }
    c = qmtp_new();
    if (c == NULL) {
        croak("Net::QMTP: out of memory");
    }
    Newxz(g, 1, struct glue);
#ifdef PERL_IMPLICIT_CONTEXT
    g->perl = aTHX;
#endif
    qmtp_set_interrupt_hook(c, run_signal_handlers, g);
    sv_magicext(SvRV(self), NULL, PERL_MAGIC_ext, &client_vtbl, (const char *)c, 0);

void
_configure(c, connect_s, io_s, stall_s, max_response, busy_wait_s)
    qmtp_client *c
    NV connect_s
    NV io_s
    NV stall_s
    UV max_response
    NV busy_wait_s
  CODE:
    qmtp_set_timeouts(c, seconds_to_ms(connect_s), seconds_to_ms(io_s), seconds_to_ms(stall_s));
    qmtp_set_max_response(c, (size_t)max_response);
    qmtp_set_busy_wait(c, busy_wait_s > 0 ? (int64_t)(busy_wait_s * 1e6 + 0.5) : 0);

int
_connect(c, host, port)
    qmtp_client *c
    const char *host
    const char *port
  CODE:
    RETVAL = qmtp_connect(c, host, port) == QMTP_OK;
  OUTPUT:
    RETVAL

int
_local_addr(c, addr)
    qmtp_client *c
    SV *addr
  CODE:
    RETVAL = qmtp_set_local_addr(c, SvOK(addr) ? SvPVbyte_nolen(addr) : NULL) == QMTP_OK;
  OUTPUT:
    RETVAL

int
_close(c)
    qmtp_client *c
  CODE:
    RETVAL = qmtp_close(c);
  OUTPUT:
    RETVAL

void
_destroy(self)
    SV *self
  PREINIT:
    qmtp_client *c;
  CODE:
    /* Never croaks: DESTROY may meet a half-built object. */
    c = find_client(aTHX_ self);
    if (c != NULL) {
        qmtp_close(c);
    }

int
_is_open(c)
    qmtp_client *c
  CODE:
    RETVAL = qmtp_is_open(c);
  OUTPUT:
    RETVAL

int
_idle_check(c)
    qmtp_client *c
  CODE:
    RETVAL = qmtp_idle_check(c);
  OUTPUT:
    RETVAL

const char *
_peer(c)
    qmtp_reader *c
  CODE:
    RETVAL = qmtp_peer(c);
  OUTPUT:
    RETVAL

void
_error(c)
    qmtp_reader *c
  PPCODE:
    EXTEND(SP, 3);
    mPUSHi(qmtp_err(c));
    mPUSHp(qmtp_errstr(c), strlen(qmtp_errstr(c)));
    mPUSHi(qmtp_sys_errno(c));

void
_send(c, enc, sender, rcpts, message, file)
    qmtp_client *c
    SV *enc
    SV *sender
    AV *rcpts
    SV *message
    SV *file
  PREINIT:
    SV *hash;
    int rc;
  PPCODE:
    rc = send_one(aTHX_ c, enc, sender, rcpts, message, file, NULL, &hash);
    EXTEND(SP, 2);
    mPUSHi(rc);
    mPUSHs(hash);

void
_send_usual(self)
    SV *self
  PREINIT:
    qmtp_client *c;
    HV *fields;
    SV *sender;
    SV *rcpts;
    SV *message;
    SV *enc;
    SV *limit;
    SV *used;
    IV reused;
    SV *hash;
    int rc;
  PPCODE:
    /* send()'s usual case in one call: a message in memory, no Debug, and
     * an open connection within the session limit. Anything else returns
     * nothing, having changed nothing, and send() takes the long way. */
    c = sv_to_client(aTHX_ self, "Net::QMTP::send", 0);
    fields = (HV *)SvRV(self);
    sender = hash_field(aTHX_ fields, "SENDER");
    rcpts = hash_field(aTHX_ fields, "RECIPIENTS");
    message = hash_field(aTHX_ fields, "MESSAGE");
    enc = hash_field(aTHX_ fields, "ENCODING");
    limit = hash_field(aTHX_ fields, "SESSIONLIMIT");
    if (SvTRUE(hash_field(aTHX_ fields, "DEBUG")) || !SvOK(sender) ||
        !SvROK(rcpts) || SvTYPE(SvRV(rcpts)) != SVt_PVAV || av_len((AV *)SvRV(rcpts)) < 0 ||
        !SvOK(message) || SvTRUE(hash_field(aTHX_ fields, "MSGFILE")) ||
        !SvTRUE(enc) || !SvTRUE(hash_field(aTHX_ fields, "QMTP_WANTED")) ||
        !qmtp_is_open(c) || !SvOK(limit) || past_session_limit(c, SvNV(limit))) {
        XSRETURN_EMPTY;
    }
    /* As send() does on the long way (see there), assigning in place as
     * Perl's $self->{KEY} = ... does. */
    set_field(aTHX_ fields, "QMTP_ERROR", &PL_sv_undef);
    set_field(aTHX_ fields, "QMTP_SENT_TO", rcpts);
    set_field(aTHX_ fields, "QMTP_RESPONSES", &PL_sv_undef);
    used = *hv_fetchs(fields, "QMTP_USED", 1);
    reused = SvOK(used) ? SvIV(used) : 0;
    sv_setiv(used, reused + 1);
    rc = send_one(aTHX_ c, enc, sender, (AV *)SvRV(rcpts), message, &PL_sv_undef,
                  *hv_fetchs(fields, "QMTP_LAST_RESULT", 1), &hash);
    EXTEND(SP, 3);
    mPUSHi(rc);
    mPUSHs(hash);
    mPUSHi(reused);

SV *
_check_jobs(jobs)
    AV *jobs
  PREINIT:
    SSize_t i;
  CODE:
    /* undef, or what is wrong with the first job that is: send_many()
     * croaks with it, so that the caller's line is named. */
    RETVAL = &PL_sv_undef;
    for (i = 0; i <= av_len(jobs); i++) {
        SV *problem = job_problem(aTHX_ av_elem(aTHX_ jobs, i), (IV)i + 1);
        if (problem != NULL) {
            RETVAL = SvREFCNT_inc(problem);
            break;
        }
    }
  OUTPUT:
    RETVAL

void
_send_many(c, jobs, default_enc)
    qmtp_client *c
    AV *jobs
    SV *default_enc
  PREINIT:
    struct glue *g;
    AV *built;
    AV *failed;
    int rc;
  PPCODE:
    /* jobs: the caller's job hashes, checked by _check_jobs. Returns the
     * run's status, the results in send_many's form, and [index, status]
     * of the jobs not answered in full. */
    ENTER;
    g = begin_sending(aTHX_ c);
    built = build_batch(aTHX_ c, jobs, encoding_byte(aTHX_ default_enc));
    rc = qmtp_pkg_count(c) > 0 ? qmtp_run_overlapped(c, let_messages_change, g) : QMTP_OK;
    LEAVE;
    failed = (AV *)sv_2mortal((SV *)newAV());
    EXTEND(SP, 3);
    mPUSHi(rc);
    mPUSHs(newRV_inc((SV *)batch_outcomes(aTHX_ c, jobs, built, failed)));
    mPUSHs(newRV_inc((SV *)failed));

int
_server_mode(c)
    qmtp_reader *c
  CODE:
    RETVAL = qmtp_server_mode(c);
  OUTPUT:
    RETVAL

void
_results(c)
    qmtp_reader *c
  PREINIT:
    size_t i;
    size_t n;
  PPCODE:
    /* code, text, received, per_package for each recipient of the last run */
    n = qmtp_result_count(c);
    EXTEND(SP, (SSize_t)(4 * n));
    for (i = 0; i < n; i++) {
        qmtp_result r;
        qmtp_result_get(c, i, &r);
        mPUSHp(&r.code, 1);
        mPUSHp(r.text, r.len);
        mPUSHi(r.received);
        mPUSHi(r.per_package);
    }

SV *
_not_ready(c, session_limit)
    qmtp_client *c
    NV session_limit
  CODE:
    /* Why the connection cannot start a package, or undef if it can. A
     * connection the server closed while idle is not checked here: the
     * engine's first poll sees it before writing a byte, and the package
     * comes back "not begun", to be sent on a new connection. */
    if (!qmtp_is_open(c)) {
        RETVAL = newSVpvs("the previous connection was closed");
    } else if (past_session_limit(c, session_limit)) {
        RETVAL = newSVpvf("the connection is older than the session limit of %" NVgf " s", session_limit);
    } else {
        RETVAL = &PL_sv_undef;
    }
  OUTPUT:
    RETVAL
