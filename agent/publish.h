/*
 * publish.h: `voca publish`, send JSON Lines files to a ZeroMQ endpoint
 * (demo, backfill, replay after a gap, tests).
 */
#ifndef VOCA_PUBLISH_H
#define VOCA_PUBLISH_H

int publish_main(int argc, char **argv);

#endif
