/* A replica: one copy of an extent on one donor (struct replica,
 * extent_map.h).  Its state -- the rule below and the predicates that
 * apply it -- and the placing of new copies (replica.c: power-of-d
 * placement, ALLOC).  io.c and recovery.c both place through here.
 *
 * THE COPY-STATE INVARIANT.  A copy (struct replica) may be counted
 * good -- read from, used as a recovery source, counted healthy -- only
 * while the client has evidence that its server still holds exactly
 * what was last written there:
 *
 *   1. the server is up and has the incarnation the copy was made in
 *      (epoch: a restart bumps it);
 *   2. the server still holds this client's session: the session id it
 *      reported at the last (re)connect is the one the copy was made in
 *      (a session that expired on the server freed every extent of it;
 *      donor_connect bumps the epoch then, as for a restart);
 *   3. the copy missed no write that reached another copy (is_stale is
 *      set before the other copies are sent the write, and cleared only
 *      when the write turned out to reach no copy at all, or when
 *      recovery has rewritten the copy from a verified source);
 *   4. no answer from its server contradicted it: a READ/WRITE/ZERO
 *      answered with an error (ENOENT: the extent is gone; EINVAL: a
 *      different size) marks it stale at once, and with encrypt=on a
 *      block that fails authentication on it while another copy
 *      verifies marks it stale too.  Such a copy is queued for repair
 *      (recovery rewrites stale copies in place, or drops and
 *      re-places them), never skipped silently.
 *
 * A connection that fails says nothing about a copy (the server may be
 * unreachable, not empty): such copies are out of reach
 * (replica_may_return) and come back if the server does, with the
 * same incarnation and session.  Recovery copies only data it has
 * verified (encrypt=on: every block's tag).  rp_pool_audit checks the
 * invariant end to end against the servers; the tests call it.
 */
#ifndef RP_REPLICA_H
#define RP_REPLICA_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "engine.h"
#include "util.h"

/* Is copy r marked stale?  Set under the stripe's read lock too (a
 * reader that finds a copy gone), hence atomic.
 */
static inline bool
replica_is_stale (const struct replica *r)
{
  return __atomic_load_n (&r->is_stale, __ATOMIC_RELAXED) != 0;
}

/* Mark copy r stale (stripe lock held, read or write). */
static inline void
replica_mark_stale (struct replica *r)
{
  __atomic_store_n (&r->is_stale, 1, __ATOMIC_RELAXED);
}

/* A replica is good (the invariant above): server up, same epoch,
 * not stale.
 */
static inline bool
replica_is_good (struct rp_pool *p, const struct replica *r)
{
  struct donor *s = &p->servers[r->server];

  return r->handle && !replica_is_stale (r) && atomic_load (&s->is_up) &&
         atomic_load (&s->epoch) == r->epoch;
}

/* A replica out of reach that may still hold its data: its server is
 * down, with the incarnation that holds it, and it missed no write.
 */
static inline bool
replica_may_return (struct rp_pool *p, const struct replica *r)
{
  struct donor *s = &p->servers[r->server];

  return r->handle && !replica_is_stale (r) && !atomic_load (&s->is_up) &&
         atomic_load (&s->epoch) == r->epoch;
}

/* May copy r stay where it is although it may not be good now: its
 * server is up with the incarnation it was made in, or down for less
 * than rejoin-grace-ms (a blip costs no copying)?  Its stale mark is
 * the caller's to weigh.
 */
static inline bool
replica_is_keepable (struct rp_pool *p, const struct replica *r)
{
  struct donor *s = &p->servers[r->server];

  if (atomic_load (&s->epoch) != r->epoch)
    return false;
  return atomic_load (&s->is_up) ||
    rp_now_ms () - atomic_load (&s->down_since_ms) < p->cfg.rejoin_grace_ms;
}

/* Has e a copy that may come back (replica_may_return)?  With no
 * good copy left, such an extent is unreachable rather than lost.
 */
static inline bool
replica_extent_may_return (struct rp_pool *p, const struct extent *e)
{
  for (unsigned r = 0; r < e->nrep; r++)
    if (replica_may_return (p, &e->rep[r]))
      return true;
  return false;
}

/* Is copy r on its way out: its server asked for it (RECLAIM), is
 * draining, or was removed from the pool?  Such a copy still counts as
 * good until another replaces it (copy before release).
 */
static inline bool
replica_is_leaving (struct rp_pool *p, const struct replica *r)
{
  struct donor *s = &p->servers[r->server];

  return r->leaving == 1 || atomic_load (&s->is_draining) ||
         atomic_load (&s->is_removed);
}

/* How many copies e should have now: `replicas` that are not leaving,
 * plus the leaving ones (each stays until its replacement is filled),
 * at most EXTENT_SLOTS.  Write lock held.
 */
static inline unsigned
replica_slots_wanted (struct rp_pool *p, const struct extent *e)
{
  unsigned want = p->cfg.replicas;

  for (unsigned r = 0; r < e->nrep; r++)
    if (replica_is_leaving (p, &e->rep[r]))
      want++;
  return want < EXTENT_SLOTS ? want : EXTENT_SLOTS;
}

/* May a new copy go to server s (up, not leaving, not being parked)? */
static inline bool
replica_may_place_on (const struct donor *s)
{
  return atomic_load (&s->is_up) && !atomic_load (&s->is_draining) &&
         !atomic_load (&s->is_removed) && atomic_load (&s->park) == PARK_NO;
}

/* Start a call of op on copy r: the call zeroed, then its op, the
 * copy's handle and where the copy lies for one-sided transports
 * (transport.h).  The caller adds offset, count, payload, buffers.
 */
static inline void
replica_call (struct conn_call *call, const struct replica *r, uint16_t op)
{
  memset (call, 0, sizeof *call);
  call->req.op = op;
  call->req.handle = r->handle;
  call->rkey = r->rkey;
  call->raddr_64k = r->raddr_64k;
}

/* Give extent idx up to `replicas` copies, placing each new one on a
 * server chosen by power-of-d choices (placement.h: up, room, none of
 * e's servers, preferably not the previous extent's) and ALLOCating it
 * there, on at most 64 servers in all before it gives up on the copies
 * still missing.  New copies are appended to e, not stale (a fresh extent reads
 * as zeros, as an unmapped one does).  Write lock held.  0 if e has at
 * least one copy afterwards, else -1 with errno = ENOSPC (EAGAIN when
 * servers are parked, replica_wait_for_parked, or none that could take
 * one is up while others may come back, replica_is_outage: io.c waits).
 */
int replica_place (struct rp_pool *p, uint64_t idx, struct extent *e);

/* Too few servers can take a new copy now (fewer than need: up and not
 * leaving the pool), but enough would with those that are down and may
 * come back (stalled, cut off, restarting)?  Then a placement that
 * found too few is an outage to wait out, not a full pool.
 */
bool replica_is_outage (struct rp_pool *p, unsigned need);

/* A placement found too few servers: if some are parked (monitor.c,
 * spare-servers=), have the monitor reconnect some now and return true
 * (the caller fails with EAGAIN and waits for a server to come up, as
 * for an outage); false if none is.
 */
bool replica_wait_for_parked (struct rp_pool *p);

/* The most copies one replica_alloc makes: K+M fragments of the
 * largest erasure code (ec.h, RP_EC_MAX_FRAGS).
 */
#define REPLICA_ALLOC_MAX 20

/* ALLOC up to `want` (at most REPLICA_ALLOC_MAX) new copies of `bytes`
 * each for extent idx, with ALLOC flags `flags`, on servers chosen as
 * replica_place does (power-of-d, the previous extent's servers
 * prev[0..nprev) avoided while others remain), none holding a copy in
 * have[0..nhave) (handle 0: no copy) or one placed here.  The copies
 * made are written to out[0..), not stale; returns how many (fewer
 * than want when the pool ran out of servers that take them, with the
 * last error in *last_err).  Any lock the caller needs is the caller's.
 */
unsigned replica_alloc (struct rp_pool *p, uint64_t idx, uint32_t bytes,
                        uint16_t flags, const struct replica *have,
                        unsigned nhave, const uint16_t *prev, unsigned nprev,
                        unsigned want, struct replica *out, int *last_err);

/* The copy of e on `server` with `handle`, or NULL if the entry changed
 * meanwhile.
 */
struct replica *replica_find (struct extent *e, unsigned server,
                              uint64_t handle);

#endif /* RP_REPLICA_H */
