/* What the C test programs share: the descriptors a process has open. */
#ifndef QMTP_TEST_FDS_H
#define QMTP_TEST_FDS_H

#include <dirent.h>

/* Descriptors this process has open (Linux's /proc), or -1. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1; /* the directory's own */
}

#endif
