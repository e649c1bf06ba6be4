/* nbd_zero: NBD_CMD_WRITE_ZEROES with or without NBD_CMD_FLAG_NO_HOLE,
 * and NBD_CMD_BLOCK_STATUS (base:allocation), from a real NBD client
 * (libnbd), for tests/test-zero-nohole.sh.
 *
 *   nbd_zero URI zero OFFSET LENGTH          zero, holes allowed
 *   nbd_zero URI zero-nohole OFFSET LENGTH   zero, the range must stay
 *                                            allocated (NO_HOLE)
 *   nbd_zero URI status OFFSET LENGTH        one line per extent the
 *                                            server reports: OFFSET
 *                                            LENGTH data|hole|zero|
 *                                            hole,zero
 * Exits 1 (with libnbd's message) if a request fails, 2 on bad usage.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libnbd.h>

static int
print_extents (void *user_data, const char *metacontext, uint64_t offset,
               uint32_t *entries, size_t nr_entries, int *error)
{
  uint64_t *pos = user_data;

  (void) error;
  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  *pos = offset;
  for (size_t i = 0; i + 1 < nr_entries; i += 2) {
    uint32_t len = entries[i], flags = entries[i + 1];
    const char *what =
      (flags & LIBNBD_STATE_HOLE) && (flags & LIBNBD_STATE_ZERO) ? "hole,zero"
      : (flags & LIBNBD_STATE_HOLE) ? "hole"
      : (flags & LIBNBD_STATE_ZERO) ? "zero" : "data";
    printf ("%" PRIu64 " %" PRIu32 " %s\n", *pos, len, what);
    *pos += len;
  }
  return 0;
}

int
main (int argc, char **argv)
{
  struct nbd_handle *nbd;
  uint64_t off, len;
  const char *cmd;
  int r;

  if (argc != 5) {
    fprintf (stderr,
             "usage: nbd_zero URI zero|zero-nohole|status OFFSET LENGTH\n");
    return 2;
  }
  cmd = argv[2];
  off = strtoull (argv[3], NULL, 0);
  len = strtoull (argv[4], NULL, 0);
  nbd = nbd_create ();
  if (nbd == NULL ||
      nbd_add_meta_context (nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbd_connect_uri (nbd, argv[1]) == -1) {
    fprintf (stderr, "nbd_zero: connect: %s\n", nbd_get_error ());
    return 1;
  }
  if (strcmp (cmd, "zero") == 0)
    r = nbd_zero (nbd, len, off, 0);
  else if (strcmp (cmd, "zero-nohole") == 0)
    r = nbd_zero (nbd, len, off, LIBNBD_CMD_FLAG_NO_HOLE);
  else if (strcmp (cmd, "status") == 0) {
    if (nbd_can_meta_context (nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) != 1) {
      fprintf (stderr, "nbd_zero: the server offers no base:allocation\n");
      nbd_close (nbd);
      return 1;
    }
    /* One request may describe only part of the range: ask again from
     * where the answer ended.
     */
    uint64_t pos = off, end = off + len;
    r = 0;
    while (r == 0 && pos < end) {
      uint64_t at = pos;
      uint64_t n = end - pos > UINT32_MAX ? UINT32_MAX : end - pos;
      r = nbd_block_status (nbd, n, pos,
                            (nbd_extent_callback) { .callback = print_extents,
                                                    .user_data = &at }, 0);
      if (r == 0 && at <= pos) {
        fprintf (stderr, "nbd_zero: block status made no progress at %"
                 PRIu64 "\n", pos);
        r = -1;
        break;
      }
      pos = at;
    }
  }
  else {
    fprintf (stderr, "nbd_zero: unknown command %s\n", cmd);
    nbd_close (nbd);
    return 2;
  }
  if (r == -1) {
    fprintf (stderr, "nbd_zero: %s %" PRIu64 "+%" PRIu64 ": %s\n", cmd,
             off, len, nbd_get_error () ? nbd_get_error () : "no progress");
    nbd_close (nbd);
    return 1;
  }
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  return 0;
}
