/* Netstring codec, QMTP §6. See netstring.h for the contracts. */
#include "netstring.h"

#include <stdint.h>

size_t qmtp_ns_header(char *out, size_t len)
{
    char digits[QMTP_NS_HEADER_MAX];
    size_t n = 0;
    size_t i;

    do {
        digits[n++] = (char)('0' + len % 10);
        len /= 10;
    } while (len > 0);
    for (i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    out[n] = ':';
    return n + 1;
}

int qmtp_ns_encoded_size(size_t len, size_t *total)
{
    char scratch[QMTP_NS_HEADER_MAX];
    size_t overhead = qmtp_ns_header(scratch, len) + 1;

    if (len > SIZE_MAX - overhead) {
        return -1;
    }
    *total = len + overhead;
    return 0;
}

long qmtp_ns_decode(const char *buf, size_t len, size_t max,
                    const char **payload, size_t *payload_len)
{
    size_t value = 0;
    size_t pos = 0;

    if (max > 999999999) {
        max = 999999999;
    }
    /* The spec allows exactly one spelling of each length: no sign, no
     * space, no leading zero. Anything else is a different protocol. */
    for (;;) {
        unsigned char ch;

        if (pos == len) {
            return QMTP_NS_PARTIAL;
        }
        ch = (unsigned char)buf[pos];
        if (ch == ':') {
            if (pos == 0) {
                return QMTP_NS_BAD_LENGTH;
            }
            break;
        }
        if (ch < '0' || ch > '9') {
            return QMTP_NS_BAD_LENGTH;
        }
        if (pos == 1 && buf[0] == '0') {
            return QMTP_NS_BAD_LENGTH;
        }
        if (pos == QMTP_NS_LEN_DIGITS_MAX) {
            return QMTP_NS_BAD_LENGTH;
        }
        value = value * 10 + (size_t)(ch - '0');
        pos++;
    }
    if (value > max) {
        return QMTP_NS_TOO_LONG;
    }
    pos++; /* the ':' */
    if (len - pos <= value) {
        return QMTP_NS_PARTIAL;
    }
    if (buf[pos + value] != ',') {
        return QMTP_NS_NO_COMMA;
    }
    *payload = buf + pos;
    *payload_len = value;
    return (long)(pos + value + 1);
}
