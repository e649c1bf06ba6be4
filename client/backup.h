/* The local backup file, backup=PATH (backup.c): Infiniswap's backup
 * disk.  Every write also goes here, as the bytes go on the wire
 * (ciphertext with encrypt=on), before any replica is sent them; a read
 * whose every copy is lost is served from it, and recovery rebuilds
 * copies from it.
 */
#ifndef RP_BACKUP_H
#define RP_BACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

/* Open (create, or empty) the file of p->cfg.backup_file, if any, into
 * p->backup_fd.  0, or -1 with a message in err.
 */
int backup_open (struct rp_pool *p, char *err, size_t errlen);
void backup_close (struct rp_pool *p);

static inline bool
backup_is_on (const struct rp_pool *p)
{
  return p->backup_fd >= 0;
}

/* Bytes [off, off+len) of extent idx: store them (len bytes at buf),
 * or punch them (buf NULL: they read as zeros).  No-op without a
 * backup.  0 or -1 with errno = EIO (logged).
 */
int backup_write (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
                  const uint8_t *buf);

/* Read [off, off+len) of extent idx into buf as stored (raw), or
 * decrypted and counted as a backup read (backup_read).  0 or -1 with
 * errno = EIO.
 */
int backup_read_raw (struct rp_pool *p, uint64_t idx, uint32_t off,
                     uint32_t len, uint8_t *buf);
int backup_read (struct rp_pool *p, uint64_t idx, uint32_t off, uint32_t len,
                 uint8_t *buf);

#endif /* RP_BACKUP_H */
