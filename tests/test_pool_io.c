/* test_pool_io: drive librampool directly (no nbdkit) from several
 * threads against real memservers, every byte checked against a shadow
 * copy.  This is how the engine runs under AddressSanitizer in the
 * sanitizer build (the plugin cannot: see configure.ac), and it checks
 * rampool's own trim semantics exactly: whole extents inside a trimmed
 * range read as zeros, partly covered extents keep their data.
 *
 * Usage: test_pool_io [--threads N] [--ops N] [--size-mib N]
 *                     [--kill-pid PID --kill-at OP] [--overlap]
 *                     KEY=VALUE...
 * KEY=VALUE are pool keys (servers=..., replicas=..., encrypt=on, ...).
 * Each thread owns a disjoint slice of the disk, so the shadow is
 * exact without ordering between threads.  --kill-pid sends SIGKILL to
 * PID (a memserver) when thread 0 reaches op OP: the rest of the run
 * goes on with a server gone.
 *
 * --overlap first has every thread write the same few extents at
 * once (the first 4 of the disk), in rounds of 8 writes each, in whole
 * 4 KiB blocks: one block, or a run of blocks across an extent
 * boundary, or zeros.  Which of two overlapping writes lands last is
 * the engine's choice, but it must be the same on every copy: after
 * every round rp_pool_audit must find the copies identical, and every
 * block must hold whole the data of one write (each block is filled
 * with an 8-byte tag naming the write) or zeros.  After each write a
 * thread reads a block the others may be writing: whole, and without
 * failing over (no server fails here, so a read that tries a second
 * copy found a good one unreadable).  Some writes must have gone on
 * lanes and, without encrypt=on, some on the shared connections.  Then
 * the usual run on disjoint slices follows, every byte exact.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
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
static bool overlap;

#define BLOCK 4096
#define HOT_EXTENTS 4

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

/* A tag for write op of thread t: never 0, and not one byte repeated
 * (so no zeroed block passes for it).
 */
static uint64_t
tag_of (unsigned t, unsigned op)
{
  return UINT64_C (0x5a00000000000001) | (uint64_t) (t + 1) << 40 |
    (uint64_t) op << 8;
}

/* --overlap: rounds of BURST writes by every thread at once to the
 * same hot extents, in whole blocks, each block filled with its
 * write's tag; after each round thread 0 checks (overlap_check) while
 * the others wait.  A copy that took two overlapping writes in another
 * order than its peers shows only until a later write covers the
 * block, hence a check every round.  Most writes go to the blocks on
 * either side of an extent boundary, where single-block writes (one
 * chunk: lanes) and runs across the boundary (two chunks: the shared
 * connections) meet.
 */
#define BURST 8
#define RUN_MAX 16             /* blocks of a run across a boundary */

static pthread_barrier_t round_start, round_end;
static bool overlap_check (void);
static bool overlap_block_ok (const uint8_t *blk, uint64_t off,
                              const char *when);

static void *
overlap_worker (void *arg)
{
  unsigned t = (uintptr_t) arg;
  uint64_t seed = 0x9e3779b97f4a7c15ULL * (t + 1);
  uint64_t per = extent_size / BLOCK, nblocks = HOT_EXTENTS * per;
  uint8_t *buf = malloc (RUN_MAX * BLOCK);
  uint8_t rbuf[BLOCK];
  bool stop = false;

  for (unsigned op = 0; op < nops && !stop; ) {
    pthread_barrier_wait (&round_start);
    for (unsigned k = 0; k < BURST && op < nops; k++, op++) {
      unsigned kind = rnd (&seed) % 10;
      /* A block next to one of the HOT_EXTENTS - 1 inner boundaries. */
      uint64_t edge = (1 + rnd (&seed) % (HOT_EXTENTS - 1)) * per;
      uint64_t b = edge - (rnd (&seed) & 1), n = 1;
      uint64_t tag = tag_of (t, op);

      if (kind == 0)
        b = rnd (&seed) % nblocks;
      else if (kind >= 6) {
        /* Across edge: short runs every third round, long ones that
         * keep the shared connections busy (their frames are read in
         * several parts) in the others.
         */
        n = 2 + rnd (&seed) % (op / BURST % 3 ? RUN_MAX - 1 : 3);
        b = edge - 1 - rnd (&seed) % (n - 1);
      }
      if (kind == 9) {
        if (rp_pool_zero (pool, n * BLOCK, b * BLOCK, false) == -1)
          fail ("zero", b * BLOCK, n * BLOCK);
        continue;
      }
      for (uint64_t i = 0; i < n * BLOCK; i += 8)
        memcpy (buf + i, &tag, 8);
      if (rp_pool_pwrite (pool, buf, n * BLOCK, b * BLOCK) == -1)
        fail ("write", b * BLOCK, n * BLOCK);
      /* A read of a block the others may be writing right now: it
       * returns one of the writes (or zeros), whole, and finds every
       * copy good (with encrypt=on, a copy read before a write in
       * flight reaches it would fail authentication).
       */
      b = edge - (rnd (&seed) & 1);
      if (rp_pool_pread (pool, rbuf, BLOCK, b * BLOCK) == -1)
        fail ("read during writes", b * BLOCK, BLOCK);
      else
        overlap_block_ok (rbuf, b * BLOCK, "during writes");
    }
    pthread_barrier_wait (&round_end);
    if (t == 0 && failures == 0)
      overlap_check ();
    /* Everyone sees the check's verdict before the next round. */
    pthread_barrier_wait (&round_start);
    stop = __atomic_load_n (&failures, __ATOMIC_RELAXED) != 0;
    pthread_barrier_wait (&round_end);
  }
  free (buf);
  return NULL;
}

/* Is the block at blk (disk offset off) whole: zeros, or one tag all
 * through that names a write of the run?  If not, a failure (when).
 */
static bool
overlap_block_ok (const uint8_t *blk, uint64_t off, const char *when)
{
  uint64_t tag, t, op;
  bool whole = true;

  memcpy (&tag, blk, 8);
  t = (tag >> 40 & 0xffff) - 1;
  op = tag >> 8 & 0xffffffff;
  for (uint64_t i = 8; i < BLOCK && whole; i += 8)
    whole = memcmp (blk, blk + i, 8) == 0;
  if (whole &&
      (tag == 0 || (t < nthreads && op < nops && tag == tag_of (t, op))))
    return true;
  fprintf (stderr, "test_pool_io: MISMATCH: block at %" PRIu64 ", read %s,"
           " is not the whole data of one write (%s, first tag %016" PRIx64
           ")\n", off, when, whole ? "foreign tag" : "torn", tag);
  __atomic_add_fetch (&failures, 1, __ATOMIC_RELAXED);
  return false;
}

/* Between two rounds: the copies agree, and every block is whole
 * (zeros, or one tag all through that names a write of the run).
 * Returns whether all was well.
 */
static bool
overlap_check (void)
{
  uint64_t hot = HOT_EXTENTS * extent_size;
  static uint8_t *buf;
  struct rp_audit a;

  if (buf == NULL && (buf = malloc (hot)) == NULL) {
    fail ("malloc", 0, hot);
    return false;
  }
  if (rp_pool_audit (pool, &a) == -1) {
    fail ("audit", 0, hot);
    return false;
  }
  if (a.copies_differ || a.copies_missing || a.copies_unverified ||
      a.copies_unreachable || a.copies_checked == 0) {
    fprintf (stderr, "test_pool_io: FAIL: audit after overlapping writes:"
             " %" PRIu64 " copies checked, %" PRIu64 " differ, %" PRIu64
             " missing, %" PRIu64 " unverified, %" PRIu64 " unreachable\n",
             a.copies_checked, a.copies_differ, a.copies_missing,
             a.copies_unverified, a.copies_unreachable);
    __atomic_add_fetch (&failures, 1, __ATOMIC_RELAXED);
    return false;
  }
  if (rp_pool_pread (pool, buf, hot, 0) == -1) {
    fail ("read", 0, hot);
    return false;
  }
  for (uint64_t off = 0; off < hot; off += BLOCK)
    if (!overlap_block_ok (buf + off, off, "after the round"))
      return false;
  return true;
}

/* After the rounds: both kinds of write were in the mix, or the run
 * said nothing about their order (with encrypt=on every chunk is a
 * write of its own, so all may take lanes).
 */
static void
overlap_report (bool is_encrypted)
{
  struct rp_pool_stats st;

  rp_pool_get_stats (pool, &st);
  printf ("test_pool_io: overlapping writes: %u rounds checked; %" PRIu64
          " chunks written, %" PRIu64 " of them on lanes; %" PRIu64
          " reads, %" PRIu64 " on lanes\n",
          (nops + BURST - 1) / BURST, st.writes, st.lane_writes, st.reads,
          st.lane_reads);
  if (st.lane_writes == 0 ||
      (!is_encrypted && st.lane_writes == st.writes)) {
    fprintf (stderr, "test_pool_io: FAIL: the overlapping writes were not"
             " a mix of lanes and shared connections\n");
    __atomic_add_fetch (&failures, 1, __ATOMIC_RELAXED);
  }
  /* Every server was up all along: a read that had to try another copy
   * found a good one unreadable.
   */
  if (st.read_failovers) {
    fprintf (stderr, "test_pool_io: FAIL: %" PRIu64 " reads during the"
             " writes failed over to another copy\n", st.read_failovers);
    __atomic_add_fetch (&failures, 1, __ATOMIC_RELAXED);
  }
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
    if (strcmp (argv[i], "--overlap") == 0) {
      overlap = true;
      continue;
    }
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
  if (overlap && disk_size < HOT_EXTENTS * extent_size) {
    fprintf (stderr, "test_pool_io: --overlap needs %u extents\n",
             HOT_EXTENTS);
    return 2;
  }
  pool = rp_pool_open (&cfg, err, sizeof err);
  if (pool == NULL) {
    fprintf (stderr, "test_pool_io: %s\n", err);
    return 1;
  }
  if (overlap) {
    pthread_barrier_init (&round_start, NULL, nthreads);
    pthread_barrier_init (&round_end, NULL, nthreads);
    for (unsigned t = 0; t < nthreads; t++)
      pthread_create (&th[t], NULL, overlap_worker, (void *) (uintptr_t) t);
    for (unsigned t = 0; t < nthreads; t++)
      pthread_join (th[t], NULL);
    pthread_barrier_destroy (&round_start);
    pthread_barrier_destroy (&round_end);
    if (failures == 0)
      overlap_report (cfg.is_encrypted);
    /* From here on, the disjoint slices as usual: every byte exact. */
    memset (shadow, 0, disk_size);
    if (failures == 0 && rp_pool_zero (pool, disk_size, 0, false) == -1)
      fail ("zero all", 0, disk_size);
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
