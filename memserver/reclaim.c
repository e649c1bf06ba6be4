/* Giving memory back: see reclaim.h.
 *
 * The donation (--size auto).  Once a second the memory the host can
 * still give is read: MemAvailable, or less when the memserver's own
 * memory cgroup has a limit (v2 memory.max - memory.current, v1
 * memory.limit_in_bytes - memory.usage_in_bytes).  With H the
 * head-room (--headroom), as Infiniswap's daemon does with its evict
 * and expand thresholds:
 *   - available < H: shrink; the limit drops below what is used by the
 *     shortfall, and that much is asked back;
 *   - available > 2H: grow; the limit rises to what is used plus the
 *     excess over 2H (at most --size's ceiling);
 *   - in between: hold (no new room, no more asking).
 * The region's limit (region.h) is what ALLOC may fill; STAT reports
 * it and the state (serving, shrinking, draining).
 *
 * Asking back.  While more is used than the limit, the least recently
 * used extents (the oldest two-sided access; Infiniswap samples E+d
 * slabs and evicts the E least active: here a bounded scan of the
 * table from a rotating cursor collects candidates and the oldest are
 * taken) are named in RECLAIM notices to their owners, with a deadline
 * (--reclaim-deadline-ms).  An owner moves each elsewhere and FREEs it
 * here; one it cannot move and has no other copy of it HOLDs.  At the
 * deadline what is still here is dropped, logged with its owner's
 * session, except held extents and extents allocated as the client's
 * only copy (RP_FLAG_SOLE, replicas=1), which are dropped only with
 * --reclaim-sole: the operator's explicit choice.  An owner with no
 * connection gets no notice: its copies are dropped at the deadline
 * (it repairs from its other copies when it comes back).
 *
 * Draining (DRAIN from `rampool drain`, or SIGUSR2): no more ALLOC
 * (ENOSPC), a DRAIN notice to every owner (and to every session that
 * joins later), progress logged, and the server stops with status 0
 * once empty, or 1 when the deadline passes with extents left (listed
 * by owner).  Nothing is dropped by a drain.
 *
 * Single-threaded: the event loop's.  Not here: what the owners do
 * with a notice (librampool's recovery), the notices' wire form
 * (session.c, protocol.h).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reclaim.h"
#include "util.h"

/* Table slots examined per tick to find candidates, at most. */
#define RECLAIM_SCAN_SLOTS 65536
/* Candidates gathered per tick; the oldest are asked back. */
#define RECLAIM_SAMPLE 512
/* Extents asked back and not yet gone, at most (their deadlines are
 * checked every tick: a bounded list, not a table walk).
 */
#define RECLAIM_PENDING 16384
/* RECLAIM notices told again to a connection as it joins, at most (an
 * RDMA connection has 32 send buffers, and the HELLO reply and a DRAIN
 * go too): 8000 extents.
 */
#define RECLAIM_RETELL_NOTICES 16
/* Progress lines of a drain, at most this often. */
#define RECLAIM_LOG_MS 5000

struct reclaim {
  struct session_core *core;     /* not owned */
  const struct settings *st;     /* not owned */
  void (*stop) (void *opaque, int status);
  void *opaque;
  bool is_stopping;              /* stop called */
  uint64_t drained_ms;           /* when the drain found it empty */
  uint64_t drain_deadline_ms;    /* rp_now_ms; 0 = not draining */
  uint64_t drain_start_bytes;    /* used when the drain began */
  uint64_t drain_log_ms;         /* last progress line */
  uint32_t drain_gen;            /* owners marked with it got a DRAIN */
  uint32_t cursor;               /* where the next scan starts */
  uint32_t pending[RECLAIM_PENDING]; /* table index + 1 of extents
                                        asked back, not yet gone */
  unsigned npending;
  char cg_limit[PATH_MAX];       /* the memory cgroup's limit file, or "" */
  char cg_usage[PATH_MAX];       /* and its usage file */
  uint64_t logged_limit;         /* the donation last logged */
};

/* --- how much the host can still give --- */

static uint64_t
reclaim_read_u64 (const char *path, bool *is_max)
{
  char buf[64];
  FILE *fp = fopen (path, "r");
  unsigned long long v = 0;

  *is_max = false;
  if (fp == NULL)
    return 0;
  if (fgets (buf, sizeof buf, fp) == NULL)
    buf[0] = '\0';
  fclose (fp);
  if (strncmp (buf, "max", 3) == 0)
    *is_max = true;
  else
    v = strtoull (buf, NULL, 10);
  return v;
}

static uint64_t
reclaim_meminfo_available (void)
{
  char line[256];
  unsigned long long kib = 0;
  FILE *fp = fopen ("/proc/meminfo", "r");

  if (fp == NULL)
    return 0;
  while (fgets (line, sizeof line, fp))
    if (sscanf (line, "MemAvailable: %llu kB", &kib) == 1)
      break;
  fclose (fp);
  return (uint64_t) kib * 1024;
}

/* Find our memory cgroup's limit and usage files (v2, else v1). */
static void
reclaim_find_cgroup (struct reclaim *r)
{
  char line[PATH_MAX];
  FILE *fp = fopen ("/proc/self/cgroup", "r");

  if (fp == NULL)
    return;
  while (fgets (line, sizeof line, fp)) {
    char *path = strrchr (line, ':');
    line[strcspn (line, "\n")] = '\0';
    if (path == NULL)
      continue;
    path++;
    if (strncmp (line, "0::", 3) == 0) {
      snprintf (r->cg_limit, sizeof r->cg_limit, "/sys/fs/cgroup%s/memory.max",
                path);
      snprintf (r->cg_usage, sizeof r->cg_usage,
                "/sys/fs/cgroup%s/memory.current", path);
    }
    else if (strstr (line, ":memory:")) {
      snprintf (r->cg_limit, sizeof r->cg_limit,
                "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", path);
      snprintf (r->cg_usage, sizeof r->cg_usage,
                "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", path);
      break;  /* v1's memory controller wins over a v2 line */
    }
  }
  fclose (fp);
}

/* What the host can still give: MemAvailable, or less in a limited
 * memory cgroup.
 */
static uint64_t
reclaim_available (struct reclaim *r)
{
  uint64_t avail = reclaim_meminfo_available ();
  bool lim_max, use_max;

  if (r->cg_limit[0]) {
    uint64_t lim = reclaim_read_u64 (r->cg_limit, &lim_max);
    uint64_t use = reclaim_read_u64 (r->cg_usage, &use_max);
    /* v1 says "no limit" with a huge number rather than "max". */
    if (!lim_max && lim > 0 && lim < (UINT64_C (1) << 60)) {
      uint64_t cg = lim > use ? lim - use : 0;
      if (cg < avail)
        avail = cg;
    }
  }
  return avail;
}

/* Set the donation from the host's free memory (the top of the file). */
static void
reclaim_follow_host (struct reclaim *r)
{
  struct region *rg = &r->core->store.region;
  uint64_t h = r->st->headroom_bytes, avail = reclaim_available (r);
  uint64_t limit = rg->limit;
  char a[32], b[32], c[32], d[32];

  if (avail < h)
    limit = rg->used > h - avail ? rg->used - (h - avail) : 0;
  else if (avail > 2 * h)
    limit = rg->used + (avail - 2 * h);
  else if (limit < rg->used)
    limit = rg->used;  /* in the band: stop asking, give no new room */
  if (limit > rg->capacity)
    limit = rg->capacity;
  limit -= limit % REGION_GRANULE;
  rg->limit = limit;
  if (limit != r->logged_limit &&
      (limit + (64u << 20) < r->logged_limit ||
       limit > r->logged_limit + (64u << 20) || limit == 0)) {
    log_msg (LOG_LEVEL_INFO, "reclaim", "donating %s now (%s used; the host"
             " has %s available, head-room %s)",
             rp_human_size (limit, a, sizeof a),
             rp_human_size (rg->used, b, sizeof b),
             rp_human_size (avail, c, sizeof c),
             rp_human_size (h, d, sizeof d));
    r->logged_limit = limit;
  }
}

/* --- asking back --- */

/* A live session of owner o (joined, not closing, the owner's own: a
 * COPY link would drop the notice; and not quiet: a client's lane is
 * read only while a read of its is in flight), or NULL.
 */
static struct session *
reclaim_session_of (struct session_core *core, const struct owner *o)
{
  for (struct session *s = core->sessions; s; s = s->next)
    if (s->owner == o && !s->is_closing && s->close_why == NULL &&
        !s->is_peer && !s->is_quiet)
      return s;
  return NULL;
}

static bool
reclaim_may_drop (const struct reclaim *r, const struct extent *e)
{
  return !e->is_held && (!e->is_sole || r->st->reclaim_sole);
}

/* Name handles[0..n) of o's in a RECLAIM notice, on a live session of
 * o's; none: its copies are dropped at the deadline.
 */
static void
reclaim_notify (struct reclaim *r, struct owner *o, const uint64_t *handles,
                unsigned n)
{
  struct session *s = reclaim_session_of (r->core, o);

  if (s == NULL)
    log_msg (LOG_LEVEL_INFO, "reclaim", "session %" PRIu64 " has no"
             " connection: %u extent(s) asked back, to be named when it"
             " reconnects (dropped in %" PRIu32 " ms otherwise)", o->session,
             n, r->st->reclaim_deadline_ms);
  else if (session_notice (s, RP_NOTICE_RECLAIM, r->st->reclaim_deadline_ms,
                           handles, n) == 0)
    log_msg (LOG_LEVEL_INFO, "reclaim", "asked session %" PRIu64 " for %u"
             " extent(s) back within %" PRIu32 " ms", o->session, n,
             r->st->reclaim_deadline_ms);
}

static int
reclaim_cmp_owner (const void *a, const void *b)
{
  const struct extent *x = *(struct extent *const *) a;
  const struct extent *y = *(struct extent *const *) b;

  return x->owner < y->owner ? -1 : x->owner > y->owner;
}

static int
reclaim_cmp_access (const void *a, const void *b)
{
  const struct extent *x = *(struct extent *const *) a;
  const struct extent *y = *(struct extent *const *) b;

  return x->access_ms < y->access_ms ? -1 : x->access_ms > y->access_ms;
}

/* Ask for `need` bytes back: the oldest candidates of a bounded scan,
 * in one RECLAIM notice per owner (and more if one has many).
 */
static void
reclaim_ask (struct reclaim *r, uint64_t need, uint64_t now)
{
  struct store *st = &r->core->store;
  static struct extent *cand[RECLAIM_SAMPLE];
  static uint64_t handles[RP_NOTICE_MAX_HANDLES];
  unsigned ncand = 0;

  for (unsigned k = 0; k < RECLAIM_SCAN_SLOTS && k < st->max_extents &&
       ncand < RECLAIM_SAMPLE; k++) {
    struct extent *e = &st->extents[r->cursor];
    r->cursor = (r->cursor + 1) % st->max_extents;
    if (e->handle && e->reclaim_ms == 0 && reclaim_may_drop (r, e))
      cand[ncand++] = e;
  }
  qsort (cand, ncand, sizeof cand[0], reclaim_cmp_access);
  /* Take the oldest until need is covered (or the list is full). */
  unsigned take = 0;
  for (uint64_t got = 0; take < ncand && got < need &&
       r->npending < RECLAIM_PENDING; take++) {
    cand[take]->reclaim_ms = now + r->st->reclaim_deadline_ms;
    r->pending[r->npending++] = cand[take] - st->extents + 1;
    got += cand[take]->size;
  }
  r->core->stats.reclaim_asked += take;
  /* One notice per owner (more past RP_NOTICE_MAX_HANDLES). */
  qsort (cand, take, sizeof cand[0], reclaim_cmp_owner);
  for (unsigned i = 0; i < take;) {
    struct owner *o = cand[i]->owner;
    unsigned n = 0;
    for (; i < take && cand[i]->owner == o; i++) {
      handles[n++] = cand[i]->handle;
      if (n == RP_NOTICE_MAX_HANDLES) {
        reclaim_notify (r, o, handles, n);
        n = 0;
      }
    }
    if (n)
      reclaim_notify (r, o, handles, n);
  }
}

/* Drop what was asked back and is still here at its deadline, but for
 * held and sole copies; forget what has gone.
 */
static void
reclaim_expire (struct reclaim *r, uint64_t now)
{
  struct store *st = &r->core->store;

  for (unsigned i = 0; i < r->npending;) {
    struct extent *e = &st->extents[r->pending[i] - 1];
    if (e->handle == 0 || e->reclaim_ms == 0) {
      r->pending[i] = r->pending[--r->npending];  /* moved away */
      continue;
    }
    if (now < e->reclaim_ms) {
      i++;
      continue;
    }
    if (reclaim_may_drop (r, e)) {
      log_msg (LOG_LEVEL_WARN, "reclaim", "dropped extent %" PRIx64 " of"
               " session %" PRIu64 " (%" PRIu64 " bytes): not moved by its"
               " deadline; the client re-creates that copy from another",
               e->handle, e->owner->session, e->size);
      store_free (st, e);
      r->core->stats.reclaim_dropped++;
    }
    else
      e->reclaim_ms = 0;  /* kept: held or sole (logged by the owner) */
    r->pending[i] = r->pending[--r->npending];
  }
}

/* --- draining --- */

/* Send a DRAIN notice to s's owner, once per drain and generation of
 * its connections: a client that reconnects (same session, a new
 * fence) forgets the drain with its old connections and is told again.
 */
static void
reclaim_tell_drain (struct reclaim *r, struct session *s, uint64_t now)
{
  struct owner *o = s->owner;

  if (o == NULL || s->is_peer || s->is_quiet ||
      (o->drain_gen == r->drain_gen && o->drain_fence == s->fence))
    return;
  if (session_notice (s, RP_NOTICE_DRAIN,
                      r->drain_deadline_ms > now
                      ? r->drain_deadline_ms - now : 0, NULL, 0) == 0) {
    o->drain_gen = r->drain_gen;
    o->drain_fence = s->fence;
  }
}

static int
reclaim_drain (struct session_core *core, uint64_t deadline_ms)
{
  struct reclaim *r = core->reclaim;
  uint64_t now = rp_now_ms ();
  char b[32];

  if (r->drain_deadline_ms)
    return 0;  /* already draining */
  r->drain_deadline_ms = now + (deadline_ms ? deadline_ms
                                : r->st->drain_timeout_ms);
  r->drain_gen++;
  r->drain_log_ms = now;
  r->drain_start_bytes = core->store.region.used;
  core->state = RP_STATE_DRAINING;
  log_msg (LOG_LEVEL_INFO, "reclaim", "draining: %" PRIu32 " extent(s), %s,"
           " of %" PRIu32 " client(s) to move within %" PRIu64 " ms",
           core->store.nextents,
           rp_human_size (core->store.region.used, b, sizeof b),
           store_owners_holding (&core->store), r->drain_deadline_ms - now);
  for (struct session *s = core->sessions; s; s = s->next)
    if (!s->is_closing)
      reclaim_tell_drain (r, s, now);
  return 0;
}

/* One RECLAIM notice of handles[0..n) to s, due at `due`. */
static bool
reclaim_tell_handles (struct session *s, uint64_t due, uint64_t now,
                      const uint64_t *handles, unsigned n)
{
  return session_notice (s, RP_NOTICE_RECLAIM, due > now ? due - now : 0,
                         handles, n) == 0;
}

/* Tell s's owner, once per generation of its connections, which of its
 * extents are asked back and not gone yet, by the earliest of their
 * deadlines: a RECLAIM sent while it had no connection (or to a
 * connection that died before it was read) is otherwise never heard,
 * and the extents dropped at the deadline -- perhaps its only good
 * copy.  One told already just hears it again.
 */
static void
reclaim_tell_pending (struct reclaim *r, struct session *s, uint64_t now)
{
  static uint64_t handles[RP_NOTICE_MAX_HANDLES];
  struct store *st = &r->core->store;
  struct owner *o = s->owner;
  uint64_t due = UINT64_MAX;
  unsigned n = 0, told = 0, notices = 0;
  bool is_ok = true;

  if (o == NULL || s->is_peer || s->is_quiet || o->reclaim_fence == s->fence)
    return;
  for (unsigned i = 0; i < r->npending && is_ok &&
       notices < RECLAIM_RETELL_NOTICES; i++) {
    const struct extent *e = &st->extents[r->pending[i] - 1];
    if (e->handle == 0 || e->reclaim_ms == 0 || e->owner != o || e->is_held)
      continue;
    handles[n++] = e->handle;
    if (e->reclaim_ms < due)
      due = e->reclaim_ms;
    if (n == RP_NOTICE_MAX_HANDLES) {
      is_ok = reclaim_tell_handles (s, due, now, handles, n);
      notices++;
      told += n;
      n = 0;
      due = UINT64_MAX;
    }
  }
  if (n && is_ok) {
    is_ok = reclaim_tell_handles (s, due, now, handles, n);
    told += n;
  }
  if (!is_ok)
    return;  /* the next connection to join tries again */
  o->reclaim_fence = s->fence;
  if (told)
    log_msg (LOG_LEVEL_INFO, "reclaim", "told session %" PRIu64 " again of"
             " %u extent(s) asked back (it has reconnected)", o->session,
             told);
}

static void
reclaim_joined (struct session_core *core, struct session *s)
{
  struct reclaim *r = core->reclaim;
  uint64_t now = rp_now_ms ();

  reclaim_tell_pending (r, s, now);
  if (r->drain_deadline_ms)
    reclaim_tell_drain (r, s, now);
}

/* A drain that ended: what is left, by owner. */
static void
reclaim_log_left (struct reclaim *r)
{
  struct store *st = &r->core->store;

  for (uint32_t i = 0; i < st->max_owners; i++) {
    const struct owner *o = &st->owners[i];
    if (o->in_use && o->nextents)
      log_msg (LOG_LEVEL_ERROR, "reclaim", "left: session %" PRIu64 " holds"
               " %" PRIu32 " extent(s), %" PRIu64 " bytes (%s)", o->session,
               o->nextents, o->bytes,
               o->nconns ? "connected" : "not connected");
  }
}

static void
reclaim_drain_tick (struct reclaim *r, uint64_t now)
{
  struct store *st = &r->core->store;
  char b[32];

  if (r->is_stopping)
    return;
  if (r->drained_ms) {
    /* Empty: STAT says so for a moment, then stop. */
    if (now >= r->drained_ms + RP_DRAINED_LINGER_MS) {
      r->is_stopping = true;
      r->stop (r->opaque, 0);
    }
    return;
  }
  if (st->nextents == 0) {
    log_msg (LOG_LEVEL_INFO, "reclaim", "drained: nothing left; stopping");
    r->drained_ms = now;
    r->core->state = RP_STATE_DRAINED;
    return;
  }
  if (now >= r->drain_deadline_ms) {
    log_msg (LOG_LEVEL_ERROR, "reclaim", "drain deadline passed with %"
             PRIu32 " extent(s), %s, left; stopping", st->nextents,
             rp_human_size (st->region.used, b, sizeof b));
    reclaim_log_left (r);
    r->is_stopping = true;
    r->stop (r->opaque, 1);
    return;
  }
  if (now - r->drain_log_ms >= RECLAIM_LOG_MS) {
    r->drain_log_ms = now;
    log_msg (LOG_LEVEL_INFO, "reclaim", "draining: %" PRIu32 " extent(s),"
             " %s, left; %" PRIu64 " s to the deadline", st->nextents,
             rp_human_size (st->region.used, b, sizeof b),
             (r->drain_deadline_ms - now) / 1000);
  }
}

/* --- the tick --- */

void
reclaim_tick (struct reclaim *r, uint64_t now)
{
  struct region *rg = &r->core->store.region;

  if (r->drain_deadline_ms) {
    reclaim_drain_tick (r, now);
    return;
  }
  reclaim_expire (r, now);
  if (!r->st->is_size_auto)
    return;
  reclaim_follow_host (r);
  r->core->state = rg->used > rg->limit ? RP_STATE_SHRINKING
    : RP_STATE_SERVING;
  if (rg->used > rg->limit) {
    uint64_t pending = 0;
    for (unsigned i = 0; i < r->npending; i++)
      pending += r->core->store.extents[r->pending[i] - 1].size;
    if (rg->used - rg->limit > pending)
      reclaim_ask (r, rg->used - rg->limit - pending, now);
  }
}

void
reclaim_drain_now (struct reclaim *r)
{
  reclaim_drain (r->core, 0);
}

void
reclaim_get_progress (const struct reclaim *r, uint64_t now_ms,
                      struct reclaim_progress *out)
{
  const struct store *st = &r->core->store;

  memset (out, 0, sizeof *out);
  for (unsigned i = 0; i < r->npending; i++) {
    const struct extent *e = &st->extents[r->pending[i] - 1];
    if (e->handle && e->reclaim_ms) {
      out->pending_extents++;
      out->pending_bytes += e->size;
    }
  }
  if (r->drain_deadline_ms) {
    out->drain_start_bytes = r->drain_start_bytes;
    out->drain_left_ms = r->drain_deadline_ms > now_ms
                         ? r->drain_deadline_ms - now_ms : 0;
  }
}

struct reclaim *
reclaim_start (struct session_core *core,
               void (*stop) (void *opaque, int status), void *opaque)
{
  struct reclaim *r = calloc (1, sizeof *r);

  if (r == NULL) {
    log_msg (LOG_LEVEL_ERROR, "reclaim", "out of memory");
    return NULL;
  }
  r->core = core;
  r->st = core->st;
  r->stop = stop;
  r->opaque = opaque;
  core->reclaim = r;
  core->drain = reclaim_drain;
  core->joined = reclaim_joined;
  if (r->st->is_size_auto) {
    reclaim_find_cgroup (r);
    reclaim_follow_host (r);
  }
  return r;
}

void
reclaim_free (struct reclaim *r)
{
  free (r);
}
