/* The extent map: for every extent of the virtual disk, where its
 * replicas live.  Preallocated at open (one entry per extent, 128
 * bytes: a 64 GiB disk at 1 MiB extents costs 8 MiB, touched as
 * extents are written), never resized, so the I/O path allocates
 * nothing.
 *
 * Locking: entries are guarded by striped rwlocks (extent index mod
 * EXTENT_MAP_STRIPES).  Writers of an extent (write, zero, trim, map,
 * recovery) hold the stripe's write lock while they change the entry
 * and while they SEND to the replicas, which is what orders
 * overlapping writes identically on every replica (each replica's
 * requests for one extent travel on one connection, executed in
 * order).  Readers hold the read lock until their data arrived, so a
 * trim cannot free an extent under a read in flight.
 *
 * A write of one chunk may instead go on lanes (donor.h), which are
 * ordered with nothing: only when its stripe has no write in flight
 * (lane_writes and shared_writes, counted from the send until the
 * answer), and every later holder of the stripe's write lock waits
 * for the lane writes to be answered before it sends anything
 * (extent_map_wrlock).  So what was true of one connection is true of
 * the stripe: writes reach every copy in the order they were sent.
 * Reads may overtake a write in flight, except with encrypt=on (its
 * tags are set at the send): there reads drain the lane writes too,
 * and take a lane only while no shared write is in flight (io.c).
 *
 * A write held by its thread (rampool-nbd's reader holds the requests
 * of a burst and sends them together: conn.h, conn_batch) is not on
 * the wire when the write lock goes, so "sent under the lock" does not
 * order it: such a write is counted in `unsent` from the send under
 * the lock until its frames are out, and every later holder of the
 * write lock waits for that too (extent_map_drain).  Without it,
 * recovery's COPY overtook a held write on the source's connection
 * and the copy it made was counted good without the write (reads
 * returned the old bytes; test-held-sends.sh).
 *
 * A replica is good when its server is up, its epoch equals the
 * server's epoch (the server has not restarted, nor dropped our
 * session, since; either bumps the epoch and so invalidates every
 * replica there at once, without a scan) and it is not stale (it
 * missed a write, or its server contradicted it).  replica.h states the
 * whole invariant.
 */
#ifndef RP_EXTENT_MAP_H
#define RP_EXTENT_MAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "rampool/client.h"

#define EXTENT_MAP_STRIPES 4096
/* Copies an entry can hold: `replicas` plus one, so that a copy whose
 * server wants it back can stay until its replacement is filled
 * (recovery.c moves one such copy at a time when all are in use).
 */
#define EXTENT_SLOTS (RP_MAX_REPLICAS + 1)

struct replica {
  uint64_t handle;             /* server's handle; 0 = no replica here */
  uint16_t server;             /* index in pool->servers */
  uint8_t is_stale;            /* missed a write, or its server said it
                                  is gone: not readable (replica.h) */
  uint8_t leaving;             /* its server asked for it back: 1 move
                                  it, 2 held there (no room elsewhere;
                                  HOLD sent) */
  uint32_t epoch;              /* server epoch when allocated */
  uint32_t rkey;               /* from the ALLOC reply, for one-sided */
  uint32_t raddr_64k;          /*   transports (transport.h); 0 over TCP */
};

struct extent {
  struct replica rep[EXTENT_SLOTS];
  uint8_t nrep;                /* replicas with handle != 0 */
  uint8_t is_lost_logged;      /* "extent lost" logged once */
  uint8_t is_coded;            /* redundancy=ec: the extent is mapped,
                                  its fragments in extent_map_frags
                                  (rep[] and nrep stay empty) */
  uint8_t ec_waiting;          /* redundancy=ec: writes of this extent
                                  waiting to retry (ecio.c): its
                                  fragments may disagree until they do */
  uint32_t wgen;               /* bumped by every write, zero and map
                                  (write lock): a write that reached no
                                  copy undoes its stale marks only if no
                                  later write came meanwhile (io.c) */
};
_Static_assert (sizeof (struct extent) == 128, "extent size");

struct extent_map {
  struct extent *e;         /* n entries, owned */
  uint64_t n;
  /* redundancy=ec: nfrag (K+M) fragments per extent, n * nfrag, owned;
   * fragment f of extent idx at frags[idx * nfrag + f] (a fixed slot:
   * which fragment a copy is matters; handle 0 = none).  Guarded by
   * the extent's stripe lock as rep[] is.  NULL and 0 with replicas.
   */
  struct replica *frags;
  unsigned nfrag;
  unsigned shift;              /* log2 (extent size) */
  pthread_rwlock_t locks[EXTENT_MAP_STRIPES];
  /* Per stripe: writes sent and not yet answered (see the top), on
   * lanes (EXTENT_MAP_WAITED set while someone waits for them to
   * drain) and on shared connections.  Raised with the write lock
   * held, lowered without it.
   */
  uint32_t lane_writes[EXTENT_MAP_STRIPES];
  uint32_t shared_writes[EXTENT_MAP_STRIPES];
  /* Per stripe: asynchronous reads in flight (io.c, aio.h), which hold
   * no lock across their wait: counted from the send, with the read
   * lock held, until the answer, lowered by whichever thread completes
   * them (EXTENT_MAP_WAITED as above).  A holder of the write lock
   * waits for them (extent_map_drain) as it would for read locks.
   */
  uint32_t reads[EXTENT_MAP_STRIPES];
  /* Writes sent under the write lock but held by their thread (a
   * batch, conn.h): not on the wire yet, so a later holder of the
   * write lock could overtake them on the connection.  It waits until
   * they are sent (extent_map_drain), not until they are answered.
   * Raised with the write lock held, lowered by the flush.
   */
  uint32_t unsent[EXTENT_MAP_STRIPES];
};

#define EXTENT_MAP_WAITED 0x80000000u

/* nfrag: 0 for replicas, K+M for erasure coding. */
int extent_map_init (struct extent_map *m, uint64_t size_bytes,
                     uint32_t extent_size, unsigned nfrag);
void extent_map_destroy (struct extent_map *m);

static inline uint64_t
extent_map_index (const struct extent_map *m, uint64_t offset)
{
  return offset >> m->shift;
}

static inline pthread_rwlock_t *
extent_map_lock (struct extent_map *m, uint64_t idx)
{
  return &m->locks[idx % EXTENT_MAP_STRIPES];
}

/* Wait until no write of idx's stripe is in flight on a lane (the
 * stripe lock held, either way: no lane write can start meanwhile).
 */
void extent_map_drain_lanes (struct extent_map *m, uint64_t idx);

/* Wait until no asynchronous read of idx's stripe is in flight (the
 * write lock held: none can start meanwhile).
 */
void extent_map_drain_reads (struct extent_map *m, uint64_t idx);

/* Wait until no held write of idx's stripe is unsent (write lock held). */
void extent_map_drain_unsent (struct extent_map *m, uint64_t idx);
/* A held write of idx: raised (write lock held) / sent (no lock). */
static inline void
extent_map_unsent_start (struct extent_map *m, uint64_t idx)
{
  __atomic_fetch_add (&m->unsent[idx % EXTENT_MAP_STRIPES], 1,
                      __ATOMIC_ACQ_REL);
}
void extent_map_unsent_done (void *map, uint64_t idx);

/* Both: what a holder of the write lock waits for before it sends or
 * changes the entry.
 */
static inline void
extent_map_drain (struct extent_map *m, uint64_t idx)
{
  extent_map_drain_lanes (m, idx);
  extent_map_drain_reads (m, idx);
  extent_map_drain_unsent (m, idx);
}

/* Nothing in flight that a holder of the write lock would wait for
 * (write lock held)?  For a caller that must not wait.
 */
static inline bool
extent_map_is_drained (struct extent_map *m, uint64_t idx)
{
  unsigned i = idx % EXTENT_MAP_STRIPES;

  return (__atomic_load_n (&m->lane_writes[i], __ATOMIC_ACQUIRE) &
          ~EXTENT_MAP_WAITED) == 0 &&
         (__atomic_load_n (&m->reads[i], __ATOMIC_ACQUIRE) &
          ~EXTENT_MAP_WAITED) == 0 &&
         (__atomic_load_n (&m->unsent[i], __ATOMIC_ACQUIRE) &
          ~EXTENT_MAP_WAITED) == 0;
}

/* The write lock of idx's stripe, its lane writes and asynchronous
 * reads drained: what every sender other than a lane write needs.
 */
static inline void
extent_map_wrlock (struct extent_map *m, uint64_t idx)
{
  pthread_rwlock_wrlock (extent_map_lock (m, idx));
  extent_map_drain (m, idx);
}

/* An asynchronous read of idx is sent (read lock held) / was answered
 * or failed (any thread, no lock).
 */
static inline void
extent_map_read_start (struct extent_map *m, uint64_t idx)
{
  __atomic_fetch_add (&m->reads[idx % EXTENT_MAP_STRIPES], 1,
                      __ATOMIC_ACQ_REL);
}
void extent_map_read_done (struct extent_map *m, uint64_t idx);

/* May a write of idx go on lanes now (write lock held, lanes drained)?
 * Only if nothing of its stripe is in flight on a shared connection,
 * which it could overtake.
 */
static inline bool
extent_map_lanes_free (struct extent_map *m, uint64_t idx)
{
  return __atomic_load_n (&m->shared_writes[idx % EXTENT_MAP_STRIPES],
                          __ATOMIC_ACQUIRE) == 0;
}

/* A write of idx was sent (write lock held), on lanes or not. */
static inline void
extent_map_write_sent (struct extent_map *m, uint64_t idx, bool on_lanes)
{
  __atomic_fetch_add (on_lanes ? &m->lane_writes[idx % EXTENT_MAP_STRIPES]
                      : &m->shared_writes[idx % EXTENT_MAP_STRIPES], 1,
                      __ATOMIC_ACQ_REL);
}

/* That write was answered, or failed (no lock needed). */
void extent_map_write_done (struct extent_map *m, uint64_t idx,
                            bool on_lanes);

/* redundancy=ec: the nfrag fragment slots of extent idx. */
static inline struct replica *
extent_map_frags (struct extent_map *m, uint64_t idx)
{
  return &m->frags[idx * m->nfrag];
}

/* Every copy of extent idx, whatever the redundancy: its replicas
 * (*n of them), or its fragment slots (some may have handle 0).  For
 * scans that look at copies by server (reconcile, reclaim, removal,
 * close); the caller holds the stripe lock or reads with atomics.
 */
static inline struct replica *
extent_map_copies (struct extent_map *m, uint64_t idx, unsigned *n)
{
  struct extent *e = &m->e[idx];

  if (m->nfrag) {
    *n = __atomic_load_n (&e->is_coded, __ATOMIC_ACQUIRE) ? m->nfrag : 0;
    return extent_map_frags (m, idx);
  }
  *n = __atomic_load_n (&e->nrep, __ATOMIC_ACQUIRE);
  if (*n > EXTENT_SLOTS)
    *n = EXTENT_SLOTS;
  return e->rep;
}

/* Remove replica slot r from e, keeping the array packed. */
void extent_map_drop_replica (struct extent *e, unsigned r);

/* Does e already have a replica on server s? */
bool extent_map_has_server (const struct extent *e, unsigned s);

#endif /* RP_EXTENT_MAP_H */
