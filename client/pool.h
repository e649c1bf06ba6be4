/* Private to librampool: the pool, its servers, and the functions the
 * I/O path (io.c), recovery and the monitor share.
 *
 * THE COPY-STATE INVARIANT.  A copy (struct rp_replica) may be counted
 * good -- read from, used as a recovery source, counted healthy -- only
 * while the client has evidence that its server still holds exactly
 * what was last written there:
 *
 *   1. the server is up and has the incarnation the copy was made in
 *      (epoch: a restart bumps it);
 *   2. the server still holds this client's session: the session id it
 *      reported at the last (re)connect is the one the copy was made in
 *      (a session that expired on the server freed every extent of it;
 *      pool_server_connect bumps the epoch then, as for a restart);
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
 * (pool_replica_may_return) and come back if the server does, with the
 * same incarnation and session.  Recovery copies only data it has
 * verified (encrypt=on: every block's tag).  rp_pool_audit checks the
 * invariant end to end against the servers; the tests call it.
 */
#ifndef RP_POOL_H
#define RP_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rampool/client.h"
#include "conn.h"
#include "crypt.h"
#include "extent_map.h"

#define POOL_ORPHANS 1024

struct rp_pool;

struct rp_server {
  struct rp_pool *pool;
  unsigned index;
  char addr[160];              /* as configured: "HOST:PORT" */
  char host[128], port[16];
  struct rp_conn *conns;       /* cfg.connections, owned */
  unsigned nconns;
  atomic_bool is_up;           /* all conns connected and HELLO'd */
  atomic_uint epoch;           /* bumped when the incarnation changes */
  atomic_uint_least64_t free_bytes;  /* from HELLO and every reply */
  atomic_uint inflight;        /* requests outstanding (read balancing) */
  atomic_uint_least64_t down_since_ms; /* when it last went down */
  /* Owned by whoever (re)connects the server: pool open, then the
   * server's reconnect thread (one at a time, see pool_monitor):
   */
  uint64_t fence;              /* connection generation, see protocol.h */
  char last_connect_err[160];  /* last reconnect failure logged */
  bool has_incarnation;
  uint8_t incarnation[16];
  uint64_t session;            /* our owner session there (protocol.h
                                  rp_hello_reply.session); valid with
                                  has_incarnation */
  uint64_t capacity_bytes;
  /* An ALLOC to this server went unanswered (timeout, lost
   * connection): the server may hold an extent we do not know.  The
   * next reconnect reconciles with LIST and frees it.
   */
  atomic_bool has_alloc_in_doubt;
  /* Reconnects run on their own thread per server, so a blackholed
   * server does not hold up the others (monitor thread only).
   */
  pthread_t reconnector;
  atomic_bool is_reconnecting; /* set by the monitor, cleared by the
                                  reconnect thread as it ends */
  bool has_reconnector;        /* a thread to join */
  /* Handles freed while the server was unreachable; FREE'd when it is
   * back with the same incarnation.  Guarded by orphan_lock.
   */
  pthread_mutex_t orphan_lock;
  uint64_t orphans[POOL_ORPHANS];
  unsigned norphans;
  bool orphans_overflowed;
};

struct rp_pool {
  struct rp_config cfg;        /* deep copy, owned */
  struct rp_server servers[RP_MAX_SERVERS];
  unsigned nservers;
  struct extent_map map;
  uint8_t owner[16];           /* our session id on every server */
  uint8_t *key;                /* cluster key (locked), NULL = none */
  struct crypt crypt;          /* encrypt=on; crypt.key NULL when off */
  int backup_fd;               /* backup=PATH, or -1 */
  uint8_t *recovery_buf;       /* min (extent size, RP_MAX_PAYLOAD) bytes,
                                  allocated at open: recovery must not
                                  allocate when it is needed (under
                                  memory pressure, a server lost) */
  pthread_t monitor;
  bool has_monitor;
  pthread_mutex_t lock;        /* is_stopping, cond */
  pthread_cond_t cond;         /* CLOCK_MONOTONIC; wakes the monitor */
  bool is_stopping;
  /* The counters of RP_POOL_COUNTERS (client.h), bumped anywhere. */
  struct pool_counters {
#define POOL_COUNTER_FIELD(name, help) atomic_uint_least64_t name;
    RP_POOL_COUNTERS (POOL_COUNTER_FIELD)
#undef POOL_COUNTER_FIELD
  } count;
  /* Bumped (and broadcast) whenever a server comes up: requests waiting
   * out an outage (outage-wait-ms) sleep on it.
   */
  pthread_mutex_t up_lock;
  pthread_cond_t up_cond;      /* CLOCK_MONOTONIC */
  atomic_uint_least64_t up_gen;  /* changed under up_lock; read
                                    without it on the I/O path */
  atomic_uint_least64_t outage_logged_ms;  /* rate-limits the log line */
};

/* Is copy r marked stale?  Set under the stripe's read lock too (a
 * reader that finds a copy gone), hence atomic.
 */
static inline bool
pool_replica_is_stale (const struct rp_replica *r)
{
  return __atomic_load_n (&r->is_stale, __ATOMIC_RELAXED) != 0;
}

/* Mark copy r stale (stripe lock held, read or write). */
static inline void
pool_replica_mark_stale (struct rp_replica *r)
{
  __atomic_store_n (&r->is_stale, 1, __ATOMIC_RELAXED);
}

/* A replica is good (the invariant above): server up, same epoch,
 * not stale.
 */
static inline bool
pool_replica_is_good (struct rp_pool *p, const struct rp_replica *r)
{
  struct rp_server *s = &p->servers[r->server];

  return r->handle && !pool_replica_is_stale (r) && atomic_load (&s->is_up) &&
         atomic_load (&s->epoch) == r->epoch;
}

/* A replica out of reach that may still hold its data: its server is
 * down, with the incarnation that holds it, and it missed no write.
 */
static inline bool
pool_replica_may_return (struct rp_pool *p, const struct rp_replica *r)
{
  struct rp_server *s = &p->servers[r->server];

  return r->handle && !pool_replica_is_stale (r) && !atomic_load (&s->is_up) &&
         atomic_load (&s->epoch) == r->epoch;
}

/* Has e a copy that may come back (pool_replica_may_return)?  With no
 * good copy left, such an extent is unreachable rather than lost.
 */
static inline bool
pool_extent_may_return (struct rp_pool *p, const struct rp_extent *e)
{
  for (unsigned r = 0; r < e->nrep; r++)
    if (pool_replica_may_return (p, &e->rep[r]))
      return true;
  return false;
}

/* The connection that carries every request for extent idx on s:
 * fixed per extent, so one extent's requests stay in order.
 */
static inline struct rp_conn *
pool_conn (struct rp_server *s, uint64_t idx)
{
  return &s->conns[idx % s->nconns];
}

/* Mark s down (any thread); logged once per outage. */
void pool_server_down (struct rp_server *s, const char *why);

/* The current up generation (see up_gen), and a wait until it differs
 * from gen or deadline_ms (rp_now_ms clock) passes.
 */
uint64_t pool_up_gen (struct rp_pool *p);
void pool_wait_up (struct rp_pool *p, uint64_t gen, uint64_t deadline_ms);

/* Remember a handle to free on s when it is reachable again. */
void pool_add_orphan (struct rp_server *s, uint64_t handle);

/* io.c: map extent idx (write lock held).  0 or -1 with errno. */
int io_map_extent (struct rp_pool *p, uint64_t idx, struct rp_extent *e);

/* io.c: read [off, off+len) of extent idx from the backup file (and
 * decrypt with encrypt=on).  0 or -1 with errno.
 */
int io_backup_read (struct rp_pool *p, uint64_t idx, uint32_t off,
                    uint32_t len, uint8_t *buf);

/* recovery.c: one pass restoring `replicas` good copies; returns how
 * many extents it repaired.
 */
uint64_t recovery_pass (struct rp_pool *p);

#endif /* RP_POOL_H */
