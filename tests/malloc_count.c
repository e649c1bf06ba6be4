/* malloc_count: an LD_PRELOAD shim that records every malloc, calloc,
 * realloc, posix_memalign and aligned_alloc called directly from code
 * in the rampool plugin (the caller's object file name contains
 * "nbdkit-rampool-plugin"), one line per call, into the file named by
 * RP_MALLOC_LOG.  tests/test-no-malloc.sh uses it to show that the
 * plugin's I/O path allocates nothing once the pool is open.
 *
 * Limit: only direct calls from our code are seen; an allocation made
 * inside a library function we call (libc, libsodium) is attributed to
 * that library.  The I/O path calls none that allocate (locks, writev,
 * read, memcpy, the AEAD), which review of client/io.c and conn.c backs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *(*real_malloc) (size_t);
static void *(*real_calloc) (size_t, size_t);
static void *(*real_realloc) (void *, size_t);
static int (*real_posix_memalign) (void **, size_t, size_t);
static void *(*real_aligned_alloc) (size_t, size_t);
static int log_fd = -1;
static __thread int in_hook;
static char bootstrap[65536];
static size_t bootstrap_used;

static void
hook_init (void)
{
  const char *path;

  in_hook = 1;
  real_malloc = dlsym (RTLD_NEXT, "malloc");
  real_calloc = dlsym (RTLD_NEXT, "calloc");
  real_realloc = dlsym (RTLD_NEXT, "realloc");
  real_posix_memalign = dlsym (RTLD_NEXT, "posix_memalign");
  real_aligned_alloc = dlsym (RTLD_NEXT, "aligned_alloc");
  path = getenv ("RP_MALLOC_LOG");
  if (path)
    log_fd = open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  in_hook = 0;
}

static void
hook_record (const char *fn, void *caller, size_t size)
{
  Dl_info info;
  char line[512];
  int n;

  if (in_hook || log_fd < 0)
    return;
  in_hook = 1;
  if (dladdr (caller, &info) && info.dli_fname &&
      strstr (info.dli_fname, "nbdkit-rampool-plugin")) {
    n = snprintf (line, sizeof line, "%s %zu from %s+%#lx\n", fn, size,
                  info.dli_sname ? info.dli_sname : "?",
                  (unsigned long) ((char *) caller -
                                   (char *) (info.dli_saddr ? info.dli_saddr
                                             : info.dli_fbase)));
    if (n > 0)
      write (log_fd, line, n);
  }
  in_hook = 0;
}

void *
malloc (size_t size)
{
  if (real_malloc == NULL) {
    if (in_hook) {  /* dlsym's own allocations while we bootstrap */
      void *p = bootstrap + bootstrap_used;
      bootstrap_used += (size + 15) & ~(size_t) 15;
      return p;
    }
    hook_init ();
  }
  hook_record ("malloc", __builtin_return_address (0), size);
  return real_malloc (size);
}

void *
calloc (size_t n, size_t size)
{
  if (real_calloc == NULL) {
    if (in_hook) {
      void *p = bootstrap + bootstrap_used;
      bootstrap_used += (n * size + 15) & ~(size_t) 15;
      memset (p, 0, n * size);
      return p;
    }
    hook_init ();
  }
  hook_record ("calloc", __builtin_return_address (0), n * size);
  return real_calloc (n, size);
}

void *
realloc (void *ptr, size_t size)
{
  if (real_realloc == NULL)
    hook_init ();
  hook_record ("realloc", __builtin_return_address (0), size);
  return real_realloc (ptr, size);
}

void
free (void *ptr)
{
  static void (*real_free) (void *);

  if ((char *) ptr >= bootstrap && (char *) ptr < bootstrap + sizeof bootstrap)
    return;
  if (real_free == NULL)
    real_free = dlsym (RTLD_NEXT, "free");
  real_free (ptr);
}

int
posix_memalign (void **p, size_t align, size_t size)
{
  if (real_posix_memalign == NULL)
    hook_init ();
  hook_record ("posix_memalign", __builtin_return_address (0), size);
  return real_posix_memalign (p, align, size);
}

void *
aligned_alloc (size_t align, size_t size)
{
  if (real_aligned_alloc == NULL)
    hook_init ();
  hook_record ("aligned_alloc", __builtin_return_address (0), size);
  return real_aligned_alloc (align, size);
}
