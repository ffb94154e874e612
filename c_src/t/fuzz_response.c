/* libFuzzer target: the response parser (QMTP §5) on arbitrary server bytes.
 * Checks that it never reads outside the input, that what it accepts
 * re-encodes to exactly the bytes it consumed, and that feeding any prefix
 * gives "need more" or the same verdict (so a byte-at-a-time server is
 * parsed exactly like one that sends everything at once). */
#include "../response.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t max;
    char *buf;
    size_t pos = 1;

    if (size == 0) {
        return 0;
    }
    max = data[0] < 128 ? data[0] : 65536; /* small caps reach TOO_LONG */
    buf = malloc(size); /* an exact-size copy: ASan sees any overread */
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    while (pos < size) {
        char code = 0;
        const char *text = NULL;
        size_t text_len = 0;
        long n = qmtp_response_parse(buf + pos, size - pos, max, &code, &text, &text_len);
        size_t cut;

        if (n > 0) {
            char head[QMTP_NS_HEADER_MAX];
            size_t h = qmtp_ns_header(head, text_len + 1);

            if ((size_t)n != h + 1 + text_len + 1 || (size_t)n > size - pos ||
                memcmp(buf + pos, head, h) != 0 || buf[pos + h] != code ||
                text != buf + pos + h + 1 || buf[pos + n - 1] != ',' ||
                (code != 'K' && code != 'Z' && code != 'D') || text_len + 1 > max) {
                abort();
            }
        }
        for (cut = 0; cut < size - pos && cut < 64; cut++) {
            long m = qmtp_response_parse(buf + pos, cut, max, &code, &text, &text_len);
            if (m != QMTP_NS_PARTIAL && m != n) {
                abort();
            }
            if (m > 0 && (size_t)m > cut) {
                abort();
            }
        }
        if (n <= 0) {
            break;
        }
        pos += (size_t)n;
    }
    free(buf);
    return 0;
}
