/* A fast UDP sender for the benchmarks: N datagrams from a file of lines, cycled,
 * to 127.0.0.1:PORT with sendmmsg in batches, optionally paced to RATE per second.
 * usage: udpflood PORT N LINESFILE [RATE] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: udpflood PORT N LINESFILE [RATE]\n"); return 2; }
    int port = atoi(argv[1]); long n = atol(argv[2]); double rate = argc > 4 ? atof(argv[4]) : 0;
    FILE *f = fopen(argv[3], "r"); if (!f) { perror("lines"); return 2; }
    char *lines[4096]; size_t lens[4096]; int nl = 0; char *buf = NULL; size_t cap = 0; ssize_t len;
    while (nl < 4096 && (len = getline(&buf, &cap, f)) > 0) {
        if (buf[len - 1] == '\n') len--;
        lines[nl] = malloc(len); memcpy(lines[nl], buf, len); lens[nl++] = len;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); return 2; }
    struct mmsghdr msgs[BATCH]; struct iovec iov[BATCH];
    double start = now(); long sent = 0;
    while (sent < n) {
        int b = 0;
        for (; b < BATCH && sent + b < n; b++) {
            int i = (sent + b) % nl;
            iov[b].iov_base = lines[i]; iov[b].iov_len = lens[i];
            memset(&msgs[b], 0, sizeof msgs[b]);
            msgs[b].msg_hdr.msg_iov = &iov[b]; msgs[b].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(s, msgs, b, 0);
        if (r > 0) sent += r;
        if (rate > 0) { double due = start + sent / rate; double w = due - now(); if (w > 0) usleep(w * 1e6); }
    }
    double el = now() - start;
    printf("%ld %.6f\n", sent, el);
    return 0;
}
