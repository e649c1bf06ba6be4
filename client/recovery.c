/* Recovery: restore `replicas` good copies of every mapped extent.
 *
 * Run by the monitor thread once per heartbeat.  For each extent that
 * is not fully healthy, under the extent's write lock (so no write can
 * interleave with the copy, and the copy cannot resurrect old data):
 *  - replicas on a server that restarted (epoch changed) are dropped;
 *  - replicas on a server that is down are dropped too, and their
 *    handles remembered, so that if the server comes back with the same
 *    incarnation the memory is freed there;
 *  - stale replicas on an up server (they missed a write) are rewritten
 *    in place from a good copy;
 *  - new replicas are placed as for a first write and filled from a
 *    good copy.
 * An extent with no good copy is lost: logged once, reads give EIO.
 *
 * Rate limit: at most recovery-rate bytes per second copied, so
 * foreground I/O keeps most of the bandwidth; the rest waits for the
 * next heartbeat.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "logging.h"
#include "util.h"



/* Copy extent idx from replica src to each replica in dst[] (write
 * lock held).  0 or -1 with errno; on error the failed targets are
 * left stale.
 */
static int
recovery_copy (struct rp_pool *p, uint64_t idx, struct rp_extent *e,
               int src, const unsigned *dst, unsigned ndst)
{
  uint32_t es = p->cfg.extent_size;
  uint32_t step = es < RP_MAX_PAYLOAD ? es : RP_MAX_PAYLOAD;

  for (uint32_t off = 0; off < es; off += step) {
    struct rp_call call;
    memset (&call, 0, sizeof call);
    if (src < 0) {
      /* From the backup file, bytes as they are (ciphertext with
       * encrypt=on: the replicas hold the same).
       */
      uint64_t pos = (idx << p->map.shift) + off;
      if (pread (p->backup_fd, p->recovery_buf, step, pos) != (ssize_t) step) {
        errno = EIO;
        return -1;
      }
    }
    else {
      struct rp_server *ss = &p->servers[e->rep[src].server];
      call.req.op = RP_OP_READ;
      call.req.handle = e->rep[src].handle;
      call.req.offset = off;
      call.req.count = step;
      call.rbuf = p->recovery_buf;
      if (rp_conn_call (pool_conn (ss, idx), &call, p->cfg.timeout_ms) == -1)
        return -1;
    }
    for (unsigned k = 0; k < ndst; k++) {
      struct rp_replica *r = &e->rep[dst[k]];
      memset (&call, 0, sizeof call);
      call.req.op = RP_OP_WRITE;
      call.req.handle = r->handle;
      call.req.offset = off;
      call.req.length = step;
      call.payload = p->recovery_buf;
      if (rp_conn_call (pool_conn (&p->servers[r->server], idx), &call,
                        p->cfg.timeout_ms) == -1)
        return -1;
    }
  }
  return 0;
}

/* May replica rep stay in the map?  Yes if its server is up with the
 * same incarnation, or down for less than rejoin-grace-ms (a blip
 * costs no copying).
 */
static bool
recovery_is_keepable (struct rp_pool *p, const struct rp_replica *rep)
{
  struct rp_server *s = &p->servers[rep->server];

  if (atomic_load (&s->epoch) != rep->epoch)
    return false;
  return atomic_load (&s->is_up) ||
         rp_now_ms () - atomic_load (&s->down_since_ms) < p->cfg.rejoin_grace_ms;
}

/* Index of a good replica of e, or -1. */
static int
recovery_source (struct rp_pool *p, const struct rp_extent *e)
{
  for (unsigned r = 0; r < e->nrep; r++)
    if (pool_replica_is_good (p, &e->rep[r]))
      return r;
  return -1;
}

/* Repair one extent (write lock held).  Returns bytes copied, or -1. */
static int64_t
recovery_extent (struct rp_pool *p, uint64_t idx, struct rp_extent *e)
{
  unsigned dst[RP_MAX_REPLICAS], ndst = 0, before;
  bool from_backup = false;
  struct rp_extent saved;
  int src;

  if (recovery_source (p, e) < 0 && p->backup_fd >= 0) {
    /* Every copy is gone, but the backup file has the data: rebuild
     * from it.  Work on the entry, but keep the old one to put back if
     * no new copy can be placed: an entry with no replica would read as
     * zeros, while the old one reads from the backup.
     */
    from_backup = true;
    saved = *e;
    for (unsigned r = 0; r < e->nrep;) {
      if (recovery_is_keepable (p, &e->rep[r]))
        r++;
      else
        extent_map_drop_replica (e, r);
    }
    /* Copies on servers within their grace are kept as they are: the
     * backup serves reads until the servers are back or the grace ends.
     */
    for (unsigned r = 0; r < e->nrep; r++)
      if (!atomic_load (&p->servers[e->rep[r].server].is_up)) {
        *e = saved;
        return 0;
      }
    if (e->nrep == 0 && (io_map_extent (p, idx, e) == -1 || e->nrep == 0)) {
      *e = saved;
      return 0;
    }
    /* Committed: free what was dropped when its server is back. */
    for (unsigned r = 0; r < saved.nrep; r++) {
      struct rp_server *s = &p->servers[saved.rep[r].server];
      if (!extent_map_has_server (e, saved.rep[r].server) &&
          atomic_load (&s->epoch) == saved.rep[r].epoch)
        pool_add_orphan (s, saved.rep[r].handle);
    }
    for (unsigned r = 0; r < e->nrep; r++)
      e->rep[r].is_stale = 1;  /* all rewritten from the backup below */
  }
  else if (recovery_source (p, e) < 0) {
    /* No good copy: keep every replica record (a server that returns
     * with the same incarnation may still hold the data) so reads fail
     * with EIO; dropping them would make the extent read as zeros.
     * While a copy may come back it is unreachable, not lost: requests
     * wait for it (outage-wait-ms, io.c).
     */
    if (pool_extent_may_return (p, e))
      return 0;
    if (!e->is_lost_logged) {
      e->is_lost_logged = 1;
      rp_log (RP_LOG_ERROR, "extent %" PRIu64 " (bytes %" PRIu64 "-%" PRIu64
              "): every replica is lost; reads of it fail with EIO",
              idx, idx << p->map.shift, ((idx + 1) << p->map.shift) - 1);
    }
    return 0;
  }
  /* Drop replicas that cannot be repaired in place. */
  for (unsigned r = 0; r < e->nrep;) {
    struct rp_replica *rep = &e->rep[r];
    struct rp_server *s = &p->servers[rep->server];
    if (recovery_is_keepable (p, rep)) {
      r++;
      continue;
    }
    if (atomic_load (&s->epoch) == rep->epoch)
      pool_add_orphan (s, rep->handle);
    extent_map_drop_replica (e, r);
  }
  src = from_backup ? -1 : recovery_source (p, e);
  if (from_backup)
    e->is_lost_logged = 0;
  for (unsigned r = 0; r < e->nrep; r++)
    if (!pool_replica_is_good (p, &e->rep[r]) &&
        atomic_load (&p->servers[e->rep[r].server].is_up))
      dst[ndst++] = r;  /* stale on an up server: rewrite in place */
  before = e->nrep;
  if (e->nrep < p->cfg.replicas)
    io_map_extent (p, idx, e);  /* places up to `replicas` in all */
  /* Only replicas on up servers can be written now. */
  for (unsigned k = 0; k < ndst;)
    if (!atomic_load (&p->servers[e->rep[dst[k]].server].is_up))
      dst[k] = dst[--ndst];
    else
      k++;
  for (unsigned r = before; r < e->nrep; r++) {
    e->rep[r].is_stale = 1;     /* not readable until filled */
    dst[ndst++] = r;
  }
  if (ndst == 0)
    return 0;
  if (recovery_copy (p, idx, e, src, dst, ndst) == -1) {
    /* ENOENT: a server no longer has a target (its lease for us
     * expired while we could not reach it).  Drop the unreadable
     * copies; the next pass places them afresh.
     */
    if (errno == ENOENT) {
      /* Never down to no replica at all: that would read as zeros. */
      for (unsigned r = 0; r < e->nrep && e->nrep > 1;) {
        if (!pool_replica_is_good (p, &e->rep[r]))
          extent_map_drop_replica (e, r);
        else
          r++;
      }
    }
    return -1;
  }
  for (unsigned k = 0; k < ndst; k++)
    e->rep[dst[k]].is_stale = 0;
  atomic_fetch_add (&p->recovered, ndst);
  return (int64_t) ndst * p->cfg.extent_size;
}

uint64_t
recovery_pass (struct rp_pool *p)
{
  /* recovery-rate bytes per second of heartbeat; bench/recovery-time.sh
   * measures what it gives end to end.
   */
  uint64_t budget = p->cfg.recovery_rate * p->cfg.heartbeat_ms / 1000;
  uint64_t repaired = 0;
  unsigned up = 0;

  for (unsigned i = 0; i < p->nservers; i++)
    if (atomic_load (&p->servers[i].is_up))
      up++;
  if (up == 0)
    return 0;
  for (uint64_t idx = 0; idx < p->map.n && budget > 0; idx++) {
    struct rp_extent *e = &p->map.e[idx];
    unsigned good = 0, n = __atomic_load_n (&e->nrep, __ATOMIC_ACQUIRE);
    if (n == 0)
      continue;
    /* Unlocked pre-check; the decision is made again under the lock. */
    for (unsigned r = 0; r < n; r++)
      if (pool_replica_is_good (p, &e->rep[r]))
        good++;
    if (good >= p->cfg.replicas && good == n)
      continue;
    pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
    pthread_rwlock_wrlock (lk);
    int64_t copied = e->nrep ? recovery_extent (p, idx, e) : 0;
    pthread_rwlock_unlock (lk);
    if (copied > 0) {
      repaired++;
      budget = (uint64_t) copied >= budget ? 0 : budget - copied;
    }
  }
  if (repaired)
    rp_log (RP_LOG_DEBUG, "recovery: repaired %" PRIu64 " extents", repaired);
  return repaired;
}
