/* A session is one client connection's protocol state: the handshake
 * (HELLO, then AUTH when the server has a cluster key), the owner it
 * attaches to, the frame loop and the execution of every request
 * against the store.  It knows nothing of sockets.
 *
 * Its transport (server.c in the daemon, tests/fuzz/fuzz_frames.c
 * under the fuzzer) owns the bytes: it hands the session everything
 * received and not yet consumed with session_process, sends what
 * session_take_output returns, and closes the connection when the
 * session sets close_why.  Keeping libuv out of this file is what lets
 * the protocol be driven byte by byte, in any split, without a network.
 *
 * Single-threaded: every call comes from the thread that owns the
 * session_core (the event loop in the daemon).
 */
#ifndef MS_SESSION_H
#define MS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "log.h"
#include "rampool/protocol.h"
#include "settings.h"
#include "stats.h"
#include "store.h"

struct session;
struct extent;

/* What a session's connection does for it: server.c's for TCP, rdma.c's
 * for RDMA, the fuzzer's for its fake transport.  Set right after
 * session_init.
 */
struct session_ops {
  /* Close the connection (fencing, the handshake deadline, shutdown):
   * set s->is_closing at once; session_fini comes later.  Over RDMA
   * the queue pair is in the error state when this returns, so nothing
   * in flight on it can land afterwards (fencing relies on it).
   */
  void (*close) (struct session *s);
  /* s has just joined its owner (HELLO without a key, AUTH with one):
   * RDMA grants remote access to its queue pair now, before the reply
   * goes out.  -1 (with the reason logged) refuses the join.  NULL: no
   * action.
   */
  int (*joined) (struct session *s);
  /* ALLOC made extent e for s's owner: make it reachable one-sided
   * (RDMA: register it in the owner's protection domain, setting
   * e->remote for the store to release) and set *rkey.  0, or -1 with
   * errno (the extent is then freed and the ALLOC answered with that
   * error).  NULL: nothing to do (TCP; rkey 0).
   */
  int (*registered) (struct session *s, struct extent *e, uint32_t *rkey);
  /* Replies or notices were added to s->obuf outside session_process
   * (session_notice): send them.
   */
  void (*kick) (struct session *s);
};

/* The most reply bytes one frame can produce: a READ of RP_MAX_PAYLOAD
 * bytes.  A transport must offer at least this much room (out_room) for
 * every frame to be executable.
 */
#define SESSION_REPLY_MAX (sizeof (struct rp_reply_hdr) + RP_MAX_PAYLOAD)

/* Large READ replies (at least SESSION_REF_MIN bytes) a session may
 * leave uncopied in its output at once, when the transport allows it
 * (may_refer): the transport hands the kernel the region bytes
 * themselves (session_output_iov), saving a copy of each.
 */
#define SESSION_REFS 8
#define SESSION_REF_MIN (64u * 1024)

/* Why the last session_process call returned. */
enum session_stop {
  SESSION_STOP_INPUT,   /* no whole frame left: wants more bytes */
  SESSION_STOP_ROOM,    /* the next frame's reply (need_room bytes)
                           does not fit in out_room */
  SESSION_STOP_TURN,    /* max_frames or max_bytes reached, whole
                           frames left: call again on a later turn */
  SESSION_STOP_CLOSE,   /* close_why set, or is_closing */
};

/* What every session of one server shares.  Filled by the transport
 * before the first session_init; the transport also closes the store.
 */
struct session_core {
  struct store store;             /* region and extent table, owned */
  const struct settings *st;      /* not owned; outlives the core */
  uint8_t incarnation[16];        /* random per server start, sent in
                                     HELLO and STAT replies */
  uint64_t start_ms;              /* rp_now_ms () at start (STAT uptime) */
  struct session *sessions;       /* every session not yet finished,
                                     newest first (fencing, shutdown) */
  uint32_t nsessions;             /* length of that list: connections
                                     open now, reported by STAT */
  struct ms_stats stats;          /* counters (stats.h) */
  enum rp_state state;            /* serving, shrinking, draining
                                     (reclaim.c sets it); STAT says it,
                                     and ALLOC is refused while draining */
  /* DRAIN (or SIGUSR2): empty this server within deadline_ms (0: the
   * default).  reclaim.c's; NULL refuses DRAIN with EPERM.
   */
  int (*drain) (struct session_core *core, uint64_t deadline_ms);
  /* A session just joined its owner: tell it what it must know (a
   * drain in progress).  NULL: nothing.
   */
  void (*joined) (struct session_core *core, struct session *s);
  void *reclaim;                  /* reclaim.c's state, for the hooks */
  /* COPY (peer.c): start copying req's range of s's extent to the
   * target in a.  0: answered with session_copy_done (later, or
   * already within the call when the link failed at once); -1 with
   * errno (EBUSY: too many in progress; ENOMEM) to answer now.  NULL:
   * COPY is off (--peer-copies 0), answered EPERM and not announced.
   */
  int (*copy) (struct session_core *core, struct session *s,
               const struct rp_req *req, const struct rp_copy_args *a);
  /* s is going away with copies in progress: stop them (their
   * session_copy_done never comes).
   */
  void (*copy_cancel) (struct session_core *core, struct session *s);
  void *peer;                     /* peer.c's state, for the hooks */
};

struct session {
  struct session_core *core;      /* not owned */
  const struct session_ops *ops;  /* the connection's, not owned */
  bool is_one_sided;              /* READ and WRITE move their data
                                     one-sided (RDMA): as frames they are
                                     a protocol error */
  uint32_t list_max;              /* a LIST answers at most this many
                                     handles (RDMA: what fits a message);
                                     0 = RP_LIST_MAX_HANDLES */
  struct session *prev, *next;    /* core->sessions */
  struct owner *owner;            /* NULL until HELLO (and AUTH with a
                                     key); holds one of its nconns */
  bool is_hello_done;
  uint32_t version;               /* from HELLO: 3 or 4 */
  bool is_peer;                   /* HELLO said RP_HELLO_PEER: another
                                     memserver's COPY link (protocol.h) */
  bool is_quiet;                  /* HELLO said RP_HELLO_QUIET: no
                                     notices on it */
  uint32_t ncopies;               /* COPYs started and not answered */
  uint16_t cur_op;                /* the op executing, for the counters */
  bool is_processing;             /* inside session_process_turn */
  bool is_rejected;               /* refused HELLO/AUTH: the next frame
                                     closes */
  uint8_t owner_id[16];           /* from HELLO */
  uint64_t fence;                 /* from HELLO: the client's generation */
  uint8_t client_nonce[32];       /* from HELLO */
  uint8_t server_nonce[32];       /* ours, for this connection */
  uint8_t *obuf;                  /* replies not yet taken, owned */
  size_t olen;                    /* bytes of replies in obuf */
  size_t ocap;                    /* bytes allocated at obuf */
  bool may_refer;                 /* set by the transport: large READ
                                     replies may refer to the region
                                     (session_output_iov) */
  unsigned nrefs;                 /* READ payloads not yet copied into
                                     obuf: refs[0..nrefs) */
  struct session_ref {
    size_t at;                    /* where in obuf the payload belongs */
    const uint8_t *src;           /* the region bytes */
    uint32_t len;
  } refs[SESSION_REFS];
  bool is_closing;                /* set by the transport: the connection
                                     is going away, execute nothing more */
  const char *close_why;          /* set by the session: close the
                                     connection, unsent replies dropped;
                                     a static string, already logged */
  char peer[64];                  /* "HOST:PORT" for log lines, set by
                                     the transport */
  enum session_stop stop;         /* why the last session_process call
                                     returned */
  size_t need_room;               /* reply bytes the next frame needs
                                     (with obuf empty), when stop is
                                     SESSION_STOP_ROOM */
  unsigned turn_frames;           /* frames executed by the last call */
  uint64_t turn_bytes;            /* region bytes it touched: READ,
                                     WRITE, ZERO counts, ALLOC and FREE
                                     sizes (mlock populates, madvise
                                     drops) */
  size_t out_limit;               /* out_room of the call in progress:
                                     obuf never grows past it */
  uint64_t start_ms;              /* when the connection came (rp_now_ms):
                                     the handshake must finish within
                                     SESSION_HANDSHAKE_MS */
};

/* A connection that has not completed HELLO (and AUTH) by then is
 * closed: idle unauthenticated peers must not hold connection slots.
 */
#define SESSION_HANDSHAKE_MS 10000

/* Start a session on core (adds it to core->sessions).  Cannot fail:
 * nothing is allocated until the first reply.
 */
void session_init (struct session *s, struct session_core *core);

/* Detach the owner, leave core->sessions and free the output buffer.
 * The transport calls it once the connection is gone.
 */
void session_fini (struct session *s);

/* Parse and execute the complete frames at the start of buf[0..len),
 * in order.  Returns the bytes consumed, always whole frames; the
 * caller keeps the rest and passes it again, followed by what arrives
 * next.  A frame is executed only if the most its reply can take fits
 * in what is left of out_room (obuf never holds more than out_room
 * bytes: the transport's budget for replies is exact); otherwise the
 * call stops before it with stop = SESSION_STOP_ROOM and need_room set.
 * At most max_frames frames are executed, and no frame after the one
 * that brings turn_bytes to max_bytes (SESSION_STOP_TURN): so one
 * client cannot hold the event loop for a whole read's worth of
 * frames.  Sets close_why instead when the peer breaks the protocol
 * or no memory is left for a reply.
 */
size_t session_process_turn (struct session *s, const uint8_t *buf,
                             size_t len, size_t out_room,
                             unsigned max_frames, uint64_t max_bytes);

/* session_process_turn without a turn limit. */
size_t session_process (struct session *s, const uint8_t *buf, size_t len,
                        size_t out_room);

/* A WRITE's payload received straight into the region, so a large
 * WRITE is copied once (socket to region) instead of twice (socket to
 * receive buffer to region).  For the frame at the start of buf, whose
 * header is whole and whose payload is not, session_write_place says
 * where that payload belongs if the frame is a WRITE of at least min
 * bytes that would run as it stands -- handshake done, extent the
 * owner's, range inside it -- and fills *req; NULL, and the frame
 * arrives whole and runs like any other.
 * Before each receive into that place the transport asks
 * session_write_holds whether it is still the extent's (a FREE, a
 * reclaim drop, a lease end or the connection closing may come in
 * between); once it is not, the rest of the payload is read and
 * dropped, so no byte lands in memory that is no longer the owner's.
 * When the payload is all in, session_write_landed answers the WRITE
 * as one frame of a turn, as session_process_turn would have: RP_OK if
 * it landed at dst, RP_ENOENT if dst is NULL (the extent went first,
 * as if its FREE had come before the WRITE).  Bytes received before a
 * connection closes stay where they landed: a client never counts a
 * WRITE it got no answer to, as for any WRITE in flight.
 */
uint8_t *session_write_place (struct session *s, const uint8_t *buf,
                              size_t len, uint32_t min, struct rp_req *req);
bool session_write_holds (struct session *s, const struct rp_req *req,
                          const uint8_t *dst);
void session_write_landed (struct session *s, const struct rp_req *req,
                           const uint8_t *dst, size_t out_room);

/* The replies as a gather list for writev(2): pieces of obuf and, for
 * READ replies still referring to the region, the region bytes (at
 * most 2 * SESSION_REFS + 1 entries; *n set).  Valid until the session
 * runs another frame: a transport that does not get all of it to the
 * kernel at once calls session_output_fill before it lets anything
 * else run.  The other ways to take the output fill it themselves.
 */
struct iovec;
void session_output_iov (const struct session *s, struct iovec *iov,
                         unsigned *n);

/* Copy what READ replies refer to into obuf: the output is then
 * self-contained.  A session does this itself before any frame that
 * changes region bytes (WRITE, ZERO, FREE), so a READ answers with
 * what was there when it ran.
 */
void session_output_fill (struct session *s);

/* Hand the replies produced so far to the caller, who frees them;
 * *len is their size.  NULL (and *len 0) when there are none.
 */
uint8_t *session_take_output (struct session *s, size_t *len);

/* The same without an allocation on either side: the caller gets the
 * replies (*len bytes in a buffer of *cap) and gives the session buf
 * (cap bytes, or NULL and 0) as its new, empty output buffer.  For a
 * transport that recycles the buffers it has finished writing.
 */
uint8_t *session_swap_output (struct session *s, uint8_t *buf, size_t cap,
                              size_t *len, size_t *oldcap);

/* The transport sent every reply in obuf itself: empty it, keeping the
 * buffer for the next ones unless it grew past SESSION_OBUF_KEEP.
 */
void session_output_sent (struct session *s);

/* An output buffer larger than this is not kept between turns (a burst
 * of large READs must not leave megabytes idle on every connection).
 */
#define SESSION_OBUF_KEEP (256u * 1024)

/* Send a notice (protocol.h) to s's owner on this connection: kind,
 * its deadline and, for RECLAIM, n <= RP_NOTICE_MAX_HANDLES handles.
 * 0, or -1 (no memory: the connection is closed).  The transport sends
 * it at once (ops->kick).
 */
int session_notice (struct session *s, uint32_t kind, uint64_t deadline_ms,
                    const uint64_t *handles, uint32_t n);

/* The COPY `id` started by core->copy ended: answer it (error, stage
 * and flags as in struct rp_copy_reply) and send the reply at once.
 */
void session_copy_done (struct session *s, uint64_t id, uint32_t error,
                        uint32_t stage, uint32_t flags);

/* HELLO went through on a server with a key, but no AUTH yet: a peer
 * that leaves now most likely did not accept our proof.
 */
bool session_is_awaiting_auth (const struct session *s);

/* The peer closed the connection: log it, as a warning naming the
 * likely cause if it left while we waited for its AUTH (a client with
 * another cluster key, or none, refuses our proof and leaves), else at
 * debug level.  For every transport.
 */
void session_log_peer_closed (const struct session *s);

#endif /* MS_SESSION_H */
