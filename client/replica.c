/* Placing new copies of an extent (replica.h).  The state rules are
 * replica.h's; this file only adds copies.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "donor.h"
#include "logging.h"
#include "placement.h"
#include "replica.h"
#include "util.h"

/* Each thread's placement RNG (xorshift; seeded on first use). */
static __thread uint64_t replica_rng;

/* Servers one replica_place may send an ALLOC to before it gives up
 * on the copies still missing: every server of a pool of 64 (what the
 * table held before it was sized at open), and far more than the
 * copies wanted (a server that fails an ALLOC is down or full, so the
 * next draw skips it anyway).
 */
#define REPLICA_MAX_TRIES 64

/* Draw the server for one more copy (placement.h): up, not leaving,
 * room for `bytes`, no copy in have[0..nhave) (handle 0: none) nor
 * out[0..nout) there, not in
 * tried[0..ntried); the previous extent's servers prev[0..nprev)
 * avoided while others remain.  -1 if none.
 *
 * The candidates are the pool's one array, p->place_cand, one per
 * slot of the table, filled here under place_lock: a snapshot of every
 * server, so that the draw sees figures that add up however they
 * change meanwhile.  Nothing sized by the servers lives on the stack
 * (I/O threads are nbdkit's, recovery's have 256 KiB) and nothing is
 * allocated.  Threads that place at once wait for one another here,
 * for O(servers x d) loads and no round trip: placement happens once
 * per new extent, not per request.  (Drawing straight from the table
 * instead would read the atomics again at every draw, and a server
 * going down between two reads would make the weights not add up.)
 */
static int
replica_choose (struct rp_pool *p, uint32_t bytes,
                const struct replica *have, unsigned nhave,
                const struct replica *out, unsigned nout,
                const uint16_t *tried, unsigned ntried,
                const uint16_t *prev, unsigned nprev)
{
  struct placement_candidate *cand = p->place_cand;
  unsigned n = atomic_load (&p->nservers);
  int choice;

  pthread_mutex_lock (&p->place_lock);
  for (unsigned i = 0; i < n; i++) {
    struct donor *s = &p->servers[i];
    uint64_t free_bytes = atomic_load (&s->free_bytes);
    cand[i].is_eligible = replica_may_place_on (s) && free_bytes >= bytes;
    cand[i].is_preferred_out = false;
    cand[i].free_bytes = free_bytes;
    /* The donation in all, from the server's HELLO (donor_connect;
     * fixed for the server process's life: --size auto moves only
     * what it gives now, which free_bytes follows).  A reconnect
     * writes it only after taking the server down, but a thread that
     * saw the server up just before may read it meanwhile: hence the
     * atomic load (a stale figure only skews one draw).
     */
    cand[i].capacity_bytes =
      __atomic_load_n (&s->capacity_bytes, __ATOMIC_RELAXED);
  }
  /* The few servers ruled out or avoided, by index (the table only
   * grows: every index seen before is below n).
   */
  for (unsigned k = 0; k < ntried; k++)
    cand[tried[k]].is_eligible = false;
  for (unsigned r = 0; r < nhave; r++)
    if (have[r].handle && have[r].server < n)
      cand[have[r].server].is_eligible = false;
  for (unsigned r = 0; r < nout; r++)
    if (out[r].server < n)
      cand[out[r].server].is_eligible = false;
  for (unsigned k = 0; k < nprev; k++)
    if (prev[k] < n)
      cand[prev[k]].is_preferred_out = true;
  choice = placement_choose (cand, n, p->cfg.placement_choices, &replica_rng);
  pthread_mutex_unlock (&p->place_lock);
  return choice;
}

/* Seed this thread's placement RNG on first use. */
static void
replica_seed (void)
{
  if (replica_rng != 0)
    return;
  /* Placement only needs spread, not secrecy: the clock will do if
   * getrandom fails.
   */
  if (rp_random_bytes (&replica_rng, sizeof replica_rng) == -1)
    replica_rng = rp_now_ns () ^ (uintptr_t) &replica_rng;
  replica_rng |= 1;
}

unsigned
replica_alloc (struct rp_pool *p, uint64_t idx, uint32_t bytes,
               uint16_t flags, const struct replica *have, unsigned nhave,
               const uint16_t *prev, unsigned nprev, unsigned want,
               struct replica *out, int *last_err)
{
  uint16_t tried[REPLICA_MAX_TRIES];
  unsigned ntried = 0, placed = 0;

  replica_seed ();
  *last_err = ENOSPC;
  if (want > REPLICA_ALLOC_MAX)
    want = REPLICA_ALLOC_MAX;
  /* The copies still wanted are ALLOCated in parallel, one round after
   * another while some fail (a first write waits for one round trip,
   * not one per copy).
   */
  while (placed < want) {
    struct conn_call calls[REPLICA_ALLOC_MAX];
    struct rp_alloc_reply replies[REPLICA_ALLOC_MAX];
    int chosen[REPLICA_ALLOC_MAX];
    struct conn_wait w;
    unsigned n = 0;

    conn_wait_init (&w);
    while (placed + n < want && ntried < REPLICA_MAX_TRIES) {
      struct donor *s;
      /* chosen[] of this round are not in out[] yet: tried[] has them. */
      int choice = replica_choose (p, bytes, have, nhave, out, placed,
                                   tried, ntried, prev, nprev);
      if (choice < 0) {
        /* Out of servers to draw from: the monitor reconnects parked
         * ones (spare-servers=).
         */
        atomic_store (&p->is_place_starved, true);
        break;
      }
      tried[ntried++] = choice;
      s = &p->servers[choice];
      memset (&calls[n], 0, sizeof calls[n]);
      calls[n].req.op = RP_OP_ALLOC;
      calls[n].req.flags = flags;
      calls[n].req.offset = bytes;
      calls[n].rbuf = &replies[n];
      calls[n].rcap = sizeof replies[n];
      calls[n].wait = &w;
      if (conn_submit (donor_conn (s, idx), &calls[n]) == -1) {
        *last_err = errno;
        continue;
      }
      /* Counted until the reply: the monitor parks no server with a
       * request in flight (monitor.c).
       */
      atomic_fetch_add (&s->inflight, 1);
      chosen[n++] = choice;
    }
    if (n == 0) {
      conn_wait_destroy (&w);
      break;
    }
    conn_wait_all (&w, calls, n, rp_now_ms () + p->cfg.timeout_ms);
    conn_wait_destroy (&w);
    for (unsigned k = 0; k < n; k++) {
      struct donor *s = &p->servers[chosen[k]];
      atomic_fetch_sub (&s->inflight, 1);
      if (!calls[k].is_done || calls[k].err || !calls[k].is_answered) {
        *last_err = calls[k].err ? calls[k].err : ETIMEDOUT;
        if (!calls[k].is_answered) {
          /* The server may have allocated the extent and lost only the
           * reply: the next reconnect lists our extents there and frees
           * the one we do not know (donor_reconcile).
           */
          atomic_store (&s->has_alloc_in_doubt, true);
          donor_down (s, strerror (*last_err));
        }
        else if (*last_err == ENOSPC || *last_err == ENOMEM)
          atomic_store (&s->free_bytes, 0);  /* until a reply says more */
        continue;
      }
      struct replica *r = &out[placed++];
      r->handle = le64toh (replies[k].handle);
      r->rkey = le32toh (replies[k].rkey);
      r->raddr_64k = le32toh (replies[k].offset_64k);
      r->server = chosen[k];
      r->epoch = atomic_load (&s->epoch);
      r->is_stale = 0;
      r->leaving = 0;
      /* s->free_bytes already counts this extent: the server reports
       * its free bytes after the ALLOC in the reply's header, and
       * conn_reply_done stores them (on_free_bytes) before the call
       * completes.  Subtracting the extent again here, as this code
       * once did, made the server look an extent fuller than it is.
       */
    }
  }
  return placed;
}

bool
replica_wait_for_parked (struct rp_pool *p)
{
  unsigned n = atomic_load (&p->nservers);
  bool any = false;

  for (unsigned i = 0; i < n && !any; i++)
    any = atomic_load (&p->servers[i].park) == PARK_DONE &&
          !atomic_load (&p->servers[i].is_retired);
  if (!any)
    return false;
  atomic_store (&p->is_place_starved, true);
  pthread_mutex_lock (&p->lock);
  pthread_cond_signal (&p->cond);   /* the monitor: reconnect some now */
  pthread_mutex_unlock (&p->lock);
  return true;
}

bool
replica_is_outage (struct rp_pool *p, unsigned need)
{
  unsigned n = atomic_load (&p->nservers), usable = 0, down = 0;

  for (unsigned i = 0; i < n; i++) {
    struct donor *s = &p->servers[i];
    if (replica_may_place_on (s))
      usable++;
    else if (!atomic_load (&s->is_up) && !atomic_load (&s->is_removed) &&
             !atomic_load (&s->is_retired))
      down++;
  }
  return usable < need && usable + down >= need;
}

int
replica_place (struct rp_pool *p, uint64_t idx, struct extent *e)
{
  const struct extent *prev = idx > 0 ? &p->map.e[idx - 1] : NULL;
  uint16_t prev_servers[EXTENT_SLOTS];  /* server indexes, as in a replica */
  unsigned nprev = 0, placed;
  int last_err;

  /* The previous extent's servers, read without its lock: only a hint
   * for striping, never used to touch that extent.
   */
  if (prev)
    for (unsigned i = 0; i < RP_MAX_REPLICAS &&
         i < __atomic_load_n (&prev->nrep, __ATOMIC_RELAXED);
         i++)
      prev_servers[nprev++] =
        __atomic_load_n (&prev->rep[i].server, __ATOMIC_RELAXED);

  /* Leaving copies stay until their replacements are filled. */
  unsigned want = replica_slots_wanted (p, e);
  if (e->nrep >= want)
    return 0;
  /* With replicas=1 this is the client's only copy: the server's
   * reclaim must not drop it (protocol.h).
   */
  placed = replica_alloc (p, idx, p->cfg.extent_size,
                          p->cfg.replicas == 1 ? RP_FLAG_SOLE : 0,
                          e->rep, e->nrep, prev_servers, nprev,
                          want - e->nrep, &e->rep[e->nrep], &last_err);
  __atomic_store_n (&e->nrep, e->nrep + placed, __ATOMIC_RELEASE);
  if (e->nrep == 0) {
    if (replica_wait_for_parked (p) || replica_is_outage (p, 1)) {
      /* io.c waits for a server to come up (outage-wait-ms): with
       * every server that could take a copy down at once (a stall, a
       * blip), a first write is an outage to ride out like any other,
       * not a full pool.
       */
      errno = EAGAIN;
      return -1;
    }
    logging_msg (LOGGING_ERROR,
                 "extent %" PRIu64 ": no server could take it (%s):"
                 " the pool is full or down",
                 idx, strerror (last_err));
    errno = ENOSPC;
    return -1;
  }
  if (e->nrep < p->cfg.replicas)
    logging_msg (LOGGING_DEBUG, "extent %" PRIu64 ": placed %u of %u replicas",
                 idx, e->nrep, p->cfg.replicas);
  return 0;
}

struct replica *
replica_find (struct extent *e, unsigned server, uint64_t handle)
{
  for (unsigned i = 0; i < e->nrep; i++)
    if (e->rep[i].server == server && e->rep[i].handle == handle)
      return &e->rep[i];
  return NULL;
}
