/* nbd_blocks: read an NBD export block by block and classify each
 * block against an expected copy: "ok" (bytes equal), "eio" (the read
 * failed with EIO), "mismatch" (read succeeded with other bytes — the
 * one outcome rampool must never produce), "error" (anything else).
 *
 * Usage: nbd_blocks URI BLOCK_SIZE EXPECTED_FILE
 * Prints "ok N eio N mismatch N error N" and exits 0; the calling test
 * asserts the counts.  Each mismatching block is named on stderr, and
 * with NBD_BLOCKS_LIST_EIO=1 in the environment each EIO block too.
 *
 *        nbd_blocks URI BLOCK_SIZE FILE write FIRST COUNT
 * writes blocks FIRST..FIRST+COUNT-1 of FILE to the same blocks of the
 * export (exit 1 on any error, 3 if that error was EIO), so a test can
 * rewrite part of a disk and keep its expected copy exact.
 *
 *        nbd_blocks URI BLOCK_SIZE FILE pread OFFSET LENGTH
 *        nbd_blocks URI BLOCK_SIZE FILE pwrite OFFSET LENGTH
 * one request for bytes [OFFSET, OFFSET+LENGTH) of the export (any
 * alignment; BLOCK_SIZE unused): pread compares them with the same
 * bytes of FILE, pwrite writes FILE's.  Prints one word, "ok", "eio",
 * "mismatch" (pread) or "error", and exits 0.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libnbd.h>

int
main (int argc, char **argv)
{
  struct nbd_handle *nbd;
  uint64_t ok = 0, eio = 0, bad = 0, err = 0;
  size_t bs;
  int64_t size;
  FILE *fp;
  char *got, *want;
  const char *le = getenv ("NBD_BLOCKS_LIST_EIO");
  int list_eio = le && strcmp (le, "1") == 0;

  if (argc != 4 && !(argc == 7 && (strcmp (argv[4], "write") == 0 ||
                                    strcmp (argv[4], "pread") == 0 ||
                                    strcmp (argv[4], "pwrite") == 0))) {
    fprintf (stderr, "usage: nbd_blocks URI BLOCK_SIZE EXPECTED_FILE\n");
    return 2;
  }
  bs = strtoul (argv[2], NULL, 0);
  fp = fopen (argv[3], "rb");
  nbd = nbd_create ();
  if (bs == 0 || fp == NULL || nbd == NULL ||
      nbd_connect_uri (nbd, argv[1]) == -1) {
    fprintf (stderr, "nbd_blocks: setup: %s\n", nbd ? nbd_get_error () : "");
    return 2;
  }
  size = nbd_get_size (nbd);
  if (argc == 7 && argv[4][0] == 'p') {
    uint64_t off = strtoull (argv[5], NULL, 0);
    uint64_t len = strtoull (argv[6], NULL, 0);
    bool is_read = strcmp (argv[4], "pread") == 0;
    const char *res;
    int r;

    got = malloc (len ? len : 1);
    want = malloc (len ? len : 1);
    if (got == NULL || want == NULL || fseeko (fp, off, SEEK_SET) == -1 ||
        fread (want, 1, len, fp) != len) {
      fprintf (stderr, "nbd_blocks: %s is shorter than %" PRIu64 " bytes\n",
               argv[3], off + len);
      return 2;
    }
    if (is_read)
      r = nbd_pread (nbd, got, len, off, 0);
    else
      r = nbd_pwrite (nbd, want, len, off, 0);
    if (r == -1) {
      res = nbd_get_errno () == EIO ? "eio" : "error";
      fprintf (stderr, "nbd_blocks: %s %" PRIu64 "+%" PRIu64 ": %s\n",
               argv[4], off, len, nbd_get_error ());
    }
    else
      res = !is_read || memcmp (got, want, len) == 0 ? "ok" : "mismatch";
    printf ("%s\n", res);
    nbd_shutdown (nbd, 0);
    nbd_close (nbd);
    fclose (fp);
    free (got);
    free (want);
    return 0;
  }
  got = malloc (bs);
  want = malloc (bs);
  if (argc == 7) {
    uint64_t first = strtoull (argv[5], NULL, 0),
             count = strtoull (argv[6], NULL, 0);
    for (uint64_t b = first; b < first + count; b++) {
      int is_eio = 0;
      if (fseeko (fp, b * bs, SEEK_SET) == -1 ||
          fread (want, 1, bs, fp) != bs ||
          nbd_pwrite (nbd, want, bs, b * bs, 0) == -1) {
        is_eio = nbd_get_error () && nbd_get_errno () == EIO;
        fprintf (stderr, "nbd_blocks: write of block %" PRIu64 ": %s\n", b,
                 nbd_get_error () ? nbd_get_error () : "short file");
        nbd_close (nbd);
        fclose (fp);
        free (got);
        free (want);
        return is_eio ? 3 : 1;
      }
    }
    nbd_shutdown (nbd, 0);
    nbd_close (nbd);
    fclose (fp);
    free (got);
    free (want);
    return 0;
  }
  for (int64_t off = 0; off + (int64_t) bs <= size; off += bs) {
    size_t n = fread (want, 1, bs, fp);
    if (n < bs)
      memset (want + n, 0, bs - n);  /* past the file: zeros */
    if (nbd_pread (nbd, got, bs, off, 0) == -1) {
      if (nbd_get_errno () == EIO) {
        eio++;
        if (list_eio)
          fprintf (stderr, "nbd_blocks: EIO in the block at %" PRId64 "\n",
                   off);
      }
      else {
        fprintf (stderr, "nbd_blocks: block at %" PRId64 ": %s\n", off,
                 nbd_get_error ());
        err++;
      }
      continue;
    }
    if (memcmp (got, want, bs) == 0)
      ok++;
    else {
      fprintf (stderr, "nbd_blocks: MISMATCH in the block at %" PRId64 "\n",
               off);
      bad++;
    }
  }
  printf ("ok %" PRIu64 " eio %" PRIu64 " mismatch %" PRIu64 " error %" PRIu64
          "\n",
          ok, eio, bad, err);
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  fclose (fp);
  free (got);
  free (want);
  return 0;
}
