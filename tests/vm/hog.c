/* hog: memory hog for the rampool VM swap test.
 *
 * Usage: hog MIB [SEED] [PASSES]
 *
 * Maps MIB MiB of anonymous memory, fills every 8-byte word of every page
 * with a value derived from (seed, page index, word index) through a
 * 64-bit mixer (so the data is incompressible and each page is unique),
 * then reads every page back and checks every word.  With PASSES > 1 the
 * verification is repeated (pages are swapped in and out again).
 *
 * Output lines (all start with "hog:"):
 *   hog: wrote N MiB          progress while writing (every 32 MiB)
 *   hog: write-done
 *   hog: verified N MiB       progress while verifying
 *   hog: RESULT pages=P passes=N mismatched_pages=M mismatched_words=W
 *               write_s=S verify_s=S   (phase times, CLOCK_MONOTONIC)
 * HOG_CORRUPT=1 in the environment flips one bit after writing (to check
 * that the checker catches it).
 * Exit status: 0 when nothing mismatched, 1 on mismatch, 2 on usage or
 * allocation error.
 *
 * Built statically (gcc -static -O2) so it runs in the busybox initramfs.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t
mix64 (uint64_t x)
{
  /* splitmix64 finalizer */
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t
word_value (uint64_t seed, uint64_t page, uint64_t word)
{
  return mix64 (seed ^ mix64 (page * 4096 + word));
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    fprintf (stderr, "usage: %s MIB [SEED] [PASSES]\n", argv[0]);
    return 2;
  }
  char *end;
  unsigned long mib = strtoul (argv[1], &end, 10);
  if (*end != '\0' || mib == 0) {
    fprintf (stderr, "hog: bad size '%s'\n", argv[1]);
    return 2;
  }
  uint64_t seed = argc > 2 ? strtoull (argv[2], NULL, 0) : 0x5eedULL;
  unsigned long passes = argc > 3 ? strtoul (argv[3], NULL, 10) : 1;
  if (passes == 0)
    passes = 1;

  long psz = sysconf (_SC_PAGESIZE);
  if (psz <= 0)
    psz = 4096;
  size_t page_size = (size_t) psz;
  size_t bytes = (size_t) mib << 20;
  size_t pages = bytes / page_size;
  size_t words = page_size / sizeof (uint64_t);

  uint64_t *mem = mmap (NULL, bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror ("hog: mmap");
    return 2;
  }
  /* 4 KiB pages only: keeps swap-out page by page. */
  madvise (mem, bytes, MADV_NOHUGEPAGE);

  size_t pages_per_report = ((size_t) 32 << 20) / page_size;
  printf ("hog: start mib=%lu pages=%zu seed=0x%llx passes=%lu\n", mib, pages,
          (unsigned long long) seed, passes);
  fflush (stdout);

  double t_start = now_s ();
  for (size_t p = 0; p < pages; p++) {
    uint64_t *pg = mem + p * words;
    for (size_t w = 0; w < words; w++)
      pg[w] = word_value (seed, p, w);
    if ((p + 1) % pages_per_report == 0) {
      printf ("hog: wrote %zu MiB\n", ((p + 1) * page_size) >> 20);
      fflush (stdout);
    }
  }
  /* self-test of the checker: HOG_CORRUPT=1 flips one bit of one word */
  if (getenv ("HOG_CORRUPT") && pages > 1)
    mem[(pages / 2) * words + 3] ^= 1;
  double t_written = now_s ();
  printf ("hog: write-done\n");
  fflush (stdout);

  unsigned long long bad_pages = 0, bad_words = 0;
  for (unsigned long pass = 0; pass < passes; pass++) {
    for (size_t p = 0; p < pages; p++) {
      const uint64_t *pg = mem + p * words;
      unsigned long long bad_here = 0;
      for (size_t w = 0; w < words; w++)
        if (pg[w] != word_value (seed, p, w))
          bad_here++;
      if (bad_here) {
        if (bad_pages < 10)
          printf ("hog: MISMATCH pass=%lu page=%zu words=%llu "
                  "first=0x%016llx\n",
                  pass, p, bad_here, (unsigned long long) pg[0]);
        bad_pages++;
        bad_words += bad_here;
      }
      if ((p + 1) % pages_per_report == 0) {
        printf ("hog: verified %zu MiB (pass %lu)\n",
                ((p + 1) * page_size) >> 20, pass + 1);
        fflush (stdout);
      }
    }
  }
  double t_end = now_s ();
  printf ("hog: RESULT pages=%zu passes=%lu mismatched_pages=%llu "
          "mismatched_words=%llu write_s=%.2f verify_s=%.2f\n",
          pages, passes, bad_pages, bad_words, t_written - t_start,
          t_end - t_written);
  fflush (stdout);
  return bad_pages ? 1 : 0;
}
