/* rampool: the operator's command line tool.
 *
 *   rampool status SERVER...        per-server capacity, use, clients
 *                                   (--watch, --json: watch.c)
 *   rampool drain SERVER            empty a memserver and stop it, with
 *                                   progress
 *   rampool attach / detach         pool -> nbdkit -> nbd -> swap (attach.c)
 *   rampool keygen FILE             a new cluster key
 *   rampool verify [--mib=N] URI    write a pattern through an NBD
 *                                   export, read it back, check every
 *                                   byte, print throughput
 *
 * status talks the rampool protocol (librampool); verify talks NBD
 * (libnbd) to whatever serves the disk, e.g. nbdkit with the plugin.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libnbd.h>

#include "rampool/client.h"
#include "rampool/protocol.h"
#include "attach.h"
#include "auth.h"
#include "util.h"
#include "watch.h"

static void
usage (FILE *fp)
{
  fprintf (fp,
"Usage:\n"
"  rampool status [--raw] [--key-file=F] [--timeout-ms=MS] [--pool-stats=F]\n"
"                 SERVER[,SERVER...] ...\n"
"      show each memserver's capacity, use, extents and clients;\n"
"      --raw: one line per server: ADDR STATE CAPACITY USED EXTENTS CLIENTS\n"
"      --pool-stats=F: also show the plugin's stats-file= F (extent health,\n"
"      recovery progress, servers as the plugin sees them)\n"
"  rampool status --watch [--json] [--count=N] [--interval-ms=MS]\n"
"                 [--pool-stats=F | --metrics-file=F] [--key-file=F]\n"
"                 SERVER...\n"
"      a live table, refreshed every second: servers, use, the disk's IOPS,\n"
"      MiB/s, extents by state and recovery with an ETA (from the plugin's\n"
"      stats-file= or metrics-file= F); --json: one JSON object per refresh\n"
"  rampool drain [--key-file=F] [--deadline=S] [--timeout-ms=MS] [--no-wait]\n"
"                SERVER\n"
"      empty SERVER and stop it: no new extents there, its clients move what\n"
"      they hold elsewhere; shows progress until it stops (0: empty, 1: it\n"
"      stopped at its deadline with extents left); --deadline: seconds it\n"
"      may take (default: the server's --drain-timeout-ms)\n"
"  rampool verify [--mib=N] [--offset-mib=N] URI\n"
"      write N MiB (default 256) of a pattern through the NBD export URI,\n"
"      read it back, compare every byte; print MiB/s (on a terminal, with\n"
"      a progress bar)\n"
"  rampool attach [--device=/dev/nbdN] [--connections=N] [--no-swap]\n"
"                 [--discard] [--priority=P] [--timeout=S] [--plugin=PATH]\n"
"                 KEY=VALUE...\n"
"      serve the pool with nbdkit, attach it with nbd-client, mkswap, swapon\n"
"  rampool detach [--device=/dev/nbdN]\n"
"      swapoff, disconnect, stop nbdkit\n"
"  rampool keygen FILE\n"
"      write a new random cluster key to FILE (mode 0600; must not exist)\n"
"  rampool --version | --help\n"
"See rampool(1).\n");
}

/* The plugin's view (its stats-file=): servers as it sees them,
 * extents healthy / degraded / lost, recovery progress.  The figures
 * and their meanings come from the lists in client.h, the same ones
 * the plugin wrote the file from; a line this build does not know (a
 * newer plugin's) is shown as it is.
 */
static int
status_pool_stats (const char *path)
{
  static const struct { const char *name, *help; } figures[] = {
#define STATUS_FIGURE(name, help) { #name, help },
    RP_POOL_GAUGES (STATUS_FIGURE)
    RP_POOL_COUNTERS (STATUS_FIGURE)
#undef STATUS_FIGURE
  };
  FILE *fp = fopen (path, "r");
  char line[512];

  if (fp == NULL) {
    fprintf (stderr, "rampool status: --pool-stats: %s: %s\n", path,
             strerror (errno));
    return -1;
  }
  printf ("plugin (%s):\n", path);
  while (fgets (line, sizeof line, fp)) {
    char name[64];
    uint64_t v;
    const char *help = NULL;
    if (sscanf (line, "%63s %" SCNu64, name, &v) == 2)
      for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++)
        if (strcmp (figures[i].name, name) == 0)
          help = figures[i].help;
    if (help)
      printf ("  %-20s %12" PRIu64 "  %s\n", name, v, help);
    else
      printf ("  %s", line);
  }
  fclose (fp);
  return 0;
}

static int
cmd_status (int argc, char **argv)
{
  unsigned timeout_ms = 2000, up = 0, n = 0;
  uint64_t cap = 0, used = 0;
  bool is_raw = false;
  const char *key_file = NULL, *pool_stats = NULL;
  int i = 1;

  /* The live view and JSON are watch.c's. */
  for (int k = 1; k < argc && strncmp (argv[k], "--", 2) == 0; k++)
    if (strcmp (argv[k], "--watch") == 0 || strcmp (argv[k], "--json") == 0 ||
        strncmp (argv[k], "--metrics-file=", 15) == 0)
      return watch_main (argc, argv);
  for (; i < argc && strncmp (argv[i], "--", 2) == 0; i++) {
    uint64_t v;
    if (strcmp (argv[i], "--raw") == 0) {
      is_raw = true;
      continue;
    }
    if (strncmp (argv[i], "--key-file=", 11) == 0) {
      key_file = argv[i] + 11;
      continue;
    }
    if (strncmp (argv[i], "--pool-stats=", 13) == 0) {
      pool_stats = argv[i] + 13;
      continue;
    }
    if (strncmp (argv[i], "--timeout-ms=", 13) != 0) {
      fprintf (stderr, "rampool status: unknown option '%s'\n", argv[i]);
      return 2;
    }
    if (rp_parse_uint (argv[i] + 13, 1, 600000, &v) == -1) {
      fprintf (stderr, "rampool status: --timeout-ms: '%s' is not a number"
               " of milliseconds\n", argv[i] + 13);
      return 2;
    }
    timeout_ms = v;
  }
  if (i >= argc) {
    fprintf (stderr, "rampool status: name at least one SERVER (HOST:PORT)\n");
    return 2;
  }
  if (!is_raw)
    printf ("%-24s %-9s %10s %10s %10s %8s %7s %8s\n", "SERVER", "STATE",
            "LIMIT", "USED", "FREE", "EXTENTS", "CONNS", "CLIENTS");
  for (; i < argc; i++) {
    char *list = strdup (argv[i]), *save = NULL;
    for (char *a = strtok_r (list, ",", &save); a;
         a = strtok_r (NULL, ",", &save)) {
      struct rp_server_info info;
      char c[32], u[32], f[32];
      n++;
      if (rp_server_query (a, key_file, timeout_ms, &info) == -1) {
        if (is_raw)
          printf ("%s down\n", a);
        else
          printf ("%-24s %-9s %s\n", a, "DOWN", info.error);
        continue;
      }
      up++;
      cap += info.capacity_bytes;
      used += info.used_bytes;
      if (is_raw) {
        /* For scripts: bytes and counts, space separated; fields are
         * only ever added at the end.
         */
        printf ("%s up %" PRIu64 " %" PRIu64 " %" PRIu32 " %" PRIu32
                " %s %" PRIu64 "\n", a, info.capacity_bytes,
                info.used_bytes, info.extents, info.owners,
                watch_state_name (info.state), info.limit_bytes);
        continue;
      }
      /* Our own query connection is not a client worth counting. */
      printf (
        "%-24s %-9s %10s %10s %10s %8" PRIu32 " %7" PRIu32 " %8" PRIu32 "\n", a,
        watch_state_name (info.state),
        rp_human_size (info.limit_bytes, c, sizeof c),
        rp_human_size (info.used_bytes, u, sizeof u),
        rp_human_size (info.limit_bytes > info.used_bytes
                       ? info.limit_bytes - info.used_bytes : 0, f, sizeof f),
        info.extents, info.clients - 1, info.owners);
    }
    free (list);
  }
  if (pool_stats && status_pool_stats (pool_stats) == -1)
    return 1;
  if (!is_raw) {
    char c[32], u[32];
    printf ("pool: %u of %u servers up, %s used of %s\n", up, n,
            rp_human_size (used, u, sizeof u),
            rp_human_size (cap, c, sizeof c));
  }
  return up == n ? 0 : 1;
}

/* One line of drain progress: on a terminal a bar redrawn in place,
 * else a line at most every 10 s (and whenever the figures changed
 * after that).
 */
static void
drain_progress (const char *addr, bool is_tty, uint64_t start_used,
                const struct rp_server_info *info, uint64_t left_s)
{
  static uint64_t last_line_ms, last_used = UINT64_MAX;
  uint64_t now = rp_now_ms ();
  uint64_t moved = start_used > info->used_bytes
                   ? start_used - info->used_bytes : 0;
  unsigned pct = start_used ? (unsigned) (moved * 100 / start_used) : 100;
  char m[32], t[32], when[48] = "";

  if (left_s != UINT64_MAX)
    snprintf (when, sizeof when, ", %" PRIu64 " s to the deadline", left_s);
  rp_human_size (moved, m, sizeof m);
  rp_human_size (start_used, t, sizeof t);
  if (is_tty) {
    char bar[21];
    for (unsigned k = 0; k < 20; k++)
      bar[k] = k < pct / 5 ? '#' : '.';
    bar[20] = '\0';
    printf ("\r%s: [%s] %3u%% %s of %s moved, %" PRIu32 " extents of %"
            PRIu32 " clients left%s   ", addr, bar, pct, m, t, info->extents,
            info->owners, when);
    fflush (stdout);
    return;
  }
  if (now - last_line_ms < 10000 || info->used_bytes == last_used)
    return;
  last_line_ms = now;
  last_used = info->used_bytes;
  printf ("%s: %u%%: %s of %s moved, %" PRIu32 " extents of %" PRIu32
          " clients left%s\n", addr, pct, m, t, info->extents, info->owners,
          when);
  fflush (stdout);
}

static int
cmd_drain (int argc, char **argv)
{
  unsigned timeout_ms = 2000;
  uint64_t deadline_s = 0;
  bool is_wait = true, is_tty = isatty (STDOUT_FILENO);
  const char *key_file = NULL, *addr;
  struct rp_server_info info;
  char err[256], u[32];
  int i = 1;

  for (; i < argc && strncmp (argv[i], "--", 2) == 0; i++) {
    uint64_t v;
    if (strcmp (argv[i], "--no-wait") == 0)
      is_wait = false;
    else if (strncmp (argv[i], "--key-file=", 11) == 0)
      key_file = argv[i] + 11;
    else if (strncmp (argv[i], "--deadline=", 11) == 0) {
      if (rp_parse_uint (argv[i] + 11, 1, RP_DRAIN_MAX_MS / 1000,
                         &deadline_s) == -1) {
        fprintf (stderr, "rampool drain: --deadline: '%s' is not a number of"
                 " seconds from 1 to %u\n", argv[i] + 11,
                 RP_DRAIN_MAX_MS / 1000);
        return 2;
      }
    }
    else if (strncmp (argv[i], "--timeout-ms=", 13) == 0) {
      if (rp_parse_uint (argv[i] + 13, 1, 600000, &v) == -1) {
        fprintf (stderr, "rampool drain: --timeout-ms: '%s' is not a number"
                 " of milliseconds from 1 to 600000\n", argv[i] + 13);
        return 2;
      }
      timeout_ms = v;
    }
    else {
      fprintf (stderr, "rampool drain: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  if (i + 1 != argc) {
    fprintf (stderr, "rampool drain: name one SERVER (HOST:PORT)\n");
    return 2;
  }
  addr = argv[i];
  if (rp_server_query (addr, key_file, timeout_ms, &info) == -1) {
    fprintf (stderr, "rampool drain: %s: %s\n", addr, info.error);
    return 1;
  }
  uint64_t start_used = info.used_bytes, last_used = info.used_bytes;
  uint32_t last_state = info.state;
  if (rp_server_drain (addr, key_file, timeout_ms, deadline_s * 1000, err,
                       sizeof err) == -1) {
    fprintf (stderr, "rampool drain: %s: %s\n", addr, err);
    return 1;
  }
  uint64_t start = rp_now_ms ();
  printf ("%s: draining: %s in %" PRIu32 " extents of %" PRIu32
          " clients to move\n", addr, rp_human_size (start_used, u, sizeof u),
          info.extents, info.owners);
  if (!is_wait)
    return 0;
  for (;;) {
    struct timespec ts = { .tv_sec = 0, .tv_nsec = 500000000 };
    uint64_t left_s = UINT64_MAX;
    nanosleep (&ts, NULL);  /* a progress display: twice a second */
    if (rp_server_query (addr, key_file, timeout_ms, &info) == -1)
      break;  /* it stopped (or is out of reach: said below) */
    last_used = info.used_bytes;
    last_state = info.state;
    if (info.state == RP_STATE_DRAINED) {
      drain_progress (addr, is_tty, start_used, &info, UINT64_MAX);
      break;  /* empty, and it stops in a moment */
    }
    if (deadline_s) {
      uint64_t end = start + deadline_s * 1000, now = rp_now_ms ();
      left_s = end > now ? (end - now) / 1000 : 0;
      /* The server stops itself at the deadline; a minute later it
       * should be gone.
       */
      if (now > end + 60000) {
        printf ("\n");
        fprintf (stderr, "rampool drain: %s is still up a minute after the"
                 " deadline\n", addr);
        return 1;
      }
    }
    drain_progress (addr, is_tty, start_used, &info, left_s);
  }
  if (is_tty)
    printf ("\n");
  if (last_state == RP_STATE_DRAINED) {
    printf ("%s: drained: empty after %" PRIu64 " s; it stops now\n", addr,
            (rp_now_ms () - start) / 1000);
    return 0;
  }
  fprintf (stderr, "rampool drain: %s: no answer any more (%s) with %s still"
           " there at the last look: it stopped at its deadline, or died;"
           " its clients count those copies lost\n", addr, info.error,
           rp_human_size (last_used, u, sizeof u));
  return 1;
}

/* Pattern byte for disk offset off (different for every 8 bytes and
 * every run of the same length, so a misplaced block is caught).
 */
static uint64_t
verify_word (uint64_t off, uint64_t seed)
{
  uint64_t x = (off / 8) ^ seed;
  x ^= x >> 33;
  x *= UINT64_C (0xff51afd7ed558ccd);
  x ^= x >> 33;
  return x;
}

static void
verify_fill (uint8_t *buf, size_t len, uint64_t off, uint64_t seed)
{
  for (size_t i = 0; i < len; i += 8) {
    uint64_t w = verify_word (off + i, seed);
    memcpy (buf + i, &w, 8);
  }
}

#define VERIFY_BLOCK (1024 * 1024)
#define VERIFY_INFLIGHT 16

/* On a terminal, a bar redrawn in place as MiB complete (at most once
 * per percent); elsewhere nothing: each pass ends with a plain line.
 */
static void
verify_progress (const char *what, uint64_t done, uint64_t total)
{
  static unsigned last_pct = UINT_MAX;
  unsigned pct = total ? (unsigned) (done * 100 / total) : 100;
  char bar[21];

  if (pct == last_pct && done != total)
    return;
  last_pct = pct;
  for (unsigned k = 0; k < 20; k++)
    bar[k] = k < pct / 5 ? '#' : '.';
  bar[20] = '\0';
  printf ("\r%-6s [%s] %3u%% %" PRIu64 " of %" PRIu64 " MiB\033[K", what, bar,
          pct, done, total);
  fflush (stdout);
}

static int
cmd_verify (int argc, char **argv)
{
  uint64_t mib = 256, base_mib = 0, seed, bad = 0;
  struct nbd_handle *nbd;
  uint8_t *bufs[VERIFY_INFLIGHT];
  bool is_tty = isatty (STDOUT_FILENO);
  int64_t size;
  const char *uri;
  int i = 1;

  for (; i < argc && strncmp (argv[i], "--", 2) == 0; i++) {
    if (strncmp (argv[i], "--mib=", 6) == 0) {
      if (rp_parse_uint (argv[i] + 6, 1, 1 << 20, &mib) == -1) {
        fprintf (stderr, "rampool verify: --mib: '%s' is not 1-1048576\n",
                 argv[i] + 6);
        return 2;
      }
    }
    else if (strncmp (argv[i], "--offset-mib=", 13) == 0) {
      if (rp_parse_uint (argv[i] + 13, 0, 1 << 30, &base_mib) == -1) {
        fprintf (stderr, "rampool verify: --offset-mib: '%s' is not a number\n",
                 argv[i] + 13);
        return 2;
      }
    }
    else {
      fprintf (stderr, "rampool verify: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  if (i != argc - 1) {
    usage (stderr);
    return 2;
  }
  uri = argv[i];
  nbd = nbd_create ();
  if (nbd == NULL || nbd_connect_uri (nbd, uri) == -1) {
    fprintf (stderr, "rampool verify: %s: %s\n", uri, nbd_get_error ());
    return 1;
  }
  size = nbd_get_size (nbd);
  if (size < 0 || (uint64_t) size < (base_mib + mib) * VERIFY_BLOCK) {
    fprintf (stderr, "rampool verify: the export has %" PRId64 " bytes, fewer"
             " than --offset-mib + --mib = %" PRIu64 " MiB\n",
             size, base_mib + mib);
    nbd_close (nbd);
    return 1;
  }
  if (rp_random_bytes (&seed, sizeof seed) == -1)
    seed = rp_now_ns ();  /* test data only: any seed will do */
  for (int k = 0; k < VERIFY_INFLIGHT; k++)
    bufs[k] = malloc (VERIFY_BLOCK);

  for (int pass = 0; pass < 2; pass++) {
    uint64_t t0 = rp_now_ns (), next = 0, done = 0;
    int64_t cookies[VERIFY_INFLIGHT] = { 0 };
    uint64_t offs[VERIFY_INFLIGHT];

    while (done < mib) {
      for (int k = 0; k < VERIFY_INFLIGHT; k++) {
        if (cookies[k] > 0) {
          int r = nbd_aio_command_completed (nbd, cookies[k]);
          if (r == -1) {
            fprintf (stderr, "rampool verify: %s at %" PRIu64 ": %s\n",
                     pass ? "read" : "write", offs[k], nbd_get_error ());
            return 1;
          }
          if (r == 0)
            continue;
          cookies[k] = 0;
          done++;
          if (is_tty)
            verify_progress (pass ? "read" : "write", done, mib);
          if (pass == 1) {
            uint8_t expect[VERIFY_BLOCK];
            verify_fill (expect, VERIFY_BLOCK, offs[k], seed);
            if (memcmp (expect, bufs[k], VERIFY_BLOCK) != 0) {
              if (bad++ < 5)
                fprintf (stderr, "rampool verify: MISMATCH in the MiB at"
                         " offset %" PRIu64 "\n", offs[k]);
            }
          }
        }
        if (cookies[k] == 0 && next < mib) {
          offs[k] = (base_mib + next++) * VERIFY_BLOCK;
          if (pass == 0) {
            verify_fill (bufs[k], VERIFY_BLOCK, offs[k], seed);
            cookies[k] = nbd_aio_pwrite (nbd, bufs[k], VERIFY_BLOCK, offs[k],
                                         NBD_NULL_COMPLETION, 0);
          }
          else
            cookies[k] = nbd_aio_pread (nbd, bufs[k], VERIFY_BLOCK, offs[k],
                                        NBD_NULL_COMPLETION, 0);
          if (cookies[k] == -1) {
            fprintf (stderr, "rampool verify: %s\n", nbd_get_error ());
            return 1;
          }
        }
      }
      if (done < mib && nbd_poll (nbd, -1) == -1) {
        fprintf (stderr, "rampool verify: %s\n", nbd_get_error ());
        return 1;
      }
    }
    double s = (rp_now_ns () - t0) / 1e9;
    if (is_tty)
      printf ("\r\033[K");  /* the bar gives way to the pass's line */
    printf ("%s %" PRIu64 " MiB in %.2f s: %.0f MiB/s\n",
            pass ? "read+verified" : "wrote", mib, s, mib / s);
  }
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  for (int k = 0; k < VERIFY_INFLIGHT; k++)
    free (bufs[k]);
  if (bad) {
    printf ("verify: FAILED: %" PRIu64 " of %" PRIu64 " MiB differ\n", bad,
            mib);
    return 1;
  }
  printf ("verify: OK: every byte of %" PRIu64 " MiB read back as written\n",
          mib);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 ||
      strcmp (argv[1], "help") == 0) {
    usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "version") == 0) {
    printf ("rampool %s\n", PACKAGE_VERSION);
    return 0;
  }
  if (strcmp (argv[1], "status") == 0)
    return cmd_status (argc - 1, argv + 1);
  if (strcmp (argv[1], "verify") == 0)
    return cmd_verify (argc - 1, argv + 1);
  if (strcmp (argv[1], "drain") == 0)
    return cmd_drain (argc - 1, argv + 1);
  if (strcmp (argv[1], "attach") == 0)
    return attach_main (argc - 1, argv + 1);
  if (strcmp (argv[1], "detach") == 0)
    return detach_main (argc - 1, argv + 1);
  if (strcmp (argv[1], "keygen") == 0) {
    char err[512];
    if (argc != 3) {
      fprintf (stderr, "rampool keygen: name the FILE to create\n");
      return 2;
    }
    if (rp_auth_init () == -1 ||
        rp_key_generate (argv[2], err, sizeof err) == -1) {
      fprintf (stderr, "rampool keygen: %s\n", err);
      return 1;
    }
    printf ("rampool keygen: wrote a new cluster key to %s (mode 0600);"
            " copy it to every memserver and compute host of the pool\n",
            argv[2]);
    return 0;
  }
  fprintf (stderr, "rampool: unknown command '%s'\n", argv[1]);
  usage (stderr);
  return 2;
}
