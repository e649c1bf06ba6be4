/* test_chaos: a randomized failure test of librampool against real
 * memservers.  Worker threads do mixed I/O on disjoint slices of the
 * disk (writes, reads, zero with and without may_trim, trim; 1 B to
 * 2 MiB, unaligned, crossing extents), every read checked against a
 * shadow copy, while the main thread runs a seeded schedule of faults
 * on 5 memservers, each reached through faultproxy.py:
 *
 *   kill      kill -9, then a new process on the same port (every copy
 *             there is gone: a new incarnation)
 *   stop      SIGSTOP for a while, then SIGCONT
 *   cut-long  the link cut (connections reset, new ones refused) until
 *             the memserver has freed this client's extents (its lease
 *             expired: the same incarnation, but every copy gone), then
 *             restored
 *   cut       the link cut for less than the lease, then restored
 *   blackhole the link forwards nothing for a while, then heals
 *   reset     every connection reset once
 *   delay     every byte delayed (sometimes past timeout-ms) for a while
 *   stop-all  every memserver SIGSTOPped at once, past timeout-ms: for a
 *             while no server is up at all (requests, first writes
 *             included, wait the outage out), then SIGCONT
 *
 * The rule that makes every error a bug: no copy is ever destroyed
 * while another copy is missing.  Destructive faults (kill, cut-long)
 * come one at a time, only when the pool is fully healthy (every server
 * up, no extent degraded, unreachable or lost: rp_pool_get_stats,
 * polled), and nothing else starts until it is fully healthy again.
 * The other faults only make copies unreachable for a while (shorter
 * than outage-wait-ms and than the lease); two of them may overlap,
 * and then requests wait for a copy to come back.  So at every moment
 * each extent has a copy that exists and is current, and:
 *  - every read returns exactly the shadow, and no I/O fails, ever;
 *  - extents_lost is 0 at every poll;
 *  - after every episode, once the pool is healthy again, the workers
 *    are paused between two operations and rp_pool_audit must find no
 *    copy counted good that is missing, differs or fails
 *    authentication (and 2 copies counted good per mapped extent, or
 *    K+M fragments with redundancy=ec:K+M);
 *  - at the end, with every server healed, the pool healthy and the
 *    workers stopped: the same audit, a full read that matches the
 *    shadow, and the memservers holding exactly the copies the pool
 *    counts (nothing leaked).
 *
 * The client keeps a down server's copies for rejoin-grace-ms (5000
 * here), longer than the memservers' lease (3000): a cut-long shorter
 * than the grace leaves copies in the client's map that their server
 * has freed, the case only the session id in HELLO reveals; longer
 * stops and blackholes pass the grace, and the client re-creates the
 * copies elsewhere and frees the old ones when their server is back.
 *
 * Episodes are dealt from a shuffled deck: each deck of 8 has one kill,
 * one cut-long, one stop-all, 3 single and 2 paired other faults, and
 * the first deck
 * is always played whole (so --seconds is a minimum; the default run
 * sees every kind of fault).
 *
 * The schedule and each worker's operations come from --seed (printed
 * first: a failure can be replayed with the same seed; the timing, and
 * so the interleaving, differs run to run).  Every fault and every
 * librampool log line goes to stderr with the time since start.
 *
 * Usage: test_chaos --memserver PATH --proxy PATH --dir DIR
 *                   [--seed N] [--seconds N] [--threads N] [--size-mib N]
 *                   [--lease-ms N] [--verbose] [KEY=VALUE...]
 * KEY=VALUE are pool keys added to (or overriding) the test's own
 * (encrypt=on, redundancy=ec:2+2, ...).  The memservers (their logs in
 * DIR/mN.log) and the proxy (DIR/proxy.log) are this program's
 * children: all are stopped by PID before it exits, and they die with
 * it if it crashes (PR_SET_PDEATHSIG; every fork is made by the main
 * thread).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "rampool/client.h"
#include "shadow.h"

#define NSERVERS 5
#define MAX_THREADS 16
#define HEAL_TIMEOUT_MS 60000

struct server {
  pid_t pid;                   /* 0: not running */
  int port;                    /* the memserver's own */
  int px_port;                 /* the proxy's for it */
  bool is_stopped;
};

static struct server srv[NSERVERS];
static const char *memserver_path, *proxy_path, *dir;
static pid_t proxy_pid;
static char ctl_path[PATH_MAX];
static unsigned lease_ms = 3000;
static bool is_verbose;
static uint64_t t0_ms;

static struct rp_pool *pool;
static uint8_t *shadow;
static uint64_t disk_size, slice_size, extent_size;
/* Copies counted good per healthy extent (replicas, or K+M fragments)
 * and the bytes of each on its server.
 */
static unsigned copies;
static uint64_t copy_bytes;
static unsigned nthreads = 4;
static atomic_bool stop_io;
/* --aio: the workers' reads and writes go through rp_aio_submit, as
 * rampool-nbd sends them, each waited for by its worker (and settled
 * or run by it when librampool hands it back); a thread of its own
 * calls rp_pool_aio_expire every RP_AIO_TICK_MS.
 */
static bool use_aio;
static atomic_bool stop_expire;
/* Pausing the workers for an audit (a quiet pool): guarded by io_lock. */
static pthread_mutex_t io_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t io_cond = PTHREAD_COND_INITIALIZER;
static bool is_paused;
static unsigned npaused, nprefilled, nexited;
static atomic_int failures;

struct worker {
  pthread_t th;
  unsigned id;
  uint64_t rng;
  uint64_t reads, writes, zeros, trims;
};

static uint64_t
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

static pthread_mutex_t say_lock = PTHREAD_MUTEX_INITIALIZER;

/* One line to stderr, stamped with the seconds since start. */
static void __attribute__ ((format (printf, 1, 2)))
say (const char *fmt, ...)
{
  va_list ap;
  pthread_mutex_lock (&say_lock);
  fprintf (stderr, "[%8.3f] ", (now_ms () - t0_ms) / 1000.0);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  pthread_mutex_unlock (&say_lock);
}

static void
client_log (int level, const char *msg)
{
  static const char *names[] = { "error", "warning", "info", "debug" };
  if (level <= 2 || is_verbose)
    say ("rampool: %s: %s", names[level < 4 ? level : 3], msg);
}

static void __attribute__ ((format (printf, 1, 2)))
failure (const char *fmt, ...)
{
  char buf[1024];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  say ("FAIL: %s", buf);
  atomic_fetch_add (&failures, 1);
  /* Wake a pause_io waiting for a worker that stops on this. */
  pthread_mutex_lock (&io_lock);
  pthread_cond_broadcast (&io_cond);
  pthread_mutex_unlock (&io_lock);
}

/* A number in [lo, hi]. */
static unsigned
rnd_in (uint64_t *s, unsigned lo, unsigned hi)
{
  return lo + rnd (s) % (hi - lo + 1);
}

/* Processes ---------------------------------------------------------- */

/* Fork and exec argv with stdout and stderr appended to log, dying
 * with this process.  Main thread only (PR_SET_PDEATHSIG follows the
 * thread that forked).  The pid, or -1.
 */
static pid_t
spawn (char *const argv[], const char *log)
{
  pid_t parent = getpid (), pid;
  int fd = open (log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

  if (fd == -1)
    return -1;
  pid = fork ();
  if (pid == 0) {
    /* Only async-signal-safe calls between fork and exec. */
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != parent)
      _exit (127);
    dup2 (fd, 1);
    dup2 (fd, 2);
    execv (argv[0], argv);
    _exit (127);
  }
  close (fd);
  return pid;
}

/* Wait (bounded) until file is non-empty while pid lives.  Its
 * contents (up to len), or -1.
 */
static int
wait_file (const char *file, pid_t pid, char *buf, size_t len)
{
  for (int i = 0; i < 1000; i++) {
    FILE *fp = fopen (file, "r");
    if (fp) {
      size_t n = fread (buf, 1, len - 1, fp);
      fclose (fp);
      if (n > 0) {
        buf[n] = '\0';
        return 0;
      }
    }
    if (waitpid (pid, NULL, WNOHANG) == pid)
      return -1;
    sleep_ms (10);
  }
  return -1;
}

/* Start memserver k, on its old port if it has one. */
static int
start_memserver (unsigned k)
{
  char listen[64], portfile[PATH_MAX], log[PATH_MAX], lease[32], buf[32];
  char *argv[] = { (char *) memserver_path, "--listen", listen, "--size",
                   "256M", "--no-mlock", "--port-file", portfile,
                   "--lease-ms", lease, NULL };

  snprintf (listen, sizeof listen, "127.0.0.1:%d", srv[k].port);
  snprintf (portfile, sizeof portfile, "%s/m%u.port", dir, k);
  snprintf (log, sizeof log, "%s/m%u.log", dir, k);
  snprintf (lease, sizeof lease, "%u", lease_ms);
  unlink (portfile);
  srv[k].pid = spawn (argv, log);
  srv[k].is_stopped = false;
  if (srv[k].pid == -1 ||
      wait_file (portfile, srv[k].pid, buf, sizeof buf) == -1) {
    failure ("memserver m%u did not start (see %s)", k, log);
    srv[k].pid = 0;
    return -1;
  }
  srv[k].port = atoi (buf);
  return 0;
}

/* Stop pid (SIGTERM, then SIGKILL after 5 s) and reap it. */
static void
stop_process (pid_t pid)
{
  kill (pid, SIGCONT);
  kill (pid, SIGTERM);
  for (int i = 0; i < 500; i++) {
    if (waitpid (pid, NULL, WNOHANG) == pid)
      return;
    sleep_ms (10);
  }
  kill (pid, SIGKILL);
  waitpid (pid, NULL, 0);
}

static int
start_proxy (void)
{
  char portsfile[PATH_MAX], log[PATH_MAX], buf[512];
  char names[NSERVERS][32];
  char *argv[8 + NSERVERS];
  unsigned n = 0;

  snprintf (portsfile, sizeof portsfile, "%s/proxy.ports", dir);
  snprintf (ctl_path, sizeof ctl_path, "%s/proxy.ctl", dir);
  snprintf (log, sizeof log, "%s/proxy.log", dir);
  unlink (portsfile);
  argv[n++] = "/usr/bin/env";
  argv[n++] = "python3";
  argv[n++] = (char *) proxy_path;
  argv[n++] = "--ports-file";
  argv[n++] = portsfile;
  argv[n++] = "--control";
  argv[n++] = ctl_path;
  for (unsigned k = 0; k < NSERVERS; k++) {
    snprintf (names[k], sizeof names[k], "m%u=%d", k, srv[k].port);
    argv[n++] = names[k];
  }
  argv[n] = NULL;
  proxy_pid = spawn (argv, log);
  if (proxy_pid == -1 ||
      wait_file (portsfile, proxy_pid, buf, sizeof buf) == -1) {
    failure ("faultproxy did not start (see %s)", log);
    proxy_pid = 0;
    return -1;
  }
  for (char *line = strtok (buf, "\n"); line; line = strtok (NULL, "\n")) {
    unsigned k;
    int port;
    if (sscanf (line, "m%u %d", &k, &port) == 2 && k < NSERVERS)
      srv[k].px_port = port;
  }
  for (unsigned k = 0; k < NSERVERS; k++)
    if (srv[k].px_port == 0) {
      failure ("faultproxy: no port for m%u", k);
      return -1;
    }
  return 0;
}

/* One command to the proxy; returns once it says it took effect. */
static int __attribute__ ((format (printf, 1, 2)))
proxy (const char *fmt, ...)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  char cmd[128], reply[256];
  size_t got = 0;
  va_list ap;
  int fd;

  va_start (ap, fmt);
  vsnprintf (cmd, sizeof cmd - 1, fmt, ap);
  va_end (ap);
  strcat (cmd, "\n");
  if (strlen (ctl_path) >= sizeof sa.sun_path) {
    failure ("faultproxy control socket path too long: %s", ctl_path);
    return -1;
  }
  memcpy (sa.sun_path, ctl_path, strlen (ctl_path) + 1);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *) &sa, sizeof sa) == -1 ||
      write (fd, cmd, strlen (cmd)) != (ssize_t) strlen (cmd)) {
    failure ("faultproxy control: %s", strerror (errno));
    if (fd >= 0)
      close (fd);
    return -1;
  }
  while (got < sizeof reply - 1) {
    ssize_t r = read (fd, reply + got, sizeof reply - 1 - got);
    if (r <= 0)
      break;
    got += r;
    if (memchr (reply, '\n', got))
      break;
  }
  close (fd);
  reply[got] = '\0';
  if (strncmp (reply, "ok", 2) != 0) {
    cmd[strlen (cmd) - 1] = '\0';
    failure ("faultproxy: '%s': %s", cmd, got ? reply : "no answer");
    return -1;
  }
  return 0;
}

/* Bytes memserver k holds, asked directly (not through the proxy), or
 * -1 if it does not answer.
 */
static int64_t
server_used (unsigned k)
{
  struct rp_server_info info;
  char addr[64];

  snprintf (addr, sizeof addr, "127.0.0.1:%d", srv[k].port);
  if (rp_server_query (addr, NULL, 1000, &info) == -1)
    return -1;
  return (int64_t) info.used_bytes;
}

/* Workers ------------------------------------------------------------ */

static void
io_error (const struct worker *w, const char *op, uint64_t off, uint64_t len)
{
  int err = errno;
  failure ("worker %u: %s of %" PRIu64 " bytes at %" PRIu64 " (extent %"
           PRIu64 "): %s", w->id, op, len, off, off / extent_size,
           strerror (err));
}

static void
check (const struct worker *w, const uint8_t *got, uint64_t off, uint64_t len,
       const char *what)
{
  uint64_t i = 0;

  if (memcmp (got, shadow + off, len) == 0)
    return;
  while (got[i] == shadow[off + i])
    i++;
  failure ("worker %u: %s of %" PRIu64 " bytes at %" PRIu64 ": wrong data at"
           " %" PRIu64 " (extent %" PRIu64 "): got %02x, want %02x", w->id,
           what, len, off, off + i, (off + i) / extent_size, got[i],
           shadow[off + i]);
}

static void
fill_random (uint8_t *buf, uint64_t len, uint64_t *rng)
{
  for (uint64_t i = 0; i < len; i += 8) {
    uint64_t v = rnd (rng);
    memcpy (buf + i, &v, len - i < 8 ? len - i : 8);
  }
}

/* Pause here while pause_io asks (between two operations). */
static void
worker_pause_point (void)
{
  pthread_mutex_lock (&io_lock);
  if (is_paused) {
    npaused++;
    pthread_cond_broadcast (&io_cond);
    while (is_paused)
      pthread_cond_wait (&io_cond, &io_lock);
    npaused--;
  }
  pthread_mutex_unlock (&io_lock);
}

/* Writes, zeroes and trims go to a window of a quarter of the slice,
 * moved every WINDOW_OPS operations; reads go anywhere in it.  So most
 * extents sit through a fault untouched (what the client keeps of them
 * must then be right as it was) while a few are rewritten through it.
 */
#define WINDOW_OPS 400

struct chaos_aio {
  struct rp_aio a;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool is_done;
};

static void
chaos_aio_done (struct rp_aio *a)
{
  struct chaos_aio *c = a->opaque;

  pthread_mutex_lock (&c->lock);
  c->is_done = true;
  pthread_cond_signal (&c->cond);
  pthread_mutex_unlock (&c->lock);
}

/* A read or write of the workers: rp_pool_pread/pwrite, or with --aio
 * the asynchronous path and what it hands back.  0 or -1 with errno.
 */
static int
chaos_io (int op, void *buf, uint64_t len, uint64_t off)
{
  struct chaos_aio c = { .is_done = false };
  int r;

  if (!use_aio)
    return op == RP_AIO_READ ? rp_pool_pread (pool, buf, len, off)
      : rp_pool_pwrite (pool, buf, len, off);
  pthread_mutex_init (&c.lock, NULL);
  pthread_cond_init (&c.cond, NULL);
  c.a.op = op;
  c.a.buf = buf;
  c.a.count = len;
  c.a.offset = off;
  c.a.done = chaos_aio_done;
  c.a.opaque = &c;
  r = rp_aio_submit (pool, &c.a);
  if (r == 1) {
    pthread_mutex_lock (&c.lock);
    while (!c.is_done)
      pthread_cond_wait (&c.cond, &c.lock);
    pthread_mutex_unlock (&c.lock);
    if (c.a.needs_thread && rp_aio_settle (pool, &c.a) == -1)
      rp_aio_run (pool, &c.a);
  }
  else if (r == -1)
    rp_aio_run (pool, &c.a);
  pthread_mutex_destroy (&c.lock);
  pthread_cond_destroy (&c.cond);
  if (c.a.err) {
    errno = c.a.err;
    return -1;
  }
  return 0;
}

static void *
chaos_expire (void *arg)
{
  const struct timespec tick = { .tv_sec = 0,
                                 .tv_nsec = RP_AIO_TICK_MS * 1000000L };
  (void) arg;
  while (!atomic_load (&stop_expire)) {
    nanosleep (&tick, NULL);
    rp_pool_aio_expire (pool);
  }
  return NULL;
}

static void *
worker (void *arg)
{
  struct worker *w = arg;
  uint64_t base = w->id * slice_size;
  uint64_t win_len = slice_size / 4 / extent_size * extent_size, win = base;
  uint8_t *buf = malloc (2 << 20);

  if (win_len == 0)
    win_len = slice_size;
  /* The whole slice once, so that every extent is mapped. */
  for (uint64_t off = base; off < base + slice_size; off += 1 << 20) {
    uint64_t left = base + slice_size - off;
    uint64_t len = left < (1 << 20) ? left : (1 << 20);
    fill_random (buf, len, &w->rng);
    if (rp_pool_pwrite (pool, buf, len, off) == -1)
      io_error (w, "prefill write", off, len);
    else
      memcpy (shadow + off, buf, len);
  }
  pthread_mutex_lock (&io_lock);
  nprefilled++;
  pthread_cond_broadcast (&io_cond);
  pthread_mutex_unlock (&io_lock);

  for (uint64_t op = 0;
       !atomic_load (&stop_io) && atomic_load (&failures) == 0; op++) {
    unsigned size_kind = rnd (&w->rng) % 100, kind = rnd (&w->rng) % 100;
    uint64_t len, off;

    worker_pause_point ();
    if (op % WINDOW_OPS == 0)
      win = base + rnd (&w->rng) % ((slice_size - win_len) / extent_size + 1)
                   * extent_size;
    if (size_kind < 70)
      len = 1 + rnd (&w->rng) % 16384;
    else if (size_kind < 97)
      len = 1 + rnd (&w->rng) % (256 * 1024 + 8192);
    else
      len = 1 + rnd (&w->rng) % (2 << 20);
    if (kind >= 45 && kind < 88) {            /* reads: the whole slice */
      if (len > slice_size)
        len = slice_size;
      off = base + rnd (&w->rng) % (slice_size - len + 1);
      if (chaos_io (RP_AIO_READ, buf, len, off) == -1)
        io_error (w, "read", off, len);
      else
        check (w, buf, off, len, "read");
      w->reads++;
      continue;
    }
    if (len > win_len)
      len = win_len;
    off = win + rnd (&w->rng) % (win_len - len + 1);
    if (kind < 45) {
      fill_random (buf, len, &w->rng);
      if (chaos_io (RP_AIO_WRITE, buf, len, off) == -1)
        io_error (w, "write", off, len);
      else
        memcpy (shadow + off, buf, len);
      w->writes++;
    }
    else if (kind < 94) {
      bool may_trim = rnd (&w->rng) & 1;
      if (rp_pool_zero (pool, len, off, may_trim) == -1)
        io_error (w, may_trim ? "zero (may_trim)" : "zero (no hole)", off, len);
      else
        memset (shadow + off, 0, len);
      w->zeros++;
    }
    else {
      if (rp_pool_trim (pool, len, off) == -1)
        io_error (w, "trim", off, len);
      else
        shadow_trim (shadow, disk_size, extent_size, off, len);
      w->trims++;
    }
  }
  free (buf);
  pthread_mutex_lock (&io_lock);
  nexited++;
  pthread_cond_broadcast (&io_cond);
  pthread_mutex_unlock (&io_lock);
  return NULL;
}

/* Health ------------------------------------------------------------- */

static void
say_stats (const char *why, const struct rp_pool_stats *st)
{
  say ("%s: servers_up %" PRIu64 "/%" PRIu64 ", extents mapped %" PRIu64
       " healthy %" PRIu64 " degraded %" PRIu64 " unreachable %" PRIu64
       " lost %" PRIu64 "; recovered %" PRIu64 ", read_failovers %" PRIu64
       ", outage_waits %" PRIu64, why, (uint64_t) st->servers_up,
       (uint64_t) st->servers, st->extents_mapped,
       st->extents_healthy, st->extents_degraded, st->extents_unreachable,
       st->extents_lost, st->recovered, st->read_failovers, st->outage_waits);
}

/* Wait (bounded) until every server is up and every mapped extent has
 * all its copies good.  Any lost extent on the way is a failure.
 */
static int
wait_healthy (const char *what)
{
  uint64_t start = now_ms ();
  struct rp_pool_stats st;

  for (;;) {
    rp_pool_get_stats (pool, &st);
    if (st.extents_lost) {
      say_stats ("lost extents", &st);
      failure ("%" PRIu64 " extent(s) lost (%s)", st.extents_lost, what);
      return -1;
    }
    /* Healthy includes no failed write left in doubt (encrypt=on):
     * until recovery settles one, its copies may legitimately differ
     * in that block, which the audit would report.
     */
    if (st.servers_up == st.servers && st.extents_degraded == 0 &&
        st.extents_unreachable == 0 && st.blocks_in_doubt == 0)
      return 0;
    /* After a failure, only for the diagnosis: not as long. */
    if (now_ms () - start >
        (atomic_load (&failures) ? 10000u : (unsigned) HEAL_TIMEOUT_MS)) {
      say_stats ("not healthy", &st);
      failure ("the pool did not heal within %u ms (%s)",
               (unsigned) (now_ms () - start), what);
      return -1;
    }
    sleep_ms (50);
  }
}

/* Stop the workers between two operations (nothing in flight), or let
 * them go on.
 */
static void
pause_io (void)
{
  pthread_mutex_lock (&io_lock);
  is_paused = true;
  while (npaused + nexited < nthreads && !atomic_load (&stop_io) &&
         atomic_load (&failures) == 0)
    pthread_cond_wait (&io_cond, &io_lock);
  pthread_mutex_unlock (&io_lock);
}

static void
resume_io (void)
{
  pthread_mutex_lock (&io_lock);
  is_paused = false;
  pthread_cond_broadcast (&io_cond);
  pthread_mutex_unlock (&io_lock);
}

/* The copy-state invariant against the servers, on a quiet pool: every
 * copy counted good exists there, holds what the extent's other copy
 * holds and (encrypt=on) authenticates.  Healthy, so every mapped
 * extent has `copies` copies counted good.
 */
static int
audit (const char *when)
{
  struct rp_pool_stats st;
  struct rp_audit a;

  rp_pool_get_stats (pool, &st);
  if (rp_pool_audit (pool, &a) == -1) {
    failure ("rp_pool_audit: %s", strerror (errno));
    return -1;
  }
  say ("audit %s: %" PRIu64 " extents, %" PRIu64 " copies checked; missing %"
       PRIu64 ", differ %" PRIu64 ", unverified %" PRIu64 ", unreachable %"
       PRIu64, when, a.extents_checked, a.copies_checked, a.copies_missing,
       a.copies_differ, a.copies_unverified, a.copies_unreachable);
  if (a.copies_missing || a.copies_differ || a.copies_unverified) {
    failure ("audit %s: the pool counts copies good that are missing (%"
             PRIu64 "), differ (%" PRIu64 ") or fail authentication (%"
             PRIu64 ")", when, a.copies_missing, a.copies_differ,
             a.copies_unverified);
    return -1;
  }
  if (a.copies_unreachable || a.copies_checked != st.extents_mapped * copies) {
    say_stats ("at the audit", &st);
    say ("audit %s: %" PRIu64 " copies checked of %" PRIu64 " mapped extents,"
         " %" PRIu64 " unreachable: a server went down meanwhile", when,
         a.copies_checked, st.extents_mapped, a.copies_unreachable);
    return 1;
  }
  return 0;
}

/* Pause the workers, wait until the pool is healthy, audit; again (a
 * few times) if a server went down during the audit, so that it is
 * complete: 2 copies checked for each mapped extent.
 */
static int
audit_quiet (const char *when)
{
  int r = 1;

  pause_io ();
  for (int tries = 0; tries < 5 && r == 1; tries++)
    r = wait_healthy (when) == -1 ? -1 : audit (when);
  resume_io ();
  if (r == 1)
    failure ("audit %s: never complete (servers keep going down)", when);
  return r == 0 ? 0 : -1;
}

/* Faults ------------------------------------------------------------- */

enum kind { KILL, STOP, CUT_LONG, CUT, BLACKHOLE, RESET, DELAY, STOP_ALL };
static const char *kind_names[] = {
  "kill", "stop", "cut-long", "cut", "blackhole", "reset", "delay",
  "stop-all"
};

struct fault {
  enum kind kind;
  unsigned k;                  /* server */
  unsigned ms;                 /* how long it lasts (cut-long: after the
                                  lease expired) */
  unsigned delay_ms;           /* DELAY */
};

/* Draw a fault of kind on server k: its parameters come from the
 * schedule's generator only.
 */
static struct fault
draw_fault (uint64_t *s, enum kind kind, unsigned k)
{
  struct fault f = { .kind = kind, .k = k };

  /* A stop, blackhole or long delay either ends well before a request
   * sent as it began times out (timeout-ms 1000), or lasts well past
   * the first timeout (at most heartbeat-ms + timeout-ms after it
   * began): the client finds the server down during the fault, or
   * not at all, never just after it (when the schedule could already
   * be destroying another copy).
   */
  switch (kind) {
  case KILL:      f.ms = rnd_in (s, 0, 2000); break;
  case STOP:
  case BLACKHOLE:
    f.ms = rnd (s) % 4 ? rnd_in (s, 1500, 7000) : rnd_in (s, 100, 600);
    break;
  case STOP_ALL:
    /* Past the first timeout, short of the grace: the copies stay. */
    f.ms = rnd_in (s, 1500, 4000);
    break;
  case CUT_LONG:  f.ms = rnd_in (s, 0, 400); break;
  case CUT:       f.ms = rnd_in (s, 100, 1000); break;
  case RESET:     f.ms = 0; break;
  case DELAY:
    /* Mostly a slow link; sometimes past timeout-ms, for less than the
     * lease: the old connections close as the client gives up on them,
     * and it cannot reconnect until the delay ends.
     */
    if (rnd (s) % 10 < 7) {
      f.delay_ms = rnd_in (s, 10, 300);
      f.ms = rnd_in (s, 500, 4000);
    }
    else {
      f.delay_ms = rnd_in (s, 1200, 1800);
      f.ms = rnd_in (s, 1500, 2500);
    }
    break;
  }
  return f;
}

static void
describe (const struct fault *f, char *buf, size_t len)
{
  if (f->kind == DELAY)
    snprintf (buf, len, "delay %u ms on m%u for %u ms", f->delay_ms, f->k,
              f->ms);
  else if (f->kind == CUT_LONG)
    snprintf (buf, len, "cut-long m%u (until its lease of %u ms expired,"
              " +%u ms)", f->k, lease_ms, f->ms);
  else if (f->kind == RESET)
    snprintf (buf, len, "reset m%u", f->k);
  else if (f->kind == STOP_ALL)
    snprintf (buf, len, "stop-all (every memserver) for %u ms", f->ms);
  else
    snprintf (buf, len, "%s m%u for %u ms", kind_names[f->kind], f->k, f->ms);
}

static int
fault_start (struct fault *f)
{
  struct server *s = &srv[f->k];

  switch (f->kind) {
  case KILL:
    kill (s->pid, SIGKILL);
    waitpid (s->pid, NULL, 0);
    s->pid = 0;
    return 0;
  case STOP:
    s->is_stopped = true;
    return kill (s->pid, SIGSTOP);
  case STOP_ALL:
    for (unsigned k = 0; k < NSERVERS; k++) {
      if (srv[k].pid == 0)
        continue;  /* (episodes come one by one: never the case) */
      srv[k].is_stopped = true;
      if (kill (srv[k].pid, SIGSTOP) == -1)
        return -1;
    }
    return 0;
  case CUT_LONG:
  case CUT:       return proxy ("m%u cut", f->k);
  case BLACKHOLE: return proxy ("m%u blackhole", f->k);
  case RESET:     return proxy ("m%u reset", f->k);
  case DELAY:     return proxy ("m%u delay %u", f->k, f->delay_ms);
  }
  return -1;
}

/* cut-long: wait (bounded) until memserver k holds nothing of ours: its
 * lease for this client expired and the sweep freed every extent.
 */
static int
wait_lease_expired (unsigned k)
{
  uint64_t start = now_ms ();

  for (;;) {
    int64_t used = server_used (k);
    if (used == 0)
      return 0;
    if (now_ms () - start > lease_ms + 10000) {
      failure ("m%u still holds %" PRId64 " bytes %u ms after it was cut off",
               k, used, (unsigned) (now_ms () - start));
      return -1;
    }
    sleep_ms (100);
  }
}

static int
fault_end (struct fault *f)
{
  struct server *s = &srv[f->k];

  switch (f->kind) {
  case KILL:      return start_memserver (f->k);
  case STOP:
    s->is_stopped = false;
    return kill (s->pid, SIGCONT);
  case STOP_ALL:
    for (unsigned k = 0; k < NSERVERS; k++) {
      if (!srv[k].is_stopped)
        continue;
      srv[k].is_stopped = false;
      if (kill (srv[k].pid, SIGCONT) == -1)
        return -1;
    }
    return 0;
  case RESET:     return 0;
  default:        return proxy ("m%u pass", f->k);
  }
}

/* Undo whatever is left after a failure: every link passes, every
 * server runs.
 */
static void
heal_all (void)
{
  for (unsigned k = 0; k < NSERVERS; k++) {
    if (srv[k].pid == 0)
      start_memserver (k);
    else if (srv[k].is_stopped) {
      kill (srv[k].pid, SIGCONT);
      srv[k].is_stopped = false;
    }
  }
  if (proxy_pid)
    proxy ("* pass");
}

/* The schedule deals episodes from a shuffled deck, so that every
 * deck (the first one is always played whole) has each destructive
 * fault once, a stop-all once, and 3 single and 2 paired others.
 */
enum slot { S_KILL, S_CUT_LONG, S_STOP_ALL, S_MILD, S_PAIR };
static const enum slot deck_cards[] = {
  S_KILL, S_CUT_LONG, S_STOP_ALL, S_MILD, S_MILD, S_MILD, S_PAIR, S_PAIR
};
#define DECK_SIZE (sizeof deck_cards / sizeof deck_cards[0])

static enum slot
deal (uint64_t *s)
{
  static enum slot deck[DECK_SIZE];
  static unsigned left;

  if (left == 0) {
    memcpy (deck, deck_cards, sizeof deck);
    for (unsigned i = DECK_SIZE - 1; i > 0; i--) {
      unsigned j = rnd (s) % (i + 1);
      enum slot t = deck[i];
      deck[i] = deck[j];
      deck[j] = t;
    }
    left = DECK_SIZE;
  }
  return deck[--left];
}

/* One episode: a destructive fault alone, or one or two others at
 * once.  Returns -1 on a failure.
 */
static int
episode (uint64_t *s, unsigned n)
{
  static const enum kind mild[] = { STOP, CUT, BLACKHOLE, RESET, DELAY };
  struct fault f[2];
  unsigned nf = 1, gap;
  enum slot slot = deal (s);
  char d[2][160];

  if (slot == S_KILL)
    f[0] = draw_fault (s, KILL, rnd (s) % NSERVERS);
  else if (slot == S_CUT_LONG)
    f[0] = draw_fault (s, CUT_LONG, rnd (s) % NSERVERS);
  else if (slot == S_STOP_ALL)
    f[0] = draw_fault (s, STOP_ALL, 0);
  else if (slot == S_MILD)
    f[0] = draw_fault (s, mild[rnd (s) % 5], rnd (s) % NSERVERS);
  else {
    unsigned k0 = rnd (s) % NSERVERS;
    unsigned k1 = (k0 + 1 + rnd (s) % (NSERVERS - 1)) % NSERVERS;
    f[0] = draw_fault (s, mild[rnd (s) % 5], k0);
    f[1] = draw_fault (s, mild[rnd (s) % 5], k1);
    nf = 2;
  }
  gap = rnd_in (s, 0, 1000);       /* quiet time after the episode */

  for (unsigned i = 0; i < nf; i++) {
    describe (&f[i], d[i], sizeof d[i]);
    say ("episode %u: %s", n, d[i]);
    if (fault_start (&f[i]) == -1)
      return -1;
  }
  if (f[0].kind == CUT_LONG) {
    if (wait_lease_expired (f[0].k) == -1)
      return -1;
    say ("episode %u: m%u freed this client's extents (lease expired)", n,
         f[0].k);
    sleep_ms (f[0].ms);
    if (fault_end (&f[0]) == -1)
      return -1;
  }
  else {
    /* Both last their time from the start; the shorter ends first. */
    unsigned first = nf == 2 && f[1].ms < f[0].ms ? 1 : 0;
    sleep_ms (f[first].ms);
    if (fault_end (&f[first]) == -1)
      return -1;
    if (nf == 2) {
      sleep_ms (f[!first].ms - f[first].ms);
      if (fault_end (&f[!first]) == -1)
        return -1;
    }
  }
  say ("episode %u: over", n);
  if (wait_healthy (nf == 1 ? d[0] : "after two faults") == -1)
    return -1;
  /* Healthy: what the pool counts good must be there, now. */
  {
    char when[32];
    snprintf (when, sizeof when, "after episode %u", n);
    if (audit_quiet (when) == -1)
      return -1;
  }
  sleep_ms (gap);
  return 0;
}

/* The end ------------------------------------------------------------ */

static void
final_checks (void)
{
  struct rp_pool_stats st;
  uint8_t *buf = malloc (1 << 20);
  uint64_t used = 0, owner = 0, expected = 0;

  audit_quiet ("at the end");
  rp_pool_get_stats (pool, &st);
  say_stats ("final", &st);
  for (uint64_t off = 0; off < disk_size; off += 1 << 20) {
    uint64_t len = disk_size - off < (1 << 20) ? disk_size - off : (1 << 20);
    struct worker w = { .id = 99 };
    if (rp_pool_pread (pool, buf, len, off) == -1)
      io_error (&w, "final read", off, len);
    else
      check (&w, buf, off, len, "final read");
  }
  free (buf);
  /* The servers hold exactly the copies the pool counts (polled: the
   * FREEs of what a server held for us while it was away are sent as
   * it comes back, maybe just now).
   */
  for (int tries = 0; tries < 100; tries++) {
    used = owner = 0;
    for (unsigned k = 0; k < NSERVERS; k++) {
      struct rp_server_info info;
      if (rp_pool_server_info (pool, k, &info) == -1) {
        failure ("m%u: STAT: %s", k, info.error);
        return;
      }
      used += info.used_bytes;
      owner += info.owner_bytes;
    }
    expected = st.extents_mapped * copies * copy_bytes;
    if (used == expected && owner == expected)
      break;
    sleep_ms (50);
  }
  say ("the memservers hold %" PRIu64 " bytes (%" PRIu64 " of this pool's"
       " session); %" PRIu64 " extents x %u copies of %" PRIu64 " = %" PRIu64,
       used, owner, st.extents_mapped, copies, copy_bytes, expected);
  if (used != expected || owner != expected)
    failure ("the memservers hold %" PRIu64 " bytes, the pool counts %" PRIu64,
             used, expected);
}

static void
usage (void)
{
  fprintf (stderr, "usage: test_chaos --memserver PATH --proxy PATH --dir DIR"
           " [--seed N] [--seconds N] [--threads N] [--size-mib N]"
           " [--lease-ms N] [--aio] [--verbose] [KEY=VALUE...]\n");
  exit (2);
}

int
main (int argc, char **argv)
{
  struct rp_config cfg;
  struct worker workers[MAX_THREADS];
  char err[1024], servers[1024];
  uint64_t seed = 0, size_mib = 48, sched;
  unsigned seconds = 30, nepisodes = 0;
  bool has_seed = false;
  int i;

  t0_ms = now_ms ();
  setvbuf (stdout, NULL, _IOLBF, 0);
  /* As nbdkit does: librampool writes to its sockets with writev, so a
   * connection reset by a memserver (or the proxy) while a request is
   * being sent raises SIGPIPE, which would end this program.
   */
  signal (SIGPIPE, SIG_IGN);
  rp_config_init (&cfg);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp (a, "--verbose") == 0) {
      is_verbose = true;
      continue;
    }
    if (strcmp (a, "--aio") == 0) {
      use_aio = true;
      continue;
    }
    if (strncmp (a, "--", 2) == 0) {
      if (i + 1 >= argc)
        usage ();
      const char *v = argv[++i];
      if (strcmp (a, "--memserver") == 0)
        memserver_path = v;
      else if (strcmp (a, "--proxy") == 0)
        proxy_path = v;
      else if (strcmp (a, "--dir") == 0)
        dir = v;
      else if (strcmp (a, "--seed") == 0) {
        seed = strtoull (v, NULL, 0);
        has_seed = true;
      }
      else if (strcmp (a, "--seconds") == 0)
        seconds = atoi (v);
      else if (strcmp (a, "--threads") == 0)
        nthreads = atoi (v);
      else if (strcmp (a, "--size-mib") == 0)
        size_mib = strtoull (v, NULL, 0);
      else if (strcmp (a, "--lease-ms") == 0)
        lease_ms = atoi (v);
      else
        usage ();
      continue;
    }
  }
  if (memserver_path == NULL || proxy_path == NULL || dir == NULL ||
      nthreads < 1 || nthreads > MAX_THREADS || size_mib < 8)
    usage ();
  if (!has_seed) {
    seed = (uint64_t) time (NULL) * 1000003u ^ (uint64_t) getpid () << 32;
    seed &= (UINT64_C (1) << 53) - 1;   /* easy to copy and paste */
  }
  if (seed == 0)
    seed = 1;
  printf ("test_chaos: seed %" PRIu64 " (replay: --seed %" PRIu64 "), %u s,"
          " %u servers, %u threads\n", seed, seed, seconds, NSERVERS, nthreads);
  say ("seed %" PRIu64, seed);
  rp_set_log (client_log);

  for (unsigned k = 0; k < NSERVERS; k++)
    if (start_memserver (k) == -1)
      goto out_stop;
  if (start_proxy () == -1)
    goto out_stop;

  /* The pool, through the proxy.  Keys after the test's own override. */
  servers[0] = '\0';
  for (unsigned k = 0; k < NSERVERS; k++)
    snprintf (servers + strlen (servers), sizeof servers - strlen (servers),
              "%s127.0.0.1:%d", k ? "," : "", srv[k].px_port);
  {
    char size[32];
    /* replicas=2, unless the arguments choose erasure coding (the
     * two keys exclude each other).
     */
    bool is_ec = false;
    for (int j = 1; j < argc; j++)
      is_ec |= strncmp (argv[j], "redundancy=ec:", 14) == 0;
    const char *keys[][2] = {
      { "servers", servers }, { "size", size },
      { is_ec ? "redundancy" : "replicas", is_ec ? "replicas" : "2" },
      { "extent-size", "256K" }, { "timeout-ms", "1000" },
      { "heartbeat-ms", "200" }, { "rejoin-grace-ms", "5000" },
      { "outage-wait-ms", "30000" },
    };
    snprintf (size, sizeof size, "%" PRIu64 "M", size_mib);
    for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++)
      if (rp_config_set (&cfg, keys[j][0], keys[j][1], err, sizeof err) == -1) {
        failure ("%s", err);
        goto out_stop;
      }
  }
  for (i = 1; i < argc; i++) {
    char key[64];
    const char *eq = strchr (argv[i], '=');
    if (strncmp (argv[i], "--", 2) == 0) {
      i += strcmp (argv[i], "--verbose") != 0 && strcmp (argv[i], "--aio") != 0;
      continue;
    }
    if (eq == NULL || eq - argv[i] >= (int) sizeof key) {
      failure ("'%s' is not KEY=VALUE", argv[i]);
      goto out_stop;
    }
    snprintf (key, sizeof key, "%.*s", (int) (eq - argv[i]), argv[i]);
    if (rp_config_set (&cfg, key, eq + 1, err, sizeof err) == -1) {
      failure ("%s", err);
      goto out_stop;
    }
  }
  /* Two copies out of reach at once at most (a destructive fault, or
   * two others overlapping): replicas=2 keeps one, an erasure code
   * with M >= 2 enough fragments.
   */
  if (cfg.ec_k ? cfg.ec_m < 2 : cfg.replicas != 2) {
    failure ("the schedule is made for replicas=2 or redundancy=ec:K+M"
             " with M >= 2");
    goto out_stop;
  }
  disk_size = cfg.size_bytes;
  extent_size = cfg.extent_size;
  copies = cfg.ec_k ? cfg.ec_k + cfg.ec_m : 2;
  copy_bytes = cfg.ec_k ? extent_size / cfg.ec_k : extent_size;
  slice_size = disk_size / nthreads;
  shadow = calloc (1, disk_size);
  pool = rp_pool_open (&cfg, err, sizeof err);
  if (pool == NULL) {
    failure ("rp_pool_open: %s", err);
    goto out_stop;
  }

  pthread_t expirer;
  if (use_aio)
    pthread_create (&expirer, NULL, chaos_expire, NULL);
  for (unsigned t = 0; t < nthreads; t++) {
    workers[t] = (struct worker) { .id = t };
    workers[t].rng = (seed + t + 1) * UINT64_C (0x9e3779b97f4a7c15) | 1;
    pthread_create (&workers[t].th, NULL, worker, &workers[t]);
  }
  sched = seed * UINT64_C (0xbf58476d1ce4e5b9) | 1;
  /* The first fault once the workers have written the whole disk. */
  pthread_mutex_lock (&io_lock);
  while (nprefilled < nthreads && atomic_load (&failures) == 0)
    pthread_cond_wait (&io_cond, &io_lock);
  pthread_mutex_unlock (&io_lock);
  say ("the disk is written; faults start");
  while ((now_ms () - t0_ms < seconds * 1000ull || nepisodes < DECK_SIZE) &&
         atomic_load (&failures) == 0)
    if (episode (&sched, ++nepisodes) == -1)
      break;
  atomic_store (&stop_io, true);
  for (unsigned t = 0; t < nthreads; t++)
    pthread_join (workers[t].th, NULL);
  if (use_aio) {
    atomic_store (&stop_expire, true);
    pthread_join (expirer, NULL);
  }

  /* Heal everything and check what the pool counts against what the
   * servers hold.
   */
  heal_all ();
  wait_healthy ("the end");
  final_checks ();
  {
    uint64_t r = 0, w = 0, z = 0, t = 0;
    for (unsigned j = 0; j < nthreads; j++) {
      r += workers[j].reads;
      w += workers[j].writes;
      z += workers[j].zeros;
      t += workers[j].trims;
    }
    say ("%u episodes; %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64
         " zeroes, %" PRIu64 " trims", nepisodes, r, w, z, t);
    struct rp_pool_stats st;
    rp_pool_get_stats (pool, &st);
    say ("copies recovered %" PRIu64 ", by COPY %" PRIu64 ", COPYs failed %"
         PRIu64 "; asynchronous requests %" PRIu64, st.recovered,
         st.peer_copies, st.peer_copy_failures, st.async_requests);
    if (use_aio && st.async_requests == 0)
      failure ("--aio: no request took the asynchronous path");
  }
  rp_pool_close (pool);
 out_stop:
  if (proxy_pid)
    stop_process (proxy_pid);
  for (unsigned k = 0; k < NSERVERS; k++)
    if (srv[k].pid)
      stop_process (srv[k].pid);
  rp_config_free (&cfg);
  free (shadow);
  printf ("test_chaos: %s: seed %" PRIu64 ", %d failure(s)\n",
          atomic_load (&failures) ? "FAIL" : "PASS", seed,
          atomic_load (&failures));
  return atomic_load (&failures) ? 1 : 0;
}
