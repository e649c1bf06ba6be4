/* librampool: the client engine every front end uses (the nbdkit
 * plugin, the FUSE front end, the rampool CLI).
 *
 * A pool is a virtual disk of `size` bytes cut into extents of
 * `extent-size` bytes.  Each written extent has up to `replicas` copies
 * on distinct memservers; unwritten extents read as zeros and cost no
 * memory anywhere.  All rp_pool_* I/O functions are thread-safe and may
 * be called concurrently from any number of threads; they block until
 * the I/O is complete on every replica (writes) or one replica (reads).
 *
 * Errors: 0 / -1 with errno, as everywhere in rampool.
 */
#ifndef RAMPOOL_CLIENT_H
#define RAMPOOL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most servers a pool can have (max-servers= at most), and the
 * table's size when max-servers= is not given: this many slots, or one
 * per server listed at open if there are more.
 */
#define RP_MAX_SERVERS 4096
#define RP_MAX_SERVERS_DEFAULT 256
#define RP_MAX_REPLICAS 4
/* lanes= at most; and the most lanes a pool has in all (a server gets
 * at most RP_LANES_TOTAL / servers, so that a large pool costs no more
 * sockets than a small one).
 */
#define RP_MAX_LANES 32
#define RP_LANES_TOTAL 256

struct rp_config {
  char **servers;             /* nservers of "[SCHEME://]HOST:PORT", the
                                 array and each string owned (grown by
                                 rp_config_set, at most RP_MAX_SERVERS) */
  unsigned nservers;
  unsigned servers_cap;       /* entries allocated at servers */
  unsigned max_servers;       /* max-servers=: slots of the pool's server
                                 table, made at open: the most servers
                                 it can ever have, removed ones included
                                 (servers-file= adds up to it); 0
                                 (default): RP_MAX_SERVERS_DEFAULT, or
                                 the servers listed at open if more */
  uint64_t size_bytes;        /* virtual disk size; required */
  uint32_t extent_size;       /* bytes, power of two, 64 KiB..1 GiB;
                                 default 1 MiB (see rp_config_init) */
  unsigned replicas;          /* copies of each extent (default 2) */
  bool is_replicas_given;     /* replicas= was set (redundancy=ec
                                 excludes it) */
  unsigned ec_k, ec_m;        /* redundancy=ec:K+M: each extent is coded
                                 into K data and M parity fragments on
                                 K+M servers instead of replicated;
                                 0 (default): replication */
  unsigned spare_servers;     /* spare-servers=N: servers that hold
                                 nothing of ours kept connected for new
                                 copies; the others are disconnected
                                 (parked) until needed (default 8) */
  unsigned ec_read_extra;     /* ec-read-extra=N: a read asks K+N
                                 fragments and decodes from the first K
                                 to arrive (late binding; 0..M) */
  unsigned placement_choices; /* d in power-of-d placement (default 2) */
  unsigned connections;       /* connections per server (default 2) */
  unsigned lanes;             /* lanes=N: direct connections per server
                                 for reads, received by the reading
                                 thread itself (default 8; 0: none) */
  unsigned inflight;          /* request slots per connection (64) */
  unsigned timeout_ms;        /* per-request deadline (default 5000) */
  unsigned heartbeat_ms;      /* PING / reconnect period (default 1000) */
  bool is_peer_copy;          /* peer-copy=on (default): recovery has a
                                 server with a good copy write the new
                                 one straight to its server (COPY,
                                 protocol version 4); off: relayed
                                 through this client */
  uint64_t recovery_rate;     /* most bytes per second re-replication
                                 may copy; 0 (default): no ceiling, it
                                 yields to foreground I/O (recovery.c) */
  unsigned rejoin_grace_ms;   /* keep a down server's replicas this long
                                 before re-creating them elsewhere
                                 (default 5000: a blip costs no copy) */
  unsigned outage_wait_ms;    /* a request whose every copy is on a
                                 down server (same incarnation, so the
                                 data may come back) waits this long
                                 for one to return before EIO
                                 (default 30000; 0 = fail at once) */
  uint64_t rdma_buffer;       /* bytes of registered memory for READ and
                                 WRITE data per RDMA connection, locked
                                 (default 8 MiB, at least 4 MiB) */
  char *servers_file;         /* servers-file=PATH: the servers, one
                                 per line, instead of servers=; re-read
                                 when it changes (owned) */
  char *stats_file;           /* if set, pool health written here
                                 every heartbeat (owned) */
  char *metrics_file;         /* if set, the pool's figures in the
                                 Prometheus text format (node_exporter's
                                 textfile collector) written here every
                                 heartbeat (owned) */
  char *key_file;             /* cluster key file; NULL = no
                                 authentication (owned) */
  bool is_encrypted;          /* encrypt=on: pages leave the host only
                                 as authenticated ciphertext */
  char *backup_file;          /* backup=PATH: every write also goes to
                                 this local file; reads fall back to it
                                 when every replica is lost (owned) */
  /* Front-end keys: the nbdkit plugin acts on them, the pool does not. */
  bool is_mlocked;            /* mlock=on: mlockall after the fork */
  unsigned realtime_prio;     /* realtime=PRIO: SCHED_FIFO priority of
                                 the I/O threads (0 = off) */
};

/* The front ends, for keys that apply to some only (mlock=, realtime=
 * are the plugin's and rampool-nbd's).
 */
#define RP_FRONT_PLUGIN 1u      /* nbdkit rampool, rampool attach */
#define RP_FRONT_FUSE 2u        /* rampool-fuse */
#define RP_FRONT_NBD 4u         /* rampool-nbd */

/* Defaults for every key (client/config.c holds the one table). */
void rp_config_init (struct rp_config *cfg);
void rp_config_free (struct rp_config *cfg);
/* A deep copy into dst (freed with rp_config_free).  0, or -1 with
 * errno = ENOMEM (dst then holds nothing to free).
 */
int rp_config_copy (struct rp_config *dst, const struct rp_config *src);

/* Set one key (rp_config_help lists them).  On error returns -1 and
 * writes a message naming the key and why into err.  _for refuses a
 * key that does not apply to front end `front`.
 */
int rp_config_set (struct rp_config *cfg, const char *key, const char *value,
                   char *err, size_t errlen);
int rp_config_set_for (struct rp_config *cfg, unsigned front, const char *key,
                       const char *value, char *err, size_t errlen);

/* Check cross-key constraints once every key is set (e.g. fewer servers
 * than replicas, or more than max-servers=).  -1 with a message in err.
 */
int rp_config_check (const struct rp_config *cfg, char *err, size_t errlen);

/* servers-file=: (re)read cfg->servers_file into cfg->servers (the
 * old list freed): one server per line as servers= takes them, blank
 * lines and # comments skipped.  -1 with a message naming the file and
 * line in err; cfg->servers is then empty.
 */
int rp_config_read_servers (struct rp_config *cfg, char *err, size_t errlen);

/* Help text for front end `front`'s keys, one per line,
 * "key=VALUE  meaning (default)", no trailing newline.  Static.
 */
const char *rp_config_help (unsigned front);

/* Where librampool's log lines go.  level: 0 error, 1 warning,
 * 2 info (state changes), 3 debug.  Default: stderr for levels <= 2.
 */
typedef void (*rp_log_fn) (int level, const char *msg);
void rp_set_log (rp_log_fn fn);

struct rp_pool;

/* Connect to the servers and start the pool's background threads.
 * Call after any fork.  Returns NULL with a message in err when fewer
 * than `replicas` servers answer.
 */
struct rp_pool *rp_pool_open (const struct rp_config *cfg,
                              char *err, size_t errlen);
/* Free every extent on the servers, stop threads, close connections. */
void rp_pool_close (struct rp_pool *pool);

int rp_pool_pread (struct rp_pool *pool, void *buf, size_t count,
                   uint64_t offset);
int rp_pool_pwrite (struct rp_pool *pool, const void *buf, size_t count,
                    uint64_t offset);
/* Whole extents inside the range are freed on the servers; partial
 * extents are left as they are (trim is advisory).
 */
int rp_pool_trim (struct rp_pool *pool, size_t count, uint64_t offset);
/* The range reads as zeros afterwards.  may_trim: whole extents are
 * freed on the servers, partial ones zeroed.  !may_trim (NBD's
 * NO_HOLE, fallocate's ZERO_RANGE): everything stays allocated --
 * whole extents are zeroed in place and unmapped ones are mapped -- so
 * a later write there cannot fail for want of room.
 */
int rp_pool_zero (struct rp_pool *pool, size_t count, uint64_t offset,
                  bool may_trim);

/* Is the extent holding byte `offset` mapped (ever written and not
 * trimmed)?  1, 0.
 */
int rp_pool_is_mapped (struct rp_pool *pool, uint64_t offset);
uint32_t rp_pool_extent_size (const struct rp_pool *pool);

/* Asynchronous reads and writes, for a front end that does not give
 * each request a thread of its own (rampool-nbd).  The caller fills in
 * op, buf, count, offset, done and opaque in a struct rp_aio it keeps
 * until the request is complete, and calls rp_aio_submit:
 *
 *   1   in flight: done(a) will be called exactly once, on a
 *       librampool thread (possibly before rp_aio_submit returns); it
 *       must not block.  Then, if a->needs_thread is false, a->err is
 *       the result; otherwise call rp_aio_settle on a thread that may
 *       block (soon: it settles the copies of a write that failed
 *       somewhere, and servers wait for that before they are counted
 *       up again), and if that returns -1, rp_aio_run.
 *   0   complete at once (a->err is the result; done is not called).
 *   -1  not for the asynchronous path (a request across extents, a
 *       first write, encrypt=on, redundancy=ec, backup=, a busy
 *       stripe...): call rp_aio_run on a thread that may block.
 *
 * Only the single-extent case that costs no wait is taken
 * asynchronously; everything else -- fail-over, outage waits, placing
 * a first copy -- runs as rp_pool_pread and rp_pool_pwrite do, with the
 * same results.  A front end with requests in flight calls
 * rp_pool_aio_expire every RP_AIO_TICK_MS or so: it times out calls
 * pending past timeout-ms, as a blocking request's own wait does.
 * Nothing is allocated.
 */
#define RP_AIO_READ 0
#define RP_AIO_WRITE 1
#define RP_AIO_PRIVATE 1536
#define RP_AIO_TICK_MS 100

struct rp_aio;
typedef void rp_aio_fn (struct rp_aio *a);

struct rp_aio {
  int op;                      /* RP_AIO_READ or RP_AIO_WRITE */
  void *buf;                   /* count bytes (written from, read into) */
  uint32_t count;
  uint64_t offset;
  rp_aio_fn *done;
  void *opaque;                /* the caller's */
  int err;                     /* 0 or errno, when complete */
  bool needs_thread;           /* at done: rp_aio_settle is owed */
  union {                      /* librampool's */
    uint64_t align;
    unsigned char bytes[RP_AIO_PRIVATE];
  } priv;
};

int rp_aio_submit (struct rp_pool *pool, struct rp_aio *a);
/* After done with needs_thread: 0 when a->err is the result, or -1
 * when the request must run again with rp_aio_run (every copy was out
 * of reach, or a read failed over).
 */
int rp_aio_settle (struct rp_pool *pool, struct rp_aio *a);
/* Run a blocking: rp_pool_pread or rp_pool_pwrite.  Returns a->err. */
int rp_aio_run (struct rp_pool *pool, struct rp_aio *a);
void rp_pool_aio_expire (struct rp_pool *pool);

/* Holding sends.  Between rp_aio_batch_begin and rp_aio_batch_end, the
 * requests that this thread's rp_aio_submit calls send to TCP servers
 * are held in b and go out together at rp_aio_batch_flush or
 * rp_aio_batch_end: one sendmsg per connection for a burst, so a
 * server wakes once for it, not once per request.  Held requests are
 * not in flight: flush before this thread waits for anything of its
 * own (a recv, a lock, a condition), and keep b until the end.
 * librampool flushes by itself when b is full and before this thread
 * would wait inside it.  Other threads, and other transports, send at
 * once as always.
 */
#define RP_AIO_BATCH_PRIVATE 3328

struct rp_aio_batch {
  union {                      /* librampool's */
    uint64_t align;
    unsigned char bytes[RP_AIO_BATCH_PRIVATE];
  } priv;
};

void rp_aio_batch_begin (struct rp_aio_batch *b);
void rp_aio_batch_flush (void);
void rp_aio_batch_end (void);

/* The pool's figures, written down once: the struct below, the stats
 * file (stats-file=), `rampool status --pool-stats` and any future
 * exporter are made from these lists.  X (name, help): gauges are
 * levels now, counters only grow.
 */
#define RP_POOL_GAUGES(X) \
  X (servers,             "memservers configured") \
  X (servers_up,          "memservers up (connected, handshake done)") \
  X (servers_parked,      "memservers holding nothing of ours, left" \
                          " unconnected until needed (spare-servers=)") \
  X (extents,             "extents of the disk (size / extent-size)") \
  X (extents_mapped,      "extents written and not trimmed") \
  X (extents_healthy,     "extents with all replicas copies good") \
  X (extents_degraded,    "extents with fewer good copies, at least one") \
  X (extents_lost,        "extents with no good copy, none can come back") \
  X (extents_unreachable, "extents whose only copies are on down servers") \
  X (blocks_in_doubt,     "encrypt=on: blocks of failed writes not yet" \
                          " settled against the copies")
#define RP_POOL_COUNTERS(X) \
  X (reads,               "read requests issued, per extent part") \
  X (writes,              "write and zero requests, per extent part") \
  X (read_failovers,      "reads retried on another copy") \
  X (recovered,           "copies re-created or rewritten by recovery") \
  X (peer_copies,         "of those, written donor to donor (COPY), not" \
                          " through this client") \
  X (peer_copy_failures,  "COPYs that failed (the copy was then relayed" \
                          " or re-placed)") \
  X (backup_reads,        "extent parts read from the backup file") \
  X (outage_waits,        "requests that waited for a down server") \
  X (migrated,            "copies moved off a server that wanted them" \
                          " back (reclaim, drain, removal)") \
  X (reclaim_given_up,    "copies given back unreplaced: no room elsewhere" \
                          " by half the server's deadline") \
  X (reclaim_held,        "copies kept where they were asked back (HOLD):" \
                          " the only good copy, no room elsewhere") \
  X (lane_reads,          "reads carried by a lane (lanes=): received by" \
                          " the reading thread itself") \
  X (lane_writes,         "writes carried by lanes (lanes=): answered to" \
                          " the writing thread itself") \
  X (async_requests,      "reads and writes sent and completed without a" \
                          " thread waiting for them (rampool-nbd)")

struct rp_pool_stats {
#define RP_STATS_FIELD(name, help) uint64_t name;
  RP_POOL_GAUGES (RP_STATS_FIELD)
  RP_POOL_COUNTERS (RP_STATS_FIELD)
#undef RP_STATS_FIELD
};
void rp_pool_get_stats (struct rp_pool *pool, struct rp_pool_stats *st);

/* The copy-state invariant, checked against the servers: every copy
 * the pool counts good is read back whole from its server and compared
 * with the extent's other good copies (and, with encrypt=on,
 * authenticated).  For tests and checks on a quiet pool: it allocates
 * and holds each extent's lock while reading it.  0, or -1 with errno
 * (ENOMEM); the findings are in *a and logged.
 */
struct rp_audit {
  uint64_t extents_checked;    /* mapped extents */
  uint64_t copies_checked;     /* copies counted good, read back */
  uint64_t copies_missing;     /* counted good; the server has no such
                                  extent (or answered another error) */
  uint64_t copies_differ;      /* counted good; bytes differ from the
                                  extent's first good copy (per 4 MiB) */
  uint64_t copies_unverified;  /* counted good; fail authentication */
  uint64_t copies_unreachable; /* counted good; the server did not
                                  answer (not a violation by itself) */
};
int rp_pool_audit (struct rp_pool *pool, struct rp_audit *a);

/* Per-server view for operators (rampool status). */
struct rp_server_info {
  bool is_up;
  char error[160];             /* why not up */
  uint8_t incarnation[16];
  uint64_t capacity_bytes;
  uint64_t limit_bytes;        /* what it gives now (--size auto: follows
                                  the host; else the capacity) */
  uint32_t state;              /* enum rp_state (protocol.h): serving,
                                  shrinking, draining */
  uint64_t used_bytes;
  uint64_t owner_bytes;        /* used by the asking pool */
  uint32_t extents;
  uint32_t owner_extents;
  uint32_t clients;
  uint32_t owners;
  uint64_t uptime_ms;
};

/* Ask one memserver for its STAT with a fresh, owner-less session,
 * authenticating with key_file if not NULL.
 */
int rp_server_query (const char *addr, const char *key_file,
                     unsigned timeout_ms, struct rp_server_info *info);
/* Ask the memserver at addr to drain (rampool drain): no new extents,
 * its clients move what they hold elsewhere, and it stops once empty or
 * at the deadline (deadline_ms, at most 24 h; 0: its own
 * --drain-timeout-ms).  Returns once the server accepted; follow the
 * drain with rp_server_query.  0, or -1 with a message in err.
 */
int rp_server_drain (const char *addr, const char *key_file,
                     unsigned timeout_ms, uint64_t deadline_ms,
                     char *err, size_t errlen);
/* The same for server i of an open pool (owner_* filled in). */
int rp_pool_server_info (struct rp_pool *pool, unsigned i,
                         struct rp_server_info *info);

#endif /* RAMPOOL_CLIENT_H */
