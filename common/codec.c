/* Frame codec.  See codec.h.  Every multi-byte field goes through
 * htole / letoh here and nowhere else.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "codec.h"

void
rp_req_encode (const struct rp_req *req, void *buf)
{
  struct rp_req_hdr h = {
    .magic = htole32 (RP_REQ_MAGIC),
    .op = htole16 (req->op),
    .flags = htole16 (req->flags),
    .id = htole64 (req->id),
    .handle = htole64 (req->handle),
    .offset = htole64 (req->offset),
    .count = htole32 (req->count),
    .length = htole32 (req->length),
  };
  memcpy (buf, &h, sizeof h);
}

void
rp_reply_encode (const struct rp_reply *reply, void *buf)
{
  struct rp_reply_hdr h = {
    .magic = htole32 (RP_REPLY_MAGIC),
    .error = htole32 (reply->error),
    .id = htole64 (reply->id),
    .free_bytes = htole64 (reply->free_bytes),
    .length = htole32 (reply->length),
    .reserved = 0,
  };
  memcpy (buf, &h, sizeof h);
}

/* Per-op shape of a valid request. */
static int
codec_check_shape (const struct rp_req *r, const char **why)
{
  switch (r->op) {
  case RP_OP_HELLO:
    if (r->length != sizeof (struct rp_hello_req)) {
      *why = "HELLO payload length";
      return -1;
    }
    if (r->handle || r->offset || r->count) {
      *why = "HELLO with non-zero handle/offset/count";
      return -1;
    }
    return 0;
  case RP_OP_AUTH:
    if (r->length != sizeof (struct rp_auth_req)) {
      *why = "AUTH payload length";
      return -1;
    }
    if (r->handle || r->offset || r->count) {
      *why = "AUTH with non-zero handle/offset/count";
      return -1;
    }
    return 0;
  case RP_OP_ALLOC:
    if (r->length || r->handle || r->count) {
      *why = "ALLOC with payload/handle/count";
      return -1;
    }
    if (!rp_is_power_of_2 (r->offset) ||
        r->offset < RP_MIN_EXTENT_SIZE || r->offset > RP_MAX_EXTENT_SIZE) {
      *why = "ALLOC size not a power of two in range";
      return -1;
    }
    return 0;
  case RP_OP_FREE:
    if (r->length || r->offset || r->count || r->handle == 0) {
      *why = "FREE shape";
      return -1;
    }
    return 0;
  case RP_OP_READ:
  case RP_OP_ZERO:
    if (r->length || r->handle == 0) {
      *why = "READ/ZERO with payload or no handle";
      return -1;
    }
    if (r->count == 0 || r->count > RP_MAX_PAYLOAD) {
      *why = "READ/ZERO count out of range";
      return -1;
    }
    if (r->offset >= RP_MAX_EXTENT_SIZE) {
      *why = "READ/ZERO offset out of range";
      return -1;
    }
    return 0;
  case RP_OP_WRITE:
    if (r->count || r->handle == 0) {
      *why = "WRITE with count or no handle";
      return -1;
    }
    if (r->length == 0 || r->length > RP_MAX_PAYLOAD) {
      *why = "WRITE length out of range";
      return -1;
    }
    if (r->offset >= RP_MAX_EXTENT_SIZE) {
      *why = "WRITE offset out of range";
      return -1;
    }
    return 0;
  case RP_OP_HOLD:
    if (r->length || r->offset || r->count || r->handle == 0) {
      *why = "HOLD shape";
      return -1;
    }
    return 0;
  case RP_OP_DRAIN:
    if (r->length || r->handle || r->count) {
      *why = "DRAIN with payload, handle or count";
      return -1;
    }
    if (r->offset > RP_DRAIN_MAX_MS) {
      *why = "DRAIN deadline out of range";
      return -1;
    }
    return 0;
  case RP_OP_LIST:
    if (r->length || r->handle) {
      *why = "LIST with payload or handle";
      return -1;
    }
    if (r->count == 0 || r->count > RP_LIST_MAX_HANDLES) {
      *why = "LIST count out of range";
      return -1;
    }
    return 0;
  case RP_OP_COPY:
    if (r->length != sizeof (struct rp_copy_req) || r->handle == 0) {
      *why = "COPY payload length or no handle";
      return -1;
    }
    if (r->count == 0 || r->count > RP_COPY_MAX_BYTES ||
        r->offset >= RP_MAX_EXTENT_SIZE) {
      *why = "COPY count or offset out of range";
      return -1;
    }
    return 0;
  case RP_OP_STAT:
  case RP_OP_PING:
    if (r->length || r->handle || r->offset || r->count) {
      *why = "STAT/PING with arguments";
      return -1;
    }
    return 0;
  default:
    *why = "unknown op";
    return -1;
  }
}

int
rp_req_decode (const void *buf, struct rp_req *req, const char **why)
{
  struct rp_req_hdr h;

  memcpy (&h, buf, sizeof h);
  if (le32toh (h.magic) != RP_REQ_MAGIC) {
    *why = "bad request magic";
    return -1;
  }
  req->op = le16toh (h.op);
  req->flags = le16toh (h.flags);
  req->id = le64toh (h.id);
  req->handle = le64toh (h.handle);
  req->offset = le64toh (h.offset);
  req->count = le32toh (h.count);
  req->length = le32toh (h.length);
  if (req->flags & ~(req->op == RP_OP_ALLOC ? RP_FLAG_SOLE : 0)) {
    *why = "reserved flags set";
    return -1;
  }
  return codec_check_shape (req, why);
}

int
rp_reply_decode (const void *buf, struct rp_reply *reply, const char **why)
{
  struct rp_reply_hdr h;

  memcpy (&h, buf, sizeof h);
  if (le32toh (h.magic) != RP_REPLY_MAGIC) {
    *why = "bad reply magic";
    return -1;
  }
  reply->error = le32toh (h.error);
  reply->id = le64toh (h.id);
  reply->free_bytes = le64toh (h.free_bytes);
  reply->length = le32toh (h.length);
  if (reply->error > RP_ERROR_MAX) {
    *why = "unknown reply error code";
    return -1;
  }
  if (reply->length > RP_MAX_PAYLOAD) {
    *why = "reply length out of range";
    return -1;
  }
  if (h.reserved != 0) {
    *why = "reply reserved field set";
    return -1;
  }
  return 0;
}

/* The one table of wire error <-> errno. */
static const struct {
  uint32_t wire;
  int err;
} codec_errors[] = {
  { RP_OK, 0 },
  { RP_EINVAL, EINVAL },
  { RP_ENOSPC, ENOSPC },
  { RP_ENOENT, ENOENT },
  { RP_EPROTO, EPROTO },
  { RP_EIO, EIO },
  { RP_ENOMEM, ENOMEM },
  { RP_EPERM, EPERM },
  { RP_EVERSION, EPROTONOSUPPORT },
  { RP_EBUSY, EBUSY },
};

int
rp_error_to_errno (uint32_t error)
{
  for (size_t i = 0; i < sizeof codec_errors / sizeof codec_errors[0]; i++)
    if (codec_errors[i].wire == error)
      return codec_errors[i].err;
  return EIO;
}

uint32_t
rp_errno_to_error (int err)
{
  for (size_t i = 0; i < sizeof codec_errors / sizeof codec_errors[0]; i++)
    if (codec_errors[i].err == err)
      return codec_errors[i].wire;
  return RP_EIO;
}

const char *
rp_op_name (uint16_t op)
{
  static const char *const names[] = {
    [RP_OP_HELLO] = "HELLO", [RP_OP_ALLOC] = "ALLOC", [RP_OP_FREE] = "FREE",
    [RP_OP_READ] = "READ", [RP_OP_WRITE] = "WRITE", [RP_OP_STAT] = "STAT",
    [RP_OP_PING] = "PING", [RP_OP_ZERO] = "ZERO", [RP_OP_AUTH] = "AUTH",
    [RP_OP_LIST] = "LIST", [RP_OP_HOLD] = "HOLD", [RP_OP_DRAIN] = "DRAIN",
    [RP_OP_COPY] = "COPY",
  };
  if (op < sizeof names / sizeof names[0] && names[op])
    return names[op];
  return "UNKNOWN";
}

void
rp_hello_reply_encode (const struct rp_hello_info *hi, void *buf)
{
  struct rp_hello_reply h = {
    .version = htole32 (hi->version),
    .capacity_bytes = htole64 (hi->capacity_bytes),
    .free_bytes = htole64 (hi->free_bytes),
    .max_payload = htole32 (hi->max_payload),
    .lease_ms = htole32 (hi->lease_ms),
    .flags = htole32 (hi->flags),
    .session = htole64 (hi->session),
  };
  memcpy (h.incarnation, hi->incarnation, sizeof h.incarnation);
  memcpy (h.server_nonce, hi->server_nonce, sizeof h.server_nonce);
  memcpy (h.server_proof, hi->server_proof, sizeof h.server_proof);
  memcpy (buf, &h, sizeof h);
}

int
rp_hello_reply_decode (const void *buf, struct rp_hello_info *hi,
                       const char **why)
{
  struct rp_hello_reply h;

  memcpy (&h, buf, sizeof h);
  hi->version = le32toh (h.version);
  memcpy (hi->incarnation, h.incarnation, sizeof hi->incarnation);
  hi->capacity_bytes = le64toh (h.capacity_bytes);
  hi->free_bytes = le64toh (h.free_bytes);
  hi->max_payload = le32toh (h.max_payload);
  hi->lease_ms = le32toh (h.lease_ms);
  hi->flags = le32toh (h.flags);
  hi->session = le64toh (h.session);
  memcpy (hi->server_nonce, h.server_nonce, sizeof hi->server_nonce);
  memcpy (hi->server_proof, h.server_proof, sizeof hi->server_proof);
  if (hi->flags & ~(RP_HELLO_AUTH | RP_HELLO_COPY) ||
      (hi->version < 4 && (hi->flags & RP_HELLO_COPY))) {
    *why = "HELLO unknown flags";
    return -1;
  }
  /* The session is named by whichever reply joins the owner. */
  if ((hi->flags & RP_HELLO_AUTH) ? hi->session != 0 : hi->session == 0) {
    *why = "HELLO session id missing or premature";
    return -1;
  }
  if (hi->free_bytes > hi->capacity_bytes) {
    *why = "HELLO free > capacity";
    return -1;
  }
  if (hi->max_payload < RP_MIN_EXTENT_SIZE ||
      hi->max_payload > RP_MAX_PAYLOAD) {
    *why = "HELLO max_payload out of range";
    return -1;
  }
  return 0;
}

void
rp_stat_reply_encode (const struct rp_stat_info *si, void *buf)
{
  struct rp_stat_reply s = {
    .capacity_bytes = htole64 (si->capacity_bytes),
    .used_bytes = htole64 (si->used_bytes),
    .owner_bytes = htole64 (si->owner_bytes),
    .extents = htole32 (si->extents),
    .owner_extents = htole32 (si->owner_extents),
    .clients = htole32 (si->clients),
    .owners = htole32 (si->owners),
    .uptime_ms = htole64 (si->uptime_ms),
    .limit_bytes = htole64 (si->limit_bytes),
    .state = htole32 (si->state),
  };
  memcpy (s.incarnation, si->incarnation, sizeof s.incarnation);
  memcpy (buf, &s, sizeof s);
}

int
rp_stat_reply_decode (const void *buf, struct rp_stat_info *si,
                      const char **why)
{
  struct rp_stat_reply s;

  memcpy (&s, buf, sizeof s);
  si->capacity_bytes = le64toh (s.capacity_bytes);
  si->used_bytes = le64toh (s.used_bytes);
  si->owner_bytes = le64toh (s.owner_bytes);
  si->extents = le32toh (s.extents);
  si->owner_extents = le32toh (s.owner_extents);
  si->clients = le32toh (s.clients);
  si->owners = le32toh (s.owners);
  si->uptime_ms = le64toh (s.uptime_ms);
  si->limit_bytes = le64toh (s.limit_bytes);
  si->state = le32toh (s.state);
  memcpy (si->incarnation, s.incarnation, sizeof si->incarnation);
  if (si->state > RP_STATE_DRAINED || s.reserved != 0 ||
      si->limit_bytes > si->capacity_bytes) {
    *why = "STAT state or limit out of range";
    return -1;
  }
  if (si->used_bytes > si->capacity_bytes ||
      si->owner_bytes > si->used_bytes ||
      si->owner_extents > si->extents) {
    *why = "STAT counters inconsistent";
    return -1;
  }
  return 0;
}

void
rp_auth_reply_encode (uint64_t session, void *buf)
{
  struct rp_auth_reply a = { .session = htole64 (session), .reserved = 0 };

  memcpy (buf, &a, sizeof a);
}

int
rp_auth_reply_decode (const void *buf, uint64_t *session, const char **why)
{
  struct rp_auth_reply a;

  memcpy (&a, buf, sizeof a);
  *session = le64toh (a.session);
  if (*session == 0 || a.reserved != 0) {
    *why = "AUTH reply without a session id, or reserved set";
    return -1;
  }
  return 0;
}

void
rp_list_reply_encode (uint64_t next_cursor, uint32_t nhandles, void *buf)
{
  struct rp_list_reply l = {
    .next_cursor = htole64 (next_cursor),
    .nhandles = htole32 (nhandles),
    .reserved = 0,
  };

  memcpy (buf, &l, sizeof l);
}

int
rp_list_reply_decode (const void *buf, size_t len, uint32_t max_handles,
                      uint64_t *next_cursor, uint32_t *nhandles,
                      const char **why)
{
  struct rp_list_reply l;

  if (len < sizeof l) {
    *why = "LIST reply shorter than its header";
    return -1;
  }
  memcpy (&l, buf, sizeof l);
  *next_cursor = le64toh (l.next_cursor);
  *nhandles = le32toh (l.nhandles);
  if (l.reserved != 0 || *nhandles > max_handles ||
      len != sizeof l + (size_t) *nhandles * 8) {
    *why = "LIST reply count does not match its length";
    return -1;
  }
  return 0;
}

uint64_t
rp_list_reply_handle (const void *buf, uint32_t i)
{
  le64 h;

  memcpy (&h, (const uint8_t *) buf + sizeof (struct rp_list_reply) + i * 8,
          sizeof h);
  return le64toh (h);
}

void
rp_notice_encode (const struct rp_notice *n, void *buf)
{
  struct rp_notice_hdr h = {
    .magic = htole32 (RP_NOTICE_MAGIC),
    .kind = htole32 (n->kind),
    .deadline_ms = htole64 (n->deadline_ms),
    .count = htole32 (n->count),
    .length = htole32 (n->count * 8),
    .reserved = 0,
  };

  memcpy (buf, &h, sizeof h);
}

int
rp_notice_decode (const void *buf, struct rp_notice *n, const char **why)
{
  struct rp_notice_hdr h;

  memcpy (&h, buf, sizeof h);
  if (le32toh (h.magic) != RP_NOTICE_MAGIC) {
    *why = "bad notice magic";
    return -1;
  }
  n->kind = le32toh (h.kind);
  n->deadline_ms = le64toh (h.deadline_ms);
  n->count = le32toh (h.count);
  n->length = le32toh (h.length);
  if ((n->kind != RP_NOTICE_RECLAIM && n->kind != RP_NOTICE_DRAIN) ||
      h.reserved != 0) {
    *why = "unknown notice kind, or reserved set";
    return -1;
  }
  if (n->deadline_ms > RP_DRAIN_MAX_MS) {
    *why = "notice deadline out of range";
    return -1;
  }
  if (n->count > RP_NOTICE_MAX_HANDLES || n->length != n->count * 8 ||
      (n->kind == RP_NOTICE_DRAIN && n->count != 0)) {
    *why = "notice count does not match its length or kind";
    return -1;
  }
  return 0;
}

bool
rp_frame_is_notice (const void *buf)
{
  le32 magic;

  memcpy (&magic, buf, sizeof magic);
  return le32toh (magic) == RP_NOTICE_MAGIC;
}

void
rp_copy_req_encode (const struct rp_copy_args *a, void *buf)
{
  struct rp_copy_req c = {
    .dst_handle = htole64 (a->dst_handle),
    .dst_offset = htole64 (a->dst_offset),
    .dst_fence = htole64 (a->dst_fence),
    .dst_session = htole64 (a->dst_session),
    .deadline_ms = htole32 (a->deadline_ms),
  };
  memcpy (c.dst_incarnation, a->dst_incarnation, sizeof c.dst_incarnation);
  memcpy (c.dst_addr, a->dst_addr, sizeof c.dst_addr);
  memcpy (buf, &c, sizeof c);
}

int
rp_copy_req_decode (const void *buf, struct rp_copy_args *a, const char **why)
{
  struct rp_copy_req c;
  size_t len;

  memcpy (&c, buf, sizeof c);
  a->dst_handle = le64toh (c.dst_handle);
  a->dst_offset = le64toh (c.dst_offset);
  a->dst_fence = le64toh (c.dst_fence);
  a->dst_session = le64toh (c.dst_session);
  a->deadline_ms = le32toh (c.deadline_ms);
  memcpy (a->dst_incarnation, c.dst_incarnation, sizeof a->dst_incarnation);
  len = strnlen (c.dst_addr, sizeof c.dst_addr);
  if (a->dst_handle == 0 || a->dst_session == 0) {
    *why = "COPY without a target handle or session";
    return -1;
  }
  if (a->dst_offset >= RP_MAX_EXTENT_SIZE) {
    *why = "COPY target offset out of range";
    return -1;
  }
  if (a->deadline_ms == 0 || a->deadline_ms > RP_COPY_MAX_DEADLINE_MS) {
    *why = "COPY deadline out of range";
    return -1;
  }
  if (c.reserved != 0) {
    *why = "COPY reserved field set";
    return -1;
  }
  if (len == 0 || len == sizeof c.dst_addr) {
    *why = "COPY target address empty or not terminated";
    return -1;
  }
  for (size_t i = len; i < sizeof c.dst_addr; i++)
    if (c.dst_addr[i] != 0) {
      *why = "COPY target address not zero-padded";
      return -1;
    }
  for (size_t i = 0; i < len; i++)
    if ((unsigned char) c.dst_addr[i] <= ' ' ||
        (unsigned char) c.dst_addr[i] >= 127) {
      *why = "COPY target address has a control or non-ASCII byte";
      return -1;
    }
  memcpy (a->dst_addr, c.dst_addr, sizeof a->dst_addr);
  return 0;
}

void
rp_copy_reply_encode (uint32_t error, uint32_t stage, uint32_t flags,
                      void *buf)
{
  struct rp_copy_reply r = {
    .error = htole32 (error),
    .stage = htole32 (stage),
    .flags = htole32 (flags),
  };
  memcpy (buf, &r, sizeof r);
}

int
rp_copy_reply_decode (const void *buf, uint32_t *error, uint32_t *stage,
                      uint32_t *flags, const char **why)
{
  struct rp_copy_reply r;

  memcpy (&r, buf, sizeof r);
  *error = le32toh (r.error);
  *stage = le32toh (r.stage);
  *flags = le32toh (r.flags);
  if (*error > RP_ERROR_MAX || *stage > RP_COPY_STAGE_ABORTED ||
      (*flags & ~RP_COPY_SENT) || r.reserved != 0) {
    *why = "COPY reply field out of range";
    return -1;
  }
  if ((*error == RP_OK) != (*stage == RP_COPY_STAGE_DONE)) {
    *why = "COPY reply error and stage disagree";
    return -1;
  }
  return 0;
}
