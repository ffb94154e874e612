/* libFuzzer target: the package writer round trip (QMTP §4). Arbitrary
 * sender, recipients and message go through qmtp_pkg_*; the bytes it lays
 * out (head, body, tail) must decode back to exactly those fields. */
#include "../qmtp_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t take(const uint8_t **data, size_t *size, size_t want)
{
    size_t n = want < *size ? want : *size;
    *data += n;
    *size -= n;
    return n;
}

/* Decodes one netstring from wire[*pos..len) or aborts. */
static const char *expect_ns(const char *wire, size_t len, size_t *pos, size_t *plen)
{
    const char *p = NULL;
    long n = qmtp_ns_decode(wire + *pos, len - *pos, (size_t)-1, &p, plen);

    if (n <= 0) {
        abort();
    }
    *pos += (size_t)n;
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qmtp_client *c;
    const uint8_t *sender;
    size_t sender_len;
    size_t nrcpt;
    const uint8_t *rcpt[16];
    size_t rcpt_len[16];
    char enc;
    size_t i;
    struct qmtp_pkg *p;
    char *wire;
    size_t len;
    size_t pos = 0;
    size_t plen;
    const char *f;

    if (size < 3) {
        return 0;
    }
    enc = (data[0] & 1) ? '\r' : '\n';
    nrcpt = 1 + data[1] % 16;
    sender_len = data[2] % 64;
    take(&data, &size, 3);
    sender = data;
    sender_len = take(&data, &size, sender_len);
    for (i = 0; i < nrcpt; i++) {
        size_t want = size > 0 ? data[0] % 32 : 0;
        take(&data, &size, 1);
        rcpt[i] = data;
        rcpt_len[i] = take(&data, &size, want);
    }
    c = qmtp_new();
    if (c == NULL) {
        return 0;
    }
    if (qmtp_pkg_begin(c, enc, (const char *)sender, sender_len) != 0) {
        abort();
    }
    for (i = 0; i < nrcpt; i++) {
        if (qmtp_pkg_recipient(c, (const char *)rcpt[i], rcpt_len[i]) != 0) {
            abort();
        }
    }
    if (qmtp_pkg_body(c, (const char *)data, size) != 0 || qmtp_pkg_end(c) != 0 || c->npkgs != 1) {
        abort();
    }
    p = &c->pkgs[0];
    len = p->head_len + size + p->tail_len;
    wire = malloc(len);
    memcpy(wire, c->out.p + p->head_off, p->head_len);
    memcpy(wire + p->head_len, data, size);
    memcpy(wire + p->head_len + size, c->out.p + p->tail_off, p->tail_len);

    f = expect_ns(wire, len, &pos, &plen);
    if (plen != size + 1 || f[0] != enc || memcmp(f + 1, data, size) != 0) {
        abort();
    }
    f = expect_ns(wire, len, &pos, &plen);
    if (plen != sender_len || memcmp(f, sender, plen) != 0) {
        abort();
    }
    f = expect_ns(wire, len, &pos, &plen);
    if (pos != len) {
        abort(); /* nothing after the third netstring */
    }
    {
        size_t inner = 0;
        for (i = 0; i < nrcpt; i++) {
            size_t rl;
            const char *r = expect_ns(f, plen, &inner, &rl);
            if (rl != rcpt_len[i] || memcmp(r, rcpt[i], rl) != 0) {
                abort();
            }
        }
        if (inner != plen) {
            abort();
        }
    }
    free(wire);
    qmtp_free(c);
    return 0;
}
