/* Netstrings (QMTP §6): LEN ":" BYTES ",".
 * A pure codec: no I/O, no allocation. The decoder takes whatever bytes the
 * transport has and says how many form one netstring, or that more are
 * needed, or that they can never form one (picohttpparser's contract). */
#ifndef QMTP_NETSTRING_H
#define QMTP_NETSTRING_H

#include <stddef.h>

/* Room for the longest header: 20 digits of a 64-bit size_t plus ':'. */
#define QMTP_NS_HEADER_MAX 21

/* The largest length the decoder accepts, whatever cap the caller asks
 * for: nine digits, so accumulating a length can never overflow. */
#define QMTP_NS_LEN_DIGITS_MAX 9

enum qmtp_ns_status {
    QMTP_NS_BAD_LENGTH = -1, /* empty, non-digit, sign, space, leading zero or 10+ digits */
    QMTP_NS_PARTIAL = -2,    /* a valid prefix: feed more bytes */
    QMTP_NS_TOO_LONG = -3,   /* well formed, but the length is over the caller's cap */
    QMTP_NS_NO_COMMA = -4    /* the byte after the payload is not ',' */
};

/* Writes "LEN:" for a payload of len bytes into out (QMTP_NS_HEADER_MAX bytes,
 * not NUL-terminated). Returns the number of bytes written. */
size_t qmtp_ns_header(char *out, size_t len);

/* Total encoded size of a len-byte payload into *total. Returns 0, or -1 if
 * it would not fit in a size_t. */
int qmtp_ns_encoded_size(size_t len, size_t *total);

/* Decodes the netstring at the start of buf[0..len). On success returns the
 * bytes it spans (> 0) and points *payload into buf (borrowed: valid while
 * buf is) with *payload_len bytes. Otherwise returns a QMTP_NS_* status and
 * leaves the outputs alone. Lengths over max are QMTP_NS_TOO_LONG as soon as
 * the ':' is seen, before any payload is waited for. */
long qmtp_ns_decode(const char *buf, size_t len, size_t max,
                    const char **payload, size_t *payload_len);

#endif
