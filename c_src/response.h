/* QMTP responses (§5): a non-empty netstring whose first byte is the
 * status. A pure parser: bytes in, one response or a verdict out. */
#ifndef QMTP_RESPONSE_H
#define QMTP_RESPONSE_H

#include "netstring.h"

enum qmtp_response_status {
    QMTP_RESP_EMPTY = -5,     /* "0:," carries no status */
    QMTP_RESP_BAD_STATUS = -6 /* first byte is not K, Z or D */
};

/* Parses the response at the start of buf[0..len), whose payload may be at
 * most max bytes. Returns the bytes it spans (> 0), with *code ('K', 'Z' or
 * 'D') and the text after the status byte in *text, *text_len (borrowed from buf);
 * QMTP_NS_PARTIAL when more bytes are needed; otherwise a negative
 * QMTP_NS_* or QMTP_RESP_* status: these bytes can never be a response. */
long qmtp_response_parse(const char *buf, size_t len, size_t max, char *code,
                         const char **text, size_t *text_len);

/* Completes "response N ..." for a negative parser status, e.g. "is empty". */
const char *qmtp_response_strerror(long status);

#endif
