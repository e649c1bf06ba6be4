/* The I/O path: split a request by extent, map extents on first
 * write, fan writes out to every good replica, read from one replica
 * with fail-over, free whole extents on trim.
 *
 * Requests are processed in batches of IO_BATCH chunks (a chunk is the
 * part of the request inside one extent, at most RP_MAX_PAYLOAD bytes):
 * every chunk of a batch is sent before the thread waits once for all
 * of them, so a 1 MiB read across two extents on two servers costs one
 * round trip, not two.  Calls, chunks and the wait live on the caller's
 * stack: no allocation on this path.
 *
 * Degraded-write policy: a write succeeds when at least one replica
 * acknowledged it.  Replicas that failed, or whose server was down,
 * are marked stale (never read again) and recovery re-creates them.
 * A write fails with EIO only when no replica could take it; then no
 * copy is marked stale for it (it reached none, so none missed what
 * another holds) but those whose server answered with an error, and
 * with encrypt=on the blocks' tags go back to what the copies hold
 * (crypt_undo).  replica.h has the whole copy-state invariant.
 *
 * Reads: a copy whose server answers an error (ENOENT: the server no
 * longer has it) is marked stale at once, and with encrypt=on a copy
 * that fails authentication is marked stale once another copy has
 * verified; recovery then repairs it.  Nothing is skipped silently.
 *
 * Outages: when no copy of an extent is good but one is on a server
 * that is down with the incarnation it had (stopped, overloaded, cut
 * off: its copy may well be intact), the chunk is not failed but put
 * back (EAGAIN inside this file) and the request waits for a server to
 * come up, then retries, for at most outage-wait-ms.  Copies are not
 * marked stale for a write that reached none of them: the retry makes
 * them whole.  Swap is why: EIO on a page-in kills the process, while
 * the kernel nbd driver is content to wait.
 */
#include <config.h>

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "crypt.h"
#include "backup.h"
#include "donor.h"
#include "ecio.h"
#include "replica.h"
#include "latency.h"
#include "logging.h"
#include "util.h"

#define IO_BATCH 32

/* A write takes lanes only while each of its servers has fewer
 * requests than this outstanding.  A lane carries one request per
 * system call at both ends; under load a shared connection carries
 * several (measured, 4 KiB random writes at QD16 over 3 memservers: a
 * memserver made 0.18 reads per request on shared connections, 0.67
 * on lanes), which saves more than the lane's thread switch.
 */
#define IO_LANE_WRITE_BUSY 4

/* And only a write of at most this much: its frame fits the 64 KiB a
 * memserver's connection starts with, so lanes never make it grow
 * buffers; a larger write spends its time moving bytes, not switching
 * threads.
 */
#define IO_LANE_WRITE_MAX (32u * 1024)

struct io_chunk {
  uint64_t idx;                /* extent index */
  uint32_t off;                /* offset in the extent */
  uint32_t len;
  uint8_t *buf;                /* data (write) or destination (read) */
  /* encrypt=on: off/len/buf are widened to whole blocks in a bounce
   * buffer; the caller's part is user_buf[0..user_len) at user_off.
   */
  uint8_t *user_buf;
  uint32_t user_off, user_len;
  unsigned first_call, ncalls; /* in the batch's call array */
  unsigned nok;                /* write: calls that succeeded */
  int err;                     /* 0 or errno */
  bool is_locked;              /* read: still holding the stripe lock */
  /* Write: the extent's wgen this write set, and the copies it marked
   * stale because their server was down (to undo if the write reaches
   * no copy).
   */
  uint32_t wgen;
  unsigned nskipped;
  struct { uint16_t server; uint64_t handle; } skipped[EXTENT_SLOTS];
  bool has_undo;               /* encrypt=on: io_undo holds the blocks'
                                  state before this write */
  bool on_lanes;               /* write: sent on lanes where it could
                                  (extent_map.h), counted in lane_writes
                                  rather than shared_writes */
};

static uint32_t
io_chunk_len (const struct rp_pool *p, uint64_t offset, uint64_t left)
{
  uint64_t es = p->cfg.extent_size;
  uint64_t n = es - (offset & (es - 1));

  if (n > RP_MAX_PAYLOAD)
    n = RP_MAX_PAYLOAD - (offset & (RP_MAX_PAYLOAD - 1));
  return n < left ? n : left;
}


/* encrypt=on: one chunk at a time goes through this per-thread bounce
 * buffer (allocated on a thread's first encrypted I/O, then reused: the
 * only allocation on the I/O path, once per nbdkit worker thread).  It
 * also holds the undo state of the chunk's blocks (crypt_save): 24
 * bytes per 4 KiB block, 24 KiB after the 4 MiB of data.
 */
#define IO_UNDO_BLOCKS (RP_MAX_PAYLOAD / CRYPT_BLOCK)
static __thread uint8_t *io_bounce;
static pthread_key_t io_bounce_key;
static pthread_once_t io_bounce_once = PTHREAD_ONCE_INIT;

static void
io_bounce_key_init (void)
{
  /* The destructor frees a thread's buffer when the thread ends (nbdkit
   * starts worker threads per NBD connection).
   */
  pthread_key_create (&io_bounce_key, free);
}

static uint8_t *
io_get_bounce (void)
{
  if (io_bounce == NULL) {
    pthread_once (&io_bounce_once, io_bounce_key_init);
    io_bounce = malloc (RP_MAX_PAYLOAD +
                        IO_UNDO_BLOCKS * sizeof (struct crypt_undo));
    pthread_setspecific (io_bounce_key, io_bounce);
  }
  return io_bounce;
}

/* The undo area of this thread's bounce buffer (io_get_bounce first). */
static struct crypt_undo *
io_undo (void)
{
  return (struct crypt_undo *) (io_bounce + RP_MAX_PAYLOAD);
}

static uint64_t
io_first_block (const struct rp_pool *p, const struct io_chunk *c)
{
  return ((c->idx << p->map.shift) + c->off) / CRYPT_BLOCK;
}

/* Widen chunk c to whole blocks in the bounce buffer.  0 or -1. */
static int
io_widen (struct rp_pool *p, struct io_chunk *c)
{
  uint32_t a0 = c->off & ~(CRYPT_BLOCK - 1);
  uint32_t a1 = (c->off + c->len + CRYPT_BLOCK - 1) & ~(CRYPT_BLOCK - 1);
  uint8_t *bounce = io_get_bounce ();

  if (bounce == NULL) {
    errno = ENOMEM;
    return -1;
  }
  c->user_buf = c->buf;
  c->user_off = c->off - a0;
  c->user_len = c->len;
  c->buf = bounce;
  c->off = a0;
  c->len = a1 - a0;
  return 0;
}

/* The server a submitted call went to. */
static struct donor *
io_call_server (const struct conn_call *call)
{
  return call->conn->opaque;
}

/* A call to s on c failed.  If c is gone, take s down now: its reader
 * does so too, but only after failing the calls, and the caller is
 * about to judge the extent by whether its servers are up.
 */
static void
io_note_failure (struct donor *s, struct conn *c)
{
  char why[128];

  if (conn_dead_why (c, why, sizeof why))
    donor_down (s, why);
}

/* Do requests wait out outages?  Never with backup= (the file serves
 * and takes the I/O) or outage-wait-ms=0.
 */
static bool
io_waits_out_outages (const struct rp_pool *p)
{
  return !backup_is_on (p) && p->cfg.outage_wait_ms > 0;
}

/* No good copy of e, but one may come back: worth waiting for (lock
 * held).
 */
static bool
io_should_wait (struct rp_pool *p, const struct extent *e)
{
  if (!io_waits_out_outages (p))
    return false;
  for (unsigned r = 0; r < e->nrep; r++)
    if (replica_is_good (p, &e->rep[r]))
      return false;
  return replica_extent_may_return (p, e);
}

/* Every copy of e failed this request, but one is good again (its
 * server was reconnected, by its own thread, while the request failed
 * on the old connection) or may come back: retry rather than fail
 * (lock held).  The retry waits for a server to come up, bounded by
 * outage-wait-ms, so a copy that keeps failing cannot loop.  Copies in
 * `unverified` (bitmask of replica slots) do not count: their server
 * answered and the data failed authentication, which a retry of the
 * same copy gives again; waiting for an outage to end would only hold
 * the request for outage-wait-ms before its EIO.
 */
static bool
io_should_retry (struct rp_pool *p, const struct extent *e,
                 unsigned unverified)
{
  if (!io_waits_out_outages (p))
    return false;
  for (unsigned r = 0; r < e->nrep; r++)
    if (!((unverified >> r) & 1) &&
        (replica_is_good (p, &e->rep[r]) ||
         replica_may_return (p, &e->rep[r])))
      return true;
  return false;
}

static int io_pick_replica (struct rp_pool *p, const struct extent *e,
                            unsigned tried);

/* encrypt=on: decrypt [off, off+len) of extent idx (whole blocks) as
 * read from server s, lock held.  A block failing authentication makes
 * this copy count as failed, so the read fails over.  0 or -1.
 */
static int
io_decrypt_range (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
                  uint8_t *buf, struct donor *s)
{
  uint64_t bad;

  if (p->crypt.key == NULL ||
      crypt_decrypt (&p->crypt, ((idx << p->map.shift) + off) / CRYPT_BLOCK,
                     buf, len / CRYPT_BLOCK, &bad) == 0)
    return 0;
  logging_msg (LOGGING_WARN,
               "block %" PRIu64 " from server %s failed"
               " authentication (tampered or stale); trying another copy",
               bad, s->addr);
  return -1;
}

/* Copy rep of extent idx is not what the map says (its server answered
 * an error, or it failed authentication while another copy verified):
 * mark it stale, so it is never read again and recovery repairs it.
 * Any stripe lock mode.  One log line per copy: the mark is set once.
 */
static void
io_copy_is_bad (struct rp_pool *p, uint64_t idx, struct replica *rep,
                const char *why)
{
  if (replica_is_stale (rep))
    return;
  replica_mark_stale (rep);
  logging_msg (LOGGING_WARN,
               "extent %" PRIu64 ": the copy on server %s %s;"
               " marked stale, recovery re-creates it",
               idx, p->servers[rep->server].addr, why);
}

/* A read of copy rep (replica slot r of e) failed with call.  If the
 * server answered, the copy is bad; if the connection failed, the
 * server is down (its copies come back with it).
 */
static void
io_read_failed (struct rp_pool *p, uint64_t idx, struct replica *rep,
                const struct conn_call *call)
{
  struct donor *s = &p->servers[rep->server];

  if (call->is_answered)
    io_copy_is_bad (p, idx, rep, call->err == ENOENT
                    ? "no longer exists there" : strerror (call->err));
  else
    io_note_failure (s, call->conn);
}

/* The copies in *unverified (bitmask of replica slots) failed
 * authentication and another copy has just verified: mark them. */
static void
io_mark_unverified (struct rp_pool *p, uint64_t idx, struct extent *e,
                    unsigned *unverified)
{
  for (unsigned r = 0; r < e->nrep; r++)
    if ((*unverified >> r) & 1)
      io_copy_is_bad (p, idx, &e->rep[r], "failed authentication");
  *unverified = 0;
}

/* Read [off, off+len) of extent idx into buf and, with encrypt=on,
 * decrypt it, from one good replica after another, skipping the
 * replica slots in `tried` (a bitmask; those already tried count as
 * fail-overs).  The caller holds the stripe lock.  *unverified
 * (bitmask of replica slots) collects copies that failed
 * authentication: they are marked stale when another copy verifies,
 * and left alone when none does (then the block itself is unreadable,
 * not the copies: marking them all would lose the rest of the
 * extent).  0, or -1 when no replica served it.
 */
static int
io_read_replicas (struct rp_pool *p, uint64_t idx, struct extent *e,
                  uint32_t off, uint32_t len, uint8_t *buf, unsigned tried,
                  unsigned *unverified)
{
  int r;

  while ((r = io_pick_replica (p, e, tried)) >= 0) {
    struct donor *s = &p->servers[e->rep[r].server];
    struct conn_call call;

    if (tried)
      atomic_fetch_add (&p->count.read_failovers, 1);
    tried |= 1u << r;
    replica_call (&call, &e->rep[r], RP_OP_READ);
    call.req.offset = off;
    call.req.count = len;
    call.rbuf = buf;
    if (conn_roundtrip (donor_conn (s, idx), &call, p->cfg.timeout_ms) == -1)
      io_read_failed (p, idx, &e->rep[r], &call);
    else if (io_decrypt_range (p, idx, off, len, buf, s) == -1)
      *unverified |= 1u << r;
    else {
      io_mark_unverified (p, idx, e, unverified);
      return 0;
    }
  }
  return -1;
}

/* io_read_replicas from every replica, then the backup file.  0 or -1
 * with errno = EIO, or EAGAIN when a copy may come back (io_should_wait).
 */
static int
io_read_locked (struct rp_pool *p, uint64_t idx, struct extent *e,
                uint32_t off, uint32_t len, uint8_t *buf)
{
  unsigned unverified = 0;

  if (io_read_replicas (p, idx, e, off, len, buf, 0, &unverified) == 0 ||
      backup_read (p, idx, off, len, buf) == 0)
    return 0;
  errno = io_should_retry (p, e, unverified) ? EAGAIN : EIO;
  return -1;
}

/* encrypt=on, write lock held: widen c to whole blocks, fill the
 * partial head and tail blocks from the current contents, lay the new
 * data (or zeros) over them and encrypt.  0 or -1 with errno.
 */
static int
io_encrypt_chunk (struct rp_pool *p, struct io_chunk *c,
                  struct extent *e, uint16_t op)
{
  uint32_t end;
  uint64_t first;

  if (io_widen (p, c) == -1)
    return -1;
  first = io_first_block (p, c);
  end = c->user_off + c->user_len;
  if (c->user_off != 0 &&
      io_read_locked (p, c->idx, e, c->off, CRYPT_BLOCK, c->buf) == -1)
    return -1;
  if (end % CRYPT_BLOCK != 0 && (end > CRYPT_BLOCK || c->user_off == 0) &&
      io_read_locked (p, c->idx, e, c->off + c->len - CRYPT_BLOCK,
                      CRYPT_BLOCK, c->buf + c->len - CRYPT_BLOCK) == -1)
    return -1;
  if (op == RP_OP_WRITE)
    memcpy (c->buf + c->user_off, c->user_buf, c->user_len);
  else
    memset (c->buf + c->user_off, 0, c->user_len);
  crypt_save (&p->crypt, first, c->len / CRYPT_BLOCK, io_undo ());
  if (crypt_encrypt (&p->crypt, first, c->buf, c->len / CRYPT_BLOCK) == -1) {
    /* Blocks before the one that would wrap were encrypted: undo. */
    int err = errno;
    crypt_undo (&p->crypt, first, c->len / CRYPT_BLOCK, io_undo ());
    errno = err;
    return -1;
  }
  c->has_undo = true;
  return 0;
}

/* encrypt=on: the write of chunk c reached no copy; its blocks read
 * what the copies hold again (write lock held).
 */
static void
io_undo_encrypt (struct rp_pool *p, struct io_chunk *c)
{
  uint64_t failed;

  if (!c->has_undo)
    return;
  c->has_undo = false;
  failed = crypt_undo (&p->crypt, io_first_block (p, c), c->len / CRYPT_BLOCK,
                       io_undo ());
  if (failed)
    logging_msg (LOGGING_WARN,
                 "extent %" PRIu64 ": %" PRIu64 " block(s) failed"
                 " 255 writes in a row; they read as EIO until rewritten",
                 c->idx, failed);
}

/* Undo the stale marks chunk c set on copies it skipped (their
 * server was down), as the write reached no copy: they missed nothing
 * another copy holds.  Only if no write, zero or map came since (wgen):
 * a later write skipped them too, and they missed that one.  Write
 * lock held.
 */
static void
io_unskip (struct rp_pool *p, struct io_chunk *c, struct extent *e)
{
  if (e->wgen != c->wgen)
    return;
  for (unsigned k = 0; k < c->nskipped; k++) {
    struct replica *rep = replica_find (e, c->skipped[k].server,
                                              c->skipped[k].handle);
    if (rep)
      rep->is_stale = 0;
  }
  c->nskipped = 0;
}

/* Chunk c reached no copy (write lock held): none missed what another
 * holds, so the stale marks it set on copies it skipped go, and with
 * encrypt=on its blocks' tags go back to what the copies hold.  EAGAIN
 * if a copy is good or may come back (the chunk waits for it, bounded
 * by outage-wait-ms: io_should_retry), else EIO.
 */
static int
io_write_reached_none (struct rp_pool *p, struct io_chunk *c,
                       struct extent *e)
{
  io_unskip (p, c, e);
  io_undo_encrypt (p, c);
  return io_should_retry (p, e, 0) ? EAGAIN : EIO;
}

/* Log once per extent that a write found no copy at all. */
static void
io_log_write_lost (struct rp_pool *p, struct io_chunk *c, struct extent *e)
{
  if (e->is_lost_logged)
    return;
  e->is_lost_logged = 1;
  logging_msg (LOGGING_ERROR,
               "extent %" PRIu64 " (bytes %" PRIu64 "-%" PRIu64
               "): every replica is lost; writes to it fail with EIO",
               c->idx, c->idx << p->map.shift,
               ((c->idx + 1) << p->map.shift) - 1);
}

/* Send call to server s, counted in its inflight: on a lane of ours if
 * may_lane and one is free (the caller then receives the reply itself
 * in conn_wait_all, no receive thread has to wake it; call->conn->
 * is_direct says so), else on the shared connection of extent idx.  If
 * it cannot be sent, the server is marked down and -1 returned.
 */
static int
io_submit (struct donor *s, uint64_t idx, struct conn_call *call,
           bool may_lane)
{
  struct conn *lane = may_lane ? donor_lane_get (s) : NULL;

  if (conn_submit (lane ? lane : donor_conn (s, idx), call) == -1) {
    if (lane)
      donor_lane_put (s, lane);
    donor_down (s, "connection lost");
    return -1;
  }
  atomic_fetch_add (&s->inflight, 1);
  return 0;
}

/* Prepare chunk c and send it to every good copy, write lock held
 * (lanes drained): map the extent on first write, encrypt, write the
 * backup file.  Copies out of reach are marked stale before the others
 * are sent the write (so no reader or recovery can take them for
 * current while it is in flight), and remembered in c->skipped.  On
 * lanes if may_lane and nothing of the stripe is in flight (c->on_lanes
 * says which).  Returns the calls made.
 */
static unsigned
io_write_submit (struct rp_pool *p, struct io_chunk *c, struct extent *e,
                 uint16_t op, bool keep_mapped, bool may_lane,
                 struct conn_call *calls, struct conn_wait *w)
{
  unsigned ncalls = 0;
  bool used_lane = false;

  if (e->nrep == 0 && op == RP_OP_ZERO && !keep_mapped)
    return 0;  /* zeroing an unmapped extent: it already reads as zeros */
  if (e->nrep == 0 && replica_place (p, c->idx, e) == -1) {
    c->err = errno;
    return 0;
  }
  if (io_should_wait (p, e)) {
    c->err = EAGAIN;           /* every copy is out of reach for now */
    return 0;
  }
  if (p->crypt.key && io_encrypt_chunk (p, c, e, op) == -1) {
    c->err = errno;
    return 0;
  }
  /* The chunk's bytes as they go on the wire (ciphertext with
   * encrypt=on, where zeros are data too), before any copy is sent
   * them.
   */
  if (backup_write (p, c->idx, c->off, c->len,
                    op == RP_OP_WRITE || p->crypt.key ? c->buf : NULL) == -1) {
    c->err = errno;
    io_undo_encrypt (p, c);
    return 0;
  }
  c->wgen = ++e->wgen;
  c->on_lanes = may_lane && p->cfg.lanes && c->len <= IO_LANE_WRITE_MAX &&
    extent_map_lanes_free (&p->map, c->idx);
  for (unsigned r = 0; r < e->nrep && c->on_lanes; r++)
    if (atomic_load (&p->servers[e->rep[r].server].inflight) >=
        IO_LANE_WRITE_BUSY)
      c->on_lanes = false;
  for (unsigned r = 0; r < e->nrep; r++) {
    struct replica *rep = &e->rep[r];
    struct donor *s = &p->servers[rep->server];
    struct conn_call *call = &calls[ncalls];

    /* Counted before its server is judged up: a reconnect that then
     * finds none open has made it down first, so this write cannot be
     * sent to it unseen (donor_connect).
     */
    atomic_fetch_add (&s->writes_open, 1);
    if (replica_is_good (p, rep)) {
      /* Encrypted zeros are data like any other. */
      replica_call (call, rep, p->crypt.key ? RP_OP_WRITE : op);
      call->req.offset = c->off;
      if (call->req.op == RP_OP_WRITE) {
        call->req.length = c->len;
        call->payload = c->buf;
      }
      else
        call->req.count = c->len;
      call->wait = w;
      if (io_submit (s, c->idx, call, c->on_lanes) == 0) {
        used_lane |= call->conn->is_direct;
        ncalls++;
        continue;
      }
    }
    atomic_fetch_sub (&s->writes_open, 1);
    /* Out of reach: it misses this write. */
    if (!rep->is_stale && rep->handle) {
      rep->is_stale = 1;
      c->skipped[c->nskipped].server = rep->server;
      c->skipped[c->nskipped].handle = rep->handle;
      c->nskipped++;
    }
  }
  if (ncalls == 0) {
    /* Sent nowhere.  With backup=, the file took the write: it is a
     * copy, the others missed it, recovery rebuilds them from it.
     * Otherwise the copies missed nothing: undo.
     */
    if (backup_is_on (p))
      return 0;
    /* io_should_wait saw a good copy, but its server may have gone
     * down before the write could be sent (its connection died first,
     * or another thread took it down): then it waits like any outage.
     * Failing here lost writes, with no word of why, to a server that
     * was back 70 ms later (nbd-stall-sequence.sh,
     * test-write-unsent.sh).
     */
    c->err = io_write_reached_none (p, c, e);
    if (c->err == EIO && !replica_extent_may_return (p, e))
      io_log_write_lost (p, c, e);
  }
  else {
    /* If no lane was free, it is ordered on the shared connections
     * after all.
     */
    c->on_lanes = used_lane;
    extent_map_write_sent (&p->map, c->idx, c->on_lanes);
  }
  return ncalls;
}

/* Chunk c's calls came back and not all succeeded (ok of them did):
 * settle its copies (write lock held).  Returns the chunk's error.
 */
static int
io_write_settle (struct rp_pool *p, struct io_chunk *c, struct extent *e,
                 const struct conn_call *calls, unsigned ok)
{
  /* The write reached a copy (or the backup file): a copy that failed
   * may not hold it, so it must never be read again.
   */
  bool reached = ok > 0 || backup_is_on (p);
  for (unsigned k = c->first_call; k < c->first_call + c->ncalls; k++) {
    struct replica *rep;
    if (calls[k].err == 0)
      continue;
    rep = replica_find (e, io_call_server (&calls[k])->index,
                           calls[k].req.handle);
    if (rep == NULL)
      continue;
    if (reached || calls[k].is_answered)
      rep->is_stale = 1;  /* may not hold the data, or is gone */
  }
  if (reached) {
    /* A later write that skipped one of these copies and then reached
     * none must not undo its mark (io_unskip): this one reached
     * another copy, and that one missed it.
     */
    e->wgen++;
    return 0;
  }
  /* No copy took it.  Copies whose server is down (or was reconnected
   * meanwhile) are left as they were and the chunk is retried when one
   * is up.
   */
  return io_write_reached_none (p, c, e);
}

/* WRITE (payload) or ZERO (no payload) of one batch of chunks; each
 * chunk's result in its err.  keep_mapped: a ZERO maps unmapped
 * extents instead of skipping them (NBD's NO_HOLE: the range must stay
 * allocated).
 */
static void
io_write_batch (struct rp_pool *p, struct io_chunk *ch, unsigned nch,
                uint16_t op, bool keep_mapped)
{
  struct conn_call calls[IO_BATCH * EXTENT_SLOTS];
  unsigned ncalls = 0;
  struct conn_wait w;

  conn_wait_init (&w);
  for (unsigned i = 0; i < nch; i++) {
    struct io_chunk *c = &ch[i];

    c->first_call = ncalls;
    c->nskipped = 0;
    c->has_undo = false;
    c->on_lanes = false;
    extent_map_wrlock (&p->map, c->idx);
    /* Lanes only for a batch of one: its thread waits for nothing
     * between this send and receiving the answers on its lanes, which
     * is what bounds the wait of the stripe's next writer.
     */
    c->ncalls = io_write_submit (p, c, &p->map.e[c->idx], op, keep_mapped,
                                 nch == 1, &calls[ncalls], &w);
    pthread_rwlock_unlock (extent_map_lock (&p->map, c->idx));
    ncalls += c->ncalls;
  }
  conn_wait_all (&w, calls, ncalls, rp_now_ms () + p->cfg.timeout_ms);
  conn_wait_destroy (&w);
  /* A server whose connection died is taken down before the stripe's
   * next writer may go: otherwise that writer could find it still up
   * and send on its lanes, which are alive and ordered with nothing,
   * while the server may yet run what the dead connection delivered.
   */
  for (unsigned i = 0; i < nch; i++) {
    struct io_chunk *c = &ch[i];

    c->nok = 0;
    for (unsigned k = c->first_call; k < c->first_call + c->ncalls; k++) {
      struct donor *s = io_call_server (&calls[k]);
      atomic_fetch_sub (&s->inflight, 1);
      if (calls[k].err == 0)
        c->nok++;
      else if (!calls[k].is_answered)
        io_note_failure (s, calls[k].conn);
      donor_lane_put (s, calls[k].conn);
    }
  }
  /* Answered or failed: the stripe's next writer may go. */
  for (unsigned i = 0; i < nch; i++)
    if (ch[i].ncalls) {
      extent_map_write_done (&p->map, ch[i].idx, ch[i].on_lanes);
      if (ch[i].on_lanes)
        atomic_fetch_add (&p->count.lane_writes, 1);
    }

  for (unsigned i = 0; i < nch; i++) {
    struct io_chunk *c = &ch[i];

    if (c->ncalls && c->nok < c->ncalls) {
      extent_map_wrlock (&p->map, c->idx);
      c->err = io_write_settle (p, c, &p->map.e[c->idx], calls, c->nok);
      pthread_rwlock_unlock (extent_map_lock (&p->map, c->idx));
    }
    /* Settled: a copy that missed this write is stale now, so its
     * server may be counted up again (donor_connect).
     */
    for (unsigned k = c->first_call; k < c->first_call + c->ncalls; k++)
      atomic_fetch_sub (&io_call_server (&calls[k])->writes_open, 1);
    atomic_fetch_add (&p->count.writes, 1);
  }
}

/* Pick the good replica with the fewest requests outstanding, skipping
 * the replica slots in `tried` (bitmask; the stripe lock held since
 * they were tried keeps the slots in place).  -1 if none.
 */
static int
io_pick_replica (struct rp_pool *p, const struct extent *e, unsigned tried)
{
  int best = -1;
  unsigned best_load = 0;

  for (unsigned r = 0; r < e->nrep; r++) {
    const struct replica *rep = &e->rep[r];
    if ((tried >> r) & 1 || !replica_is_good (p, rep))
      continue;
    unsigned load = atomic_load (&p->servers[rep->server].inflight);
    if (best == -1 || load < best_load) {
      best = r;
      best_load = load;
    }
  }
  return best;
}

static void
io_log_lost (struct rp_pool *p, struct extent *e, uint64_t idx)
{
  if (!__atomic_exchange_n (&e->is_lost_logged, 1, __ATOMIC_RELAXED))
    logging_msg (LOGGING_ERROR,
                 "extent %" PRIu64 " (bytes %" PRIu64 "-%" PRIu64
                 "): no good replica left; reads of it fail with EIO",
                 idx, idx << p->map.shift, ((idx + 1) << p->map.shift) - 1);
}


/* Read one batch of chunks; each chunk's result in its err. */
static void
io_read_batch (struct rp_pool *p, struct io_chunk *ch, unsigned nch)
{
  struct conn_call calls[IO_BATCH];
  unsigned ncalls = 0;
  struct conn_wait w;

  conn_wait_init (&w);
  for (unsigned i = 0; i < nch; i++) {
    struct io_chunk *c = &ch[i];
    pthread_rwlock_t *lk = extent_map_lock (&p->map, c->idx);
    struct extent *e = &p->map.e[c->idx];
    int r;

    c->first_call = ncalls;
    c->ncalls = 0;
    pthread_rwlock_rdlock (lk);
    if (e->nrep == 0) {
      memset (c->buf, 0, c->len);
      pthread_rwlock_unlock (lk);
      continue;
    }
    c->is_locked = true;  /* held until the data is in: see extent_map.h */
    /* encrypt=on: a write in flight has already set its blocks' tags,
     * so a copy it has not reached yet would fail authentication (and
     * be taken for stale).  Wait for the stripe's lane writes, which
     * nothing orders; then take a lane only if no write is in flight
     * on the shared connection, which the read would otherwise follow.
     */
    if (p->crypt.key)
      extent_map_drain_lanes (&p->map, c->idx);
    bool may_lane = !p->crypt.key || extent_map_lanes_free (&p->map, c->idx);
    if (p->crypt.key && io_widen (p, c) == -1)
      continue;  /* no bounce buffer: fails below */
    r = io_pick_replica (p, e, 0);
    if (r < 0)
      continue;  /* handled below with the fail-over */
    struct donor *s = &p->servers[e->rep[r].server];
    struct conn_call *call = &calls[ncalls];
    replica_call (call, &e->rep[r], RP_OP_READ);
    call->req.offset = c->off;
    call->req.count = c->len;
    call->rbuf = c->buf;
    call->wait = &w;
    /* Otherwise a read may take any connection: the stripe lock keeps
     * writes to the extent out until its data is in.
     */
    if (io_submit (s, c->idx, call, may_lane) == -1)
      continue;
    ncalls++;
    c->ncalls = 1;
  }
  conn_wait_all (&w, calls, ncalls, rp_now_ms () + p->cfg.timeout_ms);

  for (unsigned i = 0; i < nch; i++) {
    struct io_chunk *c = &ch[i];
    struct extent *e = &p->map.e[c->idx];
    unsigned tried = 0;
    unsigned unverified = 0;
    bool is_ok = false;

    if (!c->is_locked)
      continue;
    if (c->ncalls) {
      struct conn_call *call = &calls[c->first_call];
      struct donor *s = io_call_server (call);
      /* The read lock was held since the call was made: the entry and
       * its slots are as they were.
       */
      struct replica *rep = replica_find (e, s->index,
                                                call->req.handle);
      if (call->conn->is_direct)
        atomic_fetch_add (&p->count.lane_reads, 1);
      donor_lane_put (s, call->conn);
      atomic_fetch_sub (&s->inflight, 1);
      if (rep)
        tried |= 1u << (rep - e->rep);
      if (rep == NULL)
        ;  /* cannot happen: the read lock kept the entry */
      else if (call->err)
        io_read_failed (p, c->idx, rep, call);
      else if (io_decrypt_range (p, c->idx, c->off, c->len, c->buf, s) == 0)
        is_ok = true;
      else
        unverified |= 1u << (rep - e->rep);
    }
    if (p->crypt.key && c->user_buf == NULL)
      tried = ~0u;  /* not widened: no bounce buffer */
    /* Fail over, one replica at a time, until one answers. */
    if (!is_ok)
      is_ok = io_read_replicas (p, c->idx, e, c->off, c->len, c->buf,
                                tried, &unverified) == 0;
    /* Not widened (no bounce buffer) with encrypt=on: the backup holds
     * ciphertext that could not be checked here; fail instead.
     */
    if (!is_ok && backup_is_on (p) && !(p->crypt.key && c->user_buf == NULL) &&
        backup_read (p, c->idx, c->off, c->len, c->buf) == 0)
      is_ok = true;
    if (is_ok && c->user_buf)
      memcpy (c->user_buf, c->buf + c->user_off, c->user_len);
    if (!is_ok)
      c->err = io_should_retry (p, e, unverified) ? EAGAIN : EIO;
    pthread_rwlock_unlock (extent_map_lock (&p->map, c->idx));
    c->is_locked = false;
    atomic_fetch_add (&p->count.reads, 1);
    if (c->err == EIO)
      io_log_lost (p, e, c->idx);
  }
  conn_wait_destroy (&w);
}

static int
io_check_range (struct rp_pool *p, size_t count, uint64_t offset)
{
  if (offset > p->cfg.size_bytes || count > p->cfg.size_bytes - offset) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

/* Run one batch, and again for the chunks whose every copy was out of
 * reach (EAGAIN) each time a server comes up, for at most
 * outage-wait-ms.  0 or -1 with errno (the first chunk's error).
 */
static int
io_run_batch (struct rp_pool *p, struct io_chunk *ch, unsigned n, uint16_t op,
              bool keep_mapped)
{
  struct io_chunk orig[IO_BATCH];
  uint64_t deadline = 0;
  int err = 0;

  memcpy (orig, ch, n * sizeof *ch);
  for (;;) {
    uint64_t gen = donor_up_gen (p), now;
    unsigned again = 0;

    if (op == RP_OP_READ)
      io_read_batch (p, ch, n);
    else
      io_write_batch (p, ch, n, op, keep_mapped);
    for (unsigned i = 0; i < n; i++) {
      if (ch[i].err == EAGAIN)
        orig[again++] = orig[i];
      else if (ch[i].err && err == 0)
        err = ch[i].err;
    }
    if (again == 0)
      break;
    now = rp_now_ms ();
    if (deadline == 0) {
      uint64_t last = atomic_load (&p->outage_logged_ms);
      deadline = now + p->cfg.outage_wait_ms;
      atomic_fetch_add (&p->count.outage_waits, 1);
      /* One line per burst, not one per waiting request. */
      if ((last == 0 || now - last >= 5000) &&
          atomic_compare_exchange_strong (&p->outage_logged_ms, &last, now))
        logging_msg (LOGGING_WARN,
                     "extent %" PRIu64 ": %s; requests wait up to %u ms"
                     " (outage-wait-ms) for one to come back",
                     orig[0].idx,
                     rp_pool_is_mapped (p, orig[0].idx << p->map.shift)
                     ? "every copy is on a server that is down"
                     : "no server is up to place it on",
                     p->cfg.outage_wait_ms);
    }
    if (now >= deadline) {
      for (unsigned i = 0; i < again; i++)
        /* (An extent never placed is not lost.) */
        if (rp_pool_is_mapped (p, orig[i].idx << p->map.shift))
          io_log_lost (p, &p->map.e[orig[i].idx], orig[i].idx);
      if (err == 0)
        err = EIO;
      break;
    }
    donor_wait_up (p, gen, deadline);
    n = again;
    memcpy (ch, orig, n * sizeof *ch);
  }
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

/* Split [offset, offset+count) into chunks and run them in batches
 * (keep_mapped: see io_write_batch).
 */
static int
io_split (struct rp_pool *p, uint8_t *buf, size_t count, uint64_t offset,
          uint16_t op, bool keep_mapped)
{
  struct io_chunk ch[IO_BATCH];
  int ret = 0;

  if (io_check_range (p, count, offset) == -1)
    return -1;
  while (count > 0) {
    unsigned n = 0;
    /* encrypt=on: one chunk per batch (one bounce buffer per thread). */
    unsigned max = p->crypt.key ? 1 : IO_BATCH;
    while (count > 0 && n < max) {
      uint32_t len = io_chunk_len (p, offset, count);
      ch[n] = (struct io_chunk) {
        .idx = extent_map_index (&p->map, offset),
        .off = offset & (p->cfg.extent_size - 1),
        .len = len,
        .buf = buf,
      };
      n++;
      if (buf)
        buf += len;
      offset += len;
      count -= len;
    }
    if (io_run_batch (p, ch, n, op, keep_mapped) == -1 && ret == 0)
      ret = -1;
  }
  return ret;
}

/* io_split, or the erasure-coded path. */
static int
io_do (struct rp_pool *p, uint8_t *buf, size_t count, uint64_t offset,
       uint16_t op, bool keep_mapped)
{
  if (p->ec == NULL)
    return io_split (p, buf, count, offset, op, keep_mapped);
  if (io_check_range (p, count, offset) == -1)
    return -1;
  if (op == RP_OP_READ)
    return ecio_pread (p, buf, count, offset);
  return ecio_pwrite (p, buf, count, offset, op, keep_mapped);
}

int
rp_pool_pread (struct rp_pool *p, void *buf, size_t count, uint64_t offset)
{
  uint64_t t0 = rp_now_ns ();
  int r = io_do (p, buf, count, offset, RP_OP_READ, false);

  latency_observe (&p->latency, LATENCY_READ, count, t0, r == 0);
  return r;
}

int
rp_pool_pwrite (struct rp_pool *p, const void *buf, size_t count,
                uint64_t offset)
{
  uint64_t t0 = rp_now_ns ();
  int r = io_do (p, (uint8_t *) buf, count, offset, RP_OP_WRITE, false);

  latency_observe (&p->latency, LATENCY_WRITE, count, t0, r == 0);
  return r;
}

/* Free extent idx on every server that holds it (write lock held). */
static void
io_free_extent (struct rp_pool *p, uint64_t idx, struct extent *e)
{
  struct conn_call calls[EXTENT_SLOTS];
  unsigned ncalls = 0;
  struct conn_wait w;

  conn_wait_init (&w);
  for (unsigned r = 0; r < e->nrep; r++) {
    struct replica *rep = &e->rep[r];
    struct donor *s = &p->servers[rep->server];
    struct conn_call *call = &calls[ncalls];

    if (atomic_load (&s->epoch) != rep->epoch)
      continue;  /* the server restarted: that memory is gone already */
    replica_call (call, rep, RP_OP_FREE);
    call->wait = &w;
    if (!atomic_load (&s->is_up) ||
        conn_submit (donor_conn (s, idx), call) == -1) {
      donor_add_orphan (s, rep->handle);
      continue;
    }
    ncalls++;
  }
  conn_wait_all (&w, calls, ncalls, rp_now_ms () + p->cfg.timeout_ms);
  conn_wait_destroy (&w);
  for (unsigned k = 0; k < ncalls; k++)
    if (calls[k].err == EIO || calls[k].err == ETIMEDOUT)
      donor_add_orphan (io_call_server (&calls[k]), calls[k].req.handle);
  memset (e, 0, sizeof *e);
  if (backup_is_on (p))
    backup_write (p, idx, 0, p->cfg.extent_size, NULL);
  if (p->crypt.key) {
    uint64_t per = (uint64_t) p->cfg.extent_size / CRYPT_BLOCK;
    crypt_mark_zero (&p->crypt, idx * per, per);
  }
}

/* Trim (free whole extents), zero (free whole, zero partial), or zero
 * keeping everything allocated (no_hole: zero whole extents too, and
 * map the unmapped ones).
 */
static int
io_discard (struct rp_pool *p, size_t count, uint64_t offset, bool is_zero,
            bool no_hole)
{
  uint64_t es = p->cfg.extent_size;

  if (io_check_range (p, count, offset) == -1)
    return -1;
  while (count > 0) {
    uint64_t idx = extent_map_index (&p->map, offset);
    uint64_t off = offset & (es - 1);
    uint64_t len = es - off < count ? es - off : count;
    bool whole = off == 0 &&
      (len == es || offset + len == p->cfg.size_bytes);

    if (no_hole) {
      if (io_do (p, NULL, len, offset, RP_OP_ZERO, true) == -1)
        return -1;
    }
    else if (whole) {
      extent_map_wrlock (&p->map, idx);
      if (p->ec)
        ecio_free_extent (p, idx);
      else if (p->map.e[idx].nrep)
        io_free_extent (p, idx, &p->map.e[idx]);
      pthread_rwlock_unlock (extent_map_lock (&p->map, idx));
    }
    else if (is_zero &&
             io_do (p, NULL, len, offset, RP_OP_ZERO, false) == -1)
      return -1;
    offset += len;
    count -= len;
  }
  return 0;
}

int
rp_pool_trim (struct rp_pool *p, size_t count, uint64_t offset)
{
  uint64_t t0 = rp_now_ns ();
  int r = io_discard (p, count, offset, false, false);

  latency_observe (&p->latency, LATENCY_TRIM, count, t0, r == 0);
  return r;
}

int
rp_pool_zero (struct rp_pool *p, size_t count, uint64_t offset,
              bool may_trim)
{
  uint64_t t0 = rp_now_ns ();
  int r = io_discard (p, count, offset, true, !may_trim);

  latency_observe (&p->latency, LATENCY_ZERO, count, t0, r == 0);
  return r;
}

int
rp_pool_is_mapped (struct rp_pool *p, uint64_t offset)
{
  uint64_t idx = extent_map_index (&p->map, offset);

  if (offset >= p->cfg.size_bytes)
    return 0;
  return __atomic_load_n (&p->map.e[idx].nrep, __ATOMIC_ACQUIRE) > 0 ||
         __atomic_load_n (&p->map.e[idx].is_coded, __ATOMIC_ACQUIRE) != 0;
}

uint32_t
rp_pool_extent_size (const struct rp_pool *p)
{
  return p->cfg.extent_size;
}

/* Asynchronous requests (rp_aio_submit, client.h): one chunk, sent
 * under the same locks as the blocking path, then completed by the
 * receive side that gets the last answer.  A read holds no lock across
 * its wait but is counted in its stripe's reads (extent_map.h), which
 * every holder of the write lock drains as it would a read lock; a
 * write is sent under the write lock and counted in shared_writes,
 * exactly as io_write_batch does.  Whatever would wait -- a busy
 * stripe, a first write, a failed copy -- is handed back to the caller
 * to run on a thread of its own.
 */
struct io_aio {
  struct rp_pool *p;
  struct rp_aio *a;
  struct conn_wait w;
  struct io_chunk c;
  struct conn_call calls[EXTENT_SLOTS];
  uint64_t t0;
  uint32_t epoch;              /* read: the copy's, when it was sent */
};
_Static_assert (sizeof (struct io_aio) <= RP_AIO_PRIVATE,
                "RP_AIO_PRIVATE too small");

static struct io_aio *
io_aio_of (struct rp_aio *a)
{
  return (struct io_aio *) a->priv.bytes;
}

static void
io_aio_finish (struct io_aio *x, int err)
{
  struct rp_aio *a = x->a;

  latency_observe (&x->p->latency,
                   a->op == RP_AIO_READ ? LATENCY_READ : LATENCY_WRITE,
                   a->count, x->t0, err == 0);
  a->err = err;
  a->needs_thread = false;
  a->done (a);
}

/* The read's answer came (a receive side, maybe under its connection's
 * lock: nothing here takes a connection's lock).
 */
static void
io_aio_read_done (struct conn_wait *w)
{
  struct io_aio *x = (struct io_aio *) ((char *) w -
                                        offsetof (struct io_aio, w));
  struct rp_pool *p = x->p;
  struct conn_call *call = &x->calls[0];

  atomic_fetch_sub (&io_call_server (call)->inflight, 1);
  extent_map_read_done (&p->map, x->c.idx);
  if (call->err == 0) {
    atomic_fetch_add (&p->count.reads, 1);
    io_aio_finish (x, 0);
    return;
  }
  /* Judged on a thread that may take locks (rp_aio_settle). */
  x->a->needs_thread = true;
  x->a->done (x->a);
}

/* Every copy answered, or failed.  The failures are settled on the
 * caller's thread (rp_aio_settle), as io_write_batch settles them.
 */
static void
io_aio_write_done (struct conn_wait *w)
{
  struct io_aio *x = (struct io_aio *) ((char *) w -
                                        offsetof (struct io_aio, w));
  struct rp_pool *p = x->p;
  unsigned nok = 0;

  for (unsigned k = 0; k < x->c.ncalls; k++)
    nok += x->calls[k].err == 0;
  if (nok < x->c.ncalls) {
    x->a->needs_thread = true;
    x->a->done (x->a);
    return;
  }
  for (unsigned k = 0; k < x->c.ncalls; k++) {
    struct donor *s = io_call_server (&x->calls[k]);
    atomic_fetch_sub (&s->inflight, 1);
    atomic_fetch_sub (&s->writes_open, 1);
  }
  extent_map_write_done (&p->map, x->c.idx, false);
  atomic_fetch_add (&p->count.writes, 1);
  io_aio_finish (x, 0);
}

/* A read of one extent: from the least loaded good copy, or zeros if
 * the extent was never written.
 */
static int
io_aio_read (struct rp_pool *p, struct io_aio *x, uint64_t idx,
             struct extent *e)
{
  pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
  struct conn_call *call = &x->calls[0];
  int r;

  if (pthread_rwlock_tryrdlock (lk) != 0)
    return -1;
  if (e->nrep == 0) {
    memset (x->c.buf, 0, x->c.len);
    pthread_rwlock_unlock (lk);
    atomic_fetch_add (&p->count.reads, 1);
    latency_observe (&p->latency, LATENCY_READ, x->c.len, x->t0, true);
    x->a->err = 0;
    return 0;
  }
  r = io_pick_replica (p, e, 0);
  if (r < 0) {
    pthread_rwlock_unlock (lk);
    return -1;
  }
  struct donor *s = &p->servers[e->rep[r].server];
  replica_call (call, &e->rep[r], RP_OP_READ);
  call->req.offset = x->c.off;
  call->req.count = x->c.len;
  call->rbuf = x->c.buf;
  call->wait = &x->w;
  x->epoch = e->rep[r].epoch;
  x->c.ncalls = 1;
  conn_wait_init_async (&x->w, io_aio_read_done,
                        rp_now_ms () + p->cfg.timeout_ms);
  extent_map_read_start (&p->map, idx);
  if (io_submit (s, idx, call, false) == -1) {
    extent_map_read_done (&p->map, idx);
    pthread_rwlock_unlock (lk);
    return -1;
  }
  pthread_rwlock_unlock (lk);
  atomic_fetch_add (&p->count.async_requests, 1);
  conn_wait_release (&x->w);
  return 1;
}

/* A write of one mapped extent whose stripe is free: sent to every
 * good copy under the write lock, as io_write_batch sends it.
 */
static int
io_aio_write (struct rp_pool *p, struct io_aio *x, uint64_t idx,
              struct extent *e)
{
  pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
  unsigned n;

  if (pthread_rwlock_trywrlock (lk) != 0)
    return -1;
  if (!extent_map_is_drained (&p->map, idx) || e->nrep == 0 ||
      io_should_wait (p, e)) {
    pthread_rwlock_unlock (lk);
    return -1;
  }
  conn_wait_init_async (&x->w, io_aio_write_done,
                        rp_now_ms () + p->cfg.timeout_ms);
  n = io_write_submit (p, &x->c, e, RP_OP_WRITE, false, false, x->calls,
                       &x->w);
  /* Held (rp_aio_batch_begin), the write is not on the wire when the
   * lock goes: the next holder of the write lock must wait until it is
   * sent, or its frames would overtake this write's on the connection
   * (extent_map.h).  Counted before the lock goes, which is all a
   * later holder can see.
   */
  if (n && conn_batch_is_on ()) {
    extent_map_unsent_start (&p->map, idx);
    conn_batch_on_sent (extent_map_unsent_done, &p->map, idx);
  }
  pthread_rwlock_unlock (lk);
  if (n == 0)
    return -1;  /* sent nowhere, nothing changed: the blocking path
                   decides (and logs) */
  x->c.ncalls = n;
  atomic_fetch_add (&p->count.async_requests, 1);
  conn_wait_release (&x->w);
  return 1;
}

_Static_assert (sizeof (struct conn_batch) <= RP_AIO_BATCH_PRIVATE,
                "RP_AIO_BATCH_PRIVATE too small");

void
rp_aio_batch_begin (struct rp_aio_batch *b)
{
  conn_batch_begin ((struct conn_batch *) b->priv.bytes);
}

void
rp_aio_batch_flush (void)
{
  conn_batch_flush ();
}

void
rp_aio_batch_end (void)
{
  conn_batch_end ();
}

int
rp_aio_submit (struct rp_pool *p, struct rp_aio *a)
{
  struct io_aio *x = io_aio_of (a);
  uint64_t idx;

  a->needs_thread = false;
  if ((a->op != RP_AIO_READ && a->op != RP_AIO_WRITE) || a->count == 0 ||
      p->ec || p->crypt.key || backup_is_on (p) ||
      io_check_range (p, a->count, a->offset) == -1 ||
      io_chunk_len (p, a->offset, a->count) != a->count)
    return -1;
  idx = extent_map_index (&p->map, a->offset);
  *x = (struct io_aio) {
    .p = p,
    .a = a,
    .t0 = rp_now_ns (),
    .c = {
      .idx = idx,
      .off = a->offset & (p->cfg.extent_size - 1),
      .len = a->count,
      .buf = a->buf,
    },
  };
  if (a->op == RP_AIO_READ)
    return io_aio_read (p, x, idx, &p->map.e[idx]);
  return io_aio_write (p, x, idx, &p->map.e[idx]);
}

/* A read's copy failed: judge it as io_read_failed does, if the entry
 * still holds that copy.  Then the read runs again (rp_aio_run) and
 * fails over there.
 */
static void
io_aio_settle_read (struct rp_pool *p, struct io_aio *x)
{
  struct conn_call *call = &x->calls[0];
  struct donor *s = io_call_server (call);
  pthread_rwlock_t *lk = extent_map_lock (&p->map, x->c.idx);

  if (!call->is_answered) {
    io_note_failure (s, call->conn);
    return;
  }
  pthread_rwlock_rdlock (lk);
  struct replica *rep = replica_find (&p->map.e[x->c.idx], s->index,
                                      call->req.handle);
  if (rep && rep->epoch == x->epoch)
    io_read_failed (p, x->c.idx, rep, call);
  pthread_rwlock_unlock (lk);
}

/* A write reached fewer copies than it was sent to: what
 * io_write_batch does after its wait.  0 with the result, or EAGAIN.
 */
static int
io_aio_settle_write (struct rp_pool *p, struct io_aio *x)
{
  struct io_chunk *c = &x->c;
  unsigned nok = 0;
  int err;

  for (unsigned k = 0; k < c->ncalls; k++) {
    struct donor *s = io_call_server (&x->calls[k]);
    atomic_fetch_sub (&s->inflight, 1);
    if (x->calls[k].err == 0)
      nok++;
    else if (!x->calls[k].is_answered)
      io_note_failure (s, x->calls[k].conn);
  }
  extent_map_write_done (&p->map, c->idx, false);
  c->first_call = 0;
  extent_map_wrlock (&p->map, c->idx);
  err = io_write_settle (p, c, &p->map.e[c->idx], x->calls, nok);
  pthread_rwlock_unlock (extent_map_lock (&p->map, c->idx));
  for (unsigned k = 0; k < c->ncalls; k++)
    atomic_fetch_sub (&io_call_server (&x->calls[k])->writes_open, 1);
  atomic_fetch_add (&p->count.writes, 1);
  return err;
}

int
rp_aio_settle (struct rp_pool *p, struct rp_aio *a)
{
  struct io_aio *x = io_aio_of (a);
  int err;

  a->needs_thread = false;
  if (a->op == RP_AIO_READ) {
    io_aio_settle_read (p, x);
    return -1;
  }
  err = io_aio_settle_write (p, x);
  if (err == EAGAIN)
    return -1;
  latency_observe (&p->latency, LATENCY_WRITE, a->count, x->t0, err == 0);
  a->err = err;
  return 0;
}

int
rp_aio_run (struct rp_pool *p, struct rp_aio *a)
{
  int r = a->op == RP_AIO_READ
    ? rp_pool_pread (p, a->buf, a->count, a->offset)
    : a->op == RP_AIO_WRITE
    ? rp_pool_pwrite (p, a->buf, a->count, a->offset)
    : (errno = EINVAL, -1);

  a->needs_thread = false;
  a->err = r == 0 ? 0 : errno;
  return a->err;
}

void
rp_pool_aio_expire (struct rp_pool *p)
{
  uint64_t now = rp_now_ms ();

  for (unsigned i = 0, n = atomic_load (&p->nservers); i < n; i++) {
    struct donor *s = &p->servers[i];
    for (unsigned k = 0; k < s->nconns; k++)
      conn_expire (&s->conns[k], now);
  }
}
