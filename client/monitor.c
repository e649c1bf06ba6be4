/* The monitor: the pool's one background thread.  Every heartbeat it
 * parks and unparks idle servers (connections on demand, below),
 * PINGs every up server at once (a hung server is found even with no
 * I/O going to it), starts a reconnect of down servers, each on a
 * thread of that server's own (a server that swallows packets holds up
 * only itself), at most MONITOR_CONNECTORS at once, runs a recovery
 * pass, and writes the stats file.  With
 * servers-file= it first looks whether the file changed (membership.c),
 * and with metrics-file= it writes the metrics too (metrics.c).
 *
 * Not here: what a reconnect decides (donor.c), what recovery does
 * (recovery.c), the figures (stats.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "donor.h"
#include "logging.h"
#include "membership.h"
#include "metrics.h"
#include "monitor.h"
#include "recovery.h"
#include "stats.h"
#include "util.h"

/* Servers connected at once, at open and when down ones are retried:
 * a pool of hundreds of donors must not start hundreds of threads (256
 * KiB of stack each, locked with mlock=on) when it opens or when a rack
 * goes away.  A server that swallows packets still holds up only the
 * thread it is on.
 */
#define MONITOR_CONNECTORS 32

/* PING every up server at once and wait for all the replies with one
 * deadline: a PING that misses it kills its connection, which takes
 * that server down.  This is how a hung server is found even when no
 * I/O goes to it, and one hung server costs the round one timeout,
 * not one per server.  The calls are the pool's (ping_calls, a slot
 * each, made at open), not this thread's stack.
 */
static void
monitor_ping_all (struct rp_pool *p)
{
  struct conn_call *calls = p->ping_calls;
  struct conn_wait w;
  unsigned n = 0;

  conn_wait_init (&w);
  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    if (!atomic_load (&s->is_up) || atomic_load (&s->is_reconnecting))
      continue;
    memset (&calls[n], 0, sizeof calls[n]);
    calls[n].req.op = RP_OP_PING;
    calls[n].wait = &w;
    if (conn_submit (&s->conns[0], &calls[n]) == 0)
      n++;
  }
  conn_wait_all (&w, calls, n, rp_now_ms () + p->cfg.timeout_ms);
  conn_wait_destroy (&w);
}

/* A server's reconnect, on its own thread (see monitor_thread). */
static void *
monitor_reconnect_thread (void *arg)
{
  struct donor *s = arg;
  char err[160];

  if (donor_connect (s->pool, s, err, sizeof err) == 0) {
    logging_msg (LOGGING_INFO, "server %s up", s->addr);
    s->last_connect_err[0] = '\0';
  }
  else if (strcmp (err, s->last_connect_err) != 0) {
    /* Once per distinct reason, not every heartbeat. */
    logging_msg (LOGGING_WARN, "server %s: reconnect failed: %s", s->addr, err);
    snprintf (s->last_connect_err, sizeof s->last_connect_err, "%s", err);
  }
  atomic_store (&s->is_reconnecting, false);
  return NULL;
}

/* Start a reconnect of down servers that have none running, each on
 * its own thread, MONITOR_CONNECTORS at most at once: a blackholed
 * server (connect and HELLO time out) holds up only itself.  The look
 * starts where the last one stopped starting threads, so servers that
 * stay unreachable cannot keep the others waiting.  Joins the threads
 * that have finished.  Monitor thread only.
 */
static void
monitor_reconnect_down (struct rp_pool *p)
{
  unsigned n = p->nservers, running = 0;

  for (unsigned i = 0; i < n; i++) {
    struct donor *s = &p->servers[i];
    if (atomic_load (&s->is_reconnecting))
      running++;
    else if (s->has_reconnector) {
      pthread_join (s->reconnector, NULL);
      s->has_reconnector = false;
    }
  }
  for (unsigned k = 0; k < n && running < MONITOR_CONNECTORS; k++) {
    unsigned i = (p->reconnect_from + k) % n;
    struct donor *s = &p->servers[i];
    if (s->has_reconnector || atomic_load (&s->is_up) ||
        atomic_load (&s->is_retired) || atomic_load (&s->park) == PARK_DONE)
      continue;
    atomic_store (&s->is_reconnecting, true);
    if (rp_thread_start (&s->reconnector, 256 * 1024,
                         monitor_reconnect_thread, s) == 0) {
      s->has_reconnector = true;
      running++;
      p->reconnect_from = i + 1;
    }
    else
      atomic_store (&s->is_reconnecting, false);  /* next heartbeat */
  }
}

/* Connections on demand (spare-servers=).  Every heartbeat the copies
 * of ours on each server are counted from the map (O(extents), no
 * round trip).  Servers that hold none, have nothing in flight or
 * owed to them and have been so for MONITOR_PARK_IDLE_BEATS
 * heartbeats are parked beyond the spares wanted, the roomiest kept:
 * first taken out of placement (PARK_PENDING), then, once an ALLOC
 * sent before that can no longer land (timeout-ms and two heartbeats
 * later) and still holding nothing, disconnected (PARK_DONE: not
 * pinged, not reconnected).  When the connected spares fall below
 * those wanted (they took copies, or failed), or a placement found no
 * server to draw, parked servers are reconnected, the roomiest (as
 * last heard) first.  So a client's connections, reader threads and
 * PINGs follow the servers it uses, not the pool's size.
 */
#define MONITOR_PARK_IDLE_BEATS 10

static unsigned
monitor_spares_wanted (const struct rp_pool *p)
{
  unsigned stripe = p->cfg.ec_k ? p->cfg.ec_k + p->cfg.ec_m : p->cfg.replicas;

  return p->cfg.spare_servers > stripe ? p->cfg.spare_servers : stripe;
}

static void
monitor_count_copies (struct rp_pool *p, unsigned n)
{
  memset (p->copies_on, 0, n * sizeof *p->copies_on);
  memset (p->leaving_on, 0, n * sizeof *p->leaving_on);
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    unsigned nrep;
    const struct replica *rep = extent_map_copies (&p->map, idx, &nrep);
    for (unsigned r = 0; r < nrep; r++) {
      unsigned srv = __atomic_load_n (&rep[r].server, __ATOMIC_RELAXED);
      if (__atomic_load_n (&rep[r].handle, __ATOMIC_RELAXED) && srv < n) {
        p->copies_on[srv]++;
        if (__atomic_load_n (&rep[r].leaving, __ATOMIC_RELAXED) == 1)
          p->leaving_on[srv]++;
      }
    }
  }
}

/* Servers with no copy asked back (counted just now, by this thread:
 * recovery, which marks them, runs on it too) and no RECLAIM queued:
 * no reclaim is due there any more (engine.h, reclaim_due_ms).  A copy
 * missed while another thread moves it in its extent only clears it
 * early: later copies are then given up or HELD sooner, never late.
 */
static void
monitor_reclaims_done (struct rp_pool *p, unsigned n)
{
  for (unsigned i = 0; i < n; i++) {
    struct donor *s = &p->servers[i];
    if (p->leaving_on[i] || atomic_load (&s->reclaim_due_ms) == 0)
      continue;
    pthread_mutex_lock (&s->reclaim_lock);
    if (s->nreclaim == 0)
      atomic_store (&s->reclaim_due_ms, 0);
    pthread_mutex_unlock (&s->reclaim_lock);
  }
}

/* Server i is up, a member in good standing, and nothing of ours is
 * on it, in flight to it or owed to it (orphans to free, an ALLOC in
 * doubt).
 */
/* Something of ours is on server i, or owed to it. */
static bool
monitor_is_owed (struct rp_pool *p, unsigned i)
{
  struct donor *s = &p->servers[i];
  bool owed;

  pthread_mutex_lock (&s->orphan_lock);
  owed = s->norphans > 0;
  pthread_mutex_unlock (&s->orphan_lock);
  return owed || p->copies_on[i] > 0 ||
         atomic_load (&s->has_alloc_in_doubt);
}

static bool
monitor_is_idle (struct rp_pool *p, unsigned i)
{
  struct donor *s = &p->servers[i];

  return atomic_load (&s->is_up) && !atomic_load (&s->is_reconnecting) &&
         !atomic_load (&s->is_draining) && !atomic_load (&s->is_removed) &&
         !atomic_load (&s->is_retired) && atomic_load (&s->inflight) == 0 &&
         !monitor_is_owed (p, i);
}

/* The index in [0, n) of the server with the least (or most) free
 * bytes among those `pick` accepts, or -1.
 */
static int
monitor_by_room (struct rp_pool *p, unsigned n, bool most,
                 bool (*pick) (struct rp_pool *, unsigned, uint64_t),
                 uint64_t now)
{
  int best = -1;
  uint64_t best_free = 0;

  for (unsigned i = 0; i < n; i++) {
    if (!pick (p, i, now))
      continue;
    uint64_t f = atomic_load (&p->servers[i].free_bytes);
    if (best < 0 || (most ? f > best_free : f < best_free)) {
      best = i;
      best_free = f;
    }
  }
  return best;
}

/* Idle long enough to park (PARK_NO). */
static bool
monitor_may_park (struct rp_pool *p, unsigned i, uint64_t now)
{
  struct donor *s = &p->servers[i];

  return atomic_load (&s->park) == PARK_NO && s->park_ms != 0 &&
         now - s->park_ms >= MONITOR_PARK_IDLE_BEATS * p->cfg.heartbeat_ms &&
         monitor_is_idle (p, i);
}

static bool
monitor_is_parked (struct rp_pool *p, unsigned i, uint64_t now)
{
  (void) now;
  return atomic_load (&p->servers[i].park) == PARK_DONE &&
         !atomic_load (&p->servers[i].is_retired);
}

/* Has server i room for one more copy of ours? */
static bool
monitor_has_room (struct rp_pool *p, unsigned i)
{
  uint64_t copy = p->cfg.extent_size / (p->cfg.ec_k ? p->cfg.ec_k : 1);

  return atomic_load (&p->servers[i].free_bytes) >= copy;
}

static void
monitor_park (struct rp_pool *p)
{
  unsigned n = atomic_load (&p->nservers), want = monitor_spares_wanted (p);
  unsigned spares = 0, coming = 0;  /* spares: idle, with room */
  uint64_t now = rp_now_ms ();
  uint64_t settle = p->cfg.timeout_ms + 2 * (uint64_t) p->cfg.heartbeat_ms;
  uint64_t idle = MONITOR_PARK_IDLE_BEATS * (uint64_t) p->cfg.heartbeat_ms;
  int i;

  if (want > n)
    want = n;
  monitor_count_copies (p, n);
  monitor_reclaims_done (p, n);
  for (unsigned k = 0; k < n; k++) {
    struct donor *s = &p->servers[k];
    int st = atomic_load (&s->park);
    if (st == PARK_DONE) {
      /* A copy landed after all (an ALLOC slower than the settling
       * time), or something is owed there: it is needed back.
       */
      if (!atomic_load (&s->is_retired) && monitor_is_owed (p, k)) {
        atomic_store (&s->park, PARK_NO);
        s->park_ms = 0;
      }
      continue;
    }
    if (!monitor_is_idle (p, k)) {
      if (st == PARK_PENDING)
        atomic_store (&s->park, PARK_NO);   /* in use after all */
      s->park_ms = 0;
      /* Reconnecting to serve as a spare (unparked, not up yet). */
      if (!atomic_load (&s->is_up) && p->copies_on[k] == 0 &&
          atomic_load (&s->is_reconnecting))
        coming++;
      continue;
    }
    if (st == PARK_NO && s->park_ms == 0)
      s->park_ms = now;
    if (st == PARK_NO && monitor_has_room (p, k))
      spares++;
  }
  /* Pending ones settled: parked, unless the spares fell short
   * meanwhile (then back in placement).
   */
  for (unsigned k = 0; k < n; k++) {
    struct donor *s = &p->servers[k];
    if (atomic_load (&s->park) != PARK_PENDING || now - s->park_ms < settle)
      continue;
    if (spares >= want)
      donor_park (s, spares);
    else {
      atomic_store (&s->park, PARK_NO);
      s->park_ms = now;
      if (monitor_has_room (p, k))
        spares++;
    }
  }
  /* Too many: take the fullest idle ones out of placement (those with
   * no room for us first), keeping `want` with room.
   */
  while ((i = monitor_by_room (p, n, false, monitor_may_park, now)) >= 0) {
    bool has_room = monitor_has_room (p, i);
    if (has_room && spares <= want)
      break;
    atomic_store (&p->servers[i].park, PARK_PENDING);
    p->servers[i].park_ms = now;
    if (has_room)
      spares--;
  }
  /* Down servers that hold nothing of ours stop being retried every
   * heartbeat once spares enough are up: parked too, and tried again
   * only when wanted as a spare.  (Their reconnect thread, finished,
   * is joined here; monitor_reconnect_down would start another.)
   */
  for (unsigned k = 0; k < n && spares >= want; k++) {
    struct donor *s = &p->servers[k];
    if (atomic_load (&s->park) != PARK_NO || atomic_load (&s->is_up) ||
        atomic_load (&s->is_reconnecting) || atomic_load (&s->is_retired) ||
        atomic_load (&s->is_removed) || monitor_is_owed (p, k) ||
        now - atomic_load (&s->down_since_ms) < idle)
      continue;
    if (s->has_reconnector) {
      pthread_join (s->reconnector, NULL);
      s->has_reconnector = false;
    }
    donor_park (s, spares);
  }
  /* Too few: bring back the roomiest parked ones. */
  unsigned need = spares + coming < want ? want - spares - coming : 0;
  if (atomic_exchange (&p->is_place_starved, false))
    need += want;
  while (need > 0 &&
         (i = monitor_by_room (p, n, true, monitor_is_parked, now)) >= 0) {
    atomic_store (&p->servers[i].park, PARK_NO);
    p->servers[i].park_ms = 0;
    logging_msg (LOGGING_DEBUG, "server %s: reconnecting, wanted as a spare",
                 p->servers[i].addr);
    need--;
  }
}

/* A server's first connect, at pool open: the reason of a failure is
 * left in last_connect_err for rp_pool_open to report.
 */
static void
monitor_connect_one (struct donor *s)
{
  if (donor_connect (s->pool, s, s->last_connect_err,
                     sizeof s->last_connect_err) == 0)
    s->last_connect_err[0] = '\0';
}

/* Join every reconnect thread (close).  Each ends within about
 * connections x 2 x timeout-ms.
 */
void
monitor_join_connects (struct rp_pool *p)
{
  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    if (s->has_reconnector) {
      pthread_join (s->reconnector, NULL);
      s->has_reconnector = false;
    }
  }
}

static void
monitor_write_stats_file (struct rp_pool *p)
{
  struct rp_pool_stats st;
  char tmp[4096];
  FILE *fp;

  stats_get (p, &st);
  snprintf (tmp, sizeof tmp, "%s.tmp", p->cfg.stats_file);
  /* O_NOFOLLOW: a link planted at PATH.tmp must not redirect the write. */
  int fd =
    open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd == -1)
    return;
  fp = fdopen (fd, "w");
  if (fp == NULL) {
    close (fd);
    return;
  }
  /* "name value" per figure, in the order of the lists (client.h). */
#define POOL_STATS_LINE(name, help) \
  fprintf (fp, "%s %" PRIu64 "\n", #name, st.name);
  RP_POOL_GAUGES (POOL_STATS_LINE)
  RP_POOL_COUNTERS (POOL_STATS_LINE)
#undef POOL_STATS_LINE
  /* redundancy=ec:K+M: the extents above are stripes. */
  if (p->cfg.ec_k)
    fprintf (fp, "ec_data_fragments %u\nec_parity_fragments %u\n",
             p->cfg.ec_k, p->cfg.ec_m);
  /* "server ADDR up|down|parked|retired epoch N", then "draining" or
   * "removed" while it is on its way out.
   */
  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    bool is_retired = atomic_load (&s->is_retired);
    fprintf (fp, "server %s %s epoch %u%s\n", s->addr,
             is_retired ? "retired"
             : atomic_load (&s->park) == PARK_DONE ? "parked"
             : atomic_load (&s->is_up) ? "up" : "down",
             atomic_load (&s->epoch),
             is_retired ? ""
             : atomic_load (&s->is_removed) ? " removed"
             : atomic_load (&s->is_draining) ? " draining" : "");
  }
  if (fclose (fp) == 0)
    rename (tmp, p->cfg.stats_file);
}

static void *
monitor_thread (void *arg)
{
  struct rp_pool *p = arg;
  bool is_more = false;          /* recovery has work left: no wait */

  pthread_mutex_lock (&p->lock);
  while (!p->is_stopping) {
    if (!is_more) {
      uint64_t now = rp_now_ms (), wake = now + p->cfg.heartbeat_ms;
      /* No later than a reclaim's due time: with a heartbeat longer
       * than half a server's deadline, copies asked back would be
       * given up (or HELD) only after the server dropped them.
       */
      for (unsigned i = 0, n = atomic_load (&p->nservers); i < n; i++) {
        uint64_t due = atomic_load (&p->servers[i].reclaim_due_ms);
        if (due > now && due < wake)
          wake = due;
      }
      struct timespec ts = { .tv_sec = wake / 1000,
                             .tv_nsec = (wake % 1000) * 1000000 };
      pthread_cond_timedwait (&p->cond, &p->lock, &ts);
    }
    if (p->is_stopping)
      break;
    pthread_mutex_unlock (&p->lock);

    uint64_t next = rp_now_ms () + p->cfg.heartbeat_ms;
    membership_check (p);
    monitor_park (p);
    monitor_ping_all (p);
    monitor_reconnect_down (p);
    is_more = recovery_pass (p, next);
    if (p->cfg.stats_file)
      monitor_write_stats_file (p);
    if (p->cfg.metrics_file)
      metrics_write_file (p);
    pthread_mutex_lock (&p->lock);
  }
  pthread_mutex_unlock (&p->lock);
  return NULL;
}


int
monitor_start (struct rp_pool *p)
{
  int err = rp_thread_start (&p->monitor, 512 * 1024, monitor_thread, p);

  if (err) {
    errno = err;
    return -1;
  }
  p->has_monitor = true;
  return 0;
}

void
monitor_stop (struct rp_pool *p)
{
  if (p->has_monitor) {
    pthread_mutex_lock (&p->lock);
    p->is_stopping = true;
    pthread_cond_broadcast (&p->cond);
    pthread_mutex_unlock (&p->lock);
    pthread_join (p->monitor, NULL);
    p->has_monitor = false;
  }
  monitor_join_connects (p);
}

/* monitor_connect_all's threads: servers taken in turn from `next`. */
struct monitor_connect_all {
  struct rp_pool *p;
  atomic_uint next;
};

static void *
monitor_connect_worker (void *arg)
{
  struct monitor_connect_all *ca = arg;
  unsigned i;

  while ((i = atomic_fetch_add (&ca->next, 1)) < ca->p->nservers)
    monitor_connect_one (&ca->p->servers[i]);
  return NULL;
}

unsigned
monitor_connect_all (struct rp_pool *p)
{
  struct monitor_connect_all ca = { .p = p };
  pthread_t th[MONITOR_CONNECTORS];
  unsigned nth = 0, up = 0;

  /* Up to MONITOR_CONNECTORS - 1 threads and this one, each taking the
   * next server not yet taken: a blackholed server holds up its thread
   * only, the others go on with the rest.
   */
  for (unsigned i = 1; i < MONITOR_CONNECTORS && i < p->nservers; i++)
    if (rp_thread_start (&th[nth], 256 * 1024, monitor_connect_worker, &ca) ==
        0)
      nth++;
  monitor_connect_worker (&ca);
  for (unsigned i = 0; i < nth; i++)
    pthread_join (th[i], NULL);
  for (unsigned i = 0; i < p->nservers; i++)
    if (atomic_load (&p->servers[i].is_up))
      up++;
  return up;
}
