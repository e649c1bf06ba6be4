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
 *    good copy;
 *  - copies whose server wants them back (it asked for them with a
 *    RECLAIM notice, is draining, or was removed from the pool) are
 *    moved: a replacement is placed and filled first, then the leaving
 *    copy is FREEd there (copy before release, so the extent never has
 *    fewer good copies than before).  One that finds no room elsewhere
 *    is given up at half its server's deadline, before the server drops
 *    it (or HELD there if it is the extent's only good copy); a
 *    draining or removed server's copies wait for room.
 * An extent with no good copy is lost: logged once, reads give EIO.
 *
 * Recovery copies only what it has verified (replica.h, the copy-state
 * invariant): with encrypt=on every block read from a source is checked
 * against its tag before it is written anywhere, so one bad donor
 * cannot spread its corruption.  A source whose server answers an
 * error, or that fails that check while another source passes it, is
 * marked stale and repaired in turn.
 *
 * Workers: each pass is scanned by RECOVERY_WORKERS at once (the
 * monitor thread and threads of their own, each with its own buffer),
 * taking extents from a shared cursor, so a lost server's copies are
 * re-created from many sources onto many targets in parallel.
 *
 * COPY (peer-copy=on, protocol version 4): a copy is not read into
 * this process and written out again where both servers allow it; the
 * server holding the good copy writes it straight into the target's
 * (memserver/peer.c).  The source is the extent's good copy whose
 * server runs the fewest of our COPYs; a worker sends the COPYs of
 * several extents before it waits (about one COPY per server up, for
 * the workers together), at most RECOVERY_PER_SERVER at once from one
 * server and into one, so a lost server's copies are made by all the
 * survivors at once (scattered recovery).  A COPY that wrote
 * everything makes the copy good (with encrypt=on only once read back
 * and authenticated here); one refused before it started falls back to
 * the relay at once; one that may have written and did not finish
 * leaves a copy that is FREEd, never counted.
 *
 * Pace: recovery runs flat out while the disk is idle, and yields
 * while it is not: after each extent copied while foreground requests
 * came in, a worker waits 4 x RECOVERY_WORKERS times as long as the copy
 * took, so foreground I/O keeps about four fifths of the time (and of a
 * 2-core host's CPU).
 * A pass runs until the next heartbeat is due, then the monitor pings
 * and reconnects, and the next pass goes on.  recovery-rate=, if set,
 * is a ceiling in bytes per second on top of that.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "donor.h"
#include "ecio.h"
#include "recovery.h"
#include "replica.h"
#include "logging.h"
#include "util.h"



/* COPY (peer-copy=on): a worker sends the COPYs of several extents
 * before it waits for their answers, holding their write locks: as many
 * as there are servers up per worker (rs->batch, at most
 * RECOVERY_BATCH), so that a pass keeps about one copy per server going
 * and recovery speeds up as the pool grows; at most RECOVERY_PER_SERVER
 * of ours at once out of one server and into one (the memserver's
 * default --peer-copies).  One extent at a time while foreground I/O
 * runs, or under recovery-rate=.
 */
#define RECOVERY_BATCH 64
#define RECOVERY_PER_SERVER 4

/* One extent's repair, its COPYs in flight. */
struct recovery_job {
  uint64_t idx;
  struct extent *e;
  pthread_rwlock_t *lk;        /* its stripe's, write-locked */
  uint64_t t0;                 /* rp_now_ns when it was locked */
  unsigned dst[EXTENT_SLOTS];  /* replica slots to fill */
  unsigned ndst;
  bool from_backup;
  struct conn_wait w;
  uint64_t deadline_ms;        /* stop waiting for the answers then */
  unsigned n;                  /* COPYs sent */
  struct conn_call calls[EXTENT_SLOTS];
  uint8_t args[EXTENT_SLOTS][sizeof (struct rp_copy_req)];
  uint8_t replies[EXTENT_SLOTS][sizeof (struct rp_copy_reply)];
  int src[EXTENT_SLOTS];       /* each COPY's source slot */
  unsigned k_of[EXTENT_SLOTS]; /* each COPY's index in dst */
  bool is_left[EXTENT_SLOTS];  /* per dst: still to copy */
};

/* Why recovery_copy_from stopped. */
enum recovery_fail {
  RECOVERY_SRC_GONE,           /* the source's server answered an error */
  RECOVERY_SRC_DOWN,           /* the source's connection failed */
  RECOVERY_SRC_UNVERIFIED,     /* a block failed authentication */
  RECOVERY_DST,                /* writing a target failed (errno) */
};

/* Copy extent idx from replica src (-1: the backup file) to each
 * replica in dst[] (write lock held), verifying every block first with
 * encrypt=on.  0, or -1 with *why (and errno; *bad_dst the target
 * slot with RECOVERY_DST).
 */
static int
recovery_copy_from (struct rp_pool *p, uint64_t idx, struct extent *e,
                    int src, const unsigned *dst, unsigned ndst,
                    uint8_t *buf, enum recovery_fail *why, int *bad_dst)
{
  uint32_t es = p->cfg.extent_size;
  uint32_t step = es < RP_MAX_PAYLOAD ? es : RP_MAX_PAYLOAD;

  for (uint32_t off = 0; off < es; off += step) {
    uint64_t pos = (idx << p->map.shift) + off, bad;
    struct conn_call call;

    memset (&call, 0, sizeof call);
    if (src < 0) {
      /* From the backup file, bytes as they are (ciphertext with
       * encrypt=on: the replicas hold the same).
       */
      if (backup_read_raw (p, idx, off, step, buf) == -1) {
        *why = RECOVERY_SRC_DOWN;
        return -1;
      }
    }
    else {
      struct donor *ss = &p->servers[e->rep[src].server];
      replica_call (&call, &e->rep[src], RP_OP_READ);
      call.req.offset = off;
      call.req.count = step;
      call.rbuf = buf;
      if (conn_roundtrip (donor_conn (ss, idx), &call, p->cfg.timeout_ms) ==
          -1) {
        *why = call.is_answered ? RECOVERY_SRC_GONE : RECOVERY_SRC_DOWN;
        return -1;
      }
    }
    if (p->crypt.key &&
        crypt_verify (&p->crypt, pos / CRYPT_BLOCK, buf,
                      step / CRYPT_BLOCK, &bad) == -1) {
      *why = RECOVERY_SRC_UNVERIFIED;
      return -1;
    }
    /* To every target at once. */
    struct conn_call wcalls[EXTENT_SLOTS];
    struct conn_wait w;
    unsigned n = 0;
    conn_wait_init (&w);
    for (unsigned k = 0; k < ndst; k++) {
      struct replica *r = &e->rep[dst[k]];
      replica_call (&wcalls[n], r, RP_OP_WRITE);
      wcalls[n].req.offset = off;
      wcalls[n].req.length = step;
      wcalls[n].payload = buf;
      wcalls[n].wait = &w;
      if (conn_submit (donor_conn (&p->servers[r->server], idx),
                       &wcalls[n]) == -1) {
        conn_wait_all (&w, wcalls, n, rp_now_ms () + p->cfg.timeout_ms);
        conn_wait_destroy (&w);
        *why = RECOVERY_DST;
        *bad_dst = -1;
        return -1;
      }
      n++;
    }
    conn_wait_all (&w, wcalls, n, rp_now_ms () + p->cfg.timeout_ms);
    conn_wait_destroy (&w);
    for (unsigned k = 0; k < n; k++)
      if (wcalls[k].err || !wcalls[k].is_answered) {
        *why = RECOVERY_DST;
        *bad_dst = wcalls[k].is_answered ? (int) dst[k] : -1;
        return -1;
      }
  }
  return 0;
}

/* Is replica slot r one of dst[0..ndst)? */
static bool
recovery_is_dst (unsigned r, const unsigned *dst, unsigned ndst)
{
  for (unsigned k = 0; k < ndst; k++)
    if (dst[k] == r)
      return true;
  return false;
}

/* Copy extent idx from a good copy (from_backup: the backup file) to
 * each replica in dst[] (write lock held), trying one source after
 * another until one is read and verified whole.  Sources that answer
 * an error are marked stale at once; sources that fail verification
 * are marked stale once another one passes it.  0, or -1 with errno;
 * a target whose server answered an error is left in *bad_dst (else
 * -1).
 */
static int
recovery_copy (struct rp_pool *p, uint64_t idx, struct extent *e,
               bool from_backup, const unsigned *dst, unsigned ndst,
               uint8_t *buf, int *bad_dst)
{
  unsigned tried = 0, unverified = 0;

  *bad_dst = -1;
  for (;;) {
    enum recovery_fail why;
    int src = -1;

    if (!from_backup) {
      for (unsigned r = 0; r < e->nrep && src < 0; r++)
        if (!((tried >> r) & 1) && !recovery_is_dst (r, dst, ndst) &&
            replica_is_good (p, &e->rep[r]))
          src = r;
      if (src < 0) {
        errno = unverified ? EBADMSG : EIO;
        if (unverified && !e->is_lost_logged)
          logging_msg (LOGGING_ERROR,
                       "extent %" PRIu64 ": no copy passes"
                       " authentication; it cannot be repaired",
                       idx);
        return -1;
      }
      tried |= 1u << src;
    }
    if (recovery_copy_from (p, idx, e, src, dst, ndst, buf, &why, bad_dst) ==
        0) {
      for (unsigned r = 0; r < e->nrep; r++)
        if ((unverified >> r) & 1) {
          replica_mark_stale (&e->rep[r]);
          logging_msg (LOGGING_WARN,
                       "extent %" PRIu64 ": the copy on server %s"
                       " failed authentication; marked stale, repaired next",
                       idx, p->servers[e->rep[r].server].addr);
        }
      return 0;
    }
    switch (why) {
    case RECOVERY_SRC_GONE:
      replica_mark_stale (&e->rep[src]);
      logging_msg (LOGGING_WARN,
                   "extent %" PRIu64 ": the copy on server %s no"
                   " longer exists there; marked stale",
                   idx, p->servers[e->rep[src].server].addr);
      break;
    case RECOVERY_SRC_DOWN:
      if (src >= 0)
        donor_down (&p->servers[e->rep[src].server],
                          "recovery read failed");
      break;
    case RECOVERY_SRC_UNVERIFIED:
      if (src >= 0)
        unverified |= 1u << src;
      else
        logging_msg (LOGGING_ERROR,
                     "extent %" PRIu64 ": the backup file fails"
                     " authentication; not copied",
                     idx);
      break;
    case RECOVERY_DST:
      return -1;
    }
    if (from_backup) {
      errno = EIO;
      return -1;
    }
  }
}

/* Can a memserver write a copy straight into server d for us (COPY)?
 * peer-copy=on, d up, reachable over TCP, announced COPY, and no COPY
 * to it failed to connect lately.
 */
static bool
recovery_peer_target_ok (struct rp_pool *p, struct donor *d)
{
  return p->cfg.is_peer_copy && atomic_load (&d->is_up) &&
    atomic_load (&d->has_copy) &&
    rp_now_ms () >= atomic_load (&d->copy_off_ms);
}

/* The good copy of e to COPY from: on an up server that takes COPY,
 * not a target, the one whose server runs the fewest COPYs for us now
 * (so one lost server's extents are sent by all the survivors, not by
 * the first replica of each); with is_limited, only one running fewer
 * than RECOVERY_PER_SERVER.  -1 if none.
 */
static int
recovery_peer_source (struct rp_pool *p, const struct extent *e,
                      const unsigned *dst, unsigned ndst, bool is_limited)
{
  int best = -1;
  unsigned best_load = is_limited ? RECOVERY_PER_SERVER : UINT32_MAX;

  for (unsigned r = 0; r < e->nrep; r++) {
    struct donor *s = &p->servers[e->rep[r].server];
    unsigned load;
    if (recovery_is_dst (r, dst, ndst) || !replica_is_good (p, &e->rep[r]) ||
        !atomic_load (&s->is_up) || !atomic_load (&s->has_copy))
      continue;
    load = atomic_load (&s->copies_out);
    if (load < best_load) {
      best = r;
      best_load = load;
    }
  }
  return best;
}

/* encrypt=on: a COPY moved bytes we did not check; read target slot t
 * back and authenticate every block, so a copy counts good only on the
 * evidence a relay would have given.  NULL if all of it passes, else
 * what did not ("fails authentication", or the read-back failed).
 */
static const char *
recovery_peer_verify (struct rp_pool *p, uint64_t idx, struct extent *e,
                      unsigned t, uint8_t *buf)
{
  uint32_t es = p->cfg.extent_size;
  uint32_t step = es < RP_MAX_PAYLOAD ? es : RP_MAX_PAYLOAD;
  struct donor *d = &p->servers[e->rep[t].server];

  for (uint32_t off = 0; off < es; off += step) {
    uint64_t pos = (idx << p->map.shift) + off, bad;
    struct conn_call call;
    replica_call (&call, &e->rep[t], RP_OP_READ);
    call.req.offset = off;
    call.req.count = step;
    call.rbuf = buf;
    if (conn_roundtrip (donor_conn (d, idx), &call, p->cfg.timeout_ms) == -1)
      return call.is_answered ? "could not be read back (an error)"
                              : "could not be read back (no answer)";
    if (crypt_verify (&p->crypt, pos / CRYPT_BLOCK, buf, step / CRYPT_BLOCK,
                      &bad) == -1)
      return "fails authentication";
  }
  return NULL;
}

/* Send the COPYs of job j (write lock held): for each target the
 * servers allow, from a good source's server straight into the
 * target's.  With is_limited, -1 and nothing sent if a source or a
 * target already has RECOVERY_PER_SERVER COPYs of ours running (the
 * caller finishes its other jobs first, then sends without the
 * limit); else 0.
 */
static int
recovery_peer_send (struct rp_pool *p, struct recovery_job *j,
                    bool is_limited)
{
  struct extent *e = j->e;
  uint32_t es = p->cfg.extent_size;
  /* The source's own deadline: the request timeout, plus the extent at
   * 32 MiB/s (a slow link); we wait a timeout longer for its answer.
   */
  uint32_t deadline = p->cfg.timeout_ms +
    (uint32_t) ((uint64_t) es * 1000 / (32u << 20));
  int src[EXTENT_SLOTS];

  if (deadline > RP_COPY_MAX_DEADLINE_MS)
    deadline = RP_COPY_MAX_DEADLINE_MS;
  j->n = 0;
  for (unsigned k = 0; k < j->ndst; k++) {
    struct donor *d = &p->servers[e->rep[j->dst[k]].server];
    src[k] = -1;
    if (!recovery_peer_target_ok (p, d))
      continue;
    if (is_limited && atomic_load (&d->copies_in) >= RECOVERY_PER_SERVER)
      return -1;
    src[k] = recovery_peer_source (p, e, j->dst, j->ndst, is_limited);
    if (src[k] < 0 && is_limited &&
        recovery_peer_source (p, e, j->dst, j->ndst, false) >= 0)
      return -1;
  }
  conn_wait_init (&j->w);
  j->deadline_ms = rp_now_ms () + deadline + p->cfg.timeout_ms;
  for (unsigned k = 0; k < j->ndst; k++) {
    struct replica *t = &e->rep[j->dst[k]];
    struct donor *d = &p->servers[t->server];
    struct rp_copy_args a;
    unsigned n = j->n;

    if (src[k] < 0)
      continue;
    struct donor *s = &p->servers[e->rep[src[k]].server];
    memset (&a, 0, sizeof a);
    a.dst_handle = t->handle;
    a.dst_fence = d->fence;
    a.dst_session = d->session;
    memcpy (a.dst_incarnation, d->incarnation, 16);
    a.deadline_ms = deadline;
    memcpy (a.dst_addr, d->copy_addr, sizeof a.dst_addr);
    rp_copy_req_encode (&a, j->args[n]);
    replica_call (&j->calls[n], &e->rep[src[k]], RP_OP_COPY);
    j->calls[n].req.count = es;
    j->calls[n].req.length = sizeof j->args[n];
    j->calls[n].payload = j->args[n];
    j->calls[n].rbuf = j->replies[n];
    j->calls[n].rcap = sizeof j->replies[n];
    j->calls[n].wait = &j->w;
    atomic_fetch_add (&s->copies_out, 1);
    atomic_fetch_add (&d->copies_in, 1);
    if (conn_submit (donor_conn (s, j->idx), &j->calls[n]) == -1) {
      atomic_fetch_sub (&s->copies_out, 1);
      atomic_fetch_sub (&d->copies_in, 1);
      continue;
    }
    j->src[n] = src[k];
    j->k_of[n] = k;
    j->n++;
  }
  return 0;
}

/* Where a COPY stopped (RP_COPY_STAGE_*), for the log. */
static const char *
recovery_copy_stage_name (uint32_t stage)
{
  switch (stage) {
  case RP_COPY_STAGE_CONNECT: return "connecting to the target";
  case RP_COPY_STAGE_HANDSHAKE: return "joining the target";
  case RP_COPY_STAGE_WRITE: return "writing to the target";
  case RP_COPY_STAGE_SOURCE: return "the source copy went away";
  case RP_COPY_STAGE_DEADLINE: return "past its deadline";
  case RP_COPY_STAGE_ABORTED: return "the source server is stopping";
  default: return "an unknown stage";
  }
}

/* The answers to job j's COPYs (write lock held): targets filled are
 * marked good.  A target a failed COPY may have written to is added to
 * *spoiled (its content is unknown and a late write of that COPY may
 * still land: it is FREEd and placed afresh, never counted).  The
 * targets left for the relay are compacted into j->dst; returns how
 * many.
 */
static unsigned
recovery_peer_collect (struct rp_pool *p, struct recovery_job *j,
                       uint8_t *buf, uint32_t *spoiled)
{
  struct extent *e = j->e;
  unsigned left = 0;

  if (j->n)
    conn_wait_all (&j->w, j->calls, j->n, j->deadline_ms);
  conn_wait_destroy (&j->w);
  for (unsigned i = 0; i < j->n; i++) {
    unsigned k = j->k_of[i], t = j->dst[k];
    struct donor *s = &p->servers[e->rep[j->src[i]].server];
    struct donor *d = &p->servers[e->rep[t].server];
    uint32_t error, stage, flags;
    const char *why;

    atomic_fetch_sub (&s->copies_out, 1);
    atomic_fetch_sub (&d->copies_in, 1);
    if (!j->calls[i].is_answered) {
      /* No answer: it may still be writing.  */
      logging_msg (LOGGING_WARN, "extent %" PRIu64 ": the COPY from %s to"
                   " %s got no answer (%s); that copy is dropped and placed"
                   " afresh", j->idx, s->addr, d->addr,
                   strerror (j->calls[i].err ? j->calls[i].err : ETIMEDOUT));
      *spoiled |= 1u << t;
      j->is_left[k] = false;
      atomic_fetch_add (&p->count.peer_copy_failures, 1);
      continue;
    }
    if (j->calls[i].err) {
      /* Refused before it began: nothing was sent.  The source gone
       * (ENOENT) is marked stale and another one tried by the relay.
       */
      logging_msg (j->calls[i].err == EBUSY ? LOGGING_INFO : LOGGING_WARN,
                   "extent %" PRIu64 ": %s refused the COPY to %s (%s);"
                   " copied through this client", j->idx, s->addr, d->addr,
                   j->calls[i].err == EBUSY ? "it runs as many as it takes"
                   : strerror (j->calls[i].err));
      if (j->calls[i].err == ENOENT)
        replica_mark_stale (&e->rep[j->src[i]]);
      atomic_fetch_add (&p->count.peer_copy_failures, 1);
      continue;
    }
    if (rp_copy_reply_decode (j->replies[i], &error, &stage, &flags, &why) ==
        -1) {
      logging_msg (LOGGING_WARN, "server %s: %s", s->addr, why);
      error = RP_EIO;
      stage = RP_COPY_STAGE_WRITE;
      flags = RP_COPY_SENT;
    }
    if (error == RP_OK) {
      const char *bad = p->crypt.key
        ? recovery_peer_verify (p, j->idx, e, t, buf) : NULL;
      if (bad) {
        /* Complete (nothing can land late) but not good: the relay
         * rewrites it from a source it checks first.
         */
        logging_msg (LOGGING_WARN, "extent %" PRIu64 ": the copy %s wrote"
                     " on %s %s; rewritten through this client", j->idx,
                     s->addr, d->addr, bad);
        atomic_fetch_add (&p->count.peer_copy_failures, 1);
        continue;
      }
      e->rep[t].is_stale = 0;
      j->is_left[k] = false;
      atomic_fetch_add (&p->count.recovered, 1);
      atomic_fetch_add (&p->count.peer_copies, 1);
      continue;
    }
    atomic_fetch_add (&p->count.peer_copy_failures, 1);
    /* Every failed COPY is said, as the stats count it.  Connecting or
     * joining: at info, as the warning below says it once in 30 s and
     * then relays (a few COPYs in flight to d fail together; none
     * follow for 30 s, so this cannot flood).
     */
    logging_msg (stage == RP_COPY_STAGE_CONNECT ||
                 stage == RP_COPY_STAGE_HANDSHAKE ? LOGGING_INFO
                 : LOGGING_WARN, "extent %" PRIu64 ": the COPY from %s to"
                 " %s failed (%s, %s); %s", j->idx, s->addr, d->addr,
                 strerror (rp_error_to_errno (error)),
                 recovery_copy_stage_name (stage),
                 flags & RP_COPY_SENT ? "that copy is dropped and placed"
                 " afresh" : "copied through this client");
    if (stage == RP_COPY_STAGE_SOURCE)
      replica_mark_stale (&e->rep[j->src[i]]);
    if (stage == RP_COPY_STAGE_CONNECT || stage == RP_COPY_STAGE_HANDSHAKE) {
      /* Perhaps it cannot reach d at all (a firewall, an address only
       * we can use): relay copies to d for a while.
       */
      if (rp_now_ms () >= atomic_load (&d->copy_off_ms))
        logging_msg (LOGGING_WARN, "server %s could not %s server %s for"
                     " a COPY; copies to %s go through this client for"
                     " 30 s", s->addr, stage == RP_COPY_STAGE_CONNECT
                     ? "connect to" : "join us on", d->addr, d->addr);
      atomic_store (&d->copy_off_ms, rp_now_ms () + 30000);
    }
    if (flags & RP_COPY_SENT) {
      *spoiled |= 1u << t;
      j->is_left[k] = false;
    }
  }
  j->n = 0;
  for (unsigned k = 0; k < j->ndst; k++)
    if (j->is_left[k])
      j->dst[left++] = j->dst[k];
  return left;
}

/* Index of a good replica of e, or -1. */
static int
recovery_source (struct rp_pool *p, const struct extent *e)
{
  for (unsigned r = 0; r < e->nrep; r++)
    if (replica_is_good (p, &e->rep[r]))
      return r;
  return -1;
}

/* No good copy of e and no backup file: keep every replica record (a
 * server that returns with the same incarnation may still hold the
 * data) so reads fail with EIO; dropping them would make the extent
 * read as zeros.  While a copy may come back it is unreachable, not
 * lost: requests wait for it (outage-wait-ms, io.c).  Otherwise log
 * the loss once.
 */
static void
recovery_note_no_copy (struct rp_pool *p, uint64_t idx, struct extent *e)
{
  if (replica_extent_may_return (p, e) || e->is_lost_logged)
    return;
  e->is_lost_logged = 1;
  logging_msg (LOGGING_ERROR,
               "extent %" PRIu64 " (bytes %" PRIu64 "-%" PRIu64
               "): every replica is lost; reads of it fail with EIO",
               idx, idx << p->map.shift, ((idx + 1) << p->map.shift) - 1);
}

/* Every copy of e is gone, but the backup file has the data: turn e
 * into an entry recovery can rebuild from the file -- its copies past
 * their grace dropped, at least one placed, every copy stale (all are
 * rewritten from the file).  Works on the entry but puts the old one
 * back, and returns false, if it cannot commit: while copies are on
 * servers within their grace (the backup serves reads until they are
 * back or the grace ends), or if no new copy can be placed (an entry
 * with no replica would read as zeros, while the old one reads from the
 * backup).  Write lock held.
 */
static bool
recovery_take_backup (struct rp_pool *p, uint64_t idx, struct extent *e)
{
  struct extent saved = *e;

  for (unsigned r = 0; r < e->nrep;) {
    if (replica_is_keepable (p, &e->rep[r]))
      r++;
    else
      extent_map_drop_replica (e, r);
  }
  for (unsigned r = 0; r < e->nrep; r++)
    if (!atomic_load (&p->servers[e->rep[r].server].is_up)) {
      *e = saved;
      return false;
    }
  if (e->nrep == 0 && (replica_place (p, idx, e) == -1 || e->nrep == 0)) {
    *e = saved;
    return false;
  }
  /* Committed: free what was dropped when its server is back. */
  for (unsigned r = 0; r < saved.nrep; r++) {
    struct donor *s = &p->servers[saved.rep[r].server];
    if (!extent_map_has_server (e, saved.rep[r].server) &&
        atomic_load (&s->epoch) == saved.rep[r].epoch)
      donor_add_orphan (s, saved.rep[r].handle);
  }
  for (unsigned r = 0; r < e->nrep; r++)
    e->rep[r].is_stale = 1;
  e->is_lost_logged = 0;
  return true;
}

/* Drop the copies of e that cannot be repaired in place (their server
 * restarted, dropped our session, or is down past its grace); free them
 * there if the server comes back with them.  Write lock held.
 */
static void
recovery_drop_unkeepable (struct rp_pool *p, struct extent *e)
{
  for (unsigned r = 0; r < e->nrep;) {
    struct replica *rep = &e->rep[r];
    struct donor *s = &p->servers[rep->server];
    if (replica_is_keepable (p, rep)) {
      r++;
      continue;
    }
    if (atomic_load (&s->epoch) == rep->epoch)
      donor_add_orphan (s, rep->handle);
    extent_map_drop_replica (e, r);
  }
}

/* The copies of e to write now, into dst: stale ones on up servers
 * (rewritten in place) but for leaving ones, then new ones placed up to
 * `replicas` beside the leaving ones (stale until filled).  Write lock
 * held.  Returns how many.
 */
static unsigned
recovery_targets (struct rp_pool *p, uint64_t idx, struct extent *e,
                  unsigned dst[EXTENT_SLOTS])
{
  unsigned ndst = 0, before;

  for (unsigned r = 0; r < e->nrep; r++)
    if (!replica_is_good (p, &e->rep[r]) &&
        !replica_is_leaving (p, &e->rep[r]) &&
        atomic_load (&p->servers[e->rep[r].server].is_up))
      dst[ndst++] = r;
  before = e->nrep;
  if (e->nrep < replica_slots_wanted (p, e))
    replica_place (p, idx, e);
  /* Only replicas on up servers can be written now. */
  for (unsigned k = 0; k < ndst;)
    if (!atomic_load (&p->servers[e->rep[dst[k]].server].is_up))
      dst[k] = dst[--ndst];
    else
      k++;
  for (unsigned r = before; r < e->nrep; r++) {
    e->rep[r].is_stale = 1;
    dst[ndst++] = r;
  }
  return ndst;
}

/* FREE copy r of e on its server and drop it from e (write lock held).
 * A FREE that gets no answer is retried when the server is back
 * (orphans); one answered with an error finds the copy gone already.
 */
static void
recovery_free_copy (struct rp_pool *p, uint64_t idx, struct extent *e,
                    unsigned r)
{
  struct replica *rep = &e->rep[r];
  struct donor *s = &p->servers[rep->server];
  struct conn_call call;

  if (atomic_load (&s->epoch) == rep->epoch) {
    replica_call (&call, rep, RP_OP_FREE);
    if (!atomic_load (&s->is_up) ||
        (conn_roundtrip (donor_conn (s, idx), &call, p->cfg.timeout_ms) ==
           -1 && !call.is_answered))
      donor_add_orphan (s, rep->handle);
  }
  extent_map_drop_replica (e, r);
}

/* Ask copy r's server to keep it (HOLD): it is the extent's only good
 * copy and there is no room for it elsewhere.  Write lock held.
 */
static void
recovery_hold (struct rp_pool *p, uint64_t idx, struct extent *e, unsigned r)
{
  struct replica *rep = &e->rep[r];
  struct donor *s = &p->servers[rep->server];
  struct conn_call call;

  replica_call (&call, rep, RP_OP_HOLD);
  if (conn_roundtrip (donor_conn (s, idx), &call, p->cfg.timeout_ms) == -1) {
    if (call.is_answered)
      replica_mark_stale (rep);  /* gone already: repaired if it can be */
    return;
  }
  rep->leaving = 2;
  atomic_fetch_add (&p->count.reclaim_held, 1);
  logging_msg (LOGGING_WARN, "extent %" PRIu64 ": server %s asked for its"
               " only good copy back and no other server has room; it is"
               " held there", idx, s->addr);
}

/* After recovery placed and filled what it could for e (write lock
 * held): give back each leaving copy that the others make redundant --
 * while e keeps `replicas` good copies without it.  A copy asked back by
 * RECLAIM that could not be replaced is given up once its server's
 * deadline is half gone (the extent is then degraded until room
 * appears), or HELD if it is the only good copy; a draining or removed
 * server's copies stay until there is room.
 */
static void
recovery_release_leaving (struct rp_pool *p, uint64_t idx, struct extent *e)
{
  unsigned good = 0;

  for (unsigned r = 0; r < e->nrep; r++)
    if (replica_is_good (p, &e->rep[r]))
      good++;
  for (unsigned r = 0; r < e->nrep;) {
    struct replica *rep = &e->rep[r];
    struct donor *s = &p->servers[rep->server];
    bool is_good = replica_is_good (p, rep);

    if (!replica_is_leaving (p, rep)) {
      r++;
      continue;
    }
    if (good - is_good >= p->cfg.replicas) {
      recovery_free_copy (p, idx, e, r);
      good -= is_good;
      atomic_fetch_add (&p->count.migrated, 1);
      continue;
    }
    if (rep->leaving == 1 && !atomic_load (&s->is_draining) &&
        !atomic_load (&s->is_removed) &&
        rp_now_ms () >= atomic_load (&s->reclaim_due_ms)) {
      if (is_good && good == 1) {
        recovery_hold (p, idx, e, r);
        r++;
        continue;
      }
      if (good - is_good > 0) {
        logging_msg (LOGGING_WARN, "extent %" PRIu64 ": server %s asked"
                     " for a copy back and no other server has room; given"
                     " up (the extent has %u good copies until there is"
                     " room)", idx, s->addr, good - is_good);
        recovery_free_copy (p, idx, e, r);
        good -= is_good;
        atomic_fetch_add (&p->count.reclaim_given_up, 1);
        continue;
      }
    }
    r++;
  }
}

/* Drop the copies of e in mask (bits are replica slots), FREEing them
 * on their servers; never e's last copy.  Write lock held.
 */
static void
recovery_drop_spoiled (struct rp_pool *p, uint64_t idx, struct extent *e,
                       uint32_t mask)
{
  for (unsigned r = e->nrep; r-- > 0;)
    if (((mask >> r) & 1) && e->nrep > 1)
      recovery_free_copy (p, idx, e, r);
}

/* Start repairing extent idx (write lock held) as job j: the copies
 * dropped, the targets chosen (and placed).  false when there is
 * nothing to copy (what had to be done is done), else true: send its
 * COPYs (recovery_peer_send), then recovery_finish.
 */
static bool
recovery_begin (struct rp_pool *p, uint64_t idx, struct extent *e,
                struct recovery_job *j)
{
  j->idx = idx;
  j->e = e;
  j->n = 0;
  j->ndst = 0;
  j->from_backup = false;
  conn_wait_init (&j->w);
  if (recovery_source (p, e) < 0) {
    if (!backup_is_on (p)) {
      recovery_note_no_copy (p, idx, e);
      return false;
    }
    if (!recovery_take_backup (p, idx, e))
      return false;
    j->from_backup = true;
  }
  recovery_drop_unkeepable (p, e);
  j->ndst = recovery_targets (p, idx, e, j->dst);
  if (j->ndst == 0) {
    recovery_release_leaving (p, idx, e);
    return false;
  }
  for (unsigned k = 0; k < j->ndst; k++)
    j->is_left[k] = true;  /* until a COPY fills it */
  return true;
}

/* Finish job j (write lock held), copying through buf: the COPYs'
 * answers, the relay of what they did not copy (and of everything
 * with peer-copy=off or from the backup file), the copies given back.
 * Returns bytes copied, or -1.
 */
static int64_t
recovery_finish (struct rp_pool *p, struct recovery_job *j, uint8_t *buf)
{
  struct extent *e = j->e;
  unsigned ndst = j->ndst, left;
  uint32_t spoiled = 0;
  int bad_dst;

  left = recovery_peer_collect (p, j, buf, &spoiled);
  if (left &&
      recovery_copy (p, j->idx, e, j->from_backup, j->dst, left, buf,
                     &bad_dst) == -1) {
    /* A target whose server answered an error no longer exists there
     * (its lease for us expired while we could not reach it, say):
     * drop it, the next pass places a copy afresh.  Never down to no
     * replica at all: that would read as zeros.
     */
    if (bad_dst >= 0)
      spoiled |= 1u << bad_dst;
    recovery_drop_spoiled (p, j->idx, e, spoiled);
    return -1;
  }
  for (unsigned k = 0; k < left; k++)
    e->rep[j->dst[k]].is_stale = 0;
  atomic_fetch_add (&p->count.recovered, left);
  ndst -= __builtin_popcount (spoiled);  /* copies made */
  recovery_drop_spoiled (p, j->idx, e, spoiled);
  recovery_release_leaving (p, j->idx, e);
  return (int64_t) ndst * p->cfg.extent_size;
}

/* encrypt=on: settle block b, whose last write is in doubt (crypt.h),
 * write lock held: read it from every good copy; if any holds the
 * failed write, that becomes the block's version and the copies that
 * hold the other are marked stale (the pass rewrites them from one
 * that has it); if all that answered hold the current version, it
 * stays.  Copies out of reach are not waited for: one that comes back
 * holding the other version fails authentication and is repaired like
 * any bad copy.  false if no copy could be read (tried again later).
 */
static bool
recovery_settle_block (struct rp_pool *p, uint64_t idx, struct extent *e,
                       uint64_t b)
{
  uint32_t off = (b * CRYPT_BLOCK) & (p->cfg.extent_size - 1);
  int version[EXTENT_SLOTS];
  bool is_new = false, is_read = false;

  for (unsigned r = 0; r < e->nrep; r++) {
    struct conn_call call;
    version[r] = -2;  /* not read */
    if (!replica_is_good (p, &e->rep[r]))
      continue;
    replica_call (&call, &e->rep[r], RP_OP_READ);
    call.req.offset = off;
    call.req.count = CRYPT_BLOCK;
    call.rbuf = p->recovery_buf;
    if (conn_roundtrip (donor_conn (&p->servers[e->rep[r].server], idx),
                        &call, p->cfg.timeout_ms) == -1) {
      if (call.is_answered)
        replica_mark_stale (&e->rep[r]);
      continue;
    }
    version[r] = crypt_version (&p->crypt, b, p->recovery_buf);
    is_new |= version[r] == 1;
    is_read |= version[r] >= 0;
  }
  if (!is_read)
    return false;
  crypt_settle (&p->crypt, b, is_new);
  for (unsigned r = 0; r < e->nrep; r++)
    if (version[r] == -1 || (version[r] >= 0 && version[r] != is_new)) {
      replica_mark_stale (&e->rep[r]);
      logging_msg (LOGGING_INFO, "extent %" PRIu64 ": block %" PRIu64
                   " of the copy on server %s missed how a failed write"
                   " was settled; marked stale", idx, b,
                   p->servers[e->rep[r].server].addr);
    }
  return true;
}

/* Settle the blocks in doubt, a few a pass (crypt.h). */
static void
recovery_settle_doubts (struct rp_pool *p)
{
  uint64_t blocks[64];
  unsigned n;

  if (p->crypt.key == NULL)
    return;
  n = crypt_doubt_list (&p->crypt, blocks, 64);
  for (unsigned k = 0; k < n; k++) {
    uint64_t idx = (blocks[k] * CRYPT_BLOCK) >> p->map.shift;
    struct extent *e = &p->map.e[idx];

    extent_map_wrlock (&p->map, idx);
    if (e->nrep == 0)
      crypt_settle (&p->crypt, blocks[k], false);
    else
      recovery_settle_block (p, idx, e, blocks[k]);
    pthread_rwlock_unlock (extent_map_lock (&p->map, idx));
  }
}

static int
recovery_cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* Mark leaving the copies that servers asked back (RECLAIM notices,
 * queued by donor.c): one scan of the map per server with a queue.
 * Handles we do not know (trimmed since) are ignored.
 */
static void
recovery_take_reclaims (struct rp_pool *p)
{
  uint64_t h[DONOR_RECLAIM];

  for (unsigned i = 0; i < p->nservers; i++) {
    struct donor *s = &p->servers[i];
    unsigned n, found = 0;

    pthread_mutex_lock (&s->reclaim_lock);
    n = s->nreclaim;
    memcpy (h, s->reclaim, n * sizeof h[0]);
    s->nreclaim = 0;
    pthread_mutex_unlock (&s->reclaim_lock);
    if (n == 0)
      continue;
    qsort (h, n, sizeof h[0], recovery_cmp_u64);
    for (uint64_t idx = 0; idx < p->map.n && found < n; idx++) {
      struct extent *e = &p->map.e[idx];
      unsigned nrep;
      struct replica *copies = extent_map_copies (&p->map, idx, &nrep);
      for (unsigned r = 0; r < nrep; r++) {
        uint64_t handle = __atomic_load_n (&copies[r].handle,
                                           __ATOMIC_RELAXED);
        if (__atomic_load_n (&copies[r].server, __ATOMIC_RELAXED) != i ||
            handle == 0 ||
            bsearch (&handle, h, n, sizeof h[0], recovery_cmp_u64) == NULL)
          continue;
        pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
        pthread_rwlock_wrlock (lk);  /* marks only, sends nothing */
        /* A fragment keeps its slot; a replica may have moved in rep[]. */
        struct replica *rep = p->map.nfrag
          ? (copies[r].server == i && copies[r].handle == handle
             ? &copies[r] : NULL)
          : replica_find (e, i, handle);
        if (rep && rep->leaving == 0)
          rep->leaving = 1;
        pthread_rwlock_unlock (lk);
        found++;
      }
    }
  }
}

/* Foreground requests so far (reads and writes, io.c). */
static uint64_t
recovery_foreground (struct rp_pool *p)
{
  return atomic_load (&p->count.reads) + atomic_load (&p->count.writes);
}

/* After a copy that took copy_ns: if foreground requests came in since
 * *fg, yield 4 x RECOVERY_WORKERS times as long (at most 200 ms), so
 * that the workers together take about a fifth of the time and
 * foreground I/O the rest; an idle disk is not waited for.
 */
static void
recovery_pace (struct rp_pool *p, uint64_t copy_ns, uint64_t *fg)
{
  uint64_t now_fg = recovery_foreground (p);
  uint64_t ns = copy_ns * 4 * RECOVERY_WORKERS;

  if (now_fg == *fg)
    return;
  if (ns > 200000000)
    ns = 200000000;
  struct timespec ts = { .tv_sec = ns / 1000000000,
                         .tv_nsec = ns % 1000000000 };
  nanosleep (&ts, NULL);
  *fg = recovery_foreground (p);
}

/* Bytes of each worker's buffer (recovery_start). */
static size_t
recovery_buf_len (const struct rp_pool *p)
{
  return p->cfg.extent_size < RP_MAX_PAYLOAD ? p->cfg.extent_size
                                             : RP_MAX_PAYLOAD;
}

/* Does extent e need recovery's attention?  Unlocked pre-check; the
 * decision is made again under the lock.
 */
static bool
recovery_needs (struct rp_pool *p, const struct extent *e)
{
  unsigned good = 0, leaving = 0;
  unsigned n = __atomic_load_n (&e->nrep, __ATOMIC_ACQUIRE);

  if (p->ec)
    return ecio_needs (p, e - p->map.e);

  if (n == 0)
    return false;
  for (unsigned r = 0; r < n && r < EXTENT_SLOTS; r++) {
    if (replica_is_good (p, &e->rep[r]))
      good++;
    if (replica_is_leaving (p, &e->rep[r]))
      leaving++;
  }
  return !(good >= p->cfg.replicas && good == n && leaving == 0);
}

/* After a copy (or a batch) of len bytes that took copy_ns: count it,
 * and pace (recovery_pace).  false if the pass's deadline came.
 */
static bool
recovery_account (struct rp_pool *p, int64_t len, uint64_t copy_ns,
                  uint64_t *fg)
{
  struct recovery_state *rs = &p->rec;

  if (len <= 0)
    return true;
  atomic_fetch_sub (&rs->budget, len);
  recovery_pace (p, copy_ns, fg);
  if (rp_now_ms () >= rs->until_ms) {
    atomic_store (&rs->is_cut, true);
    return false;
  }
  return true;
}

/* Finish the worker's jobs[0..*njobs) and release their locks. */
static bool
recovery_flush (struct rp_pool *p, struct recovery_worker *w,
                unsigned *njobs, uint64_t *fg)
{
  struct recovery_state *rs = &p->rec;
  uint64_t t0 = *njobs ? w->jobs[0].t0 : 0;
  int64_t total = 0;

  for (unsigned i = 0; i < *njobs; i++) {
    struct recovery_job *j = &w->jobs[i];
    int64_t copied = recovery_finish (p, j, w->buf);
    pthread_rwlock_unlock (j->lk);
    if (copied > 0) {
      atomic_fetch_add (&rs->repaired, 1);
      total += copied;
    }
  }
  *njobs = 0;
  return recovery_account (p, total, rp_now_ns () - t0, fg);
}

/* Is lk the lock of one of jobs[0..n)? */
static bool
recovery_holds (const struct recovery_job *jobs, unsigned n,
                const pthread_rwlock_t *lk)
{
  for (unsigned i = 0; i < n; i++)
    if (jobs[i].lk == lk)
      return true;
  return false;
}

/* One worker's share of a pass: extents taken from the shared cursor
 * until the map ends, the deadline comes or the budget is spent.  With
 * COPYs, up to RECOVERY_BATCH extents are in flight at once: the first
 * lock is waited for, the others only taken if free (so that a worker
 * never waits for a lock while it holds one).
 */
static void
recovery_scan (struct rp_pool *p, struct recovery_worker *w)
{
  struct recovery_state *rs = &p->rec;
  uint64_t fg = recovery_foreground (p);
  unsigned njobs = 0;

  for (;;) {
    uint64_t idx = atomic_fetch_add (&rs->cursor, 1);
    if (idx >= p->map.n || atomic_load (&rs->budget) <= 0)
      break;
    if ((idx & 255) == 0 && rp_now_ms () >= rs->until_ms) {
      atomic_store (&rs->is_cut, true);  /* the next pass goes on */
      break;
    }
    struct extent *e = &p->map.e[idx];
    if (!recovery_needs (p, e))
      continue;
    pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
    if (njobs && (recovery_holds (w->jobs, njobs, lk) ||
                  pthread_rwlock_trywrlock (lk) != 0)) {
      if (!recovery_flush (p, w, &njobs, &fg))
        return;
      pthread_rwlock_wrlock (lk);
    }
    else if (njobs == 0)
      pthread_rwlock_wrlock (lk);
    extent_map_drain (&p->map, idx);
    struct recovery_job *j = &w->jobs[njobs];
    j->t0 = rp_now_ns ();
    j->lk = lk;
    if (p->ec || e->nrep == 0) {
      int64_t copied = p->ec ? ecio_rebuild (p, idx, w->buf,
                                             recovery_buf_len (p)) : 0;
      pthread_rwlock_unlock (lk);
      if (copied > 0)
        atomic_fetch_add (&rs->repaired, 1);
      if (!recovery_account (p, copied, rp_now_ns () - j->t0, &fg))
        break;
      continue;
    }
    if (!recovery_begin (p, idx, e, j)) {
      conn_wait_destroy (&j->w);
      pthread_rwlock_unlock (lk);
      continue;
    }
    if (!j->from_backup && recovery_peer_send (p, j, njobs > 0) == -1) {
      /* A server has enough of our COPYs: let those end first. */
      if (!recovery_flush (p, w, &njobs, &fg)) {
        pthread_rwlock_unlock (lk);
        return;
      }
      w->jobs[0] = *j;
      j = &w->jobs[0];
      recovery_peer_send (p, j, false);
    }
    njobs++;
    /* Batch only an idle disk's recovery without a ceiling: a batch
     * holds its extents' locks for its slowest copy, and overshoots a
     * budget by up to a batch.
     */
    bool is_batch = p->cfg.is_peer_copy && p->cfg.recovery_rate == 0 &&
      recovery_foreground (p) == fg;
    if ((njobs >= rs->batch || !is_batch || j->n == 0) &&
        !recovery_flush (p, w, &njobs, &fg))
      return;
  }
  recovery_flush (p, w, &njobs, &fg);
}

/* A recovery worker: one scan per pass (recovery_pass). */
static void *
recovery_worker (void *arg)
{
  struct recovery_worker *w = arg;
  struct rp_pool *p = w->pool;
  struct recovery_state *rs = &p->rec;
  uint64_t seen = 0;

  pthread_mutex_lock (&rs->lock);
  for (;;) {
    while (!rs->is_stopping && rs->gen == seen)
      pthread_cond_wait (&rs->go, &rs->lock);
    if (rs->is_stopping)
      break;
    seen = rs->gen;
    pthread_mutex_unlock (&rs->lock);
    recovery_scan (p, w);
    pthread_mutex_lock (&rs->lock);
    if (--rs->busy == 0)
      pthread_cond_broadcast (&rs->done);
  }
  pthread_mutex_unlock (&rs->lock);
  return NULL;
}

int
recovery_start (struct rp_pool *p)
{
  struct recovery_state *rs = &p->rec;
  size_t len = recovery_buf_len (p);

  pthread_mutex_init (&rs->lock, NULL);
  pthread_cond_init (&rs->go, NULL);
  pthread_cond_init (&rs->done, NULL);
  rs->is_inited = true;
  /* Worker 0 is the monitor thread itself (it also settles doubts with
   * p->recovery_buf); the others get their own buffers now: recovery
   * must not allocate when it is needed.
   */
  rs->workers[0].pool = p;
  rs->workers[0].buf = p->recovery_buf;
  for (unsigned i = 0; i < RECOVERY_WORKERS; i++) {
    struct recovery_worker *w = &rs->workers[i];
    w->jobs = calloc (RECOVERY_BATCH, sizeof *w->jobs);
    if (w->jobs == NULL)
      return -1;
  }
  for (unsigned i = 1; i < RECOVERY_WORKERS; i++) {
    struct recovery_worker *w = &rs->workers[i];
    w->pool = p;
    w->buf = malloc (len);
    if (w->buf == NULL)
      return -1;
    int err = rp_thread_start (&w->thread, 256 * 1024, recovery_worker, w);
    if (err) {
      errno = err;
      return -1;
    }
    w->has_thread = true;
  }
  return 0;
}

void
recovery_stop (struct rp_pool *p)
{
  struct recovery_state *rs = &p->rec;

  if (!rs->is_inited)
    return;
  pthread_mutex_lock (&rs->lock);
  rs->is_stopping = true;
  pthread_cond_broadcast (&rs->go);
  pthread_mutex_unlock (&rs->lock);
  for (unsigned i = 1; i < RECOVERY_WORKERS; i++) {
    struct recovery_worker *w = &rs->workers[i];
    if (w->has_thread)
      pthread_join (w->thread, NULL);
    free (w->buf);
    w->has_thread = false;
    w->buf = NULL;
  }
  for (unsigned i = 0; i < RECOVERY_WORKERS; i++) {
    free (rs->workers[i].jobs);
    rs->workers[i].jobs = NULL;
  }
  pthread_mutex_destroy (&rs->lock);
  pthread_cond_destroy (&rs->go);
  pthread_cond_destroy (&rs->done);
  rs->is_inited = false;
}

bool
recovery_pass (struct rp_pool *p, uint64_t until_ms)
{
  struct recovery_state *rs = &p->rec;
  unsigned up = 0, nthreads = 0;
  uint64_t repaired;

  for (unsigned i = 0; i < p->nservers; i++)
    if (atomic_load (&p->servers[i].is_up))
      up++;
  if (up == 0)
    return false;
  recovery_settle_doubts (p);
  recovery_take_reclaims (p);
  /* Anything to do at all?  (The common case: no.) */
  uint64_t first = 0;
  while (first < p->map.n && !recovery_needs (p, &p->map.e[first]))
    first++;
  if (first == p->map.n)
    return false;
  /* recovery-rate=, if set: a ceiling in bytes per second of heartbeat.
   * bench/recovery-time.sh measures what the pace gives end to end.
   */
  atomic_store (&rs->budget, p->cfg.recovery_rate
                ? (int64_t) (p->cfg.recovery_rate * p->cfg.heartbeat_ms / 1000)
                : INT64_MAX);
  atomic_store (&rs->cursor, first);
  atomic_store (&rs->is_cut, false);
  atomic_store (&rs->repaired, 0);
  rs->until_ms = until_ms;
  rs->batch = up / RECOVERY_WORKERS;
  if (rs->batch < 1)
    rs->batch = 1;
  if (rs->batch > RECOVERY_BATCH)
    rs->batch = RECOVERY_BATCH;
  for (unsigned i = 1; i < RECOVERY_WORKERS; i++)
    nthreads += rs->workers[i].has_thread;
  pthread_mutex_lock (&rs->lock);
  rs->busy = nthreads;
  rs->gen++;
  pthread_cond_broadcast (&rs->go);
  pthread_mutex_unlock (&rs->lock);
  recovery_scan (p, &rs->workers[0]);
  pthread_mutex_lock (&rs->lock);
  while (rs->busy > 0)
    pthread_cond_wait (&rs->done, &rs->lock);
  pthread_mutex_unlock (&rs->lock);
  repaired = atomic_load (&rs->repaired);
  if (repaired)
    logging_msg (LOGGING_DEBUG, "recovery: repaired %" PRIu64 " extents",
                 repaired);
  return atomic_load (&rs->is_cut);
}
