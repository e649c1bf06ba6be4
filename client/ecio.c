/* Erasure-coded extents: see ecio.h. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt.h"
#include "donor.h"
#include "ec.h"
#include "ecio.h"
#include "latency.h"
#include "logging.h"
#include "replica.h"
#include "util.h"

_Static_assert (RP_EC_MAX_FRAGS <= REPLICA_ALLOC_MAX,
                "replica_alloc places a whole stripe");
_Static_assert (RP_EC_MAX_FRAGS <= 32, "fragment sets are 32-bit masks");

#define ECIO_BLOCK 4096u
/* User bytes one chunk (one round of fragment requests) covers at
 * most: a 1 MiB request is one round, within an extent.  Bounds the
 * per-thread scratch (4 MiB and a little: touched only as far as a
 * thread's largest request reaches).
 */
#define ECIO_CHUNK (1024u * 1024)
#define ECIO_CHUNK_BLOCKS (ECIO_CHUNK / ECIO_BLOCK)
/* Scratch for the fragments of one chunk: (K+M)/K x ECIO_CHUNK, at
 * most 3x (K 2, M 4).
 */
#define ECIO_FRAG_SCRATCH (3 * ECIO_CHUNK)

/* Late binding (ec-read-extra=N): a read of up to ECIO_LATE_BLOCKS
 * blocks asks K+N fragments and returns once K have arrived.  The N
 * calls left in flight outlive the request, so they live in a group
 * of the pool's, not on the caller's stack: its calls, their wait and
 * their buffers.  A group is taken by a reader (BUSY), then FREE, or
 * LEFT while calls it gave up on are in flight; a LEFT group is free
 * again once they have all completed (is_done), which whoever looks
 * for a group next notices.  ECIO_LATE_GROUPS of them, made at open:
 * with none free a read does without late binding.  A server that
 * does not answer keeps its calls counted in `inflight` until they
 * complete, so later reads pick other fragments (ecio_pick).
 */
#define ECIO_LATE_BLOCKS 8
#define ECIO_LATE_GROUPS 64
enum { LATE_FREE, LATE_BUSY, LATE_LEFT };
struct ecio_late {
  int state;                   /* LATE_*, atomic */
  struct conn_wait w;
  struct conn_call calls[RP_EC_MAX_FRAGS];
  uint16_t server[RP_EC_MAX_FRAGS];  /* of each call, for inflight */
  unsigned ncalls;
  uint32_t left;               /* calls (by index) given up on */
  uint8_t *buf;                /* fragment f at f * ECIO_LATE_BLOCKS *
                                  frag */
};

struct ecio {
  struct rp_ec code;
  unsigned k, m, n;            /* n = K+M fragments per stripe */
  uint32_t frag;               /* bytes of one block's fragment: 4096/K */
  uint32_t frag_extent;        /* a fragment extent: extent-size/K */
  unsigned read_extra;         /* ec-read-extra= */
  bool is_late_full_logged;    /* ecio_late_take: no group was free */
  struct ecio_late *late;      /* ECIO_LATE_GROUPS, NULL without late
                                  binding */
  uint8_t *late_buf;
  unsigned late_next;          /* where the next look starts, atomic */
  uint64_t gen;                /* from ecio_gen, never 0 */
};

/* A thread's scratch (allocated on its first coded I/O, then reused;
 * freed when the thread ends): the chunk's blocks, the undo state of
 * their encryption, its fragments, and a decoder.
 */
struct ecio_scratch {
  uint8_t data[ECIO_CHUNK];
  struct crypt_undo undo[ECIO_CHUNK_BLOCKS];
  uint8_t frag[ECIO_FRAG_SCRATCH];
  uint8_t edge[2][ECIO_BLOCK]; /* a write's first and last blocks,
                                  merged, for its retries */
  struct rp_ec_decoder dec;
  uint64_t dec_gen;            /* the ecio (ecio_gen) dec was made for */
};
static __thread struct ecio_scratch *ecio_tls;
static pthread_key_t ecio_key;
static pthread_once_t ecio_once = PTHREAD_ONCE_INIT;

static void
ecio_key_init (void)
{
  pthread_key_create (&ecio_key, free);
}

static struct ecio_scratch *
ecio_scratch (struct ecio *ec)
{
  if (ecio_tls == NULL) {
    pthread_once (&ecio_once, ecio_key_init);
    ecio_tls = malloc (sizeof *ecio_tls);
    if (ecio_tls == NULL)
      return NULL;
    pthread_setspecific (ecio_key, ecio_tls);
    ecio_tls->dec_gen = 0;
  }
  /* Another pool's code, or a new pool where a closed one was: its
   * tables are not ours (the address alone could be the same).
   */
  if (ecio_tls->dec_gen != ec->gen) {
    rp_ec_decoder_init (&ecio_tls->dec, &ec->code);
    ecio_tls->dec_gen = ec->gen;
  }
  return ecio_tls;
}

/* Each ecio_open's number, for ecio_scratch. */
static uint64_t ecio_gen;

int
ecio_open (struct rp_pool *p, char *err, size_t errlen)
{
  struct ecio *ec;

  if (p->cfg.ec_k == 0)
    return 0;
  ec = calloc (1, sizeof *ec);
  if (ec == NULL) {
    snprintf (err, errlen, "redundancy: out of memory");
    return -1;
  }
  if (rp_ec_init (&ec->code, p->cfg.ec_k, p->cfg.ec_m, err, errlen) == -1) {
    free (ec);
    return -1;
  }
  ec->k = p->cfg.ec_k;
  ec->m = p->cfg.ec_m;
  ec->n = ec->k + ec->m;
  ec->frag = ECIO_BLOCK / ec->k;
  ec->frag_extent = p->cfg.extent_size / ec->k;
  ec->read_extra = p->cfg.ec_read_extra;
  ec->gen = __atomic_add_fetch (&ecio_gen, 1, __ATOMIC_RELAXED);
  p->ec = ec;
  if (ec->read_extra) {
    size_t per = (size_t) ec->n * ECIO_LATE_BLOCKS * ec->frag;
    ec->late = calloc (ECIO_LATE_GROUPS, sizeof *ec->late);
    ec->late_buf = malloc (ECIO_LATE_GROUPS * per);
    if (ec->late == NULL || ec->late_buf == NULL) {
      snprintf (err, errlen, "ec-read-extra: out of memory");
      return -1;
    }
    for (unsigned g = 0; g < ECIO_LATE_GROUPS; g++)
      ec->late[g].buf = ec->late_buf + g * per;
  }
  return 0;
}

/* At close every connection has ended (donor_fini): no call of a
 * late group is in flight any more.
 */
void
ecio_close (struct rp_pool *p)
{
  if (p->ec == NULL)
    return;
  rp_ec_destroy (&p->ec->code);
  free (p->ec->late);
  free (p->ec->late_buf);
  free (p->ec);
  p->ec = NULL;
}

static bool
ecio_is_data (const struct ecio *ec, unsigned f)
{
  return f < ec->k;
}

/* Good fragments of extent idx, as a mask; *back: those that may
 * return (lock held).
 */
static uint32_t
ecio_good (struct rp_pool *p, const struct replica *fr, uint32_t *back)
{
  uint32_t good = 0, ret = 0;

  for (unsigned f = 0; f < p->ec->n; f++) {
    if (replica_is_good (p, &fr[f]))
      good |= 1u << f;
    else if (replica_may_return (p, &fr[f]))
      ret |= 1u << f;
  }
  if (back)
    *back = ret;
  return good;
}

static unsigned
ecio_popcount (uint32_t x)
{
  return __builtin_popcount (x);
}

int
ecio_state (struct rp_pool *p, uint64_t idx)
{
  struct extent *e = &p->map.e[idx];
  uint32_t back, good;

  if (!e->is_coded)
    return -1;
  good = ecio_good (p, extent_map_frags (&p->map, idx), &back);
  if (ecio_popcount (good) == p->ec->n)
    return ECIO_HEALTHY;
  if (ecio_popcount (good) >= p->ec->k)
    return ECIO_DEGRADED;
  if (ecio_popcount (good | back) >= p->ec->k || e->ec_waiting)
    return ECIO_UNREACHABLE;
  return ECIO_LOST;
}

/* Requests wait out outages as io.c's do (never with outage-wait-ms=0;
 * backup= is refused with ec).
 */
static bool
ecio_waits (const struct rp_pool *p)
{
  return p->cfg.outage_wait_ms > 0;
}

static void
ecio_log_lost (struct rp_pool *p, uint64_t idx, const char *what)
{
  struct extent *e = &p->map.e[idx];

  if (!__atomic_exchange_n (&e->is_lost_logged, 1, __ATOMIC_RELAXED))
    logging_msg (LOGGING_ERROR,
                 "extent %" PRIu64 " (bytes %" PRIu64 "-%" PRIu64
                 "): fewer than %u of its %u fragments are left; %s",
                 idx, idx << p->map.shift, ((idx + 1) << p->map.shift) - 1,
                 p->ec->k, p->ec->n, what);
}

/* Fragment r of extent idx is not what the map says: stale, repaired
 * by the rebuild.  One log line per fragment.
 */
static void
ecio_frag_is_bad (struct rp_pool *p, uint64_t idx, unsigned f,
                  struct replica *r, const char *why)
{
  if (replica_is_stale (r))
    return;
  replica_mark_stale (r);
  logging_msg (LOGGING_WARN,
               "extent %" PRIu64 ": fragment %u on server %s %s;"
               " marked stale, it is rebuilt", idx, f,
               p->servers[r->server].addr, why);
}

/* A call to fragment f failed: an answer condemns the fragment, a lost
 * connection takes its server down (the fragment may come back).
 */
static void
ecio_call_failed (struct rp_pool *p, uint64_t idx, unsigned f,
                  struct replica *r, const struct conn_call *call)
{
  char why[128];

  if (call->is_answered)
    ecio_frag_is_bad (p, idx, f, r, call->err == ENOENT
                      ? "no longer exists there" : strerror (call->err));
  else if (call->conn && conn_dead_why (call->conn, why, sizeof why))
    donor_down (&p->servers[r->server], why);
}

/* Pick up to want fragments from the mask avail.  Plain: the data
 * fragments first (no decoding when all K are among them), then the
 * least loaded.  by_load (late binding, which asks more than it needs
 * so as to leave out a server slow to answer): the least loaded first,
 * data before parity at equal load.
 */
static uint32_t
ecio_pick (struct rp_pool *p, const struct replica *fr, uint32_t avail,
           unsigned want, bool by_load)
{
  struct ecio *ec = p->ec;
  uint32_t pick = 0;

  while (want--) {
    int best = -1;
    unsigned best_score = 0;
    for (unsigned f = 0; f < ec->n; f++) {
      if (!((avail >> f) & 1) || ((pick >> f) & 1))
        continue;
      unsigned load = atomic_load (&p->servers[fr[f].server].inflight);
      unsigned score = by_load ? 2 * load + (f >= ec->k)
                               : f < ec->k ? 0 : 1 + load;
      if (best < 0 || score < best_score) {
        best = f;
        best_score = score;
      }
    }
    if (best < 0)
      break;
    pick |= 1u << best;
  }
  return pick;
}

/* Submit op (RP_OP_READ into fb[f], RP_OP_WRITE from fb[f]) for
 * piece [b0, b0+nb) of every fragment f in mask, to the copies dst[f],
 * completing through w: the calls made are calls[0..return), the
 * fragment of each in which[].  A fragment whose connection is dead is
 * left out (its server is taken down).  Each call counts in its
 * server's inflight until the caller takes it off.
 */
static unsigned
ecio_submit (struct rp_pool *p, uint64_t idx, const struct replica *dst,
             uint32_t mask, uint16_t op, uint32_t b0, uint32_t nb,
             uint8_t *const *fb, struct conn_call *calls, unsigned *which,
             struct conn_wait *w)
{
  struct ecio *ec = p->ec;
  unsigned ncalls = 0;

  for (unsigned f = 0; f < ec->n; f++) {
    if (!((mask >> f) & 1))
      continue;
    struct donor *s = &p->servers[dst[f].server];
    struct conn_call *call = &calls[ncalls];
    replica_call (call, &dst[f], op);
    call->req.offset = (uint64_t) b0 * ec->frag;
    if (op == RP_OP_READ) {
      call->req.count = nb * ec->frag;
      call->rbuf = fb[f];
    }
    else {
      call->req.length = nb * ec->frag;
      call->payload = fb[f];
    }
    call->wait = w;
    if (conn_submit (donor_conn (s, idx), call) == -1) {
      donor_down (s, "connection lost");
      continue;
    }
    atomic_fetch_add (&s->inflight, 1);
    which[ncalls++] = f;
  }
  return ncalls;
}

/* ecio_submit, then wait for every call.  Returns the mask of the
 * fragments sent.
 */
static uint32_t
ecio_roundtrip (struct rp_pool *p, uint64_t idx, const struct replica *dst,
                uint32_t mask, uint16_t op, uint32_t b0, uint32_t nb,
                uint8_t *const *fb, struct conn_call *calls, unsigned *which,
                unsigned *ncalls)
{
  uint32_t sent = 0;
  struct conn_wait w;

  conn_wait_init (&w);
  *ncalls = ecio_submit (p, idx, dst, mask, op, b0, nb, fb, calls, which, &w);
  conn_wait_all (&w, calls, *ncalls, rp_now_ms () + p->cfg.timeout_ms);
  conn_wait_destroy (&w);
  for (unsigned i = 0; i < *ncalls; i++) {
    atomic_fetch_sub (&p->servers[dst[which[i]].server].inflight, 1);
    sent |= 1u << which[i];
  }
  return sent;
}

/* Read the fragments in `want` of blocks [b0, b0+nb) of extent idx,
 * fragment f into fb[f]; those that arrived are added to *got.
 * Failures are judged (ecio_call_failed).
 */
static void
ecio_read_frags (struct rp_pool *p, uint64_t idx, struct replica *fr,
                 uint32_t want, uint32_t b0, uint32_t nb, uint8_t *const *fb,
                 uint32_t *got)
{
  struct conn_call calls[RP_EC_MAX_FRAGS];
  unsigned which[RP_EC_MAX_FRAGS], ncalls;

  ecio_roundtrip (p, idx, fr, want, RP_OP_READ, b0, nb, fb, calls, which,
                  &ncalls);
  for (unsigned i = 0; i < ncalls; i++) {
    unsigned f = which[i];
    if (calls[i].err == 0)
      *got |= 1u << f;
    else
      ecio_call_failed (p, idx, f, &fr[f], &calls[i]);
  }
}

/* Put blocks [0, nb) together into out from the fragments in `use`
 * (at least K of them; fb[f] holds fragment f of each block, one after
 * another).  0, or -1 with errno = EIO.
 */
static int
ecio_decode (struct ecio *ec, struct rp_ec_decoder *d, uint32_t use,
             uint8_t *const *fb, uint32_t nb, uint8_t *out)
{
  const uint8_t *frags[RP_EC_MAX_FRAGS];
  uint8_t *outp[RP_EC_MAX_K];
  bool present[RP_EC_MAX_FRAGS];
  bool need_decode = false;
  const char *why;

  for (unsigned f = 0; f < ec->n; f++) {
    present[f] = (use >> f) & 1;
    if (ecio_is_data (ec, f) && !present[f])
      need_decode = true;
  }
  for (uint32_t b = 0; b < nb; b++) {
    uint8_t *blk = out + (size_t) b * ECIO_BLOCK;
    for (unsigned f = 0; f < ec->n; f++)
      frags[f] = present[f] ? fb[f] + (size_t) b * ec->frag : NULL;
    for (unsigned f = 0; f < ec->k; f++) {
      outp[f] = blk + (size_t) f * ec->frag;
      if (present[f] && frags[f] != outp[f])
        memcpy (outp[f], frags[f], ec->frag);
    }
    if (need_decode &&
        rp_ec_decode (d, ec->frag, frags, present, outp, &why) == -1)
      return -1;
  }
  return 0;
}

/* Where each fragment of an nb-block read or write lives: with one
 * block (and may_share), the data fragments are the block itself (no
 * copy); otherwise every fragment has its nb pieces one after another
 * in scratch.
 */
static void
ecio_layout (struct ecio *ec, struct ecio_scratch *sc, uint8_t *data,
             uint32_t nb, bool may_share, uint8_t **fb)
{
  for (unsigned f = 0; f < ec->n; f++)
    fb[f] = may_share && nb == 1 && ecio_is_data (ec, f)
      ? data + (size_t) f * ec->frag
      : sc->frag + (size_t) f * nb * ec->frag;
}

/* Give back the inflight counts of g's calls in mask (by index). */
static void
ecio_late_unload (struct rp_pool *p, struct ecio_late *g, uint32_t mask)
{
  for (unsigned i = 0; i < g->ncalls; i++)
    if ((mask >> i) & 1)
      atomic_fetch_sub (&p->servers[g->server[i]].inflight, 1);
}

/* A free group (marked BUSY), or NULL.  Every LEFT group whose calls
 * have all completed is freed on the way, not only the first: a LEFT
 * group keeps its calls counted in their servers' inflight, and
 * ecio_pick steers late reads by those counts.  Left counted, the
 * completed calls of answering servers made them look as loaded as a
 * server that answers nothing, which was then picked again and again,
 * each time holding another group, until none was free and reads fell
 * back to the plain way and waited for it (test-ec part 5).
 */
static struct ecio_late *
ecio_late_take (struct rp_pool *p)
{
  struct ecio *ec = p->ec;
  unsigned start = __atomic_fetch_add (&ec->late_next, 1, __ATOMIC_RELAXED);
  struct ecio_late *got = NULL;

  for (unsigned k = 0; k < ECIO_LATE_GROUPS; k++) {
    struct ecio_late *g = &ec->late[(start + k) % ECIO_LATE_GROUPS];
    int st = __atomic_load_n (&g->state, __ATOMIC_ACQUIRE);
    if (st == LATE_LEFT) {
      /* Not is_done: a call sets it just before it lets go of the
       * wait, which must be untouched before it is made anew.
       */
      if (conn_wait_pending (&g->w) != 0 ||
          !__atomic_compare_exchange_n (&g->state, &st, LATE_BUSY, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        continue;
      ecio_late_unload (p, g, g->left);
      g->left = 0;
      if (got == NULL)
        got = g;
      else
        __atomic_store_n (&g->state, LATE_FREE, __ATOMIC_RELEASE);
      continue;
    }
    if (got == NULL && st == LATE_FREE &&
        __atomic_compare_exchange_n (&g->state, &st, LATE_BUSY, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      got = g;
  }
  if (got == NULL && !__atomic_exchange_n (&ec->is_late_full_logged, true,
                                           __ATOMIC_RELAXED))
    logging_msg (LOGGING_WARN, "ec-read-extra: all %u late-binding groups"
                 " wait for servers that have not answered; reads ask K"
                 " fragments meanwhile (logged once)", ECIO_LATE_GROUPS);
  return got;
}

/* Late binding: read blocks [b0, b0+nb) of extent idx from K+N of the
 * good fragments `good`, into out (decoded, not decrypted), from the
 * first K to arrive.  0, or 1 when it could not (no group free, too
 * few answers): the caller then reads the plain way.
 */
static int
ecio_read_late (struct rp_pool *p, uint64_t idx, struct replica *fr,
                uint32_t good, uint32_t b0, uint32_t nb, uint8_t *out,
                struct ecio_scratch *sc)
{
  struct ecio *ec = p->ec;
  uint64_t deadline = rp_now_ms () + p->cfg.timeout_ms;
  uint8_t *fb[RP_EC_MAX_FRAGS];
  unsigned which[RP_EC_MAX_FRAGS];
  uint32_t want, ok = 0, done = 0, use = 0;
  struct ecio_late *g;
  int ret = 1;

  want = ecio_pick (p, fr, good, ec->k + ec->read_extra, true);
  if (ecio_popcount (want) <= ec->k || (g = ecio_late_take (p)) == NULL)
    return 1;
  for (unsigned f = 0; f < ec->n; f++)
    fb[f] = g->buf + (size_t) f * ECIO_LATE_BLOCKS * ec->frag;
  conn_wait_init (&g->w);
  g->ncalls = ecio_submit (p, idx, fr, want, RP_OP_READ, b0, nb, fb, g->calls,
                           which, &g->w);
  for (unsigned i = 0; i < g->ncalls; i++)
    g->server[i] = fr[which[i]].server;
  /* Until K answered, or every call did. */
  for (;;) {
    for (unsigned i = 0; i < g->ncalls; i++) {
      if (((done >> i) & 1) ||
          !__atomic_load_n (&g->calls[i].is_done, __ATOMIC_ACQUIRE))
        continue;
      done |= 1u << i;
      if (g->calls[i].err == 0)
        ok |= 1u << which[i];
      else
        ecio_call_failed (p, idx, which[i], &fr[which[i]], &g->calls[i]);
    }
    if (ecio_popcount (ok) >= ec->k || ecio_popcount (done) == g->ncalls)
      break;
    if (conn_wait_fewer (&g->w, g->ncalls - ecio_popcount (done),
                         deadline) == -1)
      /* Past the deadline: end the calls still out, as requests do. */
      conn_wait_all (&g->w, g->calls, g->ncalls, deadline);
  }
  if (ecio_popcount (ok) >= ec->k) {
    /* The first K of those that arrived, data first. */
    for (unsigned f = 0; f < ec->n && ecio_popcount (use) < ec->k; f++)
      if ((ok >> f) & 1)
        use |= 1u << f;
    if (ecio_decode (ec, &sc->dec, use, fb, nb, out) == 0)
      ret = 0;
  }
  ecio_late_unload (p, g, done);
  g->left = ((1u << g->ncalls) - 1) & ~done;
  __atomic_store_n (&g->state, g->left ? LATE_LEFT : LATE_FREE,
                    __ATOMIC_RELEASE);
  return ret;
}

/* The first K fragments of mask (data first): the ones rp_ec_decode
 * takes.
 */
static uint32_t
ecio_first_k (const struct ecio *ec, uint32_t mask)
{
  uint32_t use = 0;

  for (unsigned f = 0; f < ec->n && ecio_popcount (use) < ec->k; f++)
    if ((mask >> f) & 1)
      use |= 1u << f;
  return use;
}

/* encrypt=on: blocks [b0, b0+nb) of extent idx decoded from the
 * fragments read (got, pieces in fb) fail authentication, so some
 * fragment is bad.  Find K that authenticate, leaving each fragment
 * out in turn; then try each other fragment in place of one of those
 * K: the ones that fail are bad, and are marked so (one bad fragment
 * may hide among more than K read: leaving out any fragment that is
 * not among the K decoded from changes nothing).  Returns the K found,
 * or 0; out (nb blocks) is scratch.
 */
static uint32_t
ecio_find_bad (struct rp_pool *p, uint64_t idx, struct replica *fr,
               uint32_t got, uint8_t *const *fb, uint32_t b0, uint32_t nb,
               uint8_t *out, struct rp_ec_decoder *d)
{
  struct ecio *ec = p->ec;
  uint64_t first = ((idx << p->map.shift) / ECIO_BLOCK) + b0, bad;
  uint32_t set = 0;

  for (unsigned x = 0; x < ec->n && set == 0; x++) {
    uint32_t use = ecio_first_k (ec, got & ~(1u << x));
    if (((got >> x) & 1) && ecio_popcount (use) == ec->k &&
        ecio_decode (ec, d, use, fb, nb, out) == 0 &&
        crypt_verify (&p->crypt, first, out, nb, &bad) == 0)
      set = use;
  }
  if (set == 0)
    return 0;
  uint32_t last = 1u << (31 - __builtin_clz (set));
  for (unsigned f = 0; f < ec->n; f++) {
    uint32_t v = (set & ~last) | (1u << f);
    if (!(((got & ~set) >> f) & 1))
      continue;
    if (ecio_decode (ec, d, v, fb, nb, out) == -1 ||
        crypt_verify (&p->crypt, first, out, nb, &bad) == -1)
      ecio_frag_is_bad (p, idx, f, &fr[f], "failed authentication");
  }
  return set;
}

static int ecio_decrypt (struct rp_pool *p, uint64_t idx, uint32_t b0,
                         uint32_t nb, uint8_t *data);

/* Read blocks [b0, b0+nb) of extent idx (nb <= ECIO_CHUNK_BLOCKS) into
 * out, decoded and decrypted; stripe lock held (either mode), the
 * extent coded.  0, or -1 with errno EIO, or EAGAIN when fragments
 * that may come back would make K.
 */
static int
ecio_read_blocks (struct rp_pool *p, uint64_t idx, uint32_t b0, uint32_t nb,
                  uint8_t *out, struct ecio_scratch *sc)
{
  struct ecio *ec = p->ec;
  struct replica *fr = extent_map_frags (&p->map, idx);
  uint8_t *fb[RP_EC_MAX_FRAGS];
  uint32_t got = 0, tried = 0, back;

  /* Late binding first, for small reads; if it cannot, or a block
   * fails authentication, the plain way below.
   */
  if (ec->late && nb <= ECIO_LATE_BLOCKS) {
    uint32_t good = ecio_good (p, fr, NULL);
    if (ecio_popcount (good) > ec->k &&
        ecio_read_late (p, idx, fr, good, b0, nb, out, sc) == 0 &&
        ecio_decrypt (p, idx, b0, nb, out) == 0)
      return 0;
  }
  /* encrypt=on decrypts out in place: the fragments must stay apart
   * from it, to decode again from another set if a block fails.
   */
  ecio_layout (ec, sc, out, nb, p->crypt.key == NULL, fb);
  for (;;) {
    uint32_t good = ecio_good (p, fr, &back) & ~tried;
    unsigned need = ec->k - ecio_popcount (got);
    if (ecio_popcount (good) < need) {
      /* Wait if fragments may come back, or a write of this extent
       * waits to make its fragments agree again.
       */
      errno = ecio_waits (p) &&
        (ecio_popcount (got | good | back) >= ec->k ||
         __atomic_load_n (&p->map.e[idx].ec_waiting, __ATOMIC_RELAXED))
        ? EAGAIN : EIO;
      return -1;
    }
    uint32_t want = ecio_pick (p, fr, good, need, false);
    if (tried)
      atomic_fetch_add (&p->count.read_failovers, 1);
    tried |= want;
    ecio_read_frags (p, idx, fr, want, b0, nb, fb, &got);
    if (ecio_popcount (got) >= ec->k)
      break;
  }
  if (ecio_decode (ec, &sc->dec, got, fb, nb, out) == -1) {
    errno = EIO;
    return -1;
  }
  if (p->crypt.key == NULL)
    return 0;
  /* encrypt=on: decrypt a copy, so that a block failing authentication
   * leaves the fragments in place to try other sets.
   */
  if (ecio_decrypt (p, idx, b0, nb, out) == 0)
    return 0;
  /* Some fragment is bad: read every good fragment and find it. */
  ecio_read_frags (p, idx, fr, ecio_good (p, fr, NULL) & ~got, b0, nb, fb,
                   &got);
  uint32_t set = ecio_find_bad (p, idx, fr, got, fb, b0, nb, out, &sc->dec);
  if (set && ecio_decode (ec, &sc->dec, set, fb, nb, out) == 0 &&
      ecio_decrypt (p, idx, b0, nb, out) == 0)
    return 0;
  logging_msg (LOGGING_WARN,
               "extent %" PRIu64 ": blocks %" PRIu32 "-%" PRIu32 " fail"
               " authentication whichever fragment is left out",
               idx, b0, b0 + nb - 1);
  errno = EIO;
  return -1;
}

/* encrypt=on: decrypt nb blocks in place.  0 or -1. */
static int
ecio_decrypt (struct rp_pool *p, uint64_t idx, uint32_t b0, uint32_t nb,
              uint8_t *data)
{
  uint64_t first = ((idx << p->map.shift) / ECIO_BLOCK) + b0, bad;

  if (p->crypt.key == NULL)
    return 0;
  return crypt_decrypt (&p->crypt, first, data, nb, &bad);
}

/* Read [off, off+len) of extent idx into buf (one chunk). */
static int
ecio_read_chunk (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
                 uint8_t *buf, struct ecio_scratch *sc)
{
  pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
  uint32_t b0 = off / ECIO_BLOCK;
  uint32_t nb = (off + len + ECIO_BLOCK - 1) / ECIO_BLOCK - b0;
  uint32_t skip = off - b0 * ECIO_BLOCK;
  bool direct = skip == 0 && len == nb * ECIO_BLOCK && p->crypt.key == NULL;
  int r;

  pthread_rwlock_rdlock (lk);
  if (!p->map.e[idx].is_coded) {
    pthread_rwlock_unlock (lk);
    memset (buf, 0, len);
    return 0;
  }
  /* Whole blocks without encryption land in the caller's buffer;
   * anything else goes through the scratch.
   */
  r = ecio_read_blocks (p, idx, b0, nb, direct ? buf : sc->data, sc);
  if (r == 0 && !direct)
    memcpy (buf, sc->data + skip, len);
  if (r == -1 && errno == EIO)
    ecio_log_lost (p, idx, "reads of it fail with EIO");
  pthread_rwlock_unlock (lk);
  return r;
}

/* Place a new stripe for extent idx: K+M fragment extents on distinct
 * servers (write lock held).  At least K must be placed (the others
 * are rebuilt later), else it fails with ENOSPC and frees what it got.
 */
static int
ecio_place (struct rp_pool *p, uint64_t idx)
{
  struct ecio *ec = p->ec;
  struct replica *fr = extent_map_frags (&p->map, idx);
  struct replica got[RP_EC_MAX_FRAGS];
  uint16_t prev[RP_EC_MAX_FRAGS];
  unsigned nprev = 0, placed;
  int last_err;

  /* The previous extent's servers: a hint for striping, read without
   * its lock.
   */
  if (idx > 0 && __atomic_load_n (&p->map.e[idx - 1].is_coded,
                                  __ATOMIC_RELAXED)) {
    const struct replica *pf = extent_map_frags (&p->map, idx - 1);
    for (unsigned f = 0; f < ec->n; f++)
      prev[nprev++] = __atomic_load_n (&pf[f].server, __ATOMIC_RELAXED);
  }
  memset (got, 0, sizeof got);
  placed = replica_alloc (p, idx, ec->frag_extent, 0, NULL, 0, prev, nprev,
                          ec->n, got, &last_err);
  if (placed < ec->k) {
    /* Fewer than K servers could take a fragment now, but enough may
     * come back (a stall, a blip): an outage to ride out (io waits for
     * one to come up), not a full pool.
     */
    bool may_wait = replica_wait_for_parked (p) ||
                    replica_is_outage (p, ec->k);
    for (unsigned i = 0; i < placed; i++) {
      struct conn_call call;
      replica_call (&call, &got[i], RP_OP_FREE);
      if (conn_roundtrip (donor_conn (&p->servers[got[i].server], idx), &call,
                          p->cfg.timeout_ms) == -1 && !call.is_answered)
        donor_add_orphan (&p->servers[got[i].server], got[i].handle);
    }
    if (may_wait) {
      errno = EAGAIN;          /* wait for a server to come up */
      return -1;
    }
    logging_msg (LOGGING_ERROR,
                 "extent %" PRIu64 ": only %u of the %u servers a stripe"
                 " needs could take a fragment (%s): the pool is full or"
                 " down", idx, placed, ec->k, strerror (last_err));
    errno = ENOSPC;
    return -1;
  }
  memcpy (fr, got, ec->n * sizeof *fr);
  p->map.e[idx].is_lost_logged = 0;
  __atomic_store_n (&p->map.e[idx].is_coded, 1, __ATOMIC_RELEASE);
  if (placed < ec->n)
    logging_msg (LOGGING_DEBUG, "extent %" PRIu64 ": placed %u of %u"
                 " fragments", idx, placed, ec->n);
  return 0;
}

/* Encode blocks data[0..nb) into the fragments fb (ecio_layout). */
static void
ecio_encode (struct ecio *ec, const uint8_t *data, uint32_t nb,
             uint8_t *const *fb)
{
  const uint8_t *dp[RP_EC_MAX_K];
  uint8_t *pp[RP_EC_MAX_M];

  for (uint32_t b = 0; b < nb; b++) {
    const uint8_t *blk = data + (size_t) b * ECIO_BLOCK;
    for (unsigned f = 0; f < ec->k; f++) {
      dp[f] = blk + (size_t) f * ec->frag;
      if (nb > 1)
        memcpy (fb[f] + (size_t) b * ec->frag, dp[f], ec->frag);
    }
    for (unsigned j = 0; j < ec->m; j++)
      pp[j] = fb[ec->k + j] + (size_t) b * ec->frag;
    rp_ec_encode (&ec->code, ec->frag, dp, pp);
  }
}

/* One chunk's write across its attempts (ecio_chunk).  A write that
 * reached fewer than K fragments leaves the stripe's fragments
 * disagreeing in its blocks (some took it, some may have, some did
 * not), so every fragment that may not hold it is stale from then on;
 * the retry, when servers are back, writes the same blocks again to
 * every good fragment and to those it made stale itself (`suspects`,
 * if no other write came since: wgen), and only a retry that reached
 * K makes them good again.  The partial first and last blocks are
 * merged once, into the scratch (sc->edge), so a retry never reads
 * them back from fragments that disagree.  Meanwhile the extent counts
 * the write in ec_waiting: reads of it wait instead of failing, and
 * the rebuild leaves it alone.
 */
struct ecio_wstate {
  bool has_edges;              /* sc->edge holds the merged plaintext */
  bool is_waiting;             /* counted in the extent's ec_waiting */
  bool may_have_landed;        /* an attempt may have changed a fragment
                                  (one took it, or an answer was lost) */
  uint32_t wgen;               /* the extent's wgen after our attempt */
  uint32_t suspects;           /* fragments this write made stale by
                                  skipping them or losing their answer */
  uint32_t wrote;              /* fragments the last attempt wrote */
};

/* The write of ws is given up for good (write lock held).  If nothing
 * can have changed anywhere, the fragments it skipped missed nothing
 * (if no write came since): good again.  Otherwise every fragment not
 * known to hold it stays stale, so that no decode ever mixes the two
 * versions (the extent may be lost: EIO, never wrong data).  Logs
 * why (once per extent) and returns -1 with errno = EIO.
 */
static int
ecio_give_up (struct rp_pool *p, uint64_t idx, struct replica *fr,
              struct ecio_wstate *ws, const char *why)
{
  struct extent *e = &p->map.e[idx];

  if (!ws->may_have_landed) {
    if (e->wgen == ws->wgen)
      for (unsigned f = 0; f < p->ec->n; f++)
        if ((ws->suspects >> f) & 1)
          fr[f].is_stale = 0;
  }
  else
    for (unsigned f = 0; f < p->ec->n; f++)
      if (fr[f].handle && !((ws->wrote >> f) & 1) &&
          !replica_is_stale (&fr[f]))
        ecio_frag_is_bad (p, idx, f, &fr[f], "may have missed a write that"
                          " reached too few fragments");
  ecio_log_lost (p, idx, why);
  errno = EIO;
  return -1;
}

/* Fragments of ws's suspects that a retry may write again: no other
 * write came since, and each is where it was, on a server that is up
 * (now) or down with the same incarnation (`back`).
 */
static uint32_t
ecio_rewritable (struct rp_pool *p, uint64_t idx, const struct replica *fr,
                 const struct ecio_wstate *ws, uint32_t *back)
{
  uint32_t up = 0;

  *back = 0;
  if (ws->suspects == 0 || p->map.e[idx].wgen != ws->wgen)
    return 0;
  for (unsigned f = 0; f < p->ec->n; f++) {
    struct donor *s = &p->servers[fr[f].server];
    if (!((ws->suspects >> f) & 1) || fr[f].handle == 0 ||
        atomic_load (&s->epoch) != fr[f].epoch)
      continue;
    if (atomic_load (&s->is_up))
      up |= 1u << f;
    else
      *back |= 1u << f;
  }
  return up;
}

/* WRITE (buf) or zeros (buf NULL) over [off, off+len) of extent idx,
 * one chunk, write lock held; ws carries the chunk's earlier attempts.
 * 0 or -1 with errno (EAGAIN: retry when a server comes up; never with
 * !may_retry).
 */
static int
ecio_write_locked (struct rp_pool *p, uint64_t idx, uint32_t off,
                   uint32_t len, const uint8_t *buf, bool keep_mapped,
                   bool may_retry, struct ecio_wstate *ws,
                   struct ecio_scratch *sc)
{
  struct ecio *ec = p->ec;
  struct extent *e = &p->map.e[idx];
  struct replica *fr = extent_map_frags (&p->map, idx);
  uint32_t b0 = off / ECIO_BLOCK;
  uint32_t nb = (off + len + ECIO_BLOCK - 1) / ECIO_BLOCK - b0;
  uint32_t skip = off - b0 * ECIO_BLOCK, end = skip + len;
  uint64_t first = ((idx << p->map.shift) / ECIO_BLOCK) + b0;
  uint8_t *last = sc->data + (size_t) (nb - 1) * ECIO_BLOCK;
  bool has_tail = end % ECIO_BLOCK && (nb > 1 || skip == 0);
  struct conn_call calls[RP_EC_MAX_FRAGS];
  unsigned which[RP_EC_MAX_FRAGS], ncalls;
  uint32_t good, back, again, again_back, targets, sent, lost = 0;
  uint8_t *fb[RP_EC_MAX_FRAGS];
  bool is_fresh = false, has_undo = false;

  if (!e->is_coded) {
    if (buf == NULL && !keep_mapped)
      return 0;                /* zeros over zeros */
    if (ecio_place (p, idx) == -1)
      return -1;
    is_fresh = true;
    ws->suspects = 0;          /* trimmed meanwhile: a new stripe, */
    ws->has_edges = false;     /* whose partial blocks read as zeros */
  }
  /* Another write of this extent waits to make its fragments agree:
   * wait for it rather than write over a stripe in that state (or
   * give up on what it may still repair).
   */
  if (e->ec_waiting && !ws->is_waiting && may_retry && ecio_waits (p)) {
    errno = EAGAIN;
    return -1;
  }
  /* The extent was trimmed, or written by another, since the partial
   * blocks were merged: merge them again.
   */
  if (ws->has_edges && e->wgen != ws->wgen)
    ws->has_edges = false;
  good = ecio_good (p, fr, &back);
  again = ecio_rewritable (p, idx, fr, ws, &again_back);
  targets = good | again;
  if (ecio_popcount (targets) < ec->k) {
    if (may_retry && ecio_waits (p) &&
        ecio_popcount (targets | back | again_back) >= ec->k) {
      errno = EAGAIN;
      return -1;
    }
    return ecio_give_up (p, idx, fr, ws, "writes to it fail with EIO");
  }
  /* The blocks, whole: partial ones merged once (a fresh stripe reads
   * as zeros), then kept for the retries.
   */
  if (ws->has_edges) {
    if (skip)
      memcpy (sc->data, sc->edge[0], ECIO_BLOCK);
    if (has_tail)
      memcpy (last, sc->edge[1], ECIO_BLOCK);
  }
  else if (skip || has_tail) {
    if (is_fresh)
      memset (sc->data, 0, (size_t) nb * ECIO_BLOCK);
    else {
      if (skip && ecio_read_blocks (p, idx, b0, 1, sc->data, sc) == -1)
        return -1;
      if (has_tail && ecio_read_blocks (p, idx, b0 + nb - 1, 1, last, sc) == -1)
        return -1;
    }
  }
  if (buf)
    memcpy (sc->data + skip, buf, len);
  else
    memset (sc->data + skip, 0, len);
  if (!ws->has_edges) {
    memcpy (sc->edge[0], sc->data, ECIO_BLOCK);
    memcpy (sc->edge[1], last, ECIO_BLOCK);
    ws->has_edges = true;
  }
  if (p->crypt.key) {
    crypt_save (&p->crypt, first, nb, sc->undo);
    if (crypt_encrypt (&p->crypt, first, sc->data, nb) == -1) {
      int err = errno;
      crypt_undo (&p->crypt, first, nb, sc->undo);
      errno = err;
      return -1;
    }
    has_undo = true;
  }
  ecio_layout (ec, sc, sc->data, nb, true, fb);
  ecio_encode (ec, sc->data, nb, fb);

  /* Send every target its part; the fragments out of reach miss this
   * write and are marked stale before any is sent.
   */
  ws->wgen = ++e->wgen;
  for (unsigned f = 0; f < ec->n; f++)
    if (!((targets >> f) & 1) && fr[f].handle && !replica_is_stale (&fr[f])) {
      replica_mark_stale (&fr[f]);
      ws->suspects |= 1u << f;
    }
  sent = ecio_roundtrip (p, idx, fr, targets, RP_OP_WRITE, b0, nb, fb, calls,
                         which, &ncalls);
  for (unsigned f = 0; f < ec->n; f++)
    if (((targets & ~sent) >> f) & 1) {
      replica_mark_stale (&fr[f]);
      ws->suspects |= 1u << f;
    }
  ws->wrote = 0;
  for (unsigned i = 0; i < ncalls; i++) {
    unsigned f = which[i];
    if (calls[i].err == 0) {
      ws->wrote |= 1u << f;
      continue;
    }
    /* Answered: condemned (ecio_call_failed).  Lost: it may hold this
     * write or not; a retry may write it again.
     */
    ecio_call_failed (p, idx, f, &fr[f], &calls[i]);
    replica_mark_stale (&fr[f]);
    if (!calls[i].is_answered) {
      lost |= 1u << f;
      ws->suspects |= 1u << f;
    }
  }
  if (ws->wrote || lost)
    ws->may_have_landed = true;
  if (ecio_popcount (ws->wrote) >= ec->k) {
    /* Coded and readable.  What this attempt wrote holds it, its own
     * earlier suspects included; every other fragment is stale.
     */
    for (unsigned f = 0; f < ec->n; f++)
      if ((ws->wrote >> f) & 1)
        fr[f].is_stale = 0;
    ws->suspects &= ~ws->wrote;
    return 0;
  }
  if (has_undo)
    crypt_undo (&p->crypt, first, nb, sc->undo);
  /* Fewer than K took it.  Wait for servers to come back if some may,
   * and write it again then; else give up.
   */
  ecio_rewritable (p, idx, fr, ws, &again_back);
  if (may_retry && ecio_waits (p) && (lost || again_back)) {
    if (!ws->is_waiting) {
      ws->is_waiting = true;
      e->ec_waiting++;
    }
    errno = EAGAIN;
    return -1;
  }
  return ecio_give_up (p, idx, fr, ws, "a write reached too few fragments");
}

/* Run one chunk, again each time a server comes up while it fails
 * with EAGAIN, for at most outage-wait-ms.
 */
static int
ecio_chunk (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
            uint8_t *rbuf, const uint8_t *wbuf, bool is_read, bool keep_mapped,
            struct ecio_scratch *sc)
{
  pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
  struct ecio_wstate ws = { .has_edges = false };
  uint64_t deadline = 0;
  int r;

  for (;;) {
    uint64_t gen = donor_up_gen (p), now = rp_now_ms ();
    /* Past the deadline a write has one last try, which gives up for
     * good rather than ask for another.
     */
    bool may_retry = deadline == 0 || now < deadline;
    if (is_read)
      r = ecio_read_chunk (p, idx, off, len, rbuf, sc);
    else {
      extent_map_wrlock (&p->map, idx);
      r = ecio_write_locked (p, idx, off, len, wbuf, keep_mapped, may_retry,
                             &ws, sc);
      pthread_rwlock_unlock (lk);
    }
    if (r == 0 || errno != EAGAIN)
      break;
    now = rp_now_ms ();
    if (deadline == 0) {
      deadline = now + p->cfg.outage_wait_ms;
      atomic_fetch_add (&p->count.outage_waits, 1);
      logging_msg (LOGGING_DEBUG, "extent %" PRIu64 ": fewer than %u"
                   " fragments reachable; waiting up to %u ms"
                   " (outage-wait-ms)", idx, p->ec->k, p->cfg.outage_wait_ms);
    }
    if (now >= deadline && (is_read || !may_retry)) {
      ecio_log_lost (p, idx, "requests fail with EIO");
      errno = EIO;
      r = -1;
      break;
    }
    if (now < deadline)
      donor_wait_up (p, gen, deadline);
  }
  if (ws.is_waiting) {
    int err = errno;
    pthread_rwlock_wrlock (lk);
    p->map.e[idx].ec_waiting--;
    pthread_rwlock_unlock (lk);
    errno = err;
  }
  return r;
}

/* Split [offset, offset+count) into chunks (inside one extent, at most
 * ECIO_CHUNK) and run each.
 */
static int
ecio_split (struct rp_pool *p, uint8_t *rbuf, const uint8_t *wbuf,
            size_t count, uint64_t offset, bool is_read, bool keep_mapped)
{
  struct ecio_scratch *sc = ecio_scratch (p->ec);
  uint64_t es = p->cfg.extent_size;
  int ret = 0, err = 0;

  if (sc == NULL) {
    errno = ENOMEM;
    return -1;
  }
  while (count > 0) {
    uint64_t in = es - (offset & (es - 1));
    uint32_t len = in < count ? in : count;
    if (len > ECIO_CHUNK - (offset & (ECIO_BLOCK - 1)))
      len = ECIO_CHUNK - (offset & (ECIO_BLOCK - 1));
    if (ecio_chunk (p, extent_map_index (&p->map, offset),
                    offset & (es - 1), len, rbuf, wbuf, is_read, keep_mapped,
                    sc) == -1 && ret == 0) {
      ret = -1;
      err = errno;
    }
    atomic_fetch_add (is_read ? &p->count.reads : &p->count.writes, 1);
    if (rbuf)
      rbuf += len;
    if (wbuf)
      wbuf += len;
    offset += len;
    count -= len;
  }
  if (ret)
    errno = err;
  return ret;
}

int
ecio_pread (struct rp_pool *p, uint8_t *buf, size_t count, uint64_t offset)
{
  return ecio_split (p, buf, NULL, count, offset, true, false);
}

int
ecio_pwrite (struct rp_pool *p, const uint8_t *buf, size_t count,
             uint64_t offset, uint16_t op, bool keep_mapped)
{
  return ecio_split (p, NULL, op == RP_OP_WRITE ? buf : NULL, count, offset,
                     false, keep_mapped);
}

/* Let fragment r go: FREE it on its server, or remember it there if
 * the server is out of reach with the same incarnation.
 */
static void
ecio_release (struct rp_pool *p, uint64_t idx, const struct replica *r,
              struct conn_call *call, struct conn_wait *w, unsigned *ncalls)
{
  struct donor *s = &p->servers[r->server];

  if (r->handle == 0 || atomic_load (&s->epoch) != r->epoch)
    return;  /* nothing there, or gone with a restart */
  replica_call (call, r, RP_OP_FREE);
  call->wait = w;
  if (!atomic_load (&s->is_up) || conn_submit (donor_conn (s, idx), call) == -1)
    donor_add_orphan (s, r->handle);
  else
    (*ncalls)++;
}

void
ecio_free_extent (struct rp_pool *p, uint64_t idx)
{
  struct ecio *ec = p->ec;
  struct replica *fr = extent_map_frags (&p->map, idx);
  struct conn_call calls[RP_EC_MAX_FRAGS];
  unsigned ncalls = 0;
  struct conn_wait w;

  if (!p->map.e[idx].is_coded)
    return;
  conn_wait_init (&w);
  for (unsigned f = 0; f < ec->n; f++)
    ecio_release (p, idx, &fr[f], &calls[ncalls], &w, &ncalls);
  conn_wait_all (&w, calls, ncalls, rp_now_ms () + p->cfg.timeout_ms);
  conn_wait_destroy (&w);
  for (unsigned k = 0; k < ncalls; k++)
    if (calls[k].err == EIO || calls[k].err == ETIMEDOUT)
      donor_add_orphan (calls[k].conn->opaque, calls[k].req.handle);
  memset (fr, 0, ec->n * sizeof *fr);
  p->map.e[idx].wgen++;        /* a write waiting to retry: all new */
  __atomic_store_n (&p->map.e[idx].is_coded, 0, __ATOMIC_RELEASE);
  p->map.e[idx].is_lost_logged = 0;
  if (p->crypt.key) {
    uint64_t per = (uint64_t) p->cfg.extent_size / ECIO_BLOCK;
    crypt_mark_zero (&p->crypt, idx * per, per);
  }
}

/* The rebuild. */

/* Fragments of extent idx to rebuild: missing, stale, lost, or on
 * their way out (RECLAIM, drain, removal).
 */
static uint32_t
ecio_targets (struct rp_pool *p, const struct replica *fr)
{
  uint32_t t = 0;

  for (unsigned f = 0; f < p->ec->n; f++) {
    bool good = replica_is_good (p, &fr[f]);
    if ((!good && (fr[f].handle == 0 || replica_is_stale (&fr[f]) ||
                   !replica_is_keepable (p, &fr[f]))) ||
        (good && replica_is_leaving (p, &fr[f])))
      t |= 1u << f;
  }
  return t;
}

bool
ecio_needs (struct rp_pool *p, uint64_t idx)
{
  if (!__atomic_load_n (&p->map.e[idx].is_coded, __ATOMIC_ACQUIRE) ||
      __atomic_load_n (&p->map.e[idx].ec_waiting, __ATOMIC_RELAXED))
    return false;  /* a write waiting to retry settles it first */
  return ecio_targets (p, extent_map_frags (&p->map, idx)) != 0;
}

/* Write piece [b0, b0+nb) of the fragments in `to` (dst[f] the copy
 * to write for fragment f).  0, or -1 if any failed; *refused gets
 * those whose server answered with an error.
 */
static int
ecio_write_frags (struct rp_pool *p, uint64_t idx, const struct replica *dst,
                  uint32_t to, uint32_t b0, uint32_t nb, uint8_t *const *fb,
                  uint32_t *refused)
{
  struct conn_call calls[RP_EC_MAX_FRAGS];
  unsigned which[RP_EC_MAX_FRAGS], ncalls;
  int ret = 0;

  if (ecio_roundtrip (p, idx, dst, to, RP_OP_WRITE, b0, nb, fb, calls, which,
                      &ncalls) != to)
    ret = -1;
  for (unsigned i = 0; i < ncalls; i++)
    if (calls[i].err) {
      ret = -1;
      if (calls[i].is_answered)
        *refused |= 1u << which[i];
      else
        donor_down (calls[i].conn->opaque, strerror (calls[i].err));
    }
  return ret;
}

int64_t
ecio_rebuild (struct rp_pool *p, uint64_t idx, uint8_t *buf, size_t len)
{
  struct ecio *ec = p->ec;
  struct replica *fr = extent_map_frags (&p->map, idx);
  struct replica dst[RP_EC_MAX_FRAGS], fresh[RP_EC_MAX_FRAGS];
  struct rp_ec_decoder dec;
  uint8_t *fb[RP_EC_MAX_FRAGS], *plain;
  uint32_t targets, sources, move = 0, to = 0, blocks, step, refused = 0;
  uint64_t first = (idx << p->map.shift) / ECIO_BLOCK;
  int64_t written = 0;
  unsigned nfresh = 0;
  int last_err;

  if (!p->map.e[idx].is_coded || p->map.e[idx].ec_waiting)
    return 0;
  targets = ecio_targets (p, fr);
  if (targets == 0)
    return 0;
  /* Sources: good fragments not being rewritten in place (a good one
   * that is leaving is both: its data is still right).
   */
  sources = ecio_good (p, fr, NULL);
  if (ecio_popcount (sources) < ec->k) {
    if (ecio_state (p, idx) == ECIO_LOST)
      ecio_log_lost (p, idx, "reads of it fail with EIO");
    return 0;
  }
  /* In place: stale fragments on servers that are up with the epoch
   * (same handle, rewritten).  Moved: all others, to new servers.
   */
  memcpy (dst, fr, ec->n * sizeof *dst);
  for (unsigned f = 0; f < ec->n; f++) {
    if (!((targets >> f) & 1))
      continue;
    const struct replica *r = &fr[f];
    struct donor *s = &p->servers[r->server];
    if (r->handle && replica_is_stale (r) && atomic_load (&s->is_up) &&
        atomic_load (&s->epoch) == r->epoch && !replica_is_leaving (p, r))
      to |= 1u << f;
    else
      move |= 1u << f;
  }
  if (move) {
    /* Any server but those of the fragments staying: one that lost its
     * fragment (a restart) may take it again, which a pool of exactly
     * K+M servers needs.
     */
    struct replica have[RP_EC_MAX_FRAGS];
    memcpy (have, fr, ec->n * sizeof *have);
    for (unsigned f = 0; f < ec->n; f++)
      if ((move >> f) & 1)
        have[f].handle = 0;
    memset (fresh, 0, sizeof fresh);
    nfresh = replica_alloc (p, idx, ec->frag_extent, 0, have, ec->n, NULL, 0,
                            ecio_popcount (move), fresh, &last_err);
    unsigned k = 0;
    for (unsigned f = 0; f < ec->n && k < nfresh; f++)
      if ((move >> f) & 1) {
        dst[f] = fresh[k++];
        to |= 1u << f;
      }
    if (nfresh < ecio_popcount (move))
      logging_msg (LOGGING_DEBUG, "extent %" PRIu64 ": no server for %u"
                   " fragment(s) yet (%s)", idx,
                   ecio_popcount (move) - nfresh, strerror (last_err));
  }
  if (to == 0)
    return 0;
  /* Pick K sources, data first; rebuild in pieces that fit buf: every
   * fragment's piece plus the blocks themselves.
   */
  sources = ecio_pick (p, fr, sources, ec->k, false);
  rp_ec_decoder_init (&dec, &ec->code);
  blocks = p->cfg.extent_size / ECIO_BLOCK;
  step = len / ((size_t) ec->n * ec->frag + ECIO_BLOCK);
  if (step > blocks)
    step = blocks;
  for (uint32_t b0 = 0; b0 < blocks; b0 += step) {
    uint32_t nb = blocks - b0 < step ? blocks - b0 : step, got = 0;
    for (unsigned f = 0; f < ec->n; f++)
      fb[f] = buf + (size_t) f * nb * ec->frag;
    plain = buf + (size_t) ec->n * nb * ec->frag;
    ecio_read_frags (p, idx, fr, sources, b0, nb, fb, &got);
    if (got != sources ||
        ecio_decode (ec, &dec, sources, fb, nb, plain) == -1)
      goto fail;
    /* encrypt=on: only verified data is spread.  A block that fails
     * means a bad source: find it as a read does (ecio_read_blocks),
     * from every good fragment with each left out in turn.
     */
    uint64_t bad;
    if (p->crypt.key &&
        crypt_verify (&p->crypt, first + b0, plain, nb, &bad) == -1) {
      uint32_t all = got, use;
      ecio_read_frags (p, idx, fr, ecio_good (p, fr, NULL) & ~got, b0, nb, fb,
                       &all);
      use = ecio_find_bad (p, idx, fr, all, fb, b0, nb, plain, &dec);
      if (use && ecio_decode (ec, &dec, use, fb, nb, plain) == -1)
        use = 0;
      if (use == 0) {
        logging_msg (LOGGING_WARN, "extent %" PRIu64 ": block %" PRIu64
                     " fails authentication from every set of fragments;"
                     " not rebuilding it this pass", idx, bad);
        goto fail;
      }
      /* Later pieces decode from good sources too. */
      sources = use;
    }
    for (uint32_t b = 0; b < nb; b++) {
      const uint8_t *dp[RP_EC_MAX_K];
      for (unsigned f = 0; f < ec->k; f++) {
        dp[f] = plain + (size_t) b * ECIO_BLOCK + (size_t) f * ec->frag;
        if ((to >> f) & 1)
          memcpy (fb[f] + (size_t) b * ec->frag, dp[f], ec->frag);
      }
      for (unsigned j = 0; j < ec->m; j++)
        if ((to >> (ec->k + j)) & 1)
          rp_ec_encode_parity (&ec->code, ec->frag, dp, j,
                               fb[ec->k + j] + (size_t) b * ec->frag);
    }
    if (ecio_write_frags (p, idx, dst, to, b0, nb, fb, &refused) == -1)
      goto fail;
    written += (int64_t) nb * ec->frag * ecio_popcount (to);
  }
  /* Every piece is in: the new fragments replace the old. */
  {
    struct conn_call calls[RP_EC_MAX_FRAGS];
    unsigned ncalls = 0;
    struct conn_wait w;
    conn_wait_init (&w);
    for (unsigned f = 0; f < ec->n; f++) {
      if (!((to >> f) & 1))
        continue;
      if ((move >> f) & 1)
        ecio_release (p, idx, &fr[f], &calls[ncalls], &w, &ncalls);
      fr[f] = dst[f];
      fr[f].is_stale = 0;
      fr[f].leaving = 0;
    }
    conn_wait_all (&w, calls, ncalls, rp_now_ms () + p->cfg.timeout_ms);
    conn_wait_destroy (&w);
  }
  p->map.e[idx].is_lost_logged = 0;
  atomic_fetch_add (&p->count.recovered, ecio_popcount (to));
  return written;

 fail:
  /* Nothing replaced: give the new fragment extents back.  A fragment
   * rewritten in place whose server refused the write (its extent is
   * gone there) is let go, so that the next pass places it anew.
   */
  {
    struct conn_call calls[RP_EC_MAX_FRAGS];
    unsigned ncalls = 0;
    struct conn_wait w;
    conn_wait_init (&w);
    for (unsigned f = 0; f < ec->n; f++) {
      if (((move & to) >> f) & 1)
        ecio_release (p, idx, &dst[f], &calls[ncalls], &w, &ncalls);
      else if (((refused & to) >> f) & 1) {
        ecio_release (p, idx, &fr[f], &calls[ncalls], &w, &ncalls);
        memset (&fr[f], 0, sizeof fr[f]);
      }
    }
    conn_wait_all (&w, calls, ncalls, rp_now_ms () + p->cfg.timeout_ms);
    conn_wait_destroy (&w);
  }
  return 0;
}

/* The audit (rp_pool_audit, audit.c): every fragment counted good is
 * read whole from its server; from K of them (data first) the blocks
 * are decoded, and every other good fragment must be what they code
 * to; with encrypt=on the blocks must authenticate.  Not for the I/O
 * path: it allocates.
 */
int
ecio_audit (struct rp_pool *p, struct rp_audit *a)
{
  struct ecio *ec = p->ec;
  uint32_t blocks = p->cfg.extent_size / ECIO_BLOCK;
  uint32_t step = blocks < 256 ? blocks : 256;
  size_t piece = (size_t) step * ec->frag;
  uint8_t *buf = malloc ((size_t) ec->n * piece + (size_t) step * ECIO_BLOCK +
                         piece);
  struct rp_ec_decoder dec;
  uint8_t *fb[RP_EC_MAX_FRAGS], *plain, *want;

  if (buf == NULL) {
    errno = ENOMEM;
    return -1;
  }
  rp_ec_decoder_init (&dec, &ec->code);
  for (unsigned f = 0; f < ec->n; f++)
    fb[f] = buf + f * piece;
  plain = buf + ec->n * piece;
  want = plain + (size_t) step * ECIO_BLOCK;
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);
    struct replica *fr = extent_map_frags (&p->map, idx);
    if (!__atomic_load_n (&p->map.e[idx].is_coded, __ATOMIC_ACQUIRE))
      continue;
    pthread_rwlock_rdlock (lk);
    a->extents_checked++;
    uint32_t good = ecio_good (p, fr, NULL), bad = 0;
    a->copies_checked += ecio_popcount (good);
    for (uint32_t b0 = 0; b0 < blocks; b0 += step) {
      struct conn_call calls[RP_EC_MAX_FRAGS];
      unsigned which[RP_EC_MAX_FRAGS], ncalls;
      uint32_t got = 0, use;
      ecio_roundtrip (p, idx, fr, good & ~bad, RP_OP_READ, b0, step, fb,
                      calls, which, &ncalls);
      for (unsigned i = 0; i < ncalls; i++) {
        unsigned f = which[i];
        if (calls[i].err == 0) {
          got |= 1u << f;
          continue;
        }
        bad |= 1u << f;
        if (calls[i].is_answered) {
          a->copies_missing++;
          logging_msg (LOGGING_ERROR, "audit: extent %" PRIu64 ": fragment %u"
                       " on %s is counted good but the server does not have"
                       " it", idx, f, p->servers[fr[f].server].addr);
        }
        else
          a->copies_unreachable++;
      }
      use = ecio_pick (p, fr, got, ec->k, false);
      if (ecio_popcount (use) < ec->k ||
          ecio_decode (ec, &dec, use, fb, step, plain) == -1)
        continue;
      uint64_t first = (idx << p->map.shift) / ECIO_BLOCK + b0, badb;
      if (p->crypt.key &&
          crypt_verify (&p->crypt, first, plain, step, &badb) == -1) {
        a->copies_unverified++;
        logging_msg (LOGGING_ERROR, "audit: extent %" PRIu64 ": block %"
                     PRIu64 " decoded from fragments counted good fails"
                     " authentication", idx, badb);
      }
      for (unsigned f = 0; f < ec->n; f++) {
        if (!(((got & ~use) >> f) & 1))
          continue;
        for (uint32_t b = 0; b < step; b++) {
          const uint8_t *dp[RP_EC_MAX_K];
          for (unsigned d = 0; d < ec->k; d++)
            dp[d] = plain + (size_t) b * ECIO_BLOCK + (size_t) d * ec->frag;
          if (f < ec->k)
            memcpy (want + (size_t) b * ec->frag, dp[f], ec->frag);
          else
            rp_ec_encode_parity (&ec->code, ec->frag, dp, f - ec->k,
                                 want + (size_t) b * ec->frag);
        }
        if (memcmp (want, fb[f], piece) != 0) {
          a->copies_differ++;
          bad |= 1u << f;
          logging_msg (LOGGING_ERROR, "audit: extent %" PRIu64 ": fragment"
                       " %u on %s is counted good but is not what the"
                       " others code to (blocks %" PRIu32 "-%" PRIu32 ")",
                       idx, f, p->servers[fr[f].server].addr, b0,
                       b0 + step - 1);
        }
      }
    }
    pthread_rwlock_unlock (lk);
  }
  free (buf);
  return 0;
}
