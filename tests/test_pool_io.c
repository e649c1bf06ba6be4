/* test_pool_io: drive librampool directly (no nbdkit) from several
 * threads against real memservers, every byte checked against a shadow
 * copy.  This is how the engine runs under AddressSanitizer in the
 * sanitizer build (the plugin cannot: see configure.ac), and it checks
 * rampool's own trim semantics exactly: whole extents inside a trimmed
 * range read as zeros, partly covered extents keep their data.
 *
 * Usage: test_pool_io [--threads N] [--ops N] [--size-mib N]
 *                     [--kill-pid PID --kill-at OP] KEY=VALUE...
 * KEY=VALUE are pool keys (servers=..., replicas=..., encrypt=on, ...).
 * Each thread owns a disjoint slice of the disk, so the shadow is
 * exact without ordering between threads.  --kill-pid sends SIGKILL to
 * PID (a memserver) when thread 0 reaches op OP: the rest of the run
 * goes on with a server gone.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rampool/client.h"
#include "shadow.h"

static struct rp_pool *pool;
static uint8_t *shadow;
static uint64_t disk_size, slice_size, extent_size;
static unsigned nthreads = 4, nops = 4000;
static long kill_pid, kill_at = -1;
static int failures;

static void
fail (const char *what, uint64_t off, uint64_t len)
{
  fprintf (stderr, "test_pool_io: FAIL: %s at %" PRIu64 " length %" PRIu64
           ": %s\n", what, off, len, strerror (errno));
  __atomic_add_fetch (&failures, 1, __ATOMIC_RELAXED);
}

static void
check (const uint8_t *got, uint64_t off, uint64_t len)
{
  if (memcmp (got, shadow + off, len) != 0) {
    uint64_t i = 0;
    while (got[i] == shadow[off + i])
      i++;
    fprintf (stderr, "test_pool_io: MISMATCH at %" PRIu64 " (read %" PRIu64
             "+%" PRIu64 "): got %02x want %02x\n", off + i, off, len,
             got[i], shadow[off + i]);
    __atomic_add_fetch (&failures, 1, __ATOMIC_RELAXED);
  }
}

static void *
worker (void *arg)
{
  unsigned t = (uintptr_t) arg;
  uint64_t base = t * slice_size, seed = 0x9e3779b97f4a7c15ULL * (t + 1);
  uint8_t *buf = malloc (1 << 20);

  for (unsigned op = 0; op < nops && failures == 0; op++) {
    uint64_t len = 1 + rnd (&seed) % (rnd (&seed) % 4 ? 16384 : (1 << 20));
    uint64_t off;
    unsigned kind = rnd (&seed) % 100;

    if (t == 0 && kill_at >= 0 && op == (unsigned) kill_at) {
      fprintf (stderr, "test_pool_io: killing pid %ld at op %u\n", kill_pid,
               op);
      kill (kill_pid, SIGKILL);
    }
    if (len > slice_size)
      len = slice_size;
    off = base + rnd (&seed) % (slice_size - len + 1);
    if (kind < 45) {
      for (uint64_t i = 0; i < len; i++)
        buf[i] = rnd (&seed);
      if (rp_pool_pwrite (pool, buf, len, off) == -1)
        fail ("write", off, len);
      else
        memcpy (shadow + off, buf, len);
    }
    else if (kind < 90) {
      if (rp_pool_pread (pool, buf, len, off) == -1)
        fail ("read", off, len);
      else
        check (buf, off, len);
    }
    else if (kind < 95) {
      /* Both kinds: freeing whole extents, and keeping them (NO_HOLE). */
      if (rp_pool_zero (pool, len, off, rnd (&seed) & 1) == -1)
        fail ("zero", off, len);
      else
        memset (shadow + off, 0, len);
    }
    else {
      if (rp_pool_trim (pool, len, off) == -1)
        fail ("trim", off, len);
      else
        shadow_trim (shadow, disk_size, extent_size, off, len);
    }
  }
  free (buf);
  return NULL;
}

int
main (int argc, char **argv)
{
  struct rp_config cfg;
  char err[1024];
  pthread_t th[64];
  uint64_t size_mib = 64;
  uint8_t *buf;
  int i;

  rp_config_init (&cfg);
  for (i = 1; i < argc; i++) {
    char *eq = strchr (argv[i], '=');
    if (strncmp (argv[i], "--", 2) == 0 && i + 1 < argc) {
      if (strcmp (argv[i], "--threads") == 0)
        nthreads = atoi (argv[++i]);
      else if (strcmp (argv[i], "--ops") == 0)
        nops = atoi (argv[++i]);
      else if (strcmp (argv[i], "--size-mib") == 0)
        size_mib = atoi (argv[++i]);
      else if (strcmp (argv[i], "--kill-pid") == 0)
        kill_pid = atol (argv[++i]);
      else if (strcmp (argv[i], "--kill-at") == 0)
        kill_at = atol (argv[++i]);
      else {
        fprintf (stderr, "test_pool_io: unknown option %s\n", argv[i]);
        return 2;
      }
      continue;
    }
    if (eq == NULL) {
      fprintf (stderr, "test_pool_io: '%s' is not KEY=VALUE\n", argv[i]);
      return 2;
    }
    *eq = '\0';
    if (rp_config_set (&cfg, argv[i], eq + 1, err, sizeof err) == -1) {
      fprintf (stderr, "test_pool_io: %s\n", err);
      return 2;
    }
  }
  if (nthreads < 1 || nthreads > 64) {
    fprintf (stderr, "test_pool_io: --threads 1-64\n");
    return 2;
  }
  disk_size = size_mib << 20;
  if (cfg.size_bytes == 0)
    cfg.size_bytes = disk_size;
  disk_size = cfg.size_bytes;
  extent_size = cfg.extent_size;
  slice_size = disk_size / nthreads;
  shadow = calloc (1, disk_size);
  pool = rp_pool_open (&cfg, err, sizeof err);
  if (pool == NULL) {
    fprintf (stderr, "test_pool_io: %s\n", err);
    return 1;
  }
  for (unsigned t = 0; t < nthreads; t++)
    pthread_create (&th[t], NULL, worker, (void *) (uintptr_t) t);
  for (unsigned t = 0; t < nthreads; t++)
    pthread_join (th[t], NULL);
  /* The whole disk, once more. */
  buf = malloc (1 << 20);
  for (uint64_t off = 0; off < disk_size && failures == 0; off += 1 << 20) {
    uint64_t len = disk_size - off < (1 << 20) ? disk_size - off : (1 << 20);
    if (rp_pool_pread (pool, buf, len, off) == -1)
      fail ("final read", off, len);
    else
      check (buf, off, len);
  }
  free (buf);
  rp_pool_close (pool);
  rp_config_free (&cfg);
  free (shadow);
  printf ("test_pool_io: %s: %u threads x %u ops, %d failures\n",
          failures ? "FAIL" : "PASS", nthreads, nops, failures);
  return failures ? 1 : 0;
}
