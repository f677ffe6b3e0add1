/* An evenly paced UDP sender for bench/cost.py and bench/latency.py: N single datagrams
 * (one sendto each, never a burst) at RATE per second, from a file of lines, cycled,
 * to 127.0.0.1:PORT (and the same bytes to each further PORT right after: a pair, and
 * rsyslog beside it, get the very same datagrams at the same moment). Each payload
 * ends with " seq=<n> t=<CLOCK_MONOTONIC ns at send>", so every payload is unique and a
 * reader of the sink can compute each line's latency (Python's time.monotonic_ns() reads
 * the same clock). Sleeps with clock_nanosleep(TIMER_ABSTIME) to each due time, timer
 * slack 1 ns; a sender that falls behind sends at once (counted as "late").
 * usage: udppace N RATE LINESFILE PORT [PORT...]  (at most 4 ports)
 * prints: sent seconds late */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: udppace N RATE LINESFILE PORT [PORT...]\n"); return 2; }
    long n = atol(argv[1]); double rate = atof(argv[2]);
    FILE *f = fopen(argv[3], "r"); if (!f) { perror("lines"); return 2; }
    int nports = argc - 4 > 4 ? 4 : argc - 4;
    char *lines[4096]; size_t lens[4096]; int nl = 0; char *buf = NULL; size_t cap = 0; ssize_t len;
    while (nl < 4096 && (len = getline(&buf, &cap, f)) > 0) {
        if (buf[len - 1] == '\n') len--;
        lines[nl] = malloc(len); memcpy(lines[nl], buf, len); lens[nl++] = len;
    }
    if (nl == 0 || rate <= 0) { fprintf(stderr, "no lines, or RATE <= 0\n"); return 2; }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to[4];
    for (int p = 0; p < nports; p++) {
        memset(&to[p], 0, sizeof to[p]);
        to[p].sin_family = AF_INET; to[p].sin_port = htons(atoi(argv[4 + p]));
        inet_pton(AF_INET, "127.0.0.1", &to[p].sin_addr);
    }
    char out[70000];
    long long start = now_ns(), step = (long long)(1e9 / rate); long late = 0;
    for (long i = 0; i < n; i++) {
        long long due = start + i * step;
        long long t = now_ns();
        if (t < due) {
            struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        } else if (t - due > step) {
            late++;
        }
        int k = i % nl;
        memcpy(out, lines[k], lens[k]);
        int m = (int)lens[k] + snprintf(out + lens[k], sizeof out - lens[k], " seq=%ld t=%lld", i, now_ns());
        for (int p = 0; p < nports; p++)
            sendto(s, out, m, 0, (struct sockaddr *)&to[p], sizeof to[p]);
    }
    printf("%ld %.6f %ld\n", n, (now_ns() - start) / 1e9, late);
    return 0;
}
