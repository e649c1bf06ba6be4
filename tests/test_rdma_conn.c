/* test_rdma_conn: the RDMA transport (client/transport_rdma.c) driven
 * through conn.h against a real memserver with --listen-rdma, below the
 * engine, so each rule of the binding is checked by itself.  Needs an
 * RDMA device (Soft-RoCE will do): it runs in the RDMA guest
 * (tests/vm/run-rdma.sh), not in make check.
 *
 * Usage: test_rdma_conn rdma://ADDR:PORT [PID]
 * (a server without a key; PID: its process, stopped in step 5 so that
 * its PINGs are surely in flight when the connection is killed)
 *
 * Checked, in order:
 *  1. HELLO, ALLOC; a 1 MiB one-sided WRITE read back one-sided;
 *  2. ordering on one connection, all in flight at once: WRITEs then
 *     READs of the same ranges see the WRITEs; a two-sided ZERO then a
 *     READ of that range sees zeros (one-sided after two-sided);
 *  3. more two-sided requests than the server has credits (PINGs), and
 *     more READ bytes than the bounce pool holds, all in flight: they
 *     all complete;
 *  4. a READ of an extent after its FREE (pipelined): answered ENOENT
 *     (the server's device refused it), and the connection then ends;
 *  5. a new connection (a higher fence): calls in flight when it is
 *     killed all complete, those not answered with EIO, and nothing
 *     hangs;
 *  6. the session outlives its connections: a third one FREEs the
 *     extent the second allocated;
 *  7. fencing: a one-sided WRITE posted on a connection right after a
 *     newer one (a higher fence) was answered must not land: it fails
 *     or is refused, and the newer connection reads the old data;
 *  8. fencing enforced by the server alone: as 7, but the old
 *     connection's receive side is held (parked in a reply callback)
 *     from before the newer HELLO until its WRITE has left this host's
 *     device (the devices' sent_pkts counters), so the client cannot
 *     know of the fence and posts the WRITE on a queue pair it still
 *     holds ready: only the memserver's queue pair in the error state
 *     stops it.  The WRITE fails and the newer connection reads the
 *     old data.
 * Prints PASS, or FAIL and why (exit 1).
 */
#include <config.h>

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "transport.h"
#include "util.h"

#define NSLOTS 64
#define TIMEOUT_MS 10000
#define EXTENT (1u << 20)

static const char *addr;
static char host[128], port[16];
static uint8_t owner[16];

static void __attribute__ ((noreturn, format (printf, 1, 2)))
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "test_rdma_conn: FAIL: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (1);
}

/* Connect c (fence) and say HELLO. */
static void
open_conn (struct conn *c, uint64_t fence, uint64_t buffer_bytes)
{
  const char *hostport;
  const struct transport_ops *ops = transport_find (addr, &hostport, NULL);
  struct transport_hello th = { .fence = fence, .buffer_bytes = buffer_bytes };
  struct rp_hello_req h;
  struct rp_hello_reply reply;
  struct rp_hello_info hi;
  struct conn_call call;
  const char *why;
  char err[256];

  if (ops == NULL || strcmp (ops->scheme, "rdma") != 0)
    die ("'%s' is not rdma://HOST:PORT", addr);
  if (conn_init (c, addr, ops, NSLOTS) == -1)
    die ("conn_init: %s", strerror (errno));
  memcpy (th.owner, owner, 16);
  if (conn_connect (c, host, port, TIMEOUT_MS, &th, err, sizeof err) == -1)
    die ("connect: %s", err);
  memset (&h, 0, sizeof h);
  h.version = htole32 (RP_PROTOCOL_VERSION);
  memcpy (h.owner, owner, 16);
  h.fence = htole64 (fence);
  memset (&call, 0, sizeof call);
  call.req.op = RP_OP_HELLO;
  call.req.length = sizeof h;
  call.payload = &h;
  call.rbuf = &reply;
  call.rcap = sizeof reply;
  if (conn_roundtrip (c, &call, TIMEOUT_MS) == -1)
    die ("HELLO: %s", strerror (errno));
  if (rp_hello_reply_decode (&reply, &hi, &why) == -1)
    die ("HELLO reply: %s", why);
  if (hi.flags & RP_HELLO_AUTH)
    die ("the server wants a key: start it without --key-file");
  conn_set_ready (c);
}

struct extent {
  uint64_t handle;
  uint32_t rkey, raddr_64k;
};

static struct extent
alloc_extent (struct conn *c)
{
  struct rp_alloc_reply reply;
  struct conn_call call;
  struct extent e;

  memset (&call, 0, sizeof call);
  call.req.op = RP_OP_ALLOC;
  call.req.offset = EXTENT;
  call.rbuf = &reply;
  call.rcap = sizeof reply;
  if (conn_roundtrip (c, &call, TIMEOUT_MS) == -1)
    die ("ALLOC: %s", strerror (errno));
  e.handle = le64toh (reply.handle);
  e.rkey = le32toh (reply.rkey);
  e.raddr_64k = le32toh (reply.offset_64k);
  if (e.rkey == 0)
    die ("ALLOC over RDMA gave no rkey");
  return e;
}

/* Step 8's gate: while armed, the first reply a connection with
 * on_free_bytes = gate_hold receives parks its receive side (which
 * delivers the reply, and also every completion and connection-manager
 * event of that connection) until the gate opens.
 */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_armed, gate_parked;

static void
gate_hold (struct conn *c, uint64_t free_bytes)
{
  (void) c;
  (void) free_bytes;
  pthread_mutex_lock (&gate_lock);
  if (gate_armed) {
    gate_parked = true;
    pthread_cond_broadcast (&gate_cond);
    while (gate_armed)
      pthread_cond_wait (&gate_cond, &gate_lock);
  }
  pthread_mutex_unlock (&gate_lock);
}

static void
gate_open (void)
{
  pthread_mutex_lock (&gate_lock);
  gate_armed = false;
  pthread_cond_broadcast (&gate_cond);
  pthread_mutex_unlock (&gate_lock);
}

/* Packets sent by every RDMA device of this host (the sum of their
 * ports' hw_counters/sent_pkts), or -1 if no device has that counter.
 */
static int64_t
sent_pkts (void)
{
  const char *top = "/sys/class/infiniband";
  DIR *d = opendir (top);
  struct dirent *de;
  int64_t sum = -1;

  if (d == NULL)
    return -1;
  while ((de = readdir (d)) != NULL) {
    char path[512];
    unsigned long long v;
    FILE *fp;

    if (de->d_name[0] == '.')
      continue;
    snprintf (path, sizeof path, "%s/%s/ports/1/hw_counters/sent_pkts", top,
              de->d_name);
    if ((fp = fopen (path, "r")) == NULL)
      continue;
    if (fscanf (fp, "%llu", &v) == 1)
      sum = (sum < 0 ? 0 : sum) + (int64_t) v;
    fclose (fp);
  }
  closedir (d);
  return sum;
}

/* A call of op on extent e, [off, off+len), data buf. */
static void
make_call (struct conn_call *call, const struct extent *e, uint16_t op,
           uint32_t off, uint32_t len, void *buf, struct conn_wait *w)
{
  memset (call, 0, sizeof *call);
  call->req.op = op;
  call->req.handle = e->handle;
  call->req.offset = off;
  call->rkey = e->rkey;
  call->raddr_64k = e->raddr_64k;
  call->wait = w;
  if (op == RP_OP_WRITE) {
    call->req.length = len;
    call->payload = buf;
  }
  else if (op == RP_OP_READ) {
    call->req.count = len;
    call->rbuf = buf;
  }
  else
    call->req.count = len;  /* ZERO */
}

static void
submit (struct conn *c, struct conn_call *call)
{
  if (conn_submit (c, call) == -1)
    die ("submit op %u: %s", call->req.op, strerror (errno));
}

static void
wait_ok (struct conn_wait *w, struct conn_call *calls, unsigned n,
         const char *what)
{
  if (conn_wait_all (w, calls, n, rp_now_ms () + TIMEOUT_MS) == -1)
    die ("%s: timed out", what);
  for (unsigned i = 0; i < n; i++)
    if (calls[i].err)
      die ("%s: call %u (op %u) failed: %s", what, i, calls[i].req.op,
           strerror (calls[i].err));
}

/* After a fence (steps 7 and 8): the newer connection c reads extent
 * e whole into back, which must equal expect (else die with landed),
 * then FREEs it.
 */
static void
expect_then_free (struct conn *c, const struct extent *e,
                  const uint8_t *expect, uint8_t *back,
                  struct conn_call *call, struct conn_wait *w,
                  const char *fence, const char *landed)
{
  char what[96];

  memset (back, 0xee, EXTENT);
  make_call (call, e, RP_OP_READ, 0, EXTENT, back, w);
  submit (c, call);
  snprintf (what, sizeof what, "READ on the newer connection after %s",
            fence);
  wait_ok (w, call, 1, what);
  if (memcmp (expect, back, EXTENT) != 0)
    die ("%s", landed);
  make_call (call, e, RP_OP_FREE, 0, 0, NULL, w);
  submit (c, call);
  snprintf (what, sizeof what, "FREE after %s", fence);
  wait_ok (w, call, 1, what);
}

static void
fill (uint8_t *p, size_t len, unsigned seed)
{
  for (size_t i = 0; i < len; i++)
    p[i] = (uint8_t) (i * 31 + seed * 7 + (i >> 12));
}

int
main (int argc, char **argv)
{
  static uint8_t wbuf[16][64 << 10], rbuf[16][64 << 10], big[EXTENT],
    back[EXTENT], reads[24][EXTENT / 4];
  static struct conn_call calls[64];
  struct conn c, c2;
  struct conn_wait w;
  struct extent e, e2;
  const char *hostport;
  unsigned n;

  if (argc != 2 && argc != 3)
    die ("usage: test_rdma_conn rdma://ADDR:PORT [PID]");
  addr = argv[1];
  if (transport_find (addr, &hostport, NULL) == NULL ||
      rp_split_hostport (hostport, host, sizeof host, port,
                         sizeof port) == -1)
    die ("'%s' is not [SCHEME://]HOST:PORT", addr);
  if (rp_random_bytes (owner, sizeof owner) == -1)
    die ("getrandom: %s", strerror (errno));
  conn_wait_init (&w);

  /* 1. */
  open_conn (&c, 1, 4u << 20);
  e = alloc_extent (&c);
  fill (big, sizeof big, 1);
  make_call (&calls[0], &e, RP_OP_WRITE, 0, EXTENT, big, &w);
  submit (&c, &calls[0]);
  wait_ok (&w, calls, 1, "1 MiB WRITE");
  make_call (&calls[0], &e, RP_OP_READ, 0, EXTENT, back, &w);
  submit (&c, &calls[0]);
  wait_ok (&w, calls, 1, "1 MiB READ");
  if (memcmp (big, back, EXTENT) != 0)
    die ("1 MiB read back differs");
  printf ("test_rdma_conn: 1 MiB written and read back one-sided\n");

  /* 2. WRITEs then READs of the same 64 KiB ranges, then a ZERO and a
   * READ of one range, all before waiting.
   */
  n = 0;
  for (unsigned i = 0; i < 8; i++) {
    fill (wbuf[i], sizeof wbuf[i], 100 + i);
    make_call (&calls[n], &e, RP_OP_WRITE, i << 16, 64 << 10, wbuf[i], &w);
    submit (&c, &calls[n++]);
  }
  for (unsigned i = 0; i < 8; i++) {
    memset (rbuf[i], 0xee, sizeof rbuf[i]);
    make_call (&calls[n], &e, RP_OP_READ, i << 16, 64 << 10, rbuf[i], &w);
    submit (&c, &calls[n++]);
  }
  make_call (&calls[n], &e, RP_OP_ZERO, 3 << 16, 64 << 10, NULL, &w);
  submit (&c, &calls[n++]);
  memset (rbuf[8], 0xee, sizeof rbuf[8]);
  make_call (&calls[n], &e, RP_OP_READ, 3 << 16, 64 << 10, rbuf[8], &w);
  submit (&c, &calls[n++]);
  wait_ok (&w, calls, n, "pipelined WRITE, READ, ZERO, READ");
  for (unsigned i = 0; i < 8; i++)
    if (memcmp (wbuf[i], rbuf[i], sizeof wbuf[i]) != 0)
      die ("a READ behind a WRITE of the same range missed it (range %u)",
           i);
  for (size_t k = 0; k < sizeof rbuf[8]; k++)
    if (rbuf[8][k] != 0)
      die ("a READ behind a ZERO of the same range missed it");
  printf ("test_rdma_conn: in order: READ after WRITE, READ after ZERO\n");

  /* 3. 40 PINGs (the memserver grants 32 credits) and 24 READs of 256
   * KiB (6 MiB through a 4 MiB pool), all in flight.
   */
  n = 0;
  for (unsigned i = 0; i < 40; i++) {
    memset (&calls[n], 0, sizeof calls[n]);
    calls[n].req.op = RP_OP_PING;
    calls[n].wait = &w;
    submit (&c, &calls[n++]);
  }
  wait_ok (&w, calls, n, "40 PINGs");
  n = 0;
  for (unsigned i = 0; i < 24; i++) {
    make_call (&calls[n], &e, RP_OP_READ, (i % 4) * (EXTENT / 4), EXTENT / 4,
               reads[i], &w);
    submit (&c, &calls[n++]);
  }
  wait_ok (&w, calls, n, "24 READs of 256 KiB");
  memcpy (big + (3 << 16), rbuf[8], 64 << 10);  /* the ZERO */
  for (unsigned i = 0; i < 8; i++)
    if (i != 3)
      memcpy (big + (i << 16), wbuf[i], 64 << 10);
  for (unsigned i = 0; i < 24; i++)
    if (memcmp (reads[i], big + (i % 4) * (EXTENT / 4), EXTENT / 4) != 0)
      die ("READ %u of the many in flight differs", i);
  printf ("test_rdma_conn: beyond the credits and the bounce pool\n");

  /* 4. FREE, then a READ with the old key, pipelined. */
  make_call (&calls[0], &e, RP_OP_FREE, 0, 0, NULL, &w);
  calls[0].req.count = 0;
  submit (&c, &calls[0]);
  make_call (&calls[1], &e, RP_OP_READ, 0, 4096, rbuf[0], &w);
  submit (&c, &calls[1]);
  if (conn_wait_all (&w, calls, 2, rp_now_ms () + TIMEOUT_MS) == -1)
    die ("FREE then READ: timed out");
  if (calls[0].err)
    die ("FREE: %s", strerror (calls[0].err));
  if (calls[1].err != ENOENT || !calls[1].is_answered)
    die ("a READ after FREE: %s (%s), not ENOENT answered",
         calls[1].err ? strerror (calls[1].err) : "no error",
         calls[1].is_answered ? "answered" : "not answered");
  for (unsigned i = 0; i < 100 && !conn_is_dead (&c); i++)
    nanosleep (&(struct timespec) { .tv_nsec = 10000000 }, NULL);
  if (!conn_is_dead (&c))
    die ("the connection lives on after a remote access error");
  printf ("test_rdma_conn: READ after FREE: ENOENT, connection ended\n");
  conn_destroy (&c);

  /* 5. A new connection; kill it with up to 48 calls in flight (those
   * submitted after the kill are refused at once).
   */
  open_conn (&c2, 2, 4u << 20);
  e2 = alloc_extent (&c2);
  /* A stopped server answers no PING; its device still serves READ and
   * WRITE.
   */
  if (argc == 3 && kill (atol (argv[2]), SIGSTOP) == -1)
    die ("kill -STOP %s: %s", argv[2], strerror (errno));
  n = 0;
  for (unsigned i = 0; i < 48; i++) {
    if (i % 3 == 2) {
      memset (&calls[n], 0, sizeof calls[n]);
      calls[n].req.op = RP_OP_PING;
      calls[n].wait = &w;
    }
    else
      make_call (&calls[n], &e2, i % 3 ? RP_OP_READ : RP_OP_WRITE,
                 (i % 4) * (EXTENT / 4), EXTENT / 4, reads[i % 24], &w);
    if (conn_submit (&c2, &calls[n]) == 0)
      n++;
    else if (i <= 20)
      die ("submit before the kill: %s", strerror (errno));
    if (i == 20)
      conn_kill (&c2, "killed by the test");
  }
  if (conn_wait_all (&w, calls, n, rp_now_ms () + TIMEOUT_MS) == -1)
    die ("calls on a killed connection did not complete");
  if (argc == 3)
    kill (atol (argv[2]), SIGCONT);
  unsigned failed = 0, pings = 0;
  for (unsigned i = 0; i < n; i++) {
    failed += calls[i].err != 0;
    pings += calls[i].req.op == RP_OP_PING;
    if (calls[i].err && calls[i].err != EIO)
      die ("a call on a killed connection failed with %s, not EIO",
           strerror (calls[i].err));
  }
  if (argc == 3 && failed < pings)
    die ("%u PINGs to a stopped server, but only %u calls failed", pings,
         failed);
  printf ("test_rdma_conn: killed with calls in flight: %u of %u failed,"
          " none hung\n", failed, n);
  conn_destroy (&c2);

  /* 6. */
  open_conn (&c, 3, 0);
  make_call (&calls[0], &e2, RP_OP_FREE, 0, 0, NULL, &w);
  submit (&c, &calls[0]);
  wait_ok (&w, calls, 1, "FREE on a third connection");
  conn_destroy (&c);
  printf ("test_rdma_conn: the session's extent freed from a new"
          " connection\n");

  /* 7. Fencing.  c (fence 4) writes and reads back; c2 (fence 5) says
   * HELLO, after which the server has put c's queue pair in the error
   * state; then a WRITE on c, which still believes itself alive.
   */
  open_conn (&c, 4, 4u << 20);
  e = alloc_extent (&c);
  fill (big, sizeof big, 7);
  make_call (&calls[0], &e, RP_OP_WRITE, 0, EXTENT, big, &w);
  submit (&c, &calls[0]);
  wait_ok (&w, calls, 1, "WRITE before the fence");
  open_conn (&c2, 5, 4u << 20);
  fill (back, sizeof back, 8);
  make_call (&calls[0], &e, RP_OP_WRITE, 0, EXTENT, back, &w);
  bool is_refused = conn_submit (&c, &calls[0]) == -1;
  /* A write to a queue pair in the error state is never acknowledged:
   * the completion error comes after the transport's retries.
   */
  if (!is_refused &&
      conn_wait_all (&w, calls, 1, rp_now_ms () + 6 * TIMEOUT_MS) == -1)
    die ("a WRITE on a fenced connection neither completed nor failed");
  if (!is_refused && calls[0].err == 0)
    die ("a WRITE on a fenced connection succeeded");
  expect_then_free (&c2, &e, big, back, &calls[0], &w, "the fence",
                    "a WRITE on a fenced connection landed");
  printf ("test_rdma_conn: a WRITE on a fenced connection %s and did not"
          " land\n", is_refused ? "was refused" : "failed");
  conn_destroy (&c);
  conn_destroy (&c2);

  /* 8. Fencing with the client kept in the dark: c's receive side is
   * parked (gate_hold, on its PING's reply) before c2 says HELLO, so
   * neither the server's disconnect nor any completion reaches c.  Its
   * WRITE is then posted on a queue pair that is still ready here and
   * goes out on the wire; the server's queue pair, in the error state
   * since c2's HELLO, must drop it.
   */
  {
    struct conn_call ping;
    struct conn_wait pw;
    struct timespec ts;
    int64_t before, now = -1;
    uint64_t deadline;
    char why[128] = "";

    open_conn (&c, 6, 4u << 20);
    c.on_free_bytes = gate_hold;
    e = alloc_extent (&c);
    fill (big, sizeof big, 9);
    make_call (&calls[0], &e, RP_OP_WRITE, 0, EXTENT, big, &w);
    submit (&c, &calls[0]);
    wait_ok (&w, calls, 1, "WRITE before the held fence");
    conn_wait_init (&pw);
    memset (&ping, 0, sizeof ping);
    ping.req.op = RP_OP_PING;
    ping.wait = &pw;
    pthread_mutex_lock (&gate_lock);
    gate_armed = true;
    pthread_mutex_unlock (&gate_lock);
    submit (&c, &ping);
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += TIMEOUT_MS / 1000;
    pthread_mutex_lock (&gate_lock);
    while (!gate_parked)
      if (pthread_cond_timedwait (&gate_cond, &gate_lock, &ts) == ETIMEDOUT)
        die ("the PING's reply never reached the receive side");
    pthread_mutex_unlock (&gate_lock);

    open_conn (&c2, 7, 4u << 20);
    before = sent_pkts ();
    fill (back, sizeof back, 10);
    make_call (&calls[0], &e, RP_OP_WRITE, 0, EXTENT, back, &w);
    if (conn_submit (&c, &calls[0]) == -1)
      die ("the held connection refused the WRITE (%s): the client learnt"
           " of the fence, which this step must not let it", strerror (errno));
    /* The WRITE's packets leave this host (one per path MTU, at most
     * 4 KiB): then the server has had its chance to take them.
     */
    deadline = rp_now_ms () + 3 * TIMEOUT_MS;
    if (before >= 0) {
      while ((now = sent_pkts ()) < before + EXTENT / 4096 &&
             rp_now_ms () < deadline) {
        struct timespec nap = { 0, 10 * 1000 * 1000 };
        nanosleep (&nap, NULL);
      }
      if (now < before + EXTENT / 4096)
        die ("the held WRITE did not leave the device: sent_pkts %" PRId64
             " -> %" PRId64, before, now);
    }
    gate_open ();
    if (conn_wait_all (&w, calls, 1, rp_now_ms () + 6 * TIMEOUT_MS) == -1)
      die ("the held WRITE neither completed nor failed");
    if (calls[0].err == 0)
      die ("a WRITE the server should have dropped succeeded");
    if (conn_wait_all (&pw, &ping, 1, rp_now_ms () + TIMEOUT_MS) == -1)
      die ("the held PING never completed");
    conn_dead_why (&c, why, sizeof why);
    expect_then_free (&c2, &e, big, back, &calls[0], &w, "the held fence",
                      "a WRITE posted on a fenced queue pair landed on"
                      " the server");
    if (before >= 0)
      printf ("test_rdma_conn: a WRITE posted after the fence, unknown to"
              " the client, left the device (sent_pkts +%" PRId64 "), failed"
              " (%s) and did not land\n", now - before, why);
    else
      printf ("test_rdma_conn: a WRITE posted after the fence, unknown to"
              " the client, failed (%s) and did not land (no sent_pkts"
              " counter to show it left the device)\n", why);
    conn_destroy (&c);
    conn_destroy (&c2);
    conn_wait_destroy (&pw);
  }
  conn_wait_destroy (&w);
  printf ("test_rdma_conn: PASS\n");
  return 0;
}
