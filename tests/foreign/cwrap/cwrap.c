/*
 * cwrap: an independent wrap server, written from docs/protocol.md only.
 *
 * It exists to prove that wraplab can judge a server it did not write: other socket names
 * (<rundir>/cw-<hex>/{fd,sig,pid}.sock), no events endpoint, no /healthz, its own flags,
 * its own log format. Hardened by default; each --weak switch removes one defence on
 * purpose, so the scenarios that depend on that defence must turn `vulnerable`.
 *
 * Threat model: the server runs as root (or as a service account) on a host with hostile
 * local users. Everyone can reach the API socket (0666); anything a peer sends is bounded
 * (request size, time, JSON depth, fds, counts per uid); every fd received is closed.
 *
 * Build: make (gcc, libc only; static). Usage: cwrap --help.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER (72 * 1024) /* a 64 KiB request line, as common HTTP servers allow */
#define MAX_BODY 65536
#define REQUEST_SECONDS 10.0
#define MAX_API_WORKERS 64
#define MAX_API_PER_UID 8
#define MAX_SESSIONS 1024
#define MAX_SESSIONS_PER_UID 64
#define MAX_WRAPS 256
#define MAX_WRAPS_PER_UID 32
#define MAX_KEEPALIVES_PER_UID 8
#define MAX_CMD_BYTES 1024
#define MAX_ARGS 64
#define MAX_ARGS_BYTES 4096
#define MAX_JSON_DEPTH 32
#define TOKEN_LIMIT 256
#define UID_MAX_OK 4294967294ULL
#define OVERFLOW_UID 65534
#define MAGIC 0xA7
#define CLEAN_MAX_DEPTH 16
#define CLEAN_MAX_OPS 200000

enum { K_NOTIFY, K_SIGNAL, K_PTRACE, K_COUNT };
static const char *KIND_NAME[K_COUNT] = {"notify", "signal", "ptrace"};
static const char *KIND_FILE[K_COUNT] = {"fd.sock", "sig.sock", "pid.sock"};

/* ------------------------------------------------------------------ configuration */

static struct {
    const char *listen_path, *rundir, *log_path;
    int signal_socket, ptrace_mode, backlog;
    double window, handshake;
    /* weak switches: each removes one defence */
    int no_peer_check, world_socket, trust_body_uid, no_handshake_deadline, no_cloexec,
        no_pid_check;
} cfg = {.backlog = 8, .window = 30.0, .handshake = 10.0};

static uid_t server_uid;
static int log_fd = -1;
static int stop_pipe[2] = {-1, -1};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int ms_left(double deadline) {
    if (deadline <= 0) return -1; /* no deadline */
    double left = deadline - now();
    if (left <= 0) return 0;
    return (int)(left * 1000.0) + 1;
}

/* ------------------------------------------------------------------ logging (JSON lines) */

static void json_escape(char *out, size_t cap, const char *in, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
}

/* log_line("warn", "peer rejected", "\"peer_uid\":%u", uid): extra is raw JSON members. */
static void log_line(const char *level, const char *msg, const char *fmt, ...) {
    char extra[1024] = "", line[1400];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(line, sizeof line, "{\"t\":%ld.%03ld,\"level\":\"%s\",\"msg\":\"%s\"%s%s}\n",
                     (long)ts.tv_sec, ts.tv_nsec / 1000000, level, msg, *extra ? "," : "", extra);
    if (n > (int)sizeof line - 1) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    if (log_fd >= 0 && write(log_fd, line, (size_t)n) < 0) { /* nothing else to do */ }
}

/* Rejections are counted per loop; only the first few and then every power of two logged. */
static int worth_logging(unsigned long count) {
    return count <= 3 || (count & (count - 1)) == 0;
}

/* ------------------------------------------------------------------ sessions and quotas */

struct session {
    char id[201];
    uid_t owner;
    int used;
    unsigned long seq; /* creation order: a full quota evicts the uid's own oldest */
};
static unsigned long session_seq;
static struct session sessions[MAX_SESSIONS];

struct uid_count {
    uid_t uid;
    int n;
};
#define UID_SLOTS 512
static struct uid_count api_per_uid[UID_SLOTS], wraps_per_uid[UID_SLOTS],
    keepalive_per_uid[UID_SLOTS], sessions_per_uid[UID_SLOTS], api_errors[UID_SLOTS];
static int api_active, wraps_active;

/* Count for uid in table (lock held); NULL when the table is full. */
static struct uid_count *slot(struct uid_count *t, uid_t uid) {
    struct uid_count *free_slot = NULL;
    for (int i = 0; i < UID_SLOTS; i++) {
        if (t[i].n > 0 && t[i].uid == uid) return &t[i];
        if (t[i].n == 0 && !free_slot) free_slot = &t[i];
    }
    if (free_slot) free_slot->uid = uid;
    return free_slot;
}

static int take(struct uid_count *t, uid_t uid, int limit) {
    struct uid_count *s = slot(t, uid);
    if (!s || s->n >= limit) return 0;
    s->n++;
    return 1;
}

static void give_back(struct uid_count *t, uid_t uid) {
    struct uid_count *s = slot(t, uid);
    if (s && s->n > 0) s->n--;
}

/* ------------------------------------------------------------------ /proc */

/* PPid and the four uids of pid; 0 on success. */
static int proc_status(pid_t pid, pid_t *ppid, unsigned long uids[4]) {
    char path[64], buf[4096];
    if (pid <= 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    int have_ppid = 0, have_uid = 0;
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!strncmp(line, "PPid:", 5)) {
            *ppid = (pid_t)strtol(line + 5, NULL, 10);
            have_ppid = 1;
        } else if (!strncmp(line, "Uid:", 4)) {
            have_uid = sscanf(line + 4, "%lu %lu %lu %lu", &uids[0], &uids[1], &uids[2],
                              &uids[3]) == 4;
        }
        line = next;
    }
    return have_ppid && have_uid ? 0 : -1;
}

/* ------------------------------------------------------------------ wraps */

struct wrap {
    char session[201];
    char dir[PATH_MAX];
    char paths[K_COUNT][sizeof(((struct sockaddr_un *)0)->sun_path)];
    int dirfd;
    struct stat dirst;
    int listeners[K_COUNT];
    int kinds[K_COUNT];
    int nkinds, live;
    uid_t api_uid;      /* quota key */
    int expect_set;     /* 0 = legacy (weak --trust-body-uid only): anyone admitted */
    uid_t expected;     /* the only uid admitted by the peer check */
    double deadline;
    int removed;
    const char *isolation;
    pthread_mutex_t mu;
};
static struct wrap *wraps[MAX_WRAPS];

/* Remove everything inside the directory open as top, fd-relative, bounded in depth, work
 * and time; never follows a symlink. 0 when it is empty. */
static int empty_dir(int top) {
    struct {
        int fd;
        char name[NAME_MAX + 1];
    } st[CLEAN_MAX_DEPTH];
    int sp = 0;
    long ops = 0;
    double deadline = now() + 5.0;
    st[0].fd = fcntl(top, F_DUPFD_CLOEXEC, 0);
    if (st[0].fd < 0) return -1;
    char buf[8192];
    int rc = 0;
    while (sp >= 0) {
        if (ops > CLEAN_MAX_OPS || now() > deadline) {
            rc = -1;
            break;
        }
        int fd = st[sp].fd, found = 0, descended = 0;
        lseek(fd, 0, SEEK_SET);
        long n;
        while (!descended && (n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                struct {
                    uint64_t ino;
                    int64_t off;
                    unsigned short reclen;
                    unsigned char type;
                    char name[];
                } *d = (void *)(buf + off);
                off += d->reclen;
                if (!strcmp(d->name, ".") || !strcmp(d->name, "..")) continue;
                found = 1;
                ops++;
                struct stat s;
                if (fstatat(fd, d->name, &s, AT_SYMLINK_NOFOLLOW) < 0) continue;
                if (!S_ISDIR(s.st_mode)) {
                    unlinkat(fd, d->name, 0);
                    continue;
                }
                if (unlinkat(fd, d->name, AT_REMOVEDIR) == 0) continue;
                if (sp + 1 < CLEAN_MAX_DEPTH) {
                    int child = openat(fd, d->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                    if (child < 0) continue;
                    sp++;
                    st[sp].fd = child;
                    snprintf(st[sp].name, sizeof st[sp].name, "%s", d->name);
                    descended = 1;
                    break;
                }
                /* too deep: move the subtree up to the top and empty it from there */
                unsigned char r[8];
                char fresh[32];
                if (getrandom(r, sizeof r, 0) != sizeof r) continue;
                snprintf(fresh, sizeof fresh, ".rm-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1],
                         r[2], r[3], r[4], r[5], r[6], r[7]);
                renameat(fd, d->name, st[0].fd, fresh);
            }
        }
        if (descended || found) continue; /* list again until empty */
        if (sp == 0) break;
        close(fd);
        sp--;
        unlinkat(st[sp].fd, st[sp + 1].name, AT_REMOVEDIR);
        ops++;
    }
    for (; sp >= 0; sp--) close(st[sp].fd);
    return rc;
}

/* Close the listeners and remove the directory (once); the wrap's lock is held. */
static void wrap_remove_locked(struct wrap *w) {
    for (int i = 0; i < w->nkinds; i++)
        if (w->listeners[i] >= 0) {
            close(w->listeners[i]);
            w->listeners[i] = -1;
        }
    if (w->removed) return;
    w->removed = 1;
    if (w->dirfd < 0) return;
    struct stat st;
    /* the path must still name the directory we made */
    if (lstat(w->dir, &st) == 0 && st.st_dev == w->dirst.st_dev && st.st_ino == w->dirst.st_ino) {
        if (st.st_uid != server_uid) { /* take it back so nobody adds entries meanwhile */
            if (fchown(w->dirfd, server_uid, -1) == 0) fchmod(w->dirfd, 0700);
        }
        int rc = empty_dir(w->dirfd);
        if (rmdir(w->dir) < 0 || rc < 0)
            log_line("error", "cleanup incomplete", "\"dir\":\"%s\"", w->dir);
        else
            log_line("info", "wrap directory removed", "\"dir\":\"%s\"", w->dir);
    }
    close(w->dirfd);
    w->dirfd = -1;
}

static void wrap_free(struct wrap *w) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_WRAPS; i++)
        if (wraps[i] == w) wraps[i] = NULL;
    wraps_active--;
    give_back(wraps_per_uid, w->api_uid);
    pthread_mutex_unlock(&lock);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* One accept loop has ended; the last one removes the directory and frees the wrap. */
static void loop_done(struct wrap *w, int idx) {
    pthread_mutex_lock(&w->mu);
    if (w->listeners[idx] >= 0) {
        close(w->listeners[idx]);
        w->listeners[idx] = -1;
    }
    int last = --w->live == 0;
    if (last) wrap_remove_locked(w);
    pthread_mutex_unlock(&w->mu);
    if (last) wrap_free(w);
}

/* ------------------------------------------------------------------ handshakes */

enum { HS_OK, HS_FAIL, HS_STALL };

static void send_byte(int conn, unsigned char b) {
    if (send(conn, &b, 1, MSG_NOSIGNAL) < 0) { /* the peer went away */ }
}

static double hs_deadline(void) {
    return cfg.no_handshake_deadline ? 0 : now() + cfg.handshake;
}

/* Wait until fd is readable or the deadline passes (0 = forever): 1 readable, 0 not. */
static int wait_in(int fd, double deadline) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, ms_left(deadline));
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return 0;
    }
}

/* Read the client's token from the fd it handed over: proof that the handoff arrived. */
static ssize_t read_token(int fd, char *out, size_t cap, double deadline) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t got = 0;
    if (deadline <= 0) deadline = now() + cfg.handshake; /* a token read is always bounded */
    while (got < cap) {
        if (!wait_in(fd, deadline)) break;
        ssize_t n = read(fd, out + got, cap - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* One recvmsg: data into buf, fds into fds (closed by the caller). */
static ssize_t recv_fds(int conn, unsigned char *buf, size_t cap, int *fds, int *nfds, int *trunc) {
    union {
        char b[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = sizeof ctl.b};
    ssize_t n = recvmsg(conn, &m, cfg.no_cloexec ? 0 : MSG_CMSG_CLOEXEC);
    *nfds = 0;
    *trunc = n >= 0 && (m.msg_flags & MSG_CTRUNC);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k && *nfds < 8; i++) memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    return n;
}

static void close_all(int *fds, int n) {
    for (int i = 0; i < n; i++) close(fds[i]);
}

/* notify (status byte) and signal (none): exactly one fd; notify needs the wrapper pid. */
static int handshake_fd(struct wrap *w, int kind, int conn, struct ucred *cr) {
    int notify = kind == K_NOTIFY;
    double dl = hs_deadline();
    if (!wait_in(conn, dl)) {
        if (notify) send_byte(conn, 0);
        return HS_STALL;
    }
    unsigned char data[16];
    int fds[8], nfds, trunc;
    ssize_t n = recv_fds(conn, data, sizeof data, fds, &nfds, &trunc);
    if (n <= 0 && nfds == 0) return HS_STALL; /* EOF or error before a byte */
    const char *why = NULL;
    char detail[160] = "";
    if (trunc) why = "control data truncated";
    else if (nfds != 1) why = nfds ? "more than one fd" : "no fd";
    if (why) {
        close_all(fds, nfds);
        log_line("warn", "handoff refused", "\"kind\":\"%s\",\"session\":\"%s\",\"peer_uid\":%u,"
                 "\"reason\":\"%s\",\"fds\":%d", KIND_NAME[kind], w->session, cr->uid, why, nfds);
        if (notify) send_byte(conn, 0);
        return HS_FAIL;
    }
    int fd = fds[0];
    pid_t wrapper = 0;
    if (notify) {
        if (n >= 5 && data[0] == MAGIC)
            wrapper = (pid_t)((uint32_t)data[1] | (uint32_t)data[2] << 8 |
                              (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24);
        if (!cfg.no_pid_check) {
            pid_t ppid;
            unsigned long u[4];
            if (wrapper <= 0) why = "no wrapper pid";
            else if (proc_status(wrapper, &ppid, u) < 0) why = "wrapper pid not found";
            else if (ppid != cr->pid) why = "wrapper is not the peer's child";
            else if (u[0] != cr->uid && u[1] != cr->uid && u[2] != cr->uid && u[3] != cr->uid)
                why = "wrapper does not run as the peer";
            snprintf(detail, sizeof detail, "\"wrapper_pid\":%d,", (int)wrapper);
        }
    }
    char token[TOKEN_LIMIT + 1], esc[TOKEN_LIMIT * 6 + 1];
    ssize_t got = 0;
    if (!why) {
        got = read_token(fd, token, TOKEN_LIMIT, dl);
        if (got <= 0) why = "nothing to read on the fd";
    }
    close(fd);
    if (why) {
        log_line("warn", "handoff refused", "\"kind\":\"%s\",\"session\":\"%s\",%s\"peer_uid\":%u,"
                 "\"peer_pid\":%d,\"reason\":\"%s\"", KIND_NAME[kind], w->session, detail, cr->uid,
                 (int)cr->pid, why);
        if (notify) send_byte(conn, 0);
        return HS_FAIL;
    }
    json_escape(esc, sizeof esc, token, (size_t)got);
    log_line("info", "handoff ok", "\"kind\":\"%s\",\"session\":\"%s\",\"peer_uid\":%u,"
             "\"peer_pid\":%d,\"token\":\"%s\"", KIND_NAME[kind], w->session, cr->uid,
             (int)cr->pid, esc);
    if (notify) send_byte(conn, 1);
    return HS_OK;
}

/* The pid must be the peer or one of its descendants, and run as the peer's uid only. */
static const char *ptrace_pid_problem(pid_t pid, struct ucred *cr) {
    pid_t cur = pid, ppid;
    unsigned long u[4];
    int depth = 0;
    for (; cur != cr->pid; depth++) {
        if (cur <= 1 || depth > 256 || proc_status(cur, &ppid, u) < 0)
            return "pid is not the peer or its descendant";
        cur = ppid;
    }
    if (proc_status(pid, &ppid, u) < 0) return "pid vanished";
    for (int i = 0; i < 4; i++)
        if (u[i] != cr->uid) return "pid does not run as the peer";
    return NULL;
}

static int handshake_ptrace(struct wrap *w, int idx, int conn, struct ucred *cr, int *kept) {
    double dl = hs_deadline();
    unsigned char raw[4];
    size_t got = 0;
    while (got < 4) {
        if (!wait_in(conn, dl)) {
            send_byte(conn, 0);
            return HS_STALL;
        }
        ssize_t n = recv(conn, raw + got, 4 - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (got == 0) return HS_STALL;
            send_byte(conn, 0);
            return HS_FAIL;
        }
        got += (size_t)n;
    }
    int32_t pid = (int32_t)((uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 |
                            (uint32_t)raw[3] << 24);
    const char *why = NULL;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/%d", (int)pid);
    if (pid <= 0 || access(proc, F_OK) < 0) why = "no such pid";
    else if (!cfg.no_pid_check) why = ptrace_pid_problem(pid, cr);
    if (!why) {
        pthread_mutex_lock(&lock);
        if (!take(keepalive_per_uid, cr->uid, MAX_KEEPALIVES_PER_UID)) why = "keepalive quota";
        pthread_mutex_unlock(&lock);
    }
    if (why) {
        log_line("warn", "handoff refused", "\"kind\":\"ptrace\",\"session\":\"%s\",\"peer_uid\":%u,"
                 "\"peer_pid\":%d,\"pid\":%d,\"reason\":\"%s\"", w->session, cr->uid, (int)cr->pid,
                 (int)pid, why);
        send_byte(conn, 0);
        return HS_FAIL;
    }
    log_line("info", "handoff ok", "\"kind\":\"ptrace\",\"session\":\"%s\",\"peer_uid\":%u,"
             "\"peer_pid\":%d,\"pid\":%d,\"attach\":\"simulated\"", w->session, cr->uid,
             (int)cr->pid, (int)pid);
    send_byte(conn, 1);
    *kept = 1;
    (void)idx;
    return HS_OK;
}

/* Hold a ptrace keepalive until the peer closes it (the wrap itself is already gone). */
static void keepalive(int conn, uid_t uid) {
    char buf[256];
    for (;;) {
        wait_in(conn, 0);
        ssize_t n = recv(conn, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    close(conn);
    pthread_mutex_lock(&lock);
    give_back(keepalive_per_uid, uid);
    pthread_mutex_unlock(&lock);
}

struct loop_arg {
    struct wrap *w;
    int idx;
};

static void *accept_loop(void *p) {
    struct loop_arg *a = p;
    struct wrap *w = a->w;
    int idx = a->idx, kind = w->kinds[idx], lfd = w->listeners[idx];
    free(a);
    unsigned long rejected = 0, dropped = 0;
    int keep = -1;
    uid_t keep_uid = 0;
    for (;;) {
        if (now() >= w->deadline) {
            log_line("info", "accept window over", "\"kind\":\"%s\",\"session\":\"%s\","
                     "\"rejected\":%lu,\"dropped\":%lu", KIND_NAME[kind], w->session, rejected,
                     dropped);
            break;
        }
        if (!wait_in(lfd, w->deadline)) continue;
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                poll(NULL, 0, 50); /* back off: the process is out of fds or memory */
            continue;
        }
        struct ucred cr;
        socklen_t len = sizeof cr;
        int have = getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0;
        if (!cfg.no_peer_check && w->expect_set && (!have || cr.uid != w->expected)) {
            rejected++;
            if (worth_logging(rejected))
                log_line("warn", "peer refused", "\"kind\":\"%s\",\"session\":\"%s\","
                         "\"peer_uid\":%d,\"expected_uid\":%u,\"count\":%lu", KIND_NAME[kind],
                         w->session, have ? (int)cr.uid : -1, w->expected, rejected);
            close(conn);
            continue;
        }
        if (!have) cr.pid = 0, cr.uid = 0, cr.gid = 0;
        int kept = 0, r;
        if (kind == K_PTRACE) r = handshake_ptrace(w, idx, conn, &cr, &kept);
        else r = handshake_fd(w, kind, conn, &cr);
        if (r == HS_STALL && !cfg.no_handshake_deadline) { /* a stalled peer is dropped */
            dropped++;
            if (worth_logging(dropped))
                log_line("warn", "stalled peer dropped", "\"kind\":\"%s\",\"session\":\"%s\","
                         "\"peer_uid\":%u,\"count\":%lu", KIND_NAME[kind], w->session, cr.uid,
                         dropped);
            close(conn);
            continue;
        }
        if (kept) {
            keep = conn;
            keep_uid = cr.uid;
        } else {
            close(conn);
        }
        break; /* one handoff attempted: this socket is done */
    }
    loop_done(w, idx);
    if (keep >= 0) keepalive(keep, keep_uid);
    return NULL;
}

/* ------------------------------------------------------------------ wrap-init */

struct reply {
    int status;
    char body[2048];
};

static void err_reply(struct reply *r, int status, const char *fmt, ...) {
    char msg[512], esc[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_escape(esc, sizeof esc, msg, strlen(msg));
    r->status = status;
    snprintf(r->body, sizeof r->body, "{\"error\":\"%s\"}", esc);
}

struct acl_entry {
    uint16_t tag, perm;
    uint32_t id;
};

/* The access ACL granting uid exactly perm (group and others nothing), as the xattr blob. */
static size_t acl_blob(char *out, uid_t uid, uint16_t perm, uint16_t owner_perm) {
    struct acl_entry e[5] = {{0x01, owner_perm, 0xffffffffu}, {0x02, perm, uid},
                             {0x04, 0, 0xffffffffu}, {0x10, perm, 0xffffffffu},
                             {0x20, 0, 0xffffffffu}};
    uint32_t version = 2;
    memcpy(out, &version, 4);
    memcpy(out + 4, e, sizeof e);
    return 4 + sizeof e;
}

/* Check one path with lstat: type, exact mode, owner. */
static int check_path(const char *path, int is_dir, mode_t mode, uid_t owner, char *why, size_t cap) {
    struct stat st;
    if (lstat(path, &st) < 0) return snprintf(why, cap, "%s: %s", path, strerror(errno)), -1;
    if (is_dir ? !S_ISDIR(st.st_mode) : !S_ISSOCK(st.st_mode))
        return snprintf(why, cap, "%s: wrong file type", path), -1;
    if ((st.st_mode & 07777) != mode)
        return snprintf(why, cap, "%s: mode %04o want %04o", path, st.st_mode & 07777, mode), -1;
    if (st.st_uid != owner)
        return snprintf(why, cap, "%s: owner %u want %u", path, st.st_uid, owner), -1;
    return 0;
}

/* Lay out the directory and sockets; on failure *why says what and nothing is left. */
static int wrap_setup(struct wrap *w, uid_t uid, char *why, size_t cap) {
    unsigned char r[6];
    for (int tries = 0;; tries++) {
        if (getrandom(r, sizeof r, 0) != sizeof r) return snprintf(why, cap, "no randomness"), -1;
        snprintf(w->dir, sizeof w->dir, "%s/cw-%02x%02x%02x%02x%02x%02x", cfg.rundir, r[0], r[1],
                 r[2], r[3], r[4], r[5]);
        if (mkdir(w->dir, 0700) == 0) break;
        if (errno != EEXIST || tries > 16)
            return snprintf(why, cap, "mkdir %s: %s", w->dir, strerror(errno)), -1;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (w->dirfd < 0 || fstat(w->dirfd, &w->dirst) < 0 || w->dirst.st_uid != server_uid ||
        fchmod(w->dirfd, 0700) < 0) {
        snprintf(why, cap, "wrap directory %s: %s", w->dir, strerror(errno));
        if (w->dirfd < 0) rmdir(w->dir);
        return -1;
    }
    int world = cfg.world_socket || !w->expect_set;
    for (int i = 0; i < w->nkinds; i++) {
        const char *name = KIND_FILE[w->kinds[i]];
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(w->dir) + 1 + strlen(name) >= sizeof a.sun_path)
            return snprintf(why, cap, "socket path under %s is too long for a Unix socket", w->dir), -1;
        snprintf(w->paths[i], sizeof w->paths[i], "%s/%s", w->dir, name);
        memcpy(a.sun_path, w->paths[i], strlen(w->paths[i]) + 1);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) return snprintf(why, cap, "socket: %s", strerror(errno)), -1;
        w->listeners[i] = s;
        /* the socket file is created with the fd's mode: private from the first moment */
        if (fchmod(s, 0600) < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 ||
            listen(s, cfg.backlog) < 0)
            return snprintf(why, cap, "listen %s: %s", w->paths[i], strerror(errno)), -1;
    }
    /* Every socket is bound while the directory is ours and 0700; hand over last. */
    if (world) {
        for (int i = 0; i < w->nkinds; i++)
            if (fchmodat(w->dirfd, KIND_FILE[w->kinds[i]], 0666, 0) < 0)
                return snprintf(why, cap, "chmod socket: %s", strerror(errno)), -1;
        if (fchmod(w->dirfd, cfg.world_socket ? 0755 : 0711) < 0)
            return snprintf(why, cap, "chmod dir: %s", strerror(errno)), -1;
        w->isolation = "none";
    } else if (uid == server_uid || uid == 0) {
        w->isolation = "same-uid"; /* root needs no grant; the server's own uid owns it all */
    } else {
        int chowned = 1;
        for (int i = 0; i < w->nkinds && chowned; i++)
            if (fchownat(w->dirfd, KIND_FILE[w->kinds[i]], uid, (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != EPERM) return snprintf(why, cap, "chown socket: %s", strerror(errno)), -1;
                chowned = 0;
            }
        if (chowned && fchown(w->dirfd, uid, (gid_t)-1) < 0) {
            if (errno != EPERM) return snprintf(why, cap, "chown dir: %s", strerror(errno)), -1;
            chowned = 0;
        }
        if (chowned) {
            w->isolation = "chown";
        } else { /* no CAP_CHOWN: POSIX ACLs name exactly the caller, or no wrap at all */
            char blob[64];
            for (int i = 0; i < w->nkinds; i++) {
                if (fchownat(w->dirfd, KIND_FILE[w->kinds[i]], server_uid, (gid_t)-1,
                             AT_SYMLINK_NOFOLLOW) < 0) { /* never chowned: nothing to undo */ }
                size_t n = acl_blob(blob, uid, 06, 06);
                if (lsetxattr(w->paths[i], "system.posix_acl_access", blob, n, 0) < 0)
                    return snprintf(why, cap, "cannot restrict %s to uid %u (no chown, ACL: %s)",
                                    w->paths[i], uid, strerror(errno)), -1;
            }
            size_t n = acl_blob(blob, uid, 01, 07);
            if (fsetxattr(w->dirfd, "system.posix_acl_access", blob, n, 0) < 0)
                return snprintf(why, cap, "cannot restrict %s to uid %u (no chown, ACL: %s)", w->dir,
                                uid, strerror(errno)), -1;
            w->isolation = "acl";
        }
    }
    /* Validate what the caller will get, with lstat (never through a symlink). */
    mode_t dmode = 0700, smode = 0600;
    uid_t owner = server_uid;
    if (!strcmp(w->isolation, "none")) dmode = cfg.world_socket ? 0755 : 0711, smode = 0666;
    else if (!strcmp(w->isolation, "acl")) dmode = 0710, smode = 0660;
    else if (!strcmp(w->isolation, "chown")) owner = uid;
    if (check_path(w->dir, 1, dmode, owner, why, cap) < 0) return -1;
    for (int i = 0; i < w->nkinds; i++)
        if (check_path(w->paths[i], 0, smode, owner, why, cap) < 0) return -1;
    return 0;
}

/* ------------------------------------------------------------------ JSON (bounded) */

struct json {
    const char *p, *end;
    int depth;
    const char *err;
};

static void skip_ws(struct json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* A JSON string at j->p; its UTF-8 bytes into out (cap bytes, NUL-terminated) if out. */
static int jstring(struct json *j, char *out, size_t cap, size_t *len) {
    size_t o = 0;
    if (j->p >= j->end || *j->p != '"') return j->err = "expected a string", -1;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        unsigned long cp = c;
        if (c < 0x20) return j->err = "control character in string", -1;
        if (c == '\\') {
            if (j->p >= j->end) break;
            char e = *j->p++;
            switch (e) {
            case '"': case '\\': case '/': cp = (unsigned char)e; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (j->end - j->p < 4) return j->err = "bad \\u escape", -1;
                cp = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *j->p++;
                    if (!isxdigit((unsigned char)h)) return j->err = "bad \\u escape", -1;
                    cp = cp * 16 + (unsigned long)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
                }
                if (cp == 0) return j->err = "NUL character in string", -1;
                break;
            default: return j->err = "bad escape", -1;
            }
            if (cp >= 0x80) { /* encode as UTF-8 (surrogates kept as they are) */
                unsigned char u[3];
                size_t k = cp < 0x800 ? 2 : 3;
                if (k == 2) u[0] = 0xC0 | (cp >> 6), u[1] = 0x80 | (cp & 0x3F);
                else u[0] = 0xE0 | (cp >> 12), u[1] = 0x80 | ((cp >> 6) & 0x3F), u[2] = 0x80 | (cp & 0x3F);
                for (size_t i = 0; i < k; i++) {
                    if (out && o + 1 < cap) out[o] = (char)u[i];
                    o++;
                }
                continue;
            }
        }
        if (out && o + 1 < cap) out[o] = (char)cp;
        o++;
    }
    if (j->p >= j->end) return j->err = "unterminated string", -1;
    j->p++;
    if (out) out[o < cap ? o : cap - 1] = 0;
    if (len) *len = o;
    return 0;
}

/* A number: *is_int when it has no fraction/exponent; *neg, *big (> UID_MAX_OK), *val. */
static int jnumber(struct json *j, int *is_int, int *neg, int *big, unsigned long long *val) {
    *is_int = 1, *neg = 0, *big = 0, *val = 0;
    if (j->p < j->end && *j->p == '-') *neg = 1, j->p++;
    const char *start = j->p;
    while (j->p < j->end && isdigit((unsigned char)*j->p)) {
        if (*val > UID_MAX_OK) *big = 1;
        else *val = *val * 10 + (unsigned long long)(*j->p - '0');
        j->p++;
    }
    if (j->p == start || (*start == '0' && j->p - start > 1)) return j->err = "bad number", -1;
    if (*val > UID_MAX_OK) *big = 1;
    if (j->p < j->end && *j->p == '.') {
        *is_int = 0, j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p)) return j->err = "bad number", -1;
        while (j->p < j->end && isdigit((unsigned char)*j->p)) j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        *is_int = 0, j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p)) return j->err = "bad number", -1;
        while (j->p < j->end && isdigit((unsigned char)*j->p)) j->p++;
    }
    return 0;
}

static int jliteral(struct json *j, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n)) return j->err = "bad literal", -1;
    j->p += n;
    return 0;
}

static int jskip(struct json *j) {
    skip_ws(j);
    if (j->p >= j->end) return j->err = "unexpected end", -1;
    char c = *j->p;
    if (c == '"') return jstring(j, NULL, 0, NULL);
    if (c == 't') return jliteral(j, "true");
    if (c == 'f') return jliteral(j, "false");
    if (c == 'n') return jliteral(j, "null");
    if (c == '-' || isdigit((unsigned char)c)) {
        int a, b, d;
        unsigned long long v;
        return jnumber(j, &a, &b, &d, &v);
    }
    if (c != '{' && c != '[') return j->err = "unexpected character", -1;
    if (++j->depth > MAX_JSON_DEPTH) return j->err = "nested too deep", -1;
    char close = c == '{' ? '}' : ']';
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++, j->depth--;
        return 0;
    }
    for (;;) {
        if (c == '{') {
            skip_ws(j);
            if (jstring(j, NULL, 0, NULL) < 0) return -1;
            skip_ws(j);
            if (j->p >= j->end || *j->p++ != ':') return j->err = "expected ':'", -1;
        }
        if (jskip(j) < 0) return -1;
        skip_ws(j);
        if (j->p >= j->end) return j->err = "unexpected end", -1;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p++ != close) return j->err = "expected ',' or a closing bracket", -1;
        j->depth--;
        return 0;
    }
}

struct wrap_req {
    int has_uid;
    unsigned long long uid;
    char mode[16];
};

/* Parse the wrap-init body; 0 or an HTTP status with r filled. */
static int parse_wrap_init(const char *body, size_t n, struct wrap_req *q, struct reply *r) {
    struct json j = {.p = body, .end = body + n};
    int seen[4] = {0};
    memset(q, 0, sizeof *q);
    skip_ws(&j);
    if (j.p >= j.end || *j.p != '{') return err_reply(r, 400, "invalid json: expected an object"), 400;
    j.p++;
    skip_ws(&j);
    int empty = j.p < j.end && *j.p == '}';
    if (empty) j.p++;
    while (!empty) {
        char key[64];
        size_t klen;
        skip_ws(&j);
        if (jstring(&j, key, sizeof key, &klen) < 0) goto bad;
        skip_ws(&j);
        if (j.p >= j.end || *j.p++ != ':') {
            j.err = "expected ':'";
            goto bad;
        }
        skip_ws(&j);
        int null = j.end - j.p >= 4 && !memcmp(j.p, "null", 4);
        int which = klen >= sizeof key ? -1 : !strcmp(key, "agent_command") ? 0 :
                    !strcmp(key, "agent_args") ? 1 : !strcmp(key, "caller_uid") ? 2 :
                    !strcmp(key, "mode") ? 3 : -1;
        if (which >= 0 && seen[which]++) return err_reply(r, 400, "invalid json: duplicate key %s", key), 400;
        if (which < 0 || null) {
            if (jskip(&j) < 0) goto bad;
        } else if (which == 0) {
            size_t len;
            if (jstring(&j, NULL, 0, &len) < 0)
                return err_reply(r, 400, "invalid json: agent_command must be a string"), 400;
            if (len > MAX_CMD_BYTES)
                return err_reply(r, 413, "agent_command too long (limit %d bytes)", MAX_CMD_BYTES), 413;
        } else if (which == 1) {
            size_t total = 0, count = 0, len;
            if (*j.p != '[') return err_reply(r, 400, "invalid json: agent_args must be a list of strings"), 400;
            j.p++;
            skip_ws(&j);
            if (j.p < j.end && *j.p == ']') j.p++;
            else
                for (;;) {
                    skip_ws(&j);
                    if (jstring(&j, NULL, 0, &len) < 0)
                        return err_reply(r, 400, "invalid json: agent_args must be a list of strings"), 400;
                    total += len;
                    if (++count > MAX_ARGS)
                        return err_reply(r, 413, "agent_args has too many items (limit %d)", MAX_ARGS), 413;
                    if (total > MAX_ARGS_BYTES)
                        return err_reply(r, 413, "agent_args too long (limit %d bytes)", MAX_ARGS_BYTES), 413;
                    skip_ws(&j);
                    if (j.p < j.end && *j.p == ',') {
                        j.p++;
                        continue;
                    }
                    if (j.p < j.end && *j.p == ']') {
                        j.p++;
                        break;
                    }
                    j.err = "bad list";
                    goto bad;
                }
        } else if (which == 2) {
            int is_int, neg, big;
            unsigned long long v;
            if (j.p >= j.end || !(*j.p == '-' || isdigit((unsigned char)*j.p)))
                return err_reply(r, 400, "invalid json: caller_uid must be an integer"), 400;
            if (jnumber(&j, &is_int, &neg, &big, &v) < 0) goto bad;
            if (!is_int) return err_reply(r, 400, "invalid json: caller_uid must be an integer"), 400;
            if (neg && (v || big)) return err_reply(r, 400, "invalid caller uid: negative"), 400;
            if (big || v > UID_MAX_OK)
                return err_reply(r, 400, "invalid caller uid: out of range (max %llu)", UID_MAX_OK), 400;
            q->has_uid = 1, q->uid = v;
        } else {
            size_t len;
            if (jstring(&j, q->mode, sizeof q->mode, &len) < 0)
                return err_reply(r, 400, "invalid json: mode must be a string"), 400;
            if (len >= sizeof q->mode || (*q->mode && strcmp(q->mode, "agent") && strcmp(q->mode, "shim")))
                return err_reply(r, 400, "invalid mode: want agent or shim"), 400;
        }
        skip_ws(&j);
        if (j.p < j.end && *j.p == ',') {
            j.p++;
            continue;
        }
        if (j.p < j.end && *j.p == '}') {
            j.p++;
            break;
        }
        j.err = "expected ',' or '}'";
        goto bad;
    }
    skip_ws(&j);
    if (j.p != j.end) {
        j.err = "trailing data";
        goto bad;
    }
    return 0;
bad:
    err_reply(r, 400, "invalid json: %s", j.err ? j.err : "syntax error");
    return 400;
}

static struct session *find_session(const char *id) {
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i].used && !strcmp(sessions[i].id, id)) return &sessions[i];
    return NULL;
}

static int valid_session_id(const char *id) {
    size_t n = strlen(id);
    if (n < 1 || n > 200) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("._-", id[i])) return 0;
    return 1;
}

static void post_session(const char *body, size_t n, struct ucred *peer, struct reply *r) {
    char want[256] = "";
    struct json j = {.p = body, .end = body + n};
    skip_ws(&j);
    if (j.p < j.end) { /* optional {"id": "..."} */
        if (*j.p != '{') return err_reply(r, 400, "invalid json: expected an object");
        j.p++;
        skip_ws(&j);
        if (j.p < j.end && *j.p == '}') j.p++;
        else
            for (;;) {
                char key[16];
                size_t klen;
                skip_ws(&j);
                if (jstring(&j, key, sizeof key, &klen) < 0) goto bad;
                skip_ws(&j);
                if (j.p >= j.end || *j.p++ != ':') goto bad;
                skip_ws(&j);
                if (klen < sizeof key && !strcmp(key, "id")) {
                    size_t len;
                    if (jstring(&j, want, sizeof want, &len) < 0 || len >= sizeof want || !valid_session_id(want))
                        return err_reply(r, 400, "invalid session id: want [A-Za-z0-9._-]{1,200}");
                } else if (jskip(&j) < 0) {
                    goto bad;
                }
                skip_ws(&j);
                if (j.p < j.end && *j.p == ',') {
                    j.p++;
                    continue;
                }
                if (j.p < j.end && *j.p == '}') {
                    j.p++;
                    break;
                }
                goto bad;
            }
        skip_ws(&j);
        if (j.p != j.end) goto bad;
    }
    pthread_mutex_lock(&lock);
    if (*want && find_session(want)) {
        pthread_mutex_unlock(&lock);
        return err_reply(r, 409, "session already exists");
    }
    struct session *s = NULL, *oldest = NULL;
    for (int i = 0; i < MAX_SESSIONS; i++) {
        if (!sessions[i].used) {
            if (!s) s = &sessions[i];
        } else if (sessions[i].owner == peer->uid && (!oldest || sessions[i].seq < oldest->seq)) {
            oldest = &sessions[i];
        }
    }
    if (!s || !take(sessions_per_uid, peer->uid, MAX_SESSIONS_PER_UID)) {
        if (!oldest) { /* only ever the caller's own sessions are forgotten */
            pthread_mutex_unlock(&lock);
            return err_reply(r, 503, "too many sessions");
        }
        s = oldest; /* its quota slot passes to the new session */
    }
    if (*want) {
        snprintf(s->id, sizeof s->id, "%s", want);
    } else {
        unsigned char rnd[8];
        if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) memset(rnd, 0, sizeof rnd);
        snprintf(s->id, sizeof s->id, "c%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
                 rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    }
    s->owner = peer->uid;
    s->used = 1;
    s->seq = ++session_seq;
    r->status = 201;
    snprintf(r->body, sizeof r->body, "{\"id\":\"%s\"}", s->id);
    pthread_mutex_unlock(&lock);
    log_line("info", "session created", "\"session\":\"%s\",\"owner\":%u", s->id, peer->uid);
    return;
bad:
    err_reply(r, 400, "invalid json");
}

static void post_wrap_init(const char *sid, const char *body, size_t n, struct ucred *peer,
                           struct reply *r) {
    pthread_mutex_lock(&lock);
    struct session *s = find_session(sid);
    int mine = s && (s->owner == peer->uid || peer->uid == 0);
    pthread_mutex_unlock(&lock);
    if (!mine) return err_reply(r, 404, "session not found");
    struct wrap_req q;
    if (parse_wrap_init(body, n, &q, r)) return;

    uid_t uid;
    int expect_set = 1;
    if (q.has_uid && q.uid == OVERFLOW_UID) /* the body's value first, then its match */
        return err_reply(r, 400, "invalid caller uid: %u (the overflow uid)", OVERFLOW_UID);
    if (cfg.trust_body_uid) { /* weak: the body names the caller; absent or 0 is legacy */
        if (!q.has_uid || q.uid == 0) expect_set = 0, uid = 0;
        else uid = (uid_t)q.uid;
    } else {
        if (q.has_uid && q.uid != peer->uid)
            return err_reply(r, 403, "caller_uid %llu does not match the API peer uid %u", q.uid,
                             peer->uid);
        if (peer->uid == OVERFLOW_UID)
            return err_reply(r, 400, "invalid caller uid: %u (the overflow uid)", peer->uid);
        uid = peer->uid;
    }
    if (expect_set && uid == OVERFLOW_UID)
        return err_reply(r, 400, "invalid caller uid: %u (the overflow uid)", uid);

    struct wrap *w = calloc(1, sizeof *w);
    if (!w) return err_reply(r, 503, "out of memory");
    pthread_mutex_init(&w->mu, NULL);
    snprintf(w->session, sizeof w->session, "%s", sid);
    w->dirfd = -1;
    w->api_uid = peer->uid;
    w->expect_set = expect_set;
    w->expected = uid;
    if (cfg.ptrace_mode) w->kinds[w->nkinds++] = K_PTRACE;
    else {
        w->kinds[w->nkinds++] = K_NOTIFY;
        if (cfg.signal_socket) w->kinds[w->nkinds++] = K_SIGNAL;
    }
    for (int i = 0; i < K_COUNT; i++) w->listeners[i] = -1;

    pthread_mutex_lock(&lock);
    int slot_i = -1;
    for (int i = 0; i < MAX_WRAPS && slot_i < 0; i++)
        if (!wraps[i]) slot_i = i;
    int ok = slot_i >= 0 && take(wraps_per_uid, peer->uid, MAX_WRAPS_PER_UID);
    if (ok) {
        wraps[slot_i] = w;
        wraps_active++;
    }
    pthread_mutex_unlock(&lock);
    if (!ok) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return err_reply(r, 503, slot_i < 0 ? "too many pending wraps" : "too many pending wraps for this uid");
    }

    char why[512];
    if (wrap_setup(w, uid, why, sizeof why) < 0) {
        pthread_mutex_lock(&w->mu);
        wrap_remove_locked(w);
        pthread_mutex_unlock(&w->mu);
        log_line("error", "wrap-init failed", "\"session\":\"%s\",\"error\":\"%s\"", sid, why);
        wrap_free(w);
        return err_reply(r, 500, "wrap: %s", why);
    }
    log_line("info", "wrap-init", "\"session\":\"%s\",\"caller_uid\":%d,\"api_peer_uid\":%u,"
             "\"fs_isolation\":\"%s\",\"dir\":\"%s\"", sid, expect_set ? (int)uid : -1, peer->uid,
             w->isolation, w->dir);

    /* the answer is built before the loops start: once they run, w may go at any time */
    const char *seccomp = "{\\\"cwrap\\\":true,\\\"filter\\\":null}";
    int ptrace = cfg.ptrace_mode;
    char sig[256] = "";
    if (!ptrace && cfg.signal_socket)
        snprintf(sig, sizeof sig, ",\"signal_socket\":\"%s\"", w->paths[1]);
    r->status = 200;
    snprintf(r->body, sizeof r->body,
             "{\"ptrace_mode\":%s,\"safe_to_bypass_shell_shim\":%s,\"wrapper_binary\":\"%s\","
             "\"stub_binary\":\"\",\"seccomp_config\":\"%s\",\"notify_socket\":\"%s\"%s,"
             "\"wrapper_env\":{\"AGENTSH_SECCOMP_CONFIG\":\"%s\"%s},\"env_inject\":{},"
             "\"env_policy\":null,\"fs_isolation\":\"%s\"}",
             ptrace ? "true" : "false", ptrace ? "true" : "false", ptrace ? "" : "cwrap-wrapper",
             seccomp, w->paths[0], sig, seccomp, *sig ? ",\"AGENTSH_SIGNAL_SOCK_FD\":\"4\"" : "",
             w->isolation);

    w->deadline = now() + cfg.window;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_mutex_lock(&w->mu);
    w->live = w->nkinds;
    int n_kinds = w->nkinds, started = 0;
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < n_kinds; i++) {
        struct loop_arg *a = malloc(sizeof *a);
        pthread_t t;
        if (a) *a = (struct loop_arg){w, i};
        if (!a || pthread_create(&t, &attr, accept_loop, a) != 0) {
            free(a);
            loop_done(w, i); /* this socket never serves */
            continue;
        }
        started++;
    }
    pthread_attr_destroy(&attr);
    if (!started) err_reply(r, 503, "cannot start accept loops");
}

/* ------------------------------------------------------------------ HTTP (bounded) */

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

static void send_reply(int conn, struct reply *r) {
    char head[256];
    size_t blen = strlen(r->body);
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n", r->status,
                     reason(r->status), blen + 1);
    struct iovec v[3] = {{head, (size_t)n}, {r->body, blen}, {"\n", 1}};
    struct msghdr m = {.msg_iov = v, .msg_iovlen = 3};
    if (sendmsg(conn, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* the client went away */ }
    if (r->status >= 400 && r->status != 503) {
        /* let the client read the answer before close: drain a little of what it still sends */
        shutdown(conn, SHUT_WR);
        char junk[4096];
        double dl = now() + 0.5;
        for (int total = 0; total < (1 << 20) && wait_in(conn, dl);) {
            ssize_t k = recv(conn, junk, sizeof junk, 0);
            if (k <= 0) break;
            total += (int)k;
        }
    }
}

/* The value of header name in the header block, or NULL; *dup when it occurs twice. */
static const char *header(char *head, const char *name, int *dup) {
    const char *found = NULL;
    size_t n = strlen(name);
    *dup = 0;
    for (char *line = strstr(head, "\r\n"); line && line[2];) {
        line += 2;
        char *next = strstr(line, "\r\n");
        if (!strncasecmp(line, name, n) && line[n] == ':') {
            if (found) *dup = 1;
            found = line + n + 1;
            while (*found == ' ' || *found == '\t') found++;
        }
        line = next;
    }
    return found;
}

struct api_arg {
    int conn;
    struct ucred cr;
};

static void handle_request(int conn, struct ucred *peer, char *head);

static void handle_api(int conn, struct ucred *peer) {
    char *head = malloc(MAX_HEADER + 1);
    if (head) handle_request(conn, peer, head);
    free(head);
}

static void handle_request(int conn, struct ucred *peer, char *head) {
    struct reply r = {0};
    double dl = now() + REQUEST_SECONDS;
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        if (got >= MAX_HEADER) return err_reply(&r, 431, "request head too large"), send_reply(conn, &r);
        if (!wait_in(conn, dl)) return; /* too slow: closed without an answer */
        ssize_t k = recv(conn, head + got, MAX_HEADER - got, 0);
        if (k <= 0) return;
        got += (size_t)k;
        head[got] = 0;
        end = strstr(head, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - head) + 4;
    end[2] = 0; /* headers end with one \r\n */
    /* request line: METHOD SP TARGET SP HTTP/1.x; a target too long for any route is a 404 */
    char method[16], path[512];
    char *sp1 = strchr(head, ' '), *eol = strstr(head, "\r\n");
    char *sp2 = sp1 && sp1 < eol ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2 || sp1 - head >= (long)sizeof method || sp1 == head || strncmp(sp2 + 1, "HTTP/1.", 7))
        return err_reply(&r, 400, "bad request line"), send_reply(conn, &r);
    memcpy(method, head, (size_t)(sp1 - head));
    method[sp1 - head] = 0;
    size_t plen = (size_t)(sp2 - sp1 - 1);
    if (plen >= sizeof path) plen = 0; /* no route is that long: empty path, 404 below */
    memcpy(path, sp1 + 1, plen);
    path[plen] = 0;
    int dup;
    if (header(head, "Transfer-Encoding", &dup))
        return err_reply(&r, 501, "Transfer-Encoding is not supported; send Content-Length"),
               send_reply(conn, &r);
    const char *cl = header(head, "Content-Length", &dup);
    size_t length = 0;
    if (dup) return err_reply(&r, 400, "duplicated Content-Length"), send_reply(conn, &r);
    if (cl) {
        const char *e = cl;
        while (isdigit((unsigned char)*e)) e++;
        const char *digits_end = e;
        while (*e == ' ' || *e == '\t') e++;
        if (e == cl || strncmp(e, "\r\n", 2))
            return err_reply(&r, 400, "invalid Content-Length"), send_reply(conn, &r);
        if (digits_end - cl > 9)
            return err_reply(&r, 413, "body too large (limit %d bytes)", MAX_BODY), send_reply(conn, &r);
        length = strtoul(cl, NULL, 10);
    }
    if (length > MAX_BODY)
        return err_reply(&r, 413, "body too large (limit %d bytes)", MAX_BODY), send_reply(conn, &r);
    char *q = strchr(path, '?');
    if (q) *q = 0;
    int is_post = !strcmp(method, "POST");
    const char *prefix = "/api/v1/sessions/";
    char sid[256] = "";
    int route = 0; /* 1 sessions, 2 wrap-init */
    if (!strcmp(path, "/api/v1/sessions")) route = 1;
    else if (!strncmp(path, prefix, strlen(prefix))) {
        const char *rest = path + strlen(prefix), *slash = strchr(rest, '/');
        if (slash && !strcmp(slash, "/wrap-init") && (size_t)(slash - rest) < sizeof sid && slash > rest) {
            memcpy(sid, rest, (size_t)(slash - rest));
            sid[slash - rest] = 0;
            route = 2;
        }
    }
    if (!route) return err_reply(&r, 404, "not found"), send_reply(conn, &r);
    if (!is_post) return err_reply(&r, 405, "method not allowed"), send_reply(conn, &r);
    if (route == 2 && !cl) return err_reply(&r, 411, "Content-Length required"), send_reply(conn, &r);
    char *body = malloc(length + 1);
    if (!body) return err_reply(&r, 503, "out of memory"), send_reply(conn, &r);
    size_t have = got - head_len;
    if (have > length) have = length;
    memcpy(body, head + head_len, have);
    while (have < length) {
        if (!wait_in(conn, dl)) {
            free(body);
            return err_reply(&r, 408, "timed out reading the request body"), send_reply(conn, &r);
        }
        ssize_t k = recv(conn, body + have, length - have, 0);
        if (k <= 0) {
            free(body);
            return err_reply(&r, 400, "incomplete body"), send_reply(conn, &r);
        }
        have += (size_t)k;
    }
    body[length] = 0;
    if (route == 1) post_session(body, length, peer, &r);
    else post_wrap_init(sid, body, length, peer, &r);
    free(body);
    if (r.status >= 400) { /* one user must not fill the log: rate-limited per uid */
        pthread_mutex_lock(&lock);
        struct uid_count *c = slot(api_errors, peer->uid);
        unsigned long n = c ? (unsigned long)++c->n : 0;
        pthread_mutex_unlock(&lock);
        if (n && worth_logging(n))
            log_line("warn", "api error", "\"status\":%d,\"peer_uid\":%u,\"count\":%lu",
                     r.status, peer->uid, n);
    }
    send_reply(conn, &r);
}

static void *api_thread(void *p) {
    struct api_arg *a = p;
    handle_api(a->conn, &a->cr);
    close(a->conn);
    pthread_mutex_lock(&lock);
    api_active--;
    give_back(api_per_uid, a->cr.uid);
    pthread_mutex_unlock(&lock);
    free(a);
    return NULL;
}

/* ------------------------------------------------------------------ startup */

/* The directory and each parent must be root's or ours and writable by nobody else
 * (unless sticky, as /tmp): another user could otherwise swap or fill it. */
static int trusted_dir(const char *path, char *why, size_t cap) {
    char buf[PATH_MAX];
    if (!realpath(path, buf)) return snprintf(why, cap, "%s: %s", path, strerror(errno)), -1;
    for (;;) {
        struct stat st;
        if (lstat(buf, &st) < 0) return snprintf(why, cap, "%s: %s", buf, strerror(errno)), -1;
        if (st.st_uid != 0 && st.st_uid != server_uid)
            return snprintf(why, cap, "%s is owned by uid %u", buf, st.st_uid), -1;
        if ((st.st_mode & 0002 || (st.st_mode & 0020 && st.st_gid != 0 && st.st_gid != getegid())) &&
            !(st.st_mode & S_ISVTX))
            return snprintf(why, cap, "%s is writable by others", buf), -1;
        if (!strcmp(buf, "/")) return 0;
        char *slash = strrchr(buf, '/');
        if (slash == buf) slash[1] = 0;
        else *slash = 0;
    }
}

static int api_listen(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "cwrap: --listen path too long\n");
        return -1;
    }
    strcpy(a.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "cwrap: refusing to replace %s: not a socket\n", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int live = connect(probe, (struct sockaddr *)&a, sizeof a) == 0;
        close(probe);
        if (live) {
            fprintf(stderr, "cwrap: another server listens on %s\n", path);
            return -1;
        }
        unlink(path);
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || fchmod(s, 0666) < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 ||
        chmod(path, 0666) < 0 || listen(s, 128) < 0) {
        fprintf(stderr, "cwrap: listen %s: %s\n", path, strerror(errno));
        if (s >= 0) close(s);
        return -1;
    }
    return s;
}

static void on_signal(int sig) {
    (void)sig;
    if (write(stop_pipe[1], "x", 1) < 0) { /* already woken */ }
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: cwrap --listen PATH --rundir DIR --log FILE [options]\n"
        "  --listen PATH            the API's Unix socket (0666; its directory must be trusted)\n"
        "  --rundir DIR             where per-wrap directories cw-<hex>/ are made\n"
        "  --log FILE               JSON-lines log (appended, 0640)\n"
        "  --signal                 also serve a signal socket (sig.sock)\n"
        "  --ptrace                 serve one ptrace socket (pid.sock) instead\n"
        "  --window S               accept window per wrap (default 30)\n"
        "  --handshake-timeout S    deadline after accept (default 10)\n"
        "  --backlog N              listen backlog of wrap sockets (default 8)\n"
        "weak switches (each removes one defence, for testing the tests):\n"
        "  --no-peer-check          serve any peer that reaches a wrap socket\n"
        "  --world-socket           wrap dir 0755, sockets 0666 (no chown, no ACL)\n"
        "  --trust-body-uid         caller = JSON caller_uid (absent/0: anyone, 0711/0666)\n"
        "  --no-handshake-deadline  wait forever for a connected peer's first byte\n"
        "  --no-cloexec             receive fds without MSG_CMSG_CLOEXEC\n"
        "  --no-pid-check           trust the notify wrapper pid and the ptrace pid\n");
}

static int parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *flag = !strcmp(o, "--signal") ? &cfg.signal_socket : !strcmp(o, "--ptrace") ? &cfg.ptrace_mode
                  : !strcmp(o, "--no-peer-check") ? &cfg.no_peer_check
                  : !strcmp(o, "--world-socket") ? &cfg.world_socket
                  : !strcmp(o, "--trust-body-uid") ? &cfg.trust_body_uid
                  : !strcmp(o, "--no-handshake-deadline") ? &cfg.no_handshake_deadline
                  : !strcmp(o, "--no-cloexec") ? &cfg.no_cloexec
                  : !strcmp(o, "--no-pid-check") ? &cfg.no_pid_check : NULL;
        if (flag) {
            *flag = 1;
            continue;
        }
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "cwrap: unknown or incomplete option %s\n", o);
            return -1;
        }
        char *e;
        i++;
        if (!strcmp(o, "--listen")) cfg.listen_path = v;
        else if (!strcmp(o, "--rundir")) cfg.rundir = v;
        else if (!strcmp(o, "--log")) cfg.log_path = v;
        else if (!strcmp(o, "--window") || !strcmp(o, "--handshake-timeout")) {
            double d = strtod(v, &e);
            if (*e || !(d > 0 && d < 86400)) {
                fprintf(stderr, "cwrap: %s wants seconds > 0, got %s\n", o, v);
                return -1;
            }
            *(o[2] == 'w' ? &cfg.window : &cfg.handshake) = d;
        } else if (!strcmp(o, "--backlog")) {
            long n = strtol(v, &e, 10);
            if (*e || n < 1 || n > 65535) {
                fprintf(stderr, "cwrap: --backlog wants 1..65535, got %s\n", v);
                return -1;
            }
            cfg.backlog = (int)n;
        } else {
            fprintf(stderr, "cwrap: unknown option %s\n", o);
            return -1;
        }
    }
    if (!cfg.listen_path || !cfg.rundir || !cfg.log_path) {
        usage(stderr);
        return -1;
    }
    if (cfg.signal_socket && cfg.ptrace_mode) {
        fprintf(stderr, "cwrap: --signal and --ptrace exclude each other\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (parse_args(argc, argv) < 0) return 2;
    umask(077);
    server_uid = geteuid();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    log_fd = open(cfg.log_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (log_fd < 0) {
        fprintf(stderr, "cwrap: log %s: %s\n", cfg.log_path, strerror(errno));
        return 1;
    }
    char why[512], listen_dir[PATH_MAX];
    snprintf(listen_dir, sizeof listen_dir, "%s", cfg.listen_path);
    char *slash = strrchr(listen_dir, '/');
    if (slash) *slash = 0;
    else strcpy(listen_dir, ".");
    if (trusted_dir(cfg.rundir, why, sizeof why) < 0 ||
        trusted_dir(*listen_dir ? listen_dir : "/", why, sizeof why) < 0) {
        fprintf(stderr, "cwrap: refusing an untrusted directory: %s\n", why);
        log_line("error", "untrusted directory", "\"error\":\"%s\"", why);
        return 1;
    }
    if (pipe2(stop_pipe, O_CLOEXEC) < 0) return 1;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int lfd = api_listen(cfg.listen_path);
    if (lfd < 0) return 1;
    struct stat api_st;
    lstat(cfg.listen_path, &api_st);
    log_line("info", "ready", "\"pid\":%d,\"uid\":%u,\"listen\":\"%s\",\"rundir\":\"%s\","
             "\"weak\":\"%s%s%s%s%s%s\"", (int)getpid(), server_uid, cfg.listen_path, cfg.rundir,
             cfg.no_peer_check ? "no-peer-check " : "", cfg.world_socket ? "world-socket " : "",
             cfg.trust_body_uid ? "trust-body-uid " : "",
             cfg.no_handshake_deadline ? "no-handshake-deadline " : "",
             cfg.no_cloexec ? "no-cloexec " : "", cfg.no_pid_check ? "no-pid-check" : "");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    for (;;) {
        struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) continue;
        if (p[1].revents) break;
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EMFILE || errno == ENFILE) poll(NULL, 0, 50);
            continue;
        }
        struct ucred cr;
        socklen_t len = sizeof cr;
        if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
            close(conn);
            continue;
        }
        pthread_mutex_lock(&lock);
        int admitted = api_active < MAX_API_WORKERS && take(api_per_uid, cr.uid, MAX_API_PER_UID);
        if (admitted) api_active++;
        pthread_mutex_unlock(&lock);
        struct api_arg *a = admitted ? malloc(sizeof *a) : NULL;
        pthread_t t;
        if (a) *a = (struct api_arg){conn, cr};
        if (!a || pthread_create(&t, &attr, api_thread, a) != 0) {
            struct reply r;
            err_reply(&r, 503, "too many connections");
            send_reply(conn, &r);
            close(conn);
            if (a) {
                free(a);
                pthread_mutex_lock(&lock);
                api_active--;
                give_back(api_per_uid, cr.uid);
                pthread_mutex_unlock(&lock);
            }
        }
    }
    /* stop: no new requests; every wrap directory goes */
    close(lfd);
    struct stat st;
    if (lstat(cfg.listen_path, &st) == 0 && st.st_ino == api_st.st_ino && st.st_dev == api_st.st_dev)
        unlink(cfg.listen_path);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_WRAPS; i++)
        if (wraps[i]) {
            pthread_mutex_lock(&wraps[i]->mu);
            wrap_remove_locked(wraps[i]);
            pthread_mutex_unlock(&wraps[i]->mu);
        }
    pthread_mutex_unlock(&lock);
    log_line("info", "stopped", "\"pid\":%d", (int)getpid());
    return 0;
}
