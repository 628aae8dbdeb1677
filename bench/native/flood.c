/* The C anchor for the harness's flooder (wraplab.actors.flood), same structure:
 * --procs processes, each a non-blocking connect loop (a refused socket connects again, a
 * queued one is closed and replaced) plus --waiters threads doing blocking connect+close
 * (SO_SNDTIMEO 200 ms), until --seconds pass.
 *
 *   flood --path P --seconds S [--procs N] [--waiters N]
 *
 * Prints one JSON line: attempts, ok (queued by the kernel), eagain, other, seconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct counts { atomic_long ok, eagain, other; };
static struct counts *counts;  /* shared between the processes */
static struct sockaddr_un target = {.sun_family = AF_UNIX};
static double deadline;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void count(int rc) {
    if (rc == 0) atomic_fetch_add(&counts->ok, 1);
    else if (errno == EAGAIN) atomic_fetch_add(&counts->eagain, 1);
    else atomic_fetch_add(&counts->other, 1);
}

static void *waiter(void *arg) {
    (void)arg;
    struct timeval tv = {0, 200000};
    while (now() < deadline) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        count(connect(fd, (struct sockaddr *)&target, sizeof target));
        close(fd);
    }
    return NULL;
}

static void flood(int waiters) {
    pthread_t th[256];
    for (int i = 0; i < waiters && i < 256; i++) pthread_create(&th[i], NULL, waiter, NULL);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    while (now() < deadline) {
        for (int i = 0; i < 64; i++) {
            int rc = connect(fd, (struct sockaddr *)&target, sizeof target);
            count(rc);
            if (rc == 0 || errno != EAGAIN) {  /* queued (or gone): a fresh socket */
                close(fd);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
            }
        }
    }
    close(fd);
    for (int i = 0; i < waiters && i < 256; i++) pthread_join(th[i], NULL);
}

int main(int argc, char **argv) {
    const char *path = NULL;
    double seconds = 2;
    int procs = 1, waiters = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--path")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--procs")) procs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--waiters")) waiters = atoi(argv[i + 1]);
    }
    if (!path) { fprintf(stderr, "flood: --path is required\n"); return 2; }
    strncpy(target.sun_path, path, sizeof target.sun_path - 1);
    counts = mmap(NULL, sizeof *counts, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double t0 = now();
    deadline = t0 + seconds;
    for (int p = 1; p < procs; p++) {
        if (fork() == 0) { flood(waiters); _exit(0); }
    }
    flood(waiters);
    while (wait(NULL) > 0) {}
    double dt = now() - t0;
    long ok = counts->ok, ea = counts->eagain, other = counts->other;
    printf("{\"attempts\": %ld, \"ok\": %ld, \"eagain\": %ld, \"other\": %ld, \"seconds\": %.3f, "
           "\"rate\": %.0f}\n", ok + ea + other, ok, ea, other, dt, (ok + ea + other) / dt);
    return 0;
}
