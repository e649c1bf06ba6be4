/* A donor: one memserver as this pool sees it (donor.c).  The struct is
 * in engine.h.
 */
#ifndef RP_DONOR_H
#define RP_DONOR_H

#include "engine.h"

/* Set up s (server `index` of p, at "HOST:PORT" addr) with its
 * connections, not yet connected.  0 or -1 with errno.
 */
int donor_init (struct donor *s, struct rp_pool *p, unsigned index,
                const char *addr);
/* Close and free what donor_init made (no reconnect thread running). */
void donor_fini (struct donor *s);

/* Connect every connection of s and do the handshake; then decide
 * what of ours the server still holds: with a new incarnation or a
 * new session, nothing (the epoch is bumped, so every copy there stops
 * being good at once).  Reconciles a lost ALLOC reply, frees orphans,
 * and marks s up.  Pool open, then only s's reconnect thread.  0, or -1
 * with a message in err.
 */
int donor_connect (struct rp_pool *p, struct donor *s, char *err,
                   size_t errlen);

/* Mark s down (any thread); logged once per outage. */
void donor_down (struct donor *s, const char *why);

/* The pool's up generation (bumped whenever a server comes up), and a
 * wait until it differs from gen or deadline_ms (rp_now_ms clock)
 * passes: how a request waits out an outage.
 */
uint64_t donor_up_gen (struct rp_pool *p);
void donor_wait_up (struct rp_pool *p, uint64_t gen, uint64_t deadline_ms);

/* Park s (monitor thread; s holds nothing of ours and is out of
 * placement): disconnect it, quietly, until the monitor wants it again
 * (monitor.c, connections on demand).  spares: for the log line.
 */
void donor_park (struct donor *s, unsigned spares);

/* Remember a handle to free on s when it is reachable again; FREE
 * those remembered now (s up).
 */
void donor_add_orphan (struct donor *s, uint64_t handle);
void donor_free_orphans (struct rp_pool *p, struct donor *s);

/* Load key_file into locked memory (*key; NULL without a key file).
 * 0 or -1 with a message.
 */
int donor_load_key (const char *key_file, uint8_t **key, char *err,
                    size_t errlen);

/* STAT on connection c into info (is_up, sizes, counts).  0 or -1 with
 * info->error set.
 */
int donor_stat (struct conn *c, unsigned timeout_ms,
                struct rp_server_info *info);

/* The connection that carries every request for extent idx on s:
 * fixed per extent, so one extent's requests stay in order.
 */
static inline struct conn *
donor_conn (struct donor *s, uint64_t idx)
{
  return &s->conns[idx % s->nconns];
}

/* A lane of s for one request (engine.h): the caller's alone until
 * donor_lane_put.  NULL if s has none free (then a shared connection
 * carries it).
 */
static inline struct conn *
donor_lane_get (struct donor *s)
{
  uint_least64_t m = atomic_load (&s->lanes_free);

  for (;;) {
    uint_least64_t usable = m & atomic_load (&s->lanes_ok);
    if (usable == 0)
      return NULL;
    unsigned b = __builtin_ctzll (usable);
    if (atomic_compare_exchange_weak (&s->lanes_free, &m,
                                      m & ~(UINT64_C (1) << b)))
      return &s->conns[s->nconns + b];
  }
}

/* Give lane c of s back (c from donor_lane_get); a shared connection
 * is ignored, so a caller may hand back whatever carried its read.
 */
static inline void
donor_lane_put (struct donor *s, struct conn *c)
{
  if (c->is_direct)
    atomic_fetch_or (&s->lanes_free,
                     UINT64_C (1) << (c - s->conns - s->nconns));
}

#endif /* RP_DONOR_H */
