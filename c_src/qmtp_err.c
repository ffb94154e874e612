/* Error reporting: one status convention, details kept in the client. */
#include "qmtp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *qmtp_strerror(int status)
{
    switch (status) {
    case QMTP_OK:        return "success";
    case QMTP_E_NOMEM:   return "out of memory";
    case QMTP_E_RESOLVE: return "host name lookup failed";
    case QMTP_E_CONNECT: return "connection failed";
    case QMTP_E_IO:      return "I/O error";
    case QMTP_E_TIMEOUT: return "timed out";
    case QMTP_E_EOF:     return "connection closed by the server";
    case QMTP_E_PROTO:   return "protocol violation by the server";
    case QMTP_E_TOOBIG:  return "size too large";
    case QMTP_E_STATE:   return "not connected";
    case QMTP_E_ARG:     return "invalid argument";
    case QMTP_E_FILE:    return "message file error";
    case QMTP_E_INTR:    return "interrupted";
    case QMTP_E_NOTSENT: return "not sent";
    case QMTP_E_ANSWERS: return "the server's answers did not match its packages";
    case QMTP_E_TLS:     return "TLS handshake or certificate check failed";
    default:             return "unknown error";
    }
}

int qmtp_fail(qmtp_client *c, int status, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    size_t used;

    c->err = status;
    c->sys_errno = sys_errno;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
    va_end(ap);
    used = strlen(c->errstr);
    if (sys_errno != 0 && used < sizeof c->errstr - 3) {
        /* strerror_r comes in two incompatible flavours; glibc's and the
         * BSDs' strerror give static text for every errno we can see. */
        snprintf(c->errstr + used, sizeof c->errstr - used, ": %s", strerror(sys_errno));
    }
    return status;
}

int qmtp_err(const qmtp_client *c)
{
    return c->err;
}

const char *qmtp_errstr(const qmtp_client *c)
{
    return c->errstr;
}

int qmtp_sys_errno(const qmtp_client *c)
{
    return c->sys_errno;
}
