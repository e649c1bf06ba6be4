/* Frame codec: wire headers <-> host structs, validation of every
 * field a peer controls, and the one table mapping wire errors to errno.
 *
 * Nothing here does I/O or allocates.  Both the memserver (decoding
 * requests) and librampool (decoding replies) use it, and the fuzz
 * target drives rp_req_decode directly.
 */
#ifndef RP_CODEC_H
#define RP_CODEC_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "rampool/protocol.h"

/* A request header in host byte order. */
struct rp_req {
  uint16_t op;
  uint16_t flags;
  uint64_t id;
  uint64_t handle;
  uint64_t offset;
  uint32_t count;
  uint32_t length;
};

/* A reply header in host byte order. */
struct rp_reply {
  uint32_t error;
  uint64_t id;
  uint64_t free_bytes;
  uint32_t length;
};

void rp_req_encode (const struct rp_req *req, void *buf);
void rp_reply_encode (const struct rp_reply *reply, void *buf);

/* Decode and validate a request header (sizeof (struct rp_req_hdr)
 * bytes at buf).  Checks magic, op, flags, and the per-op shape of
 * handle/offset/count/length against the protocol limits.  Returns 0,
 * or -1 with *why set to a static string naming the bad field.
 * Extent-relative bounds (offset + count <= extent size) need the
 * extent and are checked by the server when it executes the request.
 */
int rp_req_decode (const void *buf, struct rp_req *req, const char **why);

/* Decode and validate a reply header.  Returns 0 or -1 with *why set. */
int rp_reply_decode (const void *buf, struct rp_reply *reply,
                     const char **why);

/* The one mapping between wire error codes and errno values. */
int rp_error_to_errno (uint32_t error);
uint32_t rp_errno_to_error (int err);
const char *rp_op_name (uint16_t op);

/* Payload codecs for the fixed structs (host <-> wire). */
struct rp_hello_info {
  uint32_t version;
  uint8_t incarnation[16];
  uint64_t capacity_bytes;
  uint64_t free_bytes;
  uint32_t max_payload;
  uint32_t lease_ms;
  uint32_t flags;                /* RP_HELLO_AUTH */
  uint8_t server_nonce[32];
  uint8_t server_proof[32];
  uint64_t session;              /* 0 iff RP_HELLO_AUTH (checked) */
};
void rp_hello_reply_encode (const struct rp_hello_info *h, void *buf);
int rp_hello_reply_decode (const void *buf, struct rp_hello_info *h,
                           const char **why);

struct rp_stat_info {
  uint64_t limit_bytes;
  uint32_t state;                /* enum rp_state */
  uint64_t capacity_bytes;
  uint64_t used_bytes;
  uint64_t owner_bytes;
  uint32_t extents;
  uint32_t owner_extents;
  uint32_t clients;
  uint32_t owners;
  uint64_t uptime_ms;
  uint8_t incarnation[16];
};
void rp_stat_reply_encode (const struct rp_stat_info *s, void *buf);
int rp_stat_reply_decode (const void *buf, struct rp_stat_info *s,
                          const char **why);

/* AUTH reply: the session id (decode: -1 if 0 or reserved set). */
void rp_auth_reply_encode (uint64_t session, void *buf);
int rp_auth_reply_decode (const void *buf, uint64_t *session,
                          const char **why);

/* LIST reply: header then nhandles handles.  decode checks len (the
 * whole payload) against nhandles and max_handles (what was asked).
 */
void rp_list_reply_encode (uint64_t next_cursor, uint32_t nhandles,
                           void *buf);
int rp_list_reply_decode (const void *buf, size_t len, uint32_t max_handles,
                          uint64_t *next_cursor, uint32_t *nhandles,
                          const char **why);
/* Handle i of a decoded LIST reply payload. */
uint64_t rp_list_reply_handle (const void *buf, uint32_t i);

/* Notices (protocol.h): a header in host byte order. */
struct rp_notice {
  uint32_t kind;                 /* enum rp_notice_kind */
  uint64_t deadline_ms;
  uint32_t count;                /* handles after the header */
  uint32_t length;               /* 8 * count (checked) */
};
void rp_notice_encode (const struct rp_notice *n, void *buf);
/* Decode and check a notice header (32 bytes at buf).  0 or -1. */
int rp_notice_decode (const void *buf, struct rp_notice *n, const char **why);
/* Do the 32 bytes at buf start a notice rather than a reply? */
bool rp_frame_is_notice (const void *buf);

/* COPY's request payload (protocol.h) in host order.  decode checks
 * every field: handle and session non-zero, offset and deadline in
 * range, the address printable ASCII, NUL-terminated and zero-padded.
 */
struct rp_copy_args {
  uint64_t dst_handle;
  uint64_t dst_offset;
  uint64_t dst_fence;
  uint64_t dst_session;
  uint8_t dst_incarnation[16];
  uint32_t deadline_ms;
  char dst_addr[RP_COPY_ADDR_MAX];
};
void rp_copy_req_encode (const struct rp_copy_args *a, void *buf);
int rp_copy_req_decode (const void *buf, struct rp_copy_args *a,
                        const char **why);
/* COPY's reply payload; decode: -1 for a field out of range, or an
 * error and a stage that disagree.
 */
void rp_copy_reply_encode (uint32_t error, uint32_t stage, uint32_t flags,
                           void *buf);
int rp_copy_reply_decode (const void *buf, uint32_t *error, uint32_t *stage,
                          uint32_t *flags, const char **why);

static inline int
rp_is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

#endif /* RP_CODEC_H */
