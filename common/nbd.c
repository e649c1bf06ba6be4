/* See nbd.h. */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "nbd.h"
#include "util.h"

int
rp_nbd_opt_reply (int fd, uint32_t opt, uint32_t type, const void *data,
                  uint32_t len)
{
  uint8_t h[20];
  uint64_t m = htobe64 (NBD_REP_MAGIC);
  uint32_t v;

  memcpy (h, &m, 8);
  v = htobe32 (opt);
  memcpy (h + 8, &v, 4);
  v = htobe32 (type);
  memcpy (h + 12, &v, 4);
  v = htobe32 (len);
  memcpy (h + 16, &v, 4);
  struct iovec iov[2] = { { h, 20 }, { (void *) data, len } };
  return rp_sendv_full (fd, iov, len ? 2 : 1);
}

void
rp_nbd_simple_reply (uint8_t hdr[16], uint32_t error, const uint8_t cookie[8])
{
  uint32_t v = htobe32 (NBD_SIMPLE_REPLY_MAGIC);

  memcpy (hdr, &v, 4);
  v = htobe32 (error);
  memcpy (hdr + 4, &v, 4);
  memcpy (hdr + 8, cookie, 8);
}

void
rp_nbd_request_decode (const uint8_t *h, struct rp_nbd_request *r)
{
  memcpy (&r->magic, h, 4);
  memcpy (&r->flags, h + 4, 2);
  memcpy (&r->type, h + 6, 2);
  memcpy (r->cookie, h + 8, 8);
  memcpy (&r->offset, h + 16, 8);
  memcpy (&r->length, h + 24, 4);
  r->magic = be32toh (r->magic);
  r->flags = be16toh (r->flags);
  r->type = be16toh (r->type);
  r->offset = be64toh (r->offset);
  r->length = be32toh (r->length);
}

int
rp_nbd_greet (int fd, uint32_t *cflags)
{
  uint8_t g[18];
  uint64_t m = htobe64 (NBD_MAGIC), o = htobe64 (NBD_OPTS_MAGIC);
  uint16_t f = htobe16 (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);

  memcpy (g, &m, 8);
  memcpy (g + 8, &o, 8);
  memcpy (g + 16, &f, 2);
  struct iovec iov = { g, sizeof g };
  if (rp_sendv_full (fd, &iov, 1) == -1 || rp_read_full (fd, cflags, 4) == -1)
    return -1;
  *cflags = be32toh (*cflags);
  return 0;
}

int
rp_nbd_read_option (int fd, uint32_t *id, uint32_t *len)
{
  uint8_t opt[16];
  uint64_t o;

  if (rp_read_full (fd, opt, 16) == -1)
    return -1;
  memcpy (&o, opt, 8);
  memcpy (id, opt + 8, 4);
  memcpy (len, opt + 12, 4);
  *id = be32toh (*id);
  *len = be32toh (*len);
  if (be64toh (o) != NBD_OPTS_MAGIC) {
    errno = EPROTO;
    return -1;
  }
  return 0;
}
