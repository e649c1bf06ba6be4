/* Private to librampool: the state every engine module shares -- the
 * pool, its donors (the memservers as this pool sees them) and its
 * counters.  Data only: the functions live in the modules, each with
 * its header (donor.h, replica.h, backup.h, recovery.h, monitor.h,
 * stats.h), and the engine's files call one another only downwards:
 *
 *   pool.c      open/close, the public info calls
 *    monitor.c  heartbeats, reconnects, recovery passes, stats file
 *     recovery.c         io.c (the data path, rp_pool_pread...)
 *      ecio.c           (redundancy=ec: the coded data path, rebuild)
 *       replica.c  backup.c     (a copy's state; placing new copies;
 *        donor.c                 the local backup file)
 *         conn.c, transport_tcp.c, transport_rdma.c, extent_map.c,
 *         crypt.c, placement.c
 *
 * (stats.c and audit.c sit beside monitor.c and io.c.)  Nothing calls
 * back up: scripts/check-layers checks it from the object files.
 */
#ifndef RP_ENGINE_H
#define RP_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "rampool/client.h"
#include "conn.h"
#include "crypt.h"
#include "extent_map.h"
#include "latency.h"

#define DONOR_ORPHANS 1024
#define DONOR_RECLAIM 4096   /* handles asked back, queued for recovery */

enum { PARK_NO, PARK_PENDING, PARK_DONE };

struct rp_pool;
struct ecio;
struct placement_candidate;

/* Recovery's workers (recovery.c): the monitor thread and
 * RECOVERY_WORKERS - 1 threads of their own scan the map together in
 * each pass, so extents are re-created from many sources onto many
 * targets at once.
 */
#define RECOVERY_WORKERS 4
struct recovery_job;             /* recovery.c */
struct recovery_worker {
  struct rp_pool *pool;
  uint8_t *buf;                /* min (extent size, RP_MAX_PAYLOAD) */
  struct recovery_job *jobs;   /* RECOVERY_BATCH, made at start */
  pthread_t thread;
  bool has_thread;
};
struct recovery_state {
  struct recovery_worker workers[RECOVERY_WORKERS];  /* [0]: monitor */
  pthread_mutex_t lock;        /* gen, busy, is_stopping */
  pthread_cond_t go, done;
  uint64_t gen;                /* bumped to start a pass */
  unsigned busy;               /* threads still scanning this pass */
  bool is_stopping, is_inited;
  /* The pass under way, shared by its workers: */
  atomic_uint_least64_t cursor;  /* next extent to look at */
  atomic_int_least64_t budget;   /* bytes left (recovery-rate=) */
  atomic_uint_least64_t repaired;
  atomic_bool is_cut;          /* stopped at the deadline: more to do */
  unsigned batch;              /* extents a worker copies at once with
                                  COPY (recovery.c) */
  uint64_t until_ms;           /* the deadline (set under lock) */
};

/* A donor: one memserver as this pool sees it (donor.c). */
struct donor {
  struct rp_pool *pool;
  unsigned index;              /* in pool->servers */
  char addr[160];              /* as configured: "[SCHEME://]HOST:PORT" */
  char host[128], port[16];
  const struct transport_ops *transport;  /* by the address's scheme */
  struct conn *conns;          /* nconns shared connections (a receive
                                  thread or poller each), then nlanes
                                  lanes; owned */
  unsigned nconns;
  /* Lanes (reads, and writes of one chunk; io.c, extent_map.h): direct
   * connections (conn.h), each used by one thread at a time, which
   * receives its reply itself.  A bit set in lanes_free: that lane is
   * not taken.
   */
  unsigned nlanes;
  atomic_uint_least64_t lanes_free;
  atomic_uint_least64_t lanes_ok; /* bit set: that lane joined at the
                                  server's last connect (donor.c) */
  atomic_bool is_up;           /* all conns connected and HELLO'd */
  atomic_uint epoch;           /* bumped when what the server held for us
                                  is gone: a new incarnation, or our
                                  session there expired */
  atomic_uint_least64_t free_bytes;  /* from HELLO and every reply */
  atomic_uint inflight;        /* requests outstanding (read balancing) */
  atomic_uint writes_open;     /* write calls sent to it whose copies are
                                  not settled yet (io.c): a reconnect
                                  waits for none (donor_connect) */
  /* COPY (recovery.c): the server took COPY at its last join (version
   * 4, RP_HELLO_COPY) and how others reach it for one (its TCP
   * "HOST:PORT", "" when not over TCP or too long).
   */
  atomic_bool has_copy;
  char copy_addr[RP_COPY_ADDR_MAX];
  atomic_uint copies_out;      /* COPYs it is running for us as source */
  atomic_uint copies_in;       /* COPYs of ours writing into it */
  atomic_uint_least64_t copy_off_ms; /* no COPY to it before this time
                                  (one to it failed to connect) */
  /* Leaving: no new copy goes there, and recovery moves the copies it
   * holds elsewhere (copy first, then FREE there).
   */
  atomic_bool is_draining;     /* the server sent DRAIN: it wants
                                  everything back before it stops;
                                  cleared at a reconnect (a server still
                                  draining says so again at the join) */
  atomic_bool is_removed;      /* gone from servers-file: moved off, then
                                  disconnected (is_retired) */
  atomic_bool is_retired;      /* removed and holds nothing of ours:
                                  disconnected, not reconnected */
  /* Connections on demand (monitor.c, spare-servers=): a server that
   * holds nothing of ours beyond the spares wanted is first taken out
   * of placement (PARK_PENDING), then, once no ALLOC to it can still
   * be in flight, disconnected (PARK_DONE) until needed again.
   */
  atomic_int park;             /* PARK_NO, PARK_PENDING, PARK_DONE */
  uint64_t park_ms;            /* monitor only: when it became idle
                                  (PARK_NO) or pending (PARK_PENDING) */
  /* Handles the server asked back (RECLAIM notices) not yet taken by
   * recovery; guarded by reclaim_lock.  DONOR_RECLAIM entries, made by
   * donor_init (a slot no server took costs only the struct).
   */
  pthread_mutex_t reclaim_lock;
  uint64_t *reclaim;
  unsigned nreclaim;
  bool is_reclaim_full_logged;
  /* Past this time a copy asked back that found no room elsewhere is
   * given up (or HELD if it is the only good one), so that we stop
   * counting it before the server drops it: half the deadline of the
   * earliest RECLAIM notice whose copies may not all be moved yet
   * (0: none).  A later notice never moves it later, or the copies of
   * an earlier one would be dropped by their server before we act;
   * those of the later one may so be given up early, never late.
   * Cleared, under reclaim_lock, once no copy on the server is asked
   * back and no notice is queued (monitor.c, every heartbeat).
   */
  atomic_uint_least64_t reclaim_due_ms;
  atomic_uint_least64_t down_since_ms; /* when it last went down */
  /* Owned by whoever (re)connects the server: pool open, then the
   * server's reconnect thread (one at a time, see monitor.c):
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
   * server does not hold up the others (monitor.c; the monitor thread
   * only, but for is_reconnecting).
   */
  pthread_t reconnector;
  atomic_bool is_reconnecting; /* set by the monitor, cleared by the
                                  reconnect thread as it ends */
  bool has_reconnector;        /* a thread to join */
  /* Handles freed while the server was unreachable; FREE'd when it is
   * back with the same incarnation.  Guarded by orphan_lock.
   * DONOR_ORPHANS entries, made by donor_init.
   */
  pthread_mutex_t orphan_lock;
  uint64_t *orphans;
  unsigned norphans;
  bool orphans_overflowed;
};

struct rp_pool {
  struct rp_config cfg;        /* deep copy, owned */
  /* The server table: max_servers slots (max-servers=, or its default),
   * made at open and never moved or grown, so the I/O path reads it
   * without a lock and allocates nothing.  A slot costs sizeof (struct
   * donor) until a server takes it (donor_init).
   */
  struct donor *servers;
  unsigned max_servers;
  /* Lanes (donor.c, donor_lanes): what a server added now gets at
   * most, and what is left of RP_LANES_TOTAL; pool open, then the
   * thread that adds servers (membership.c).
   */
  unsigned lanes_share;
  unsigned lanes_left;
  atomic_uint nservers;        /* slots in use; only grows (servers-file
                                  adds, membership.c), a slot whole
                                  before it is counted */
  /* Scratch sized by the table, made at open so that nothing sized by
   * the number of servers lives on a thread's stack (the monitor's and
   * recovery's are 256-512 KiB) or is allocated later:
   *  - place_cand: placement's candidates (replica.c), one per slot,
   *    under place_lock: many threads place at once;
   *  - ping_calls: the monitor's PING round (monitor.c), one per slot,
   *    monitor thread only;
   *  - server_state: each server's state as the metrics file last
   *    wrote it (metrics.c), monitor thread only.
   */
  pthread_mutex_t place_lock;
  struct placement_candidate *place_cand;
  struct conn_call *ping_calls;
  uint8_t *server_state;
  uint32_t *copies_on;         /* monitor only: copies of ours on each
                                  server, counted each heartbeat to
                                  decide which to park (monitor.c) */
  uint32_t *leaving_on;        /* monitor only: and of those, the ones
                                  asked back (leaving == 1), to clear
                                  reclaim_due_ms */
  atomic_bool is_place_starved;  /* a placement found too few servers
                                    to draw from: unpark more */
  struct stat servers_file_st; /* servers-file= as last read */
  struct extent_map map;
  struct ecio *ec;             /* redundancy=ec (ecio.c), else NULL */
  uint8_t owner[16];           /* our session id on every server */
  uint8_t *key;                /* cluster key (locked), NULL = none */
  struct crypt crypt;          /* encrypt=on; crypt.key NULL when off */
  int backup_fd;               /* backup=PATH, or -1 */
  struct recovery_state rec;   /* recovery.c */
  uint8_t *recovery_buf;       /* min (extent size, RP_MAX_PAYLOAD) bytes,
                                  allocated at open: recovery must not
                                  allocate when it is needed (under
                                  memory pressure, a server lost) */
  pthread_t monitor;
  bool has_monitor;
  unsigned reconnect_from;     /* where the monitor's next look for down
                                  servers starts (monitor.c; monitor
                                  thread only) */
  pthread_mutex_t lock;        /* is_stopping, cond */
  pthread_cond_t cond;         /* CLOCK_MONOTONIC; wakes the monitor */
  bool is_stopping;
  /* The counters of RP_POOL_COUNTERS (client.h), bumped anywhere. */
  struct pool_counters {
#define POOL_COUNTER_FIELD(name, help) atomic_uint_least64_t name;
    RP_POOL_COUNTERS (POOL_COUNTER_FIELD)
#undef POOL_COUNTER_FIELD
  } count;
  struct latency latency;      /* per public call: latency.h */
  /* Bumped (and broadcast) whenever a server comes up: requests waiting
   * out an outage (outage-wait-ms) sleep on it.
   */
  pthread_mutex_t up_lock;
  pthread_cond_t up_cond;      /* CLOCK_MONOTONIC */
  atomic_uint_least64_t up_gen;  /* changed under up_lock; read
                                    without it on the I/O path */
  atomic_uint_least64_t outage_logged_ms;  /* rate-limits the log line */
};

#endif /* RP_ENGINE_H */
