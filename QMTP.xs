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
    /* A non-blocking send under way: its struct held buffer, checked
     * before each step, since the caller's code runs between steps. */
    SV *async_held;
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
        struct glue *g = glue_of(c);

        qmtp_free(c); /* cancels a run under way: its held messages are alive */
        SvREFCNT_dec(g->async_held);
        Safefree(g);
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
    if (!reading && qmtp_busy(c)) {
        croak("Net::QMTP: a non-blocking send is under way on this object; "
              "let it end, or call async_cancel, first");
    }
    return c;
}

/* The client of an object for the non-blocking calls, which are the ones
 * allowed while a non-blocking send is under way. */
static qmtp_client *async_client(pTHX_ SV *sv, const char *func)
{
    qmtp_client *c = find_client(aTHX_ sv);

    if (c == NULL) {
        croak("%s: not a Net::QMTP object", func);
    }
    if (glue_of(c)->sending) {
        croak("Net::QMTP: this object is in the middle of a send; "
              "a signal handler cannot use it until the send returns");
    }
    return c;
}

/* Keeps sv alive until the caller's statement ends: every value taken
 * from the caller's containers is held so before any caller code runs
 * (a FETCH or an overload can empty the hash or array it came from). */
static SV *hold(pTHX_ SV *sv)
{
    return sv_2mortal(SvREFCNT_inc_simple_NN(sv));
}

/* sv's value, its get-magic run once: a tied or magical value becomes a
 * plain mortal copy, so that reading it again runs no caller code. */
static SV *fetched(pTHX_ SV *sv)
{
    SV *copy;

    SvGETMAGIC(sv);
    if (!SvGMAGICAL(sv)) {
        return sv;
    }
    copy = sv_newmortal();
    sv_setsv_flags(copy, sv, 0);
    return copy;
}

/* The caller's values are read once, at the start of a send, and turned
 * into bytes there: get-magic (a tie's FETCH) and string overloads, the
 * caller's code, run then and never again, before any buffer is borrowed.
 * A plain byte string is used where it is (and later borrowed, without a
 * copy); anything else is copied to a mortal and converted there, so that
 * nothing the caller passed is changed. NULL for undef; *wide is set (and
 * NULL returned) for characters above 0xFF. */
static SV *fetch_bytes(pTHX_ SV *sv, int *wide)
{
    STRLEN len;
    const char *p;
    SV *copy;

    *wide = 0;
    SvGETMAGIC(sv);
    if (!SvOK(sv)) {
        return NULL;
    }
    if (SvPOK(sv) && !SvUTF8(sv) && !SvMAGICAL(sv) && !SvROK(sv)) {
        return sv;
    }
    p = SvPV_nomg(sv, len); /* an overload runs here */
    copy = newSVpvn_flags(p, len, SVs_TEMP | (SvUTF8(sv) ? SVf_UTF8 : 0));
    if (SvUTF8(copy) && !sv_utf8_downgrade(copy, TRUE)) {
        *wide = 1;
        return NULL;
    }
    return copy;
}

/* A plain byte string, fetched as above, that no caller code may have
 * changed since it was fetched: NUL-free when it names something. */
static SV *fetch_or_croak(pTHX_ SV *sv, const char *what)
{
    int wide;
    SV *bytes = fetch_bytes(aTHX_ sv, &wide);

    if (wide) {
        croak("Wide character in %s: encode it to bytes first (e.g. with Encode::encode_utf8)", what);
    }
    if (bytes == NULL) {
        croak("Undefined %s", what);
    }
    return bytes;
}

/* A C string for the core (a host, port, address or file name): a NUL
 * byte would cut it short, so it is refused, as Perl's own open does. */
static const char *c_string(pTHX_ SV *sv, const char *what)
{
    STRLEN len;
    SV *bytes = fetch_or_croak(aTHX_ sv, what);
    const char *p = SvPV_nomg(bytes, len);

    if (memchr(p, '\0', len) != NULL) {
        croak("%s contains a NUL byte", what);
    }
    return p;
}

/* Milliseconds, bounded before converting: a huge or NaN number of seconds
 * must not overflow the integer (30 years is "forever" here). */
static int64_t seconds_to_ms(NV seconds)
{
    if (!(seconds > 0)) {
        return 1;
    }
    if (seconds > 1e9) {
        return (int64_t)1e12;
    }
    /* Up, never to 0: 0 ms would mean no limit at all. */
    return seconds * 1000 < 1 ? 1 : (int64_t)(seconds * 1000);
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

/* However a send ends (a signal handler may die in it), the files it
 * opened and the connection it left half-used are closed at its LEAVE. */
static void unwind_client(pTHX_ void *p)
{
    PERL_UNUSED_CONTEXT;
    qmtp_unwind((qmtp_client *)p);
}

/* Marks c as sending until the enclosing LEAVE, however that comes: its
 * messages are held from here, and a signal handler may not use it. */
static struct glue *begin_sending(pTHX_ qmtp_client *c)
{
    struct glue *g = glue_of(c);

    SAVEDESTRUCTOR_X(unwind_client, c);
    SAVEINT(g->sending);
    SAVEVPTR(g->held);
    g->sending = 1;
    g->held = sv_2mortal(newSVpvs(""));
    return g;
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

/* A package's inputs, fetched once (see fetch_bytes): an array of byte
 * strings indexed by these, kept until the send's results are built, so
 * that whatever the caller's code does meanwhile, the package and its
 * results speak of the same recipients. */
enum { IN_ENC, IN_SENDER, IN_RCPTS, IN_MESSAGE, IN_FILE, IN_COUNT };

static SV *in_field(pTHX_ AV *in, int i)
{
    SV **sv = av_fetch(in, i, 0);

    return sv != NULL ? *sv : &PL_sv_undef;
}

static AV *in_rcpts(pTHX_ AV *in)
{
    return (AV *)SvRV(in_field(aTHX_ in, IN_RCPTS));
}

/* The inputs of one package from the caller's values, or NULL with *problem
 * set (a mortal text naming it; job counts from 1, 0 for send()). Every
 * read of the caller's values is here. */
static AV *fetch_inputs(pTHX_ char enc, SV *sender, SV *rcpts, SV *message, SV *file, IV job, SV **problem)
{
    AV *in = (AV *)sv_2mortal((SV *)newAV());
    AV *list = (AV *)sv_2mortal((SV *)newAV());
    AV *given;
    SSize_t n;
    SSize_t i;
    SV *bytes;
    int wide;
    char where[48] = "";

    if (job > 0) {
        snprintf(where, sizeof where, " (job %" IVdf ")", job);
    }
    *problem = NULL;
    hold(aTHX_ sender);
    hold(aTHX_ rcpts);
    if (message != NULL) {
        hold(aTHX_ message);
    }
    if (file != NULL) {
        hold(aTHX_ file);
    }
    rcpts = fetched(aTHX_ rcpts);
    if (!SvROK(rcpts) || SvTYPE(SvRV(rcpts)) != SVt_PVAV || av_len((AV *)SvRV(rcpts)) < 0) {
        *problem = sv_2mortal(job > 0 ? newSVpvf("send_many: job %" IVdf ": recipients must be a non-empty array reference", job)
                                      : newSVpvs("no recipient"));
        return NULL;
    }
    given = (AV *)hold(aTHX_ SvRV(rcpts));
    n = av_len(given) + 1; /* counted once: the package has these */
    av_extend(list, n - 1);
    for (i = 0; i < n; i++) {
        SV **r = av_fetch(given, i, 0);
        SV *elem = r != NULL ? hold(aTHX_ *r) : NULL;
        bytes = elem != NULL ? fetch_bytes(aTHX_ elem, &wide) : (wide = 0, NULL);
        if (bytes == NULL) {
            *problem = sv_2mortal(wide ? newSVpvf("Wide character in recipient%s: encode it to bytes first", where)
                                  : job > 0 ? newSVpvf("send_many: job %" IVdf ": undefined recipient", job)
                                  : newSVpvs("Undefined recipient"));
            return NULL;
        }
        av_push(list, bytes == elem ? newSVsv(bytes) : SvREFCNT_inc_simple_NN(bytes));
    }
    bytes = fetch_bytes(aTHX_ sender, &wide);
    if (bytes == NULL) {
        *problem = sv_2mortal(wide ? newSVpvf("Wide character in sender%s: encode it to bytes first", where)
                              : job > 0 ? newSVpvf("send_many: job %" IVdf ": no sender", job)
                              : newSVpvs("no sender"));
        return NULL;
    }
    av_store(in, IN_SENDER, bytes == sender ? newSVsv(bytes) : SvREFCNT_inc_simple_NN(bytes));
    av_store(in, IN_RCPTS, newRV_inc((SV *)list));
    av_store(in, IN_ENC, newSViv(enc));
    if (file != NULL && SvOK(file = fetched(aTHX_ file))) {
        STRLEN len;
        const char *p;

        bytes = fetch_bytes(aTHX_ file, &wide);
        p = bytes != NULL ? SvPV_nomg(bytes, len) : (len = 0, "");
        if (bytes == NULL || memchr(p, '\0', len) != NULL) {
            *problem = sv_2mortal(job > 0 ? newSVpvf("send_many: job %" IVdf ": file name %s", job,
                                                     wide ? "has wide characters" : "contains a NUL byte")
                                          : newSVpvf("file name %s", wide ? "has wide characters" : "contains a NUL byte"));
            return NULL;
        }
        if (SvTAINTED(file)) {
            *problem = sv_2mortal(newSVpvs("Insecure dependency in open while running with -T switch"));
            return NULL;
        }
        av_store(in, IN_FILE, newSVsv(bytes));
        return in;
    }
    bytes = message != NULL ? fetch_bytes(aTHX_ message, &wide) : (wide = 0, NULL);
    if (bytes == NULL) {
        *problem = sv_2mortal(wide ? newSVpvf("Wide character in message%s: encode it to bytes first", where)
                              : newSVpvs("no message"));
        return NULL;
    }
    /* The caller's own string when plain: it is borrowed, not copied. */
    av_store(in, IN_MESSAGE, SvREFCNT_inc_simple_NN(bytes));
    return in;
}

/* send_many's jobs, as the caller gave them: hashes of sender, recipients,
 * message or file, and encoding ("unix" or "dos"; else the object's). */
static const char *const job_keys[] = { "sender", "recipients", "message", "file", "encoding" };

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

/* The inputs of job n (counted from 1), or NULL with *problem set. */
static AV *job_inputs(pTHX_ SV *job_sv, IV n, char default_enc, SV **problem)
{
    HV *job;
    HE *he;
    SV *unknown = NULL;
    SV *enc;
    SV *message;
    SV *file;
    SV *sender;
    SV *rcpts;
    char enc_byte = default_enc;

    SvGETMAGIC(job_sv);
    if (!SvROK(job_sv) || SvTYPE(SvRV(job_sv)) != SVt_PVHV) {
        *problem = sv_2mortal(newSVpvf("send_many: job %" IVdf " is not a hash reference", n));
        return NULL;
    }
    job = (HV *)hold(aTHX_ SvRV(job_sv));
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
        *problem = sv_2mortal(newSVpvf("send_many: job %" IVdf ": unknown key '%" SVf "'", n, SVfARG(unknown)));
        return NULL;
    }
    /* Every field is taken, and held, before any of them is read. */
    message = hold(aTHX_ hash_field(aTHX_ job, "message"));
    file = hold(aTHX_ hash_field(aTHX_ job, "file"));
    enc = hold(aTHX_ hash_field(aTHX_ job, "encoding"));
    sender = hold(aTHX_ hash_field(aTHX_ job, "sender"));
    rcpts = hold(aTHX_ hash_field(aTHX_ job, "recipients"));
    message = fetched(aTHX_ message);
    file = fetched(aTHX_ file);
    if (SvOK(message) == SvOK(file)) {
        *problem = sv_2mortal(newSVpvf("send_many: job %" IVdf ": give exactly one of message and file", n));
        return NULL;
    }
    enc = fetched(aTHX_ enc);
    if (SvOK(enc)) {
        STRLEN len;
        const char *p = SvPV_nomg(enc, len);

        if (len == 4 && memEQ(p, "unix", 4)) {
            enc_byte = '\012';
        } else if (len == 3 && memEQ(p, "dos", 3)) {
            enc_byte = '\015';
        } else {
            *problem = sv_2mortal(newSVpvf("send_many: job %" IVdf ": Unknown encoding: '%" SVf "'", n, SVfARG(enc)));
            return NULL;
        }
    }
    return fetch_inputs(aTHX_ enc_byte, sender, rcpts, message, SvOK(file) ? file : NULL, n, problem);
}

/* Lays out one package in the client from its inputs; no caller code runs
 * here. A message is borrowed until qmtp_run returns, and held still until
 * the caller's LEAVE. */
static int fill_package(pTHX_ qmtp_client *c, AV *in)
{
    AV *rcpts = in_rcpts(aTHX_ in);
    SV *file = in_field(aTHX_ in, IN_FILE);
    STRLEN len;
    const char *p;
    SSize_t i;
    SSize_t last = av_len(rcpts);
    int rc;

    p = SvPV_nomg(in_field(aTHX_ in, IN_SENDER), len);
    rc = qmtp_pkg_begin(c, (char)SvIV(in_field(aTHX_ in, IN_ENC)), p, len);
    for (i = 0; rc == QMTP_OK && i <= last; i++) {
        p = SvPV_nomg(*av_fetch(rcpts, i, 0), len);
        rc = qmtp_pkg_recipient(c, p, len);
    }
    if (rc == QMTP_OK && SvOK(file)) {
        rc = qmtp_pkg_file(c, SvPV_nolen(file));
    } else if (rc == QMTP_OK) {
        SV *message = in_field(aTHX_ in, IN_MESSAGE);

        if (!(SvPOK(message) && !SvUTF8(message) && !SvMAGICAL(message) && !SvROK(message))) {
            /* A signal handler changed it after it was read: read it again,
             * as bytes of a copy, which runs no caller code now. */
            int wide;
            SV *bytes = SvMAGICAL(message) || SvROK(message) ? NULL : fetch_bytes(aTHX_ message, &wide);
            if (bytes == NULL) {
                croak("Net::QMTP: a message was changed while the send was starting");
            }
            av_store(in, IN_MESSAGE, SvREFCNT_inc_simple_NN(bytes));
            message = bytes;
        }
        p = SvPV_nomg(message, len);
        hold_still(aTHX_ c, message, p, len);
        rc = qmtp_pkg_body(c, p, len);
    }
    return rc == QMTP_OK ? qmtp_pkg_end(c) : rc;
}

/* Lays out a package per job's inputs. A job that cannot be laid out (its
 * file cannot be opened, say) is left out, and the others go on. Returns
 * a mortal array: for each job, its package index, or [status, error]. */
static AV *build_batch(pTHX_ qmtp_client *c, AV *inputs)
{
    AV *built = (AV *)sv_2mortal((SV *)newAV());
    SSize_t njobs = av_len(inputs) + 1;
    SSize_t i;
    IV npkg = 0;

    qmtp_batch_reset(c);
    av_extend(built, njobs);
    for (i = 0; i < njobs; i++) {
        int rc = fill_package(aTHX_ c, (AV *)SvRV(*av_fetch(inputs, i, 0)));

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

/* How batch_outcomes shapes a job's result: as send_many documents it;
 * the same with ok (every recipient answered K); or, for a job all of
 * whose recipients answered K, only { ok => 1, answer => first text }
 * (send_stream's lean form: no structure per recipient). */
enum { FORM_MANY, FORM_STREAM, FORM_LEAN };

/* 1 if package p's n results, from first on, are all a K the server sent. */
static int all_accepted(const qmtp_client *c, size_t first, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        qmtp_result r;

        if (qmtp_result_get(c, first + i, &r) != QMTP_OK || r.code != 'K' || !r.received) {
            return 0;
        }
    }
    return n > 0;
}

/* For each job, its result as send_many returns it: { result => \%hash or
 * undef, responses => \@list, error => text or undef }, from the run's
 * packages and the recipients each had (see the forms above). *failed
 * gets [index, status] for each job that was not answered in full. */
static AV *batch_outcomes(pTHX_ const qmtp_client *c, AV *inputs, AV *built, AV *failed, int form)
{
    AV *out = (AV *)sv_2mortal((SV *)newAV());
    SSize_t njobs = av_len(inputs) + 1;
    SSize_t i;

    av_extend(out, njobs);
    for (i = 0; i < njobs; i++) {
        AV *rcpts = in_rcpts(aTHX_ (AV *)SvRV(*av_fetch(inputs, i, 0)));
        SV *b = av_elem(aTHX_ built, i);
        HV *one = newHV();
        int status;

        if (SvROK(b)) {
            AV *why = (AV *)SvRV(b);
            status = (int)SvIV(av_elem(aTHX_ why, 0));
            (void)hv_stores(one, "result", newSV(0));
            (void)hv_stores(one, "responses", newRV_noinc((SV *)newAV()));
            (void)hv_stores(one, "error", newSVsv(av_elem(aTHX_ why, 1)));
            if (form != FORM_MANY) {
                (void)hv_stores(one, "ok", newSViv(0));
            }
        } else {
            size_t p = (size_t)SvIV(b);
            size_t first = qmtp_pkg_first_result(c, p);
            size_t n = (size_t)(av_len(rcpts) + 1);
            struct result_build hash;

            status = qmtp_pkg_status(c, p);
            result_build_init(aTHX_ &hash, rcpts, first, n);
            if (form != FORM_MANY) {
                int ok = status == QMTP_OK && all_accepted(c, first, n);

                (void)hv_stores(one, "ok", newSViv(ok));
                if (ok && form == FORM_LEAN) {
                    qmtp_result r;

                    (void)qmtp_result_get(c, first, &r);
                    (void)hv_stores(one, "answer", newSVpvn(r.text, r.len));
                    av_push(out, newRV_noinc((SV *)one));
                    continue;
                }
            }
            if (status == QMTP_OK) {
                (void)hv_stores(one, "result", result_hash(aTHX_ c, &hash));
                (void)hv_stores(one, "error", newSV(0));
            } else {
                (void)hv_stores(one, "result", newSV(0));
                (void)hv_stores(one, "error", newSVpv(qmtp_pkg_error(c, p), 0));
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
 * the next package's answers are due. in: from fetch_inputs. */
static int send_one(pTHX_ qmtp_client *c, AV *in, SV *last, SV **hash)
{
    AV *rcpts = in_rcpts(aTHX_ in);
    struct result_build b;
    int rc;

    qmtp_batch_reset(c);
    result_build_init(aTHX_ &b, rcpts, 0, (size_t)(av_len(rcpts) + 1));
    if (last != NULL) {
        b.last = sv_2mortal(SvREFCNT_inc_simple_NN(last));
    }
    ENTER;
    b.glue = begin_sending(aTHX_ c);
    rc = fill_package(aTHX_ c, in);
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

/* send()'s inputs from the object's fields, or croaks saying what is
 * wrong (send() checks them first, so this is for a field set by hand). */
static AV *object_inputs(pTHX_ qmtp_client *c, SV *enc, SV *sender, SV *rcpts, SV *message, SV *file)
{
    STRLEN len;
    SV *problem;
    const char *e = SvPV(enc, len);
    AV *in;

    PERL_UNUSED_ARG(c);
    in = fetch_inputs(aTHX_ len == 1 ? e[0] : '\0', sender, rcpts, message, file, 0, &problem);
    if (in == NULL) {
        croak("Net::QMTP::send: %" SVf, SVfARG(problem));
    }
    return in;
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
_configure(c, connect_s, io_s, stall_s, max_response, busy_wait_s, answers = QMTP_ANSWERS_AUTO)
    qmtp_client *c
    NV connect_s
    NV io_s
    NV stall_s
    UV max_response
    NV busy_wait_s
    int answers
  CODE:
    qmtp_set_timeouts(c, seconds_to_ms(connect_s), seconds_to_ms(io_s), seconds_to_ms(stall_s));
    qmtp_set_max_response(c, (size_t)max_response);
    qmtp_set_busy_wait(c, busy_wait_s > 0 ? (int64_t)(busy_wait_s * 1e6 + 0.5) : 0);
    if (qmtp_set_answers(c, answers) != QMTP_OK) {
        croak("Net::QMTP: %s", qmtp_errstr(c));
    }

void
_call_limit(c, seconds)
    qmtp_client *c
    SV *seconds
  CODE:
    /* Every wait from now on ends within this many seconds in all. */
    qmtp_set_call_limit(c, SvOK(seconds) && SvNV(seconds) > 0 ? seconds_to_ms(SvNV(seconds)) : 0);

void
_constants()
  PPCODE:
    /* The core's statuses and answering modes, and the glue's result
     * forms, by name, so that Perl never retypes them. */
    {
        static const struct { const char *name; int value; } table[] = {
            { "E_NOMEM", QMTP_E_NOMEM }, { "E_RESOLVE", QMTP_E_RESOLVE }, { "E_CONNECT", QMTP_E_CONNECT },
            { "E_IO", QMTP_E_IO }, { "E_TIMEOUT", QMTP_E_TIMEOUT }, { "E_EOF", QMTP_E_EOF },
            { "E_PROTO", QMTP_E_PROTO }, { "E_TOOBIG", QMTP_E_TOOBIG }, { "E_STATE", QMTP_E_STATE },
            { "E_ARG", QMTP_E_ARG }, { "E_FILE", QMTP_E_FILE }, { "E_INTR", QMTP_E_INTR },
            { "E_NOTSENT", QMTP_E_NOTSENT }, { "E_ANSWERS", QMTP_E_ANSWERS }, { "E_TLS", QMTP_E_TLS },
            { "ANSWERS_AUTO", QMTP_ANSWERS_AUTO }, { "ANSWERS_RECIPIENT", QMTP_ANSWERS_RECIPIENT },
            { "ANSWERS_PACKAGE", QMTP_ANSWERS_PACKAGE },
            { "RUNNING", QMTP_RUNNING },
            { "FORM_MANY", FORM_MANY }, { "FORM_STREAM", FORM_STREAM }, { "FORM_LEAN", FORM_LEAN },
        };
        size_t i;

        EXTEND(SP, (SSize_t)(2 * (sizeof table / sizeof table[0])));
        for (i = 0; i < sizeof table / sizeof table[0]; i++) {
            mPUSHp(table[i].name, strlen(table[i].name));
            mPUSHi(table[i].value);
        }
    }

int
_connect(c, host, port)
    qmtp_client *c
    SV *host
    SV *port
  PREINIT:
    const char *h;
    const char *p;
  CODE:
    h = c_string(aTHX_ host, "host name");
    p = c_string(aTHX_ port, "port");
    RETVAL = qmtp_connect(c, h, p) == QMTP_OK;
  OUTPUT:
    RETVAL

UV
_crlf_to_lf(sv)
    SV *sv
  PREINIT:
    char *buf;
    STRLEN len;
    size_t kept;
  CODE:
    /* For a string the caller made to be sent (the Email::Sender transport's
     * copy from as_string): converted in place, no second copy of the
     * message. Returns how many CRs went. */
    if (SvREADONLY(sv) || SvROK(sv)) {
        croak("Net::QMTP::_crlf_to_lf: needs a writable string");
    }
    buf = SvPV_force(sv, len); /* get-magic once; a shared (COW) buffer is unshared */
    kept = qmtp_crlf_to_lf(buf, len);
    if (kept != len) {
        SvCUR_set(sv, kept);
        buf[kept] = '\0';
        SvSETMAGIC(sv);
    }
    RETVAL = (UV)(len - kept);
  OUTPUT:
    RETVAL

int
_local_addr(c, addr)
    qmtp_client *c
    SV *addr
  CODE:
    SvGETMAGIC(addr);
    RETVAL = qmtp_set_local_addr(c, SvOK(addr) ? c_string(aTHX_ addr, "LocalAddr") : NULL) == QMTP_OK;
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
    if (c != NULL && qmtp_busy(c)) {
        qmtp_cancel(c, "cancelled: the Net::QMTP object was destroyed");
    }
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
    SV *rcpts
    SV *message
    SV *file
  PREINIT:
    SV *hash;
    AV *in;
    int rc;
  PPCODE:
    /* Returns the status, the result hash and the recipients as sent. */
    in = object_inputs(aTHX_ c, enc, sender, rcpts, message, file);
    rc = send_one(aTHX_ c, in, NULL, &hash);
    EXTEND(SP, 3);
    mPUSHi(rc);
    mPUSHs(hash);
    mPUSHs(newRV_inc((SV *)in_rcpts(aTHX_ in)));

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
    AV *in;
    int rc;
  PPCODE:
    /* send()'s usual case in one call: a message in memory, no Debug, and
     * an open connection within the session limit. Anything else returns
     * nothing, having changed nothing but the call limit, and send() takes
     * the long way. */
    c = sv_to_client(aTHX_ self, "Net::QMTP::send", 0);
    fields = (HV *)SvRV(self);
    limit = hash_field(aTHX_ fields, "QMTP_TOTAL");
    qmtp_set_call_limit(c, SvOK(limit) && SvNV(limit) > 0 ? seconds_to_ms(SvNV(limit)) : 0);
    sender = hash_field(aTHX_ fields, "SENDER");
    rcpts = hash_field(aTHX_ fields, "RECIPIENTS");
    message = hash_field(aTHX_ fields, "MESSAGE");
    enc = hash_field(aTHX_ fields, "ENCODING");
    limit = hash_field(aTHX_ fields, "SESSIONLIMIT");
    if (SvTRUE(hash_field(aTHX_ fields, "DEBUG")) || !SvOK(sender) ||
        !SvROK(rcpts) || SvTYPE(SvRV(rcpts)) != SVt_PVAV || SvRMAGICAL(SvRV(rcpts)) ||
        av_len((AV *)SvRV(rcpts)) < 0 ||
        !SvOK(message) || SvTRUE(hash_field(aTHX_ fields, "MSGFILE")) ||
        !SvTRUE(enc) || !SvTRUE(hash_field(aTHX_ fields, "QMTP_WANTED")) ||
        !qmtp_is_open(c) || !SvOK(limit) || past_session_limit(c, SvNV(limit))) {
        XSRETURN_EMPTY;
    }
    in = object_inputs(aTHX_ c, enc, sender, rcpts, message, NULL);
    /* As send() does on the long way (see there), assigning in place as
     * Perl's $self->{KEY} = ... does. */
    set_field(aTHX_ fields, "QMTP_ERROR", &PL_sv_undef);
    set_field(aTHX_ fields, "QMTP_RESPONSES", &PL_sv_undef);
    used = *hv_fetchs(fields, "QMTP_USED", 1);
    reused = SvOK(used) ? SvIV(used) : 0;
    sv_setiv(used, reused + 1);
    rc = send_one(aTHX_ c, in, *hv_fetchs(fields, "QMTP_LAST_RESULT", 1), &hash);
    /* Whatever a signal handler looked at during the send is stale now. */
    set_field(aTHX_ fields, "QMTP_RESPONSES", &PL_sv_undef);
    (void)hv_stores(fields, "QMTP_SENT_TO", newRV_inc((SV *)in_rcpts(aTHX_ in)));
    if (rc == QMTP_OK && qmtp_err(c) != QMTP_OK) {
        (void)hv_stores(fields, "QMTP_ERROR", newSVpv(qmtp_errstr(c), 0));
    }
    EXTEND(SP, 3);
    mPUSHi(rc);
    mPUSHs(hash);
    mPUSHi(reused);

void
_prepare_jobs(jobs, default_enc)
    AV *jobs
    SV *default_enc
  PREINIT:
    AV *inputs;
    SSize_t i;
    SSize_t n;
    STRLEN len;
    const char *e;
  PPCODE:
    /* Every job read once, checked and turned into bytes (see fetch_inputs):
     * an array of their inputs for _send_many, or the text of what is
     * wrong with the first job that is (send_many croaks with it, so that
     * the caller's line is named). */
    e = SvPV(default_enc, len);
    inputs = (AV *)sv_2mortal((SV *)newAV());
    n = av_len(jobs) + 1;
    av_extend(inputs, n);
    for (i = 0; i < n; i++) {
        SV *problem;
        AV *in = job_inputs(aTHX_ av_elem(aTHX_ jobs, i), (IV)i + 1, len == 1 ? e[0] : '\012', &problem);
        if (in == NULL) {
            XPUSHs(problem);
            XSRETURN(1);
        }
        av_push(inputs, newRV_inc((SV *)in));
    }
    XPUSHs(sv_2mortal(newRV_inc((SV *)inputs)));

void
_prepare_job(job, default_enc, n)
    SV *job
    SV *default_enc
    IV n
  PREINIT:
    AV *in;
    SV *problem;
    STRLEN len;
    const char *e;
  PPCODE:
    /* One job of a stream, as _prepare_jobs prepares each (n: its number,
     * for the problem text): its inputs, or the text of what is wrong. */
    e = SvPV(default_enc, len);
    in = job_inputs(aTHX_ job, n, len == 1 ? e[0] : '\012', &problem);
    XPUSHs(in != NULL ? sv_2mortal(newRV_inc((SV *)in)) : problem);

void
_send_many(c, inputs, form = FORM_MANY)
    qmtp_client *c
    AV *inputs
    int form
  PREINIT:
    struct glue *g;
    AV *built;
    AV *failed;
    int rc;
  PPCODE:
    /* inputs: from _prepare_jobs (a subset of them, in order). Returns the
     * run's status, the results in send_many's form, and [index, status]
     * of the jobs not answered in full. */
    ENTER;
    g = begin_sending(aTHX_ c);
    built = build_batch(aTHX_ c, inputs);
    rc = qmtp_pkg_count(c) > 0 ? qmtp_run_overlapped(c, let_messages_change, g) : QMTP_OK;
    LEAVE;
    failed = (AV *)sv_2mortal((SV *)newAV());
    EXTEND(SP, 3);
    mPUSHi(rc);
    mPUSHs(newRV_inc((SV *)batch_outcomes(aTHX_ c, inputs, built, failed, form)));
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

int
_nb_connect(self, host, port)
    SV *self
    SV *host
    SV *port
  PREINIT:
    qmtp_client *c;
    const char *h;
    const char *p;
  CODE:
    /* Starts connecting: 1 under way (step it), 0 connected, or a status. */
    c = async_client(aTHX_ self, "Net::QMTP::_nb_connect");
    h = c_string(aTHX_ host, "host name");
    p = c_string(aTHX_ port, "port");
    RETVAL = qmtp_connect_start(c, h, p);
  OUTPUT:
    RETVAL

void
_nb_start(self, inputs)
    SV *self
    AV *inputs
  PREINIT:
    qmtp_client *c;
    struct glue *g;
    AV *built;
    int rc;
  PPCODE:
    /* Lays out the jobs (inputs from _prepare_job) and starts their run.
     * Returns the status (1: under way) and the jobs' layout for
     * _nb_outcomes. The caller keeps inputs, and their messages read-only
     * (Net::QMTP::_ReadOnly), until the run is over: the core writes from
     * their buffers; _nb_step checks that none has moved. */
    c = async_client(aTHX_ self, "Net::QMTP::_nb_start");
    g = glue_of(c);
    if (qmtp_busy(c)) {
        croak("Net::QMTP: a non-blocking send is under way already");
    }
    if (g->async_held == NULL) {
        g->async_held = newSVpvs("");
    }
    sv_setpvs(g->async_held, "");
    ENTER;
    SAVEVPTR(g->held);
    g->held = g->async_held;
    built = build_batch(aTHX_ c, inputs);
    LEAVE;
    rc = qmtp_pkg_count(c) > 0 ? qmtp_run_start(c) : QMTP_OK;
    EXTEND(SP, 2);
    mPUSHi(rc);
    mPUSHs(newRV_inc((SV *)built));

void
_nb_wants(self)
    SV *self
  PREINIT:
    qmtp_client *c;
    int fd;
    int events;
    int64_t deadline;
    int64_t left;
  PPCODE:
    /* fd (undef: none), want read, want write, seconds to the deadline,
     * and the connection's serial; nothing when nothing is under way. */
    c = async_client(aTHX_ self, "Net::QMTP::async_wants");
    if (qmtp_wants(c, &fd, &events, &deadline) != QMTP_OK) {
        XSRETURN_EMPTY;
    }
    left = deadline - qmtp_clock_ms();
    EXTEND(SP, 5);
    PUSHs(fd >= 0 ? sv_2mortal(newSViv(fd)) : &PL_sv_undef);
    PUSHs(boolSV(events & QMTP_WANT_READ));
    PUSHs(boolSV(events & QMTP_WANT_WRITE));
    mPUSHn(left > 0 ? (NV)left / 1000.0 : 0.0);
    mPUSHu((UV)qmtp_connection_serial(c));

int
_nb_step(self, readable, writable)
    SV *self
    bool readable
    bool writable
  PREINIT:
    qmtp_client *c;
    struct glue *g;
  CODE:
    /* Moves the send or connect on: 1 while under way, else its status. */
    c = async_client(aTHX_ self, "Net::QMTP::async_ready");
    g = glue_of(c);
    if (g->async_held != NULL && SvCUR(g->async_held) > 0 && qmtp_busy(c)) {
        SV *was = g->held;
        int moved;

        g->held = g->async_held;
        moved = held_moved(aTHX_ g);
        g->held = was;
        if (moved) {
            /* Not another byte from a buffer that may be freed. */
            RETVAL = qmtp_cancel(c, "a message was changed while it was being sent; "
                                    "the connection is closed before the rest goes out");
            sv_setpvs(g->async_held, "");
            XSRETURN_IV(RETVAL);
        }
    }
    RETVAL = qmtp_step(c, (readable ? QMTP_WANT_READ : 0) | (writable ? QMTP_WANT_WRITE : 0));
    if (RETVAL != QMTP_RUNNING && g->async_held != NULL) {
        sv_setpvs(g->async_held, "");
    }
  OUTPUT:
    RETVAL

int
_nb_cancel(self, why)
    SV *self
    SV *why
  PREINIT:
    qmtp_client *c;
  CODE:
    /* Ends what is under way (never croaks: DESTROY calls it). */
    c = find_client(aTHX_ self);
    RETVAL = c != NULL && qmtp_busy(c) ? qmtp_cancel(c, SvPV_nolen(why)) : QMTP_E_STATE;
    if (c != NULL && glue_of(c)->async_held != NULL) {
        sv_setpvs(glue_of(c)->async_held, "");
    }
  OUTPUT:
    RETVAL

int
_nb_busy(self)
    SV *self
  PREINIT:
    qmtp_client *c;
  CODE:
    c = find_client(aTHX_ self);
    RETVAL = c != NULL && qmtp_busy(c);
  OUTPUT:
    RETVAL

void
_nb_outcomes(self, inputs, built, form)
    SV *self
    AV *inputs
    AV *built
    int form
  PREINIT:
    qmtp_client *c;
    AV *failed;
  PPCODE:
    /* After the run: the results and failures as _send_many returns them. */
    c = async_client(aTHX_ self, "Net::QMTP::_nb_outcomes");
    failed = (AV *)sv_2mortal((SV *)newAV());
    EXTEND(SP, 2);
    mPUSHs(newRV_inc((SV *)batch_outcomes(aTHX_ c, inputs, built, failed, form)));
    mPUSHs(newRV_inc((SV *)failed));

int
_can_tls()
  CODE:
    RETVAL = qmtp_tls_available();
  OUTPUT:
    RETVAL

int
_tls(c, enable, verify, ca_file, ca_path, name, pins, cert, key, min_version, key_password)
    qmtp_client *c
    int enable
    int verify
    SV *ca_file
    SV *ca_path
    SV *name
    SV *pins
    SV *cert
    SV *key
    int min_version
    SV *key_password
  PREINIT:
    qmtp_tls_options o;
    STRLEN len = 0;
  CODE:
    /* The TLS settings as lib/ checked them (pins: 32-byte fingerprints,
     * one after another). 1, or 0 with the client's error saying why. */
    memset(&o, 0, sizeof o);
    o.enable = enable;
    o.verify = verify;
    o.ca_file = SvOK(ca_file) ? c_string(aTHX_ ca_file, "SSL_ca_file") : NULL;
    o.ca_path = SvOK(ca_path) ? c_string(aTHX_ ca_path, "SSL_ca_path") : NULL;
    o.server_name = SvOK(name) ? c_string(aTHX_ name, "SSL_hostname") : NULL;
    o.cert_file = SvOK(cert) ? c_string(aTHX_ cert, "SSL_cert_file") : NULL;
    o.key_file = SvOK(key) ? c_string(aTHX_ key, "SSL_key_file") : NULL;
    o.key_password = SvOK(key_password) ? c_string(aTHX_ key_password, "the password of SSL_key_file") : NULL;
    if (SvOK(pins)) {
        o.pins = (const unsigned char *)SvPVbyte(pins, len);
        o.npins = len / 32;
    }
    o.min_version = min_version;
    RETVAL = qmtp_set_tls(c, &o) == QMTP_OK;
  OUTPUT:
    RETVAL
