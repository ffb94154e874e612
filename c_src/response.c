/* QMTP §5 responses on top of the netstring codec. */
#include "response.h"

long qmtp_response_parse(const char *buf, size_t len, size_t max, char *code,
                         const char **text, size_t *text_len)
{
    const char *payload = NULL;
    size_t payload_len = 0;
    long n = qmtp_ns_decode(buf, len, max, &payload, &payload_len);

    if (n < 0) {
        return n;
    }
    if (payload_len == 0) {
        return QMTP_RESP_EMPTY;
    }
    if (payload[0] != 'K' && payload[0] != 'Z' && payload[0] != 'D') {
        return QMTP_RESP_BAD_STATUS;
    }
    *code = payload[0];
    *text = payload + 1;
    *text_len = payload_len - 1;
    return n;
}

const char *qmtp_response_strerror(long status)
{
    switch (status) {
    case QMTP_NS_BAD_LENGTH:   return "has a malformed length";
    case QMTP_NS_PARTIAL:      return "is incomplete";
    case QMTP_NS_TOO_LONG:     return "is longer than the limit";
    case QMTP_NS_NO_COMMA:     return "is not terminated by ','";
    case QMTP_RESP_EMPTY:      return "is empty";
    case QMTP_RESP_BAD_STATUS: return "has a status byte other than K, Z or D";
    default:                   return "is invalid";
    }
}
