/* The C anchor of `make bench`: a wrap server doing the reference server's syscalls for
 * one wrap (hardened or agentsh layout, notify socket), in one epoll loop, no threads.
 *
 *   wrapsrv --api PATH --temp-base DIR --profile hardened|agentsh [--window S]
 *   wrapsrv --drain PATH [--backlog N]      (the flood target: accept, SO_PEERCRED, close)
 *
 * API (Unix socket, one request per connection, Connection: close):
 *   GET /healthz, POST /api/v1/sessions, POST /api/v1/sessions/ID/wrap-init.
 * wrap-init: mkdir a random wrap-* directory (0700), socket + fchmod 0600 (hardened) + bind
 * + listen, chmod/lstat validation as the layout does, open a directory fd (hardened),
 * a JSON answer with notify_socket, a log line.  The notify loop: accept4, SO_PEERCRED,
 * uid check, recvmsg (16 bytes, room for 8 fds, MSG_CMSG_CLOEXEC), exactly one fd, the
 * wrapper pid's /proc status (hardened), a non-blocking token read until EOF, a status byte,
 * then unlinkat + rmdir (fd-relative) and a log line.  A window deadline per wrap.
 * Only a benchmark anchor: it trusts its one client and checks little else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 4096
enum { K_FREE, K_API, K_WRAPLISTEN, K_WRAPCONN };

struct slot {
    int kind, fd, len, wrap;
    char buf[8192];
};
struct wrap {
    int used, lfd, dirfd, conn;
    double deadline;
    char dir[256], name[64], sock[300];
};

static struct slot slots[MAXCONN];
static struct wrap wraps[1024];
static int ep, logfd = 2, hardened;
static double window_s = 30;
static const char *tbase;
static unsigned long nsessions;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void logline(const char *msg, const char *dir) {
    char line[512];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(line, sizeof line, "{\"ts\": %ld.%06ld, \"level\": \"info\", \"msg\": \"%s\","
                     " \"dir\": \"%s\"}\n", (long)ts.tv_sec, ts.tv_nsec / 1000, msg, dir);
    if (write(logfd, line, n) < 0) { /* best effort */ }
}

static void watch(int fd, int kind, int wrap) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd >= MAXCONN) { close(fd); return; }
    slots[fd].kind = kind;
    slots[fd].fd = fd;
    slots[fd].len = 0;
    slots[fd].wrap = wrap;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void drop(int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    slots[fd].kind = K_FREE;
    close(fd);
}

static void reply(int fd, int status, const char *body) {
    char out[2048];
    const char *text = status == 200 ? "OK" : status == 201 ? "Created" : "Error";
    int n = snprintf(out, sizeof out, "HTTP/1.1 %d %s\r\nServer: wrapsrv\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, text, strlen(body), body);
    if (send(fd, out, n, MSG_NOSIGNAL) < 0) { /* the client went away */ }
}

static void end_wrap(int w) {
    struct wrap *wr = &wraps[w];
    if (wr->lfd >= 0) drop(wr->lfd);
    if (wr->conn >= 0) drop(wr->conn);
    if (wr->dirfd >= 0) {
        unlinkat(wr->dirfd, wr->name, 0);
        close(wr->dirfd);
    } else {
        unlink(wr->sock);
    }
    rmdir(wr->dir);
    logline("wrap: directory removed", wr->dir);
    wr->used = 0;
}

static int wrap_init(char *resp, size_t cap) {
    int w;
    for (w = 0; w < 1024 && wraps[w].used; w++) {}
    if (w == 1024) return 503;
    struct wrap *wr = &wraps[w];
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) return 500;
    snprintf(wr->dir, sizeof wr->dir, "%s/wrap-%02x%02x%02x%02x%02x%02x", tbase, rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5]);
    if (mkdir(wr->dir, 0700) < 0) return 500;
    snprintf(wr->name, sizeof wr->name, "notify-%02x%02x%02x.sock", rnd[0], rnd[1], rnd[2]);
    snprintf(wr->sock, sizeof wr->sock, "%s/%s", wr->dir, wr->name);
    struct stat st;
    wr->dirfd = -1;
    if (hardened) {
        wr->dirfd = open(wr->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } else {
        chown(wr->dir, getuid(), -1);
        chmod(wr->dir, 0700);
        stat(wr->dir, &st);
    }
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (hardened) fchmod(lfd, 0600);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, wr->sock, sizeof sa.sun_path - 1);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, hardened ? 8 : 4096) < 0) {
        close(lfd);
        rmdir(wr->dir);
        return 500;
    }
    if (hardened) {
        lstat(wr->dir, &st);  /* validation: type, mode, owner of the directory and socket */
        lstat(wr->sock, &st);
    } else {
        chown(wr->sock, getuid(), -1);
        chmod(wr->sock, 0600);
        stat(wr->sock, &st);
    }
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    wr->used = 1;
    wr->lfd = lfd;
    wr->conn = -1;
    wr->deadline = now() + window_s;
    watch(lfd, K_WRAPLISTEN, w);
    logline("wrap_init", wr->dir);
    snprintf(resp, cap, "{\"ptrace_mode\": false, \"safe_to_bypass_shell_shim\": false, "
             "\"wrapper_binary\": \"wrapsrv\", \"stub_binary\": \"\", \"notify_socket\": \"%s\", "
             "\"wrapper_env\": {}, \"env_inject\": {}, \"env_policy\": null, "
             "\"fs_isolation\": \"same-uid\"}\n", wr->sock);
    return 200;
}

static void api_request(struct slot *s) {
    char *end = memmem(s->buf, s->len, "\r\n\r\n", 4);
    if (!end) {
        if (s->len >= (int)sizeof s->buf - 1) { reply(s->fd, 431, "{}"); drop(s->fd); }
        return;
    }
    long clen = 0;
    char *cl = strcasestr(s->buf, "\r\ncontent-length:");
    if (cl && cl < end) clen = strtol(cl + 17, NULL, 10);
    if (clen < 0 || clen > (long)sizeof s->buf) { reply(s->fd, 413, "{}"); drop(s->fd); return; }
    if (end + 4 + clen > s->buf + s->len) return;  /* body not complete yet */
    struct ucred cred;
    socklen_t cl_len = sizeof cred;
    getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl_len);
    char resp[1024];
    int status = 404;
    strcpy(resp, "{\"error\": \"not found\"}\n");
    if (!strncmp(s->buf, "GET /healthz ", 13)) {
        status = 200;
        snprintf(resp, sizeof resp, "{\"ok\": true, \"pid\": %d}\n", getpid());
    } else if (!strncmp(s->buf, "POST /api/v1/sessions ", 22)) {
        status = 201;
        unsigned char rnd[8];
        if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) { /* the counter suffices */ }
        snprintf(resp, sizeof resp, "{\"id\": \"s-%02x%02x%02x%02x-%lu\"}\n", rnd[0], rnd[1],
                 rnd[2], rnd[3], ++nsessions);
        logline("session created", "");
    } else if (!strncmp(s->buf, "POST /api/v1/sessions/", 22) &&
               memmem(s->buf, end - s->buf, "/wrap-init ", 11)) {
        status = wrap_init(resp, sizeof resp);
        if (status != 200) snprintf(resp, sizeof resp, "{\"error\": \"wrap-init %d\"}\n", status);
    }
    reply(s->fd, status, resp);
    drop(s->fd);
}

static int proc_ppid(int pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strstr(buf, "\nPPid:");
    return p ? atoi(p + 6) : -1;
}

static void handshake(struct slot *s) {
    int w = s->wrap;
    char data[16];
    char ctl[CMSG_SPACE(8 * sizeof(int))];
    struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    ssize_t n = recvmsg(s->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) return;
    unsigned char ok = 0;
    struct ucred cred;
    socklen_t cl_len = sizeof cred;
    getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl_len);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (n >= 5 && c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)) &&
        !(msg.msg_flags & MSG_CTRUNC)) {
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        unsigned int wpid;
        memcpy(&wpid, data + 1, 4);
        int good = (unsigned char)data[0] == 0xA7;
        if (hardened) good = good && proc_ppid((int)wpid) == cred.pid;
        char token[256];
        size_t got = 0;
        fcntl(fd, F_SETFL, O_NONBLOCK);
        while (good && got < sizeof token) {
            ssize_t r = read(fd, token + got, sizeof token - got);
            if (r > 0) { got += r; continue; }
            if (r == 0) break;
            if (errno != EAGAIN) break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 10000) <= 0) break;
        }
        close(fd);
        ok = good && got > 0;
    }
    if (send(s->fd, &ok, 1, MSG_NOSIGNAL) < 0) { /* the peer left */ }
    logline(ok ? "wrap: notify handoff ok" : "wrap: notify handoff failed", wraps[w].dir);
    end_wrap(w);
}

static void wrap_accept(struct slot *s) {
    int w = s->wrap;
    int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return;
    struct ucred cred;
    socklen_t cl_len = sizeof cred;
    getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl_len);
    if (cred.uid != getuid() || wraps[w].conn >= 0) { close(c); return; }
    wraps[w].conn = c;
    drop(s->fd);  /* B19: one connection per loop */
    wraps[w].lfd = -1;
    watch(c, K_WRAPCONN, w);
}

static int listen_unix(const char *path, int backlog) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
    unlink(path);
    fchmod(fd, 0666);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, backlog) < 0) {
        perror(path);
        exit(2);
    }
    chmod(path, 0666);
    return fd;
}

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static int drain(const char *path, int backlog) {
    int fd = listen_unix(path, backlog);
    fcntl(fd, F_SETFL, 0);
    while (!stop) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        struct ucred cred;
        socklen_t cl_len = sizeof cred;
        getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl_len);
        close(c);
    }
    unlink(path);
    return 0;
}

int main(int argc, char **argv) {
    const char *api = NULL, *drainpath = NULL, *logpath = NULL;
    int backlog = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--api")) api = argv[i + 1];
        else if (!strcmp(argv[i], "--temp-base")) tbase = argv[i + 1];
        else if (!strcmp(argv[i], "--profile")) hardened = !strcmp(argv[i + 1], "hardened");
        else if (!strcmp(argv[i], "--window")) window_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--log-file")) logpath = argv[i + 1];
        else if (!strcmp(argv[i], "--drain")) drainpath = argv[i + 1];
        else if (!strcmp(argv[i], "--backlog")) backlog = atoi(argv[i + 1]);
        else { fprintf(stderr, "wrapsrv: unknown option %s\n", argv[i]); return 2; }
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (drainpath) return drain(drainpath, backlog);
    if (!api || !tbase) { fprintf(stderr, "wrapsrv: --api and --temp-base are required\n"); return 2; }
    if (logpath) logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ep = epoll_create1(EPOLL_CLOEXEC);
    int afd = listen_unix(api, 128);
    watch(afd, -1, -1);
    struct epoll_event evs[64];
    while (!stop) {
        double t = now(), next = t + 1;
        for (int w = 0; w < 1024; w++) {
            if (!wraps[w].used) continue;
            if (wraps[w].deadline <= t) { logline("wrap: accept window expired", wraps[w].dir); end_wrap(w); }
            else if (wraps[w].deadline < next) next = wraps[w].deadline;
        }
        int n = epoll_wait(ep, evs, 64, (int)((next - t) * 1000) + 1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == afd) {
                int c = accept4(afd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (c >= 0) watch(c, K_API, -1);
                continue;
            }
            struct slot *s = &slots[fd];
            if (s->kind == K_API) {
                ssize_t r = recv(fd, s->buf + s->len, sizeof s->buf - 1 - s->len, 0);
                if (r <= 0) { if (r == 0 || errno != EAGAIN) drop(fd); continue; }
                s->len += r;
                s->buf[s->len] = 0;
                api_request(s);
            } else if (s->kind == K_WRAPLISTEN) {
                wrap_accept(s);
            } else if (s->kind == K_WRAPCONN) {
                handshake(s);
            }
        }
    }
    for (int w = 0; w < 1024; w++) if (wraps[w].used) end_wrap(w);
    unlink(api);
    return 0;
}
