/* rp_pool_audit: check the copy-state invariant (replica.h) against the
 * servers themselves.  For every mapped extent, every copy the client
 * counts good is read whole from its server and compared with the
 * extent's first good copy; with encrypt=on each must also pass
 * authentication.  A copy counted good that its server no longer has,
 * or whose bytes differ, is exactly the silent loss of redundancy the
 * invariant forbids.
 *
 * For tests and operators' checks, not for the I/O path: it allocates
 * two buffers, and it holds each extent's read lock while it reads that
 * extent's copies.  Run it on a quiet pool: a write in flight makes its
 * copies differ for a moment, legitimately.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "donor.h"
#include "ecio.h"
#include "replica.h"
#include "logging.h"
#include "util.h"

/* Read [off, off+len) of copy rep of extent idx into buf.  0, or -1
 * with *is_answered telling a server's error reply from a lost
 * connection.
 */
static int
audit_read (struct rp_pool *p, uint64_t idx, const struct replica *rep,
            uint32_t off, uint32_t len, uint8_t *buf, bool *is_answered)
{
  struct conn_call call;

  replica_call (&call, rep, RP_OP_READ);
  call.req.offset = off;
  call.req.count = len;
  call.rbuf = buf;
  if (conn_roundtrip (donor_conn (&p->servers[rep->server], idx), &call,
                    p->cfg.timeout_ms) == -1) {
    *is_answered = call.is_answered;
    return -1;
  }
  return 0;
}

int
rp_pool_audit (struct rp_pool *p, struct rp_audit *a)
{
  uint32_t es = p->cfg.extent_size;
  uint32_t step = es < RP_MAX_PAYLOAD ? es : RP_MAX_PAYLOAD;
  uint8_t *ref = malloc (step), *buf = malloc (step);

  memset (a, 0, sizeof *a);
  if (p->ec) {
    free (ref);
    free (buf);
    return ecio_audit (p, a);
  }
  if (ref == NULL || buf == NULL) {
    free (ref);
    free (buf);
    errno = ENOMEM;
    return -1;
  }
  for (uint64_t idx = 0; idx < p->map.n; idx++) {
    struct extent *e = &p->map.e[idx];
    pthread_rwlock_t *lk = extent_map_lock (&p->map, idx);

    if (__atomic_load_n (&e->nrep, __ATOMIC_ACQUIRE) == 0)
      continue;
    pthread_rwlock_rdlock (lk);
    /* Copies compared while a write is on its way to them on a lane
     * could differ for that moment: wait for its answers.
     */
    extent_map_drain_lanes (&p->map, idx);
    a->extents_checked++;
    for (uint32_t off = 0; off < es; off += step) {
      int first = -1;
      for (unsigned r = 0; r < e->nrep; r++) {
        const struct replica *rep = &e->rep[r];
        const char *addr = p->servers[rep->server].addr;
        uint8_t *dst = first < 0 ? ref : buf;
        uint64_t bad;
        bool is_answered;

        if (!replica_is_good (p, rep))
          continue;
        if (off == 0)
          a->copies_checked++;
        if (audit_read (p, idx, rep, off, step, dst, &is_answered) == -1) {
          if (is_answered) {
            a->copies_missing++;
            logging_msg (LOGGING_ERROR,
                         "audit: extent %" PRIu64 ": the copy on"
                         " %s is counted good but the server does not have it",
                         idx, addr);
          }
          else
            a->copies_unreachable++;
          continue;
        }
        if (p->crypt.key &&
            crypt_verify (&p->crypt,
                          ((idx << p->map.shift) + off) / CRYPT_BLOCK, dst,
                          step / CRYPT_BLOCK, &bad) == -1) {
          a->copies_unverified++;
          logging_msg (LOGGING_ERROR,
                       "audit: extent %" PRIu64 ": the copy on %s"
                       " is counted good but block %" PRIu64 " fails"
                       " authentication",
                       idx, addr, bad);
          continue;
        }
        if (first < 0)
          first = r;
        else if (memcmp (ref, buf, step) != 0) {
          a->copies_differ++;
          logging_msg (LOGGING_ERROR,
                       "audit: extent %" PRIu64 ": the copies on"
                       " %s and %s are both counted good but differ in bytes"
                       " %" PRIu32 "-%" PRIu32,
                       idx, p->servers[e->rep[first].server].addr, addr, off,
                       off + step - 1);
        }
      }
    }
    pthread_rwlock_unlock (lk);
  }
  free (ref);
  free (buf);
  return 0;
}
