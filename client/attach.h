/* rampool attach / detach (attach.c). */
#ifndef RP_ATTACH_H
#define RP_ATTACH_H

int attach_main (int argc, char **argv);
int detach_main (int argc, char **argv);

#endif /* RP_ATTACH_H */
