/* rampool wire protocol between librampool (client) and memserver.
 *
 * Every integer on the wire is LITTLE-ENDIAN.  The types below carry
 * that in their names (le16/le32/le64); they are plain integers in
 * memory and are converted with the htole/letoh functions at the edges
 * (codec.c).
 *
 * A connection is a byte stream of frames.  The client sends request
 * frames; the server sends reply frames.  A request frame is a fixed
 * 40-byte header followed by `length` payload bytes only for WRITE and
 * for the ops whose argument struct is listed below.  A reply frame is
 * a fixed 32-byte header followed by `length` payload bytes.
 *
 * Requests are pipelined: a client may send many requests without
 * waiting; the server may answer them in any order, and the reply
 * carries the request's `id` back unchanged.  The memserver in this
 * tree happens to execute one connection's requests in order (the
 * client relies on that for ordering overlapping writes to one extent,
 * see client/extent_map.h), and that in-order execution per connection IS
 * part of the protocol: "requests on one connection take effect in the
 * order they were sent".
 *
 * The first request on a connection must be HELLO; anything else
 * before HELLO closes the connection.  A server with a cluster key
 * then requires AUTH before anything else (mutual challenge-response,
 * see common/auth.h): the HELLO reply proves the server knows the key,
 * AUTH proves the client does.  See docs/protocol.md for the
 * full description of every op.
 */
#ifndef RAMPOOL_PROTOCOL_H
#define RAMPOOL_PROTOCOL_H

#include <stdint.h>

typedef uint16_t le16;
typedef uint32_t le32;
typedef uint64_t le64;

/* 2: HELLO with nonce and fence, AUTH.
 * 3: the owner session's id in the HELLO and AUTH replies (a client
 *    learns at every reconnect whether the server still holds its
 *    extents), LIST, the ALLOC reply's rkey and offset (for one-sided
 *    transports), notices (RECLAIM, DRAIN) with HOLD and DRAIN, and
 *    STAT's limit and state.
 * 4: COPY (one memserver writes a range of an extent straight into
 *    another's, for scattered recovery), announced by RP_HELLO_COPY,
 *    and RP_EBUSY.  A version-4 memserver still serves version-3
 *    clients (it answers in their version and never announces COPY to
 *    them); a version-4 client needs version-4 memservers, so
 *    memservers are upgraded first.
 */
#define RP_PROTOCOL_VERSION 4
#define RP_PROTOCOL_VERSION_MIN 3  /* oldest a memserver still serves */

#define RP_REQ_MAGIC   0x71505252u  /* "RRPq" as little-endian bytes */
#define RP_REPLY_MAGIC 0x72505252u  /* "RRPr" */

/* Largest payload of any frame: a READ or WRITE moves at most this many
 * bytes.  The client splits larger I/O.  Bounded so that both sides can
 * preallocate their buffers.
 */
#define RP_MAX_PAYLOAD (4u * 1024 * 1024)

/* Extent sizes a server accepts in ALLOC: powers of two in this range. */
#define RP_MIN_EXTENT_SIZE (64u * 1024)
#define RP_MAX_EXTENT_SIZE (1u << 30)

enum rp_op {
  RP_OP_HELLO = 1,   /* payload: struct rp_hello_req; reply: rp_hello_reply */
  RP_OP_ALLOC = 2,   /* extent size in `offset`, RP_FLAG_SOLE; reply:
                        rp_alloc_reply                                      */
  RP_OP_FREE  = 3,   /* handle; no payload                                  */
  RP_OP_READ  = 4,   /* handle, offset, length; reply payload = data        */
  RP_OP_WRITE = 5,   /* handle, offset, length; request payload = data      */
  RP_OP_STAT  = 6,   /* no payload; reply: struct rp_stat_reply             */
  RP_OP_PING  = 7,   /* no payload; empty reply (heartbeat)                 */
  RP_OP_ZERO  = 8,   /* handle, offset, count in `count`; no payload        */
  RP_OP_AUTH  = 9,   /* payload: struct rp_auth_req; reply: rp_auth_reply   */
  RP_OP_LIST  = 10,  /* cursor in `offset`, max handles in `count`;
                        reply: rp_list_reply + handles                      */
  RP_OP_HOLD  = 11,  /* handle; no payload: keep this copy, which a notice
                        asked back, until the client FREEs it            */
  RP_OP_DRAIN = 12,  /* deadline in ms in `offset` (0: the server's
                        default); no payload: empty this server          */
  RP_OP_COPY  = 13,  /* version 4: source handle, offset, byte count in
                        `count`; payload: struct rp_copy_req; reply:
                        struct rp_copy_reply                             */
};
#define RP_OP_MAX RP_OP_COPY

/* Request flags (rp_req_hdr.flags); any other bit, or a flag on another
 * op, is a malformed header.
 */
#define RP_FLAG_SOLE 1u  /* ALLOC: the client keeps no other copy of this
                            extent (replicas=1): reclaim never drops it
                            without the operator's say (--reclaim-sole) */

/* Wire error codes.  Mapped to errno in exactly one table
 * (common/codec.c: rp_error_to_errno / rp_errno_to_error).
 */
enum rp_error {
  RP_OK       = 0,
  RP_EINVAL   = 1,   /* malformed or out-of-range argument        */
  RP_ENOSPC   = 2,   /* no room for this ALLOC                    */
  RP_ENOENT   = 3,   /* no such handle (or not yours)             */
  RP_EPROTO   = 4,   /* protocol violation (e.g. no HELLO first)  */
  RP_EIO      = 5,   /* server-side failure                       */
  RP_ENOMEM   = 6,   /* server cannot lock/allocate memory now    */
  RP_EPERM    = 7,   /* not permitted (auth, limits)              */
  RP_EVERSION = 8,   /* unsupported protocol version              */
  RP_EBUSY    = 9,   /* version 4, COPY only: too many copies in
                        progress on this server now; try later     */
};
#define RP_ERROR_MAX RP_EBUSY

/* Request header: 40 bytes. */
struct rp_req_hdr {
  le32 magic;        /* RP_REQ_MAGIC */
  le16 op;           /* enum rp_op */
  le16 flags;        /* must be 0 (reserved for future use) */
  le64 id;           /* opaque to the server, echoed in the reply */
  le64 handle;       /* extent handle (FREE/READ/WRITE/ZERO), else 0 */
  le64 offset;       /* byte offset in the extent (READ/WRITE/ZERO),
                        or the extent size in bytes for ALLOC */
  le32 count;        /* bytes to read (READ), to zero (ZERO), else 0 */
  le32 length;       /* payload bytes that follow this header */
};
_Static_assert (sizeof (struct rp_req_hdr) == 40, "rp_req_hdr size");

/* Reply header: 32 bytes. */
struct rp_reply_hdr {
  le32 magic;        /* RP_REPLY_MAGIC */
  le32 error;        /* enum rp_error */
  le64 id;           /* the request's id */
  le64 free_bytes;   /* server's free donated bytes now (piggy-backed
                        so clients place without polling) */
  le32 length;       /* payload bytes that follow */
  le32 reserved;     /* 0 */
};
_Static_assert (sizeof (struct rp_reply_hdr) == 32, "rp_reply_hdr size");

/* HELLO request payload: 64 bytes. */
struct rp_hello_req {
  le32 version;          /* RP_PROTOCOL_VERSION */
  le32 flags;            /* version 4: RP_HELLO_PEER, RP_HELLO_QUIET; 0
                            in version 3
                            (where a server ignores it) */
  uint8_t owner[16];     /* random id of the client session that owns
                            extents; a reconnect with the same owner id
                            within the lease regains its extents */
  uint8_t client_nonce[32]; /* fresh random challenge for the server */
  le64 fence;            /* the client's connection generation for this
                            server, raised at every reconnect: the server
                            closes the owner's connections of an older
                            generation (and drops what they still carry)
                            and refuses new ones, so a request delayed in
                            the network can never land after a repair */
};
_Static_assert (sizeof (struct rp_hello_req) == 64, "rp_hello_req size");

/* rp_hello_req.flags (version 4): this connection is a memserver
 * running COPYs for the owner (peer.c), not the owner itself: it joins
 * only an owner that has a connection of its own here, at exactly its
 * generation (it never fences the owner), does not count against
 * --max-client-connections, and is never sent a notice (the owner must
 * hear those on its own connections).
 */
#define RP_HELLO_PEER 1u
/* rp_hello_req.flags (version 4): this connection of the owner's is for
 * data (a client's lane): notices go to another of its connections.
 * Otherwise a connection like any other.
 */
#define RP_HELLO_QUIET 2u

#define RP_HELLO_AUTH 1u  /* rp_hello_reply.flags: key required, proof set */
#define RP_HELLO_COPY 2u  /* rp_hello_reply.flags, version 4: this server
                             takes COPY requests */

/* HELLO reply payload: 120 bytes. */
struct rp_hello_reply {
  le32 version;          /* version the server speaks */
  le32 flags;            /* RP_HELLO_AUTH */
  uint8_t incarnation[16]; /* new random value at every server start */
  le64 capacity_bytes;   /* donated bytes in all */
  le64 free_bytes;       /* donated bytes not allocated to anyone */
  le32 max_payload;      /* largest READ/WRITE payload accepted */
  le32 lease_ms;         /* how long extents of a disconnected owner are
                            kept before they are freed */
  uint8_t server_nonce[32]; /* fresh random challenge for the client */
  uint8_t server_proof[32]; /* HMAC proving the server holds the key */
  le64 session;          /* the owner session this connection joined,
                            never 0; 0 when AUTH must follow (the AUTH
                            reply carries it then).  A new value for the
                            same owner id means the old session expired
                            and every extent it held is gone. */
};
_Static_assert (sizeof (struct rp_hello_reply) == 120, "rp_hello_reply size");

/* AUTH request payload: 32 bytes. */
struct rp_auth_req {
  uint8_t client_proof[32]; /* HMAC proving the client holds the key */
};
_Static_assert (sizeof (struct rp_auth_req) == 32, "rp_auth_req size");

/* AUTH reply payload: 16 bytes. */
struct rp_auth_reply {
  le64 session;          /* as rp_hello_reply.session; never 0 */
  le64 reserved;         /* 0 */
};
_Static_assert (sizeof (struct rp_auth_reply) == 16, "rp_auth_reply size");

/* ALLOC reply payload: 16 bytes. */
struct rp_alloc_reply {
  le64 handle;           /* unguessable; valid only for this owner */
  le32 rkey;             /* one-sided transports (RDMA): the key of the
                            extent's memory for this session; 0 over TCP */
  le32 offset_64k;       /* where the extent lies in the server's region,
                            in 64 KiB units (one-sided transports address
                            it from the region's base) */
};
_Static_assert (sizeof (struct rp_alloc_reply) == 16, "rp_alloc_reply size");

/* What a server is doing with its donation (rp_stat_reply.state). */
enum rp_state {
  RP_STATE_SERVING = 0,  /* taking ALLOCs */
  RP_STATE_SHRINKING = 1, /* giving memory back to its host: asked owners
                            to move extents away (RECLAIM notices) */
  RP_STATE_DRAINING = 2, /* emptying itself before it stops: refuses
                            ALLOC, asked every owner to move everything */
  RP_STATE_DRAINED = 3,  /* drained empty: stops RP_DRAINED_LINGER_MS
                            later (so that whoever follows the drain
                            sees it end well) */
};
#define RP_DRAINED_LINGER_MS 3000

/* STAT reply payload: 80 bytes. */
struct rp_stat_reply {
  le64 capacity_bytes;   /* donated bytes in all */
  le64 used_bytes;       /* bytes allocated to extents (all owners) */
  le64 owner_bytes;      /* bytes allocated to the asking owner */
  le32 extents;          /* extents allocated (all owners) */
  le32 owner_extents;    /* extents allocated to the asking owner */
  le32 clients;          /* connections open now */
  le32 owners;           /* distinct owners holding extents */
  le64 uptime_ms;        /* since server start */
  uint8_t incarnation[16];
  le64 limit_bytes;      /* what it donates now: capacity_bytes, or less
                            when --size auto has shrunk it */
  le32 state;            /* enum rp_state */
  le32 reserved;         /* 0 */
};
_Static_assert (sizeof (struct rp_stat_reply) == 80, "rp_stat_reply size");

/* LIST: the asking owner's handles, a bounded slice of the server's
 * extent table per request.  `offset` is the cursor (0 to start),
 * `count` the most handles wanted (1..RP_LIST_MAX_HANDLES).  The
 * reply is struct rp_list_reply followed by `nhandles` le64 handles;
 * the scan continues at `next_cursor`, and is complete when that is
 * RP_LIST_END.  A server examines at most RP_LIST_SCAN_SLOTS table
 * slots per request, so one LIST costs bounded work however large the
 * table; a reply may carry no handle and still not be the end.
 */
#define RP_LIST_MAX_HANDLES 8192
#define RP_LIST_SCAN_SLOTS 65536
#define RP_LIST_END UINT64_MAX

/* LIST reply payload header: 16 bytes, then nhandles le64. */
struct rp_list_reply {
  le64 next_cursor;      /* where the next LIST continues, or RP_LIST_END */
  le32 nhandles;         /* handles that follow, <= the request's count */
  le32 reserved;         /* 0 */
};
_Static_assert (sizeof (struct rp_list_reply) == 16, "rp_list_reply size");

/* A notice: a frame a server sends unasked, on a connection that has
 * joined its owner, to ask that owner for memory back.  Its header has
 * the size of a reply header and its own magic, so a client reading
 * reply headers tells the two apart by the first four bytes.
 *   RECLAIM: move the `count` extents named after the header (le64
 *            handles) to other servers (copy, then FREE here) within
 *            deadline_ms; what is still here then is dropped, but for
 *            copies the client HOLDs (it has no other) and RP_FLAG_SOLE
 *            ones.
 *   DRAIN:   the server is emptying itself: move every extent away
 *            within deadline_ms; it refuses ALLOC from now on.
 */
#define RP_NOTICE_MAGIC 0x6e505252u  /* "RRPn" */
enum rp_notice_kind {
  RP_NOTICE_RECLAIM = 1,
  RP_NOTICE_DRAIN = 2,
};
#define RP_NOTICE_MAX_HANDLES 500  /* 32 + 8 * 500 fits RP_RDMA_MAX_MSG */
#define RP_DRAIN_MAX_MS (24u * 3600 * 1000)  /* a DRAIN's deadline, at most */

struct rp_notice_hdr {
  le32 magic;            /* RP_NOTICE_MAGIC */
  le32 kind;             /* enum rp_notice_kind */
  le64 deadline_ms;      /* from when it was sent */
  le32 count;            /* handles that follow (RECLAIM), else 0 */
  le32 length;           /* payload bytes: 8 * count */
  le64 reserved;         /* 0 */
};
_Static_assert (sizeof (struct rp_notice_hdr) == 32, "rp_notice_hdr size");

/* COPY (version 4, docs/protocol.md): the server that holds the
 * source extent (the request's handle, from `offset`, `count` bytes)
 * connects to the target memserver as the requesting owner (HELLO with
 * the same owner id and the given fence, AUTH with its own cluster
 * key), checks that the target is the incarnation and owner session
 * the client knows, and WRITEs the bytes into the target extent.  The
 * client must not write either range until the COPY is answered.
 *
 * A COPY refused before anything was sent is answered with an error
 * and no payload (EINVAL, ENOENT, EPERM: COPY off here, EBUSY).  Once
 * it started, the reply is RP_OK with struct rp_copy_reply: `error`
 * says how it ended, and RP_COPY_SENT whether any byte may have
 * reached the target (then, on failure, the target extent's content is
 * unknown and a late WRITE may still land there: the client must not
 * count it until rewritten over a connection that fences this one, or
 * FREE it).
 */
#define RP_COPY_MAX_BYTES RP_MAX_EXTENT_SIZE  /* `count`, at most */
#define RP_COPY_ADDR_MAX 128                  /* dst_addr, with its NUL */
#define RP_COPY_MAX_DEADLINE_MS 600000u

struct rp_copy_req {
  le64 dst_handle;       /* the target extent (non-zero) */
  le64 dst_offset;       /* where in it the bytes go (< 1 GiB) */
  le64 dst_fence;        /* the client's connection generation there */
  le64 dst_session;      /* the client's owner session there (non-zero) */
  uint8_t dst_incarnation[16]; /* the target's, as the client knows it */
  le32 deadline_ms;      /* answer by then, from receipt (1..600000) */
  le32 reserved;         /* 0 (checked) */
  char dst_addr[RP_COPY_ADDR_MAX]; /* "HOST:PORT" or "[V6]:PORT" of the
                            target's TCP listener, NUL-terminated, the
                            rest of the field zero */
};
_Static_assert (sizeof (struct rp_copy_req) == 184, "rp_copy_req size");

#define RP_COPY_SENT 1u  /* rp_copy_reply.flags: bytes may have reached
                            the target */
enum rp_copy_stage {
  RP_COPY_STAGE_DONE = 0,      /* every byte written and acknowledged */
  RP_COPY_STAGE_CONNECT = 1,   /* resolving or connecting to the target */
  RP_COPY_STAGE_HANDSHAKE = 2, /* HELLO/AUTH refused, or the target is not
                                  the incarnation or session expected */
  RP_COPY_STAGE_WRITE = 3,     /* a WRITE refused, or the target lost */
  RP_COPY_STAGE_SOURCE = 4,    /* the source extent went away meanwhile */
  RP_COPY_STAGE_DEADLINE = 5,  /* deadline_ms passed */
  RP_COPY_STAGE_ABORTED = 6,   /* this server is stopping */
};

/* COPY reply payload (with RP_OK): 16 bytes. */
struct rp_copy_reply {
  le32 error;            /* enum rp_error: RP_OK when every byte landed */
  le32 stage;            /* enum rp_copy_stage: where it ended */
  le32 flags;            /* RP_COPY_SENT */
  le32 reserved;         /* 0 */
};
_Static_assert (sizeof (struct rp_copy_reply) == 16, "rp_copy_reply size");

/* The RDMA binding (docs/protocol.md section 13).  A connection is a
 * reliable-connected queue pair set up with librdmacm.  Every frame but
 * the data of READ and WRITE travels two-sided, one frame per message
 * (SEND/RECV); READ and WRITE move their data one-sided
 * (IBV_WR_RDMA_READ/WRITE) into the extent's memory, addressed by the
 * ALLOC reply's rkey and offset_64k (remote address = offset_64k *
 * 65536 + offset in the extent: the server registers each extent with
 * that I/O virtual address), and have no frame at all.
 */
#define RP_RDMA_MAGIC 0x64505252u  /* "RRPd" */

/* Private data of the connect request: 32 bytes. */
struct rp_rdma_connect {
  le32 magic;            /* RP_RDMA_MAGIC */
  le32 version;          /* RP_PROTOCOL_VERSION */
  uint8_t owner[16];     /* the session, as in HELLO: its queue pair is
                            made in that session's protection domain, with
                            no remote access until AUTH (or HELLO without
                            a key) has joined the session */
  le64 fence;            /* as in HELLO */
};
_Static_assert (sizeof (struct rp_rdma_connect) == 32, "rp_rdma_connect size");

/* Private data of the accept: 16 bytes. */
struct rp_rdma_accept {
  le32 magic;            /* RP_RDMA_MAGIC */
  le32 version;          /* RP_PROTOCOL_VERSION */
  le32 credits;          /* receive buffers the server keeps posted: at
                            most this many two-sided requests may be
                            unanswered at once */
  le32 max_msg;          /* largest request message the server receives,
                            bytes (RP_RDMA_MAX_REQ); its replies are at
                            most RP_RDMA_MAX_MSG */
};
_Static_assert (sizeof (struct rp_rdma_accept) == 16, "rp_rdma_accept size");

/* Private data of a reject: 8 bytes. */
struct rp_rdma_reject {
  le32 magic;            /* RP_RDMA_MAGIC */
  le32 reason;           /* enum rp_error: EVERSION, EPROTO, ENOMEM, EPERM */
};
_Static_assert (sizeof (struct rp_rdma_reject) == 8, "rp_rdma_reject size");

/* Largest two-sided message either way: a reply header and a LIST
 * reply of RP_RDMA_LIST_MAX handles (the largest reply; HELLO's is
 * 152 bytes).  A server clamps LIST's count to RP_RDMA_LIST_MAX.
 */
#define RP_RDMA_MAX_MSG 4096u
#define RP_RDMA_LIST_MAX ((RP_RDMA_MAX_MSG - 32 - 16) / 8)
/* Largest request message: every request frame but WRITE's (one-sided)
 * is at most a header and a COPY request (224 bytes).
 */
#define RP_RDMA_MAX_REQ 256u
_Static_assert (sizeof (struct rp_req_hdr) + sizeof (struct rp_copy_req) <=
                RP_RDMA_MAX_REQ, "a COPY frame fits an RDMA request");

#endif /* RAMPOOL_PROTOCOL_H */
