/* nbdkit-rampool-plugin: a thin adapter from nbdkit to librampool.
 *
 * Config keys become a struct rp_config (client/config.c, which also
 * checks them and names the key in every error); pread/pwrite/trim/
 * zero/extents map one-to-one onto rp_pool_* calls.  The pool is opened
 * in after_fork because librampool starts threads, which must not
 * precede nbdkit's daemonizing fork.
 *
 * Swap safety: when this disk backs swap, its I/O threads must be able
 * to make progress while the host is short of memory.  Each thread
 * that enters the plugin asks for PR_SET_IO_FLUSHER (needs
 * CAP_SYS_RESOURCE; logged once if refused), the process asks for a low
 * oom_score_adj, and with mlock=on the process locks its memory
 * (MCL_ONFAULT: only what it touches) after the fork.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sched.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "rampool/client.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* -D rampool.verbose=1: librampool's debug lines. */
NBDKIT_DLL_PUBLIC int rampool_debug_verbose = 0;

/* The pool configuration, filled by rampool_config.  Two of its keys
 * are this plugin's alone:
 *  - mlock=on: mlockall after the fork (for swap);
 *  - realtime=PRIO: SCHED_FIFO at PRIO for every thread in the I/O
 *    path (0: off).  Under global memory pressure the kernel lets
 *    real-time tasks allocate below the min watermark (ALLOC_HARDER;
 *    6.1) where ordinary tasks, the workload that causes the pressure
 *    included, enter direct reclaim; the TCP sends of a swap write need
 *    such pages.
 */
static struct rp_config rampool_cfg;
/* The pool, opened in after_fork, closed in unload. */
static struct rp_pool *rampool_pool;

/* nbdkit has two levels: errors, always shown, and debug lines, shown
 * with -v.  Errors and warnings (a server down, a restart, lost
 * extents) matter to operators and go out as nbdkit errors with their
 * real level in front; informational lines (the pool open, a server
 * back) are debug lines, so that an operator grepping for errors finds
 * only what went wrong; librampool's own debug lines need -D
 * rampool.verbose=1 as well.
 */
static void
rampool_log (int level, const char *msg)
{
  static const char *const names[] = { "error", "warning" };

  if (level <= 1)
    nbdkit_error ("rampool: %s: %s", names[level], msg);
  else if (level == 2)
    nbdkit_debug ("rampool: info: %s", msg);
  else if (rampool_debug_verbose)
    nbdkit_debug ("rampool: %s", msg);
}

static void
rampool_load (void)
{
  rp_config_init (&rampool_cfg);
  rp_set_log (rampool_log);
}

static void
rampool_unload (void)
{
  rp_pool_close (rampool_pool);
  rampool_pool = NULL;
  rp_config_free (&rampool_cfg);
}

static int
rampool_config (const char *key, const char *value)
{
  char err[256];

  if (rp_config_set_for (&rampool_cfg, RP_FRONT_PLUGIN, key, value, err,
                         sizeof err) == -1) {
    nbdkit_error ("%s", err);
    return -1;
  }
  return 0;
}

static int
rampool_config_complete (void)
{
  char err[256];

  if (rp_config_check (&rampool_cfg, err, sizeof err) == -1) {
    nbdkit_error ("%s", err);
    return -1;
  }
  return 0;
}

/* Try PR_SET_IO_FLUSHER on the calling thread; log once per process. */
static void
rampool_io_flusher (void)
{
  static __thread bool tried;
  static bool logged;

  if (tried)
    return;
  tried = true;
  if (prctl (PR_SET_IO_FLUSHER, 1, 0, 0, 0) == -1 &&
      !__atomic_exchange_n (&logged, true, __ATOMIC_RELAXED))
    nbdkit_debug ("rampool: PR_SET_IO_FLUSHER refused (%m): without"
                  " CAP_SYS_RESOURCE the kernel may throttle this swap"
                  " server's threads in reclaim; see"
                  " nbdkit-rampool-plugin(1), SWAP");
  if (rampool_cfg.realtime_prio > 0) {
    static bool rt_logged;
    struct sched_param sp = { .sched_priority = rampool_cfg.realtime_prio };
    /* Linux: policy and priority are per thread; threads created
     * later by this one (connection readers, monitor) inherit them.
     */
    if (sched_setscheduler (0, SCHED_FIFO, &sp) == -1 &&
        !__atomic_exchange_n (&rt_logged, true, __ATOMIC_RELAXED))
      nbdkit_error ("rampool: realtime=%u: sched_setscheduler: %m"
                    " (needs CAP_SYS_NICE or RLIMIT_RTPRIO)",
                    rampool_cfg.realtime_prio);
  }
}

static void
rampool_swap_safety (void)
{
  FILE *fp;

  /* The swap server must be the last thing the OOM killer picks. */
  fp = fopen ("/proc/self/oom_score_adj", "w");
  if (fp == NULL || fprintf (fp, "-900\n") < 0 || fclose (fp) == EOF)
    nbdkit_debug ("rampool: cannot lower oom_score_adj: %m");
  if (rampool_cfg.is_mlocked &&
      mlockall (MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == -1)
    nbdkit_error ("rampool: mlock=on: mlockall: %m (raise RLIMIT_MEMLOCK)");
  rampool_io_flusher ();
}

static int
rampool_after_fork (void)
{
  char err[1024];

  rampool_swap_safety ();
  rampool_pool = rp_pool_open (&rampool_cfg, err, sizeof err);
  if (rampool_pool == NULL) {
    nbdkit_error ("cannot open the pool: %s", err);
    return -1;
  }
  return 0;
}

static void *
rampool_open (int readonly)
{
  /* One pool serves every connection: there is no per-connection
   * state, hence can_multi_conn.
   */
  return rampool_pool;
}

static int64_t
rampool_get_size (void *handle)
{
  return rampool_cfg.size_bytes;
}

static int
rampool_can_multi_conn (void *handle)
{
  return 1;
}

static int
rampool_can_flush (void *handle)
{
  return 1;
}

static int
rampool_can_fua (void *handle)
{
  /* A write is acknowledged only when every replica holds it. */
  return NBDKIT_FUA_NATIVE;
}

static int
rampool_can_trim (void *handle)
{
  return 1;
}

static int
rampool_can_zero (void *handle)
{
  return 1;
}

static int
rampool_can_fast_zero (void *handle)
{
  /* Zeroing never moves data: whole extents are freed (or, with
   * NO_HOLE, zeroed by the server), partial ones zeroed by the server.
   */
  return 1;
}

static int
rampool_can_extents (void *handle)
{
  return 1;
}

static int
rampool_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
               uint32_t flags)
{
  rampool_io_flusher ();
  if (rp_pool_pread (rampool_pool, buf, count, offset) == -1) {
    nbdkit_error ("pread at %" PRIu64 ": %m", offset);
    return -1;
  }
  return 0;
}

static int
rampool_pwrite (void *handle, const void *buf, uint32_t count,
                uint64_t offset, uint32_t flags)
{
  rampool_io_flusher ();
  if (rp_pool_pwrite (rampool_pool, buf, count, offset) == -1) {
    nbdkit_error ("pwrite at %" PRIu64 ": %m", offset);
    return -1;
  }
  return 0;
}

static int
rampool_flush (void *handle, uint32_t flags)
{
  /* Every acknowledged write is already on every good replica. */
  return 0;
}

static int
rampool_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  rampool_io_flusher ();
  if (rp_pool_trim (rampool_pool, count, offset) == -1) {
    nbdkit_error ("trim at %" PRIu64 ": %m", offset);
    return -1;
  }
  return 0;
}

static int
rampool_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  rampool_io_flusher ();
  /* Without MAY_TRIM (the client sent NBD_CMD_FLAG_NO_HOLE) the range
   * must stay allocated: zeroed in place, never freed.
   */
  if (rp_pool_zero (rampool_pool, count, offset,
                    (flags & NBDKIT_FLAG_MAY_TRIM) != 0) == -1) {
    nbdkit_error ("zero at %" PRIu64 ": %m", offset);
    return -1;
  }
  return 0;
}

static int
rampool_extents (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags, struct nbdkit_extents *extents)
{
  uint64_t es = rp_pool_extent_size (rampool_pool);
  uint64_t end = offset + count;

  /* Report whole extents from the one holding `offset`; nbdkit clips. */
  for (uint64_t pos = offset & ~(es - 1); pos < end; pos += es) {
    uint32_t type = rp_pool_is_mapped (rampool_pool, pos)
      ? 0 : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
    uint64_t len = es;
    if (pos + len > rampool_cfg.size_bytes)
      len = rampool_cfg.size_bytes - pos;
    if (nbdkit_add_extent (extents, pos, len, type) == -1)
      return -1;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  return 0;
}

/* Every callback may run concurrently: librampool is thread-safe. */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static struct nbdkit_plugin plugin = {
  .name = "rampool",
  .longname = "rampool: a disk in pooled remote RAM",
  .version = PACKAGE_VERSION,
  .load = rampool_load,
  .unload = rampool_unload,
  .config = rampool_config,
  .config_complete = rampool_config_complete,
  .config_help = NULL,         /* rampool_make_help, from the key table */
  .magic_config_key = NULL,
  .after_fork = rampool_after_fork,
  .open = rampool_open,
  .get_size = rampool_get_size,
  .can_multi_conn = rampool_can_multi_conn,
  .can_flush = rampool_can_flush,
  .can_fua = rampool_can_fua,
  .can_trim = rampool_can_trim,
  .can_zero = rampool_can_zero,
  .can_fast_zero = rampool_can_fast_zero,
  .can_extents = rampool_can_extents,
  .pread = rampool_pread,
  .pwrite = rampool_pwrite,
  .flush = rampool_flush,
  .trim = rampool_trim,
  .zero = rampool_zero,
  .extents = rampool_extents,
  .errno_is_preserved = 1,
};

/* nbdkit copies the plugin struct before it calls any callback, so the
 * help text (made from the one key table, client/config.c) is filled in
 * when the plugin is loaded.
 */
static void __attribute__ ((constructor))
rampool_make_help (void)
{
  plugin.config_help = rp_config_help (RP_FRONT_PLUGIN);
}

NBDKIT_REGISTER_PLUGIN (plugin)
