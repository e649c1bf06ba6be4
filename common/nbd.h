/* The NBD protocol as rampool's NBD servers speak it (client/rampool-nbd.c,
 * bench/frontend-probe.c): the newstyle handshake's and the simple
 * replies' numbers, big-endian on the wire, named as the protocol
 * document names them.
 */
#ifndef RP_NBD_H
#define RP_NBD_H

#include <stdint.h>

#define NBD_MAGIC 0x4e42444d41474943ull       /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC 0x49484156454f5054ull  /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x3e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_REQ_HDR 28u                       /* request header bytes */
/* Handshake flags. */
#define NBD_FLAG_FIXED_NEWSTYLE 1u
#define NBD_FLAG_NO_ZEROES 2u
/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)
/* Options and their replies. */
#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT 2u
#define NBD_OPT_LIST 3u
#define NBD_OPT_INFO 6u
#define NBD_OPT_GO 7u
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_ERR_UNSUP 0x80000001u
#define NBD_REP_ERR_INVALID 0x80000003u
#define NBD_REP_ERR_TOO_BIG 0x80000009u
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_BLOCK_SIZE 3u
/* Commands, their flags and the errors of replies. */
#define NBD_CMD_READ 0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC 2u
#define NBD_CMD_FLUSH 3u
#define NBD_CMD_TRIM 4u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_ENOTSUP 95u
#define NBD_ESHUTDOWN 108u

/* A request header (NBD_REQ_HDR bytes), decoded; the cookie as it
 * came, to be echoed.
 */
struct rp_nbd_request {
  uint32_t magic;
  uint16_t flags, type;
  uint8_t cookie[8];
  uint64_t offset;
  uint32_t length;
};
void rp_nbd_request_decode (const uint8_t *h, struct rp_nbd_request *r);

/* The server's greeting (fixed newstyle, no zeroes), then the
 * client's flags into *cflags.  0, or -1 with errno.
 */
int rp_nbd_greet (int fd, uint32_t *cflags);
/* An option's header: its id and data length (the data follows).  0,
 * or -1 with errno (EPROTO: not the option magic).
 */
int rp_nbd_read_option (int fd, uint32_t *id, uint32_t *len);

/* Send an option reply: type for option opt, with data[0..len).  0, or
 * -1 with errno.
 */
int rp_nbd_opt_reply (int fd, uint32_t opt, uint32_t type, const void *data,
                      uint32_t len);

/* The 16 bytes of a simple reply's header into hdr: the magic, error
 * (an NBD_E* or 0) and the request's cookie as it came.
 */
void rp_nbd_simple_reply (uint8_t hdr[16], uint32_t error,
                          const uint8_t cookie[8]);

#endif /* RP_NBD_H */
