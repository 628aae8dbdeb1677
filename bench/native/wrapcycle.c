/* The owner of `make bench`: full owner cycles against a wrap server's Unix API, timed
 * phase by phase, so that the reference server and the C anchor face the same client.
 *
 *   wrapcycle --api PATH --seconds S
 *
 * One cycle: POST /api/v1/sessions, POST .../wrap-init, then the handoff: connect to the
 * notify socket, a pipe holding the token, sendmsg(magic + wrapper pid, SCM_RIGHTS read
 * end), read the status byte.  The wrapper pid is a child forked once (its parent is the
 * peer, as the hardened check wants).  Prints one JSON line: cycles, failures and the
 * seconds spent in each phase.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { close(fd); return -1; }
    return fd;
}

/* One request, Connection: close; the answer's status, its body copied to *body*. */
static int request(const char *api, const char *line, const char *body, char *out, size_t cap) {
    char req[1024];
    int n = snprintf(req, sizeof req, "%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     line, strlen(body), body);
    int fd = dial(api);
    if (fd < 0) return -1;
    if (write(fd, req, n) != n) { close(fd); return -1; }
    size_t got = 0;
    ssize_t r;
    while (got < cap - 1 && (r = read(fd, out + got, cap - 1 - got)) > 0) got += r;
    close(fd);
    out[got] = 0;
    int status = -1;
    if (sscanf(out, "HTTP/1.%*d %d", &status) != 1) return -1;
    char *b = strstr(out, "\r\n\r\n");
    if (b) memmove(out, b + 4, strlen(b + 4) + 1);
    return status;
}

static int field(const char *json, const char *key, char *val, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(json, pat);
    if (!p) return -1;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= cap) return -1;
    memcpy(val, p, e - p);
    val[e - p] = 0;
    return 0;
}

static int handoff(const char *path, int wrapper) {
    int fd = dial(path);
    if (fd < 0) return -1;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) { close(fd); return -1; }
    if (write(pfd[1], "bench-token", 11) != 11) { /* the pipe has room */ }
    close(pfd[1]);
    unsigned char data[5] = {0xA7};
    memcpy(data + 1, &wrapper, 4);
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = data, .iov_len = 5};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pfd[0], sizeof(int));
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
    close(pfd[0]);
    unsigned char status = 0;
    ssize_t r = sent == 5 ? read(fd, &status, 1) : -1;
    close(fd);
    return r == 1 && status == 1 ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *api = NULL;
    double seconds = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--api")) api = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
    }
    if (!api) { fprintf(stderr, "wrapcycle: --api is required\n"); return 2; }
    pid_t wrapper = fork();
    if (wrapper == 0) { pause(); _exit(0); }
    long cycles = 0, failed = 0;
    double t_session = 0, t_init = 0, t_handoff = 0;
    char out[8192], sid[256], path[512], line[512];
    double start = now(), end = start + seconds;
    while (now() < end) {
        double t0 = now();
        int st = request(api, "POST /api/v1/sessions", "", out, sizeof out);
        double t1 = now();
        if (st != 201 || field(out, "id", sid, sizeof sid)) { failed++; continue; }
        snprintf(line, sizeof line, "POST /api/v1/sessions/%s/wrap-init", sid);
        st = request(api, line, "{\"agent_command\": \"bench\"}", out, sizeof out);
        double t2 = now();
        if (st != 200 || field(out, "notify_socket", path, sizeof path)) { failed++; continue; }
        int ok = handoff(path, wrapper) == 0;
        double t3 = now();
        t_session += t1 - t0;
        t_init += t2 - t1;
        t_handoff += t3 - t2;
        if (ok) cycles++; else failed++;
    }
    double wall = now() - start;
    kill(wrapper, SIGKILL);
    waitpid(wrapper, NULL, 0);
    printf("{\"cycles\": %ld, \"failed\": %ld, \"wall\": %.6f, \"session\": %.6f, "
           "\"wrap_init\": %.6f, \"handoff\": %.6f}\n", cycles, failed, wall, t_session, t_init,
           t_handoff);
    return 0;
}
