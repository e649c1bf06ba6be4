/* servers-file=: the pool's membership, re-read live (membership.c). */
#ifndef RP_MEMBERSHIP_H
#define RP_MEMBERSHIP_H

#include "engine.h"

/* At open: read servers-file= into p->cfg.servers and remember the
 * file's identity.  0, or -1 with a message in err.
 */
int membership_load (struct rp_pool *p, char *err, size_t errlen);

/* Every heartbeat (monitor thread): if the file changed, add the
 * servers it gained and mark removed the ones it lost; retire removed
 * servers that hold nothing of ours any more.
 */
void membership_check (struct rp_pool *p);

#endif /* RP_MEMBERSHIP_H */
