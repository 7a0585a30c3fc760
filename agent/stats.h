/*
 * stats.h: `voca stats`, what the store holds: events, what was dropped as
 * duplicate or stale, what was quarantined and why, and sequence gaps.
 */
#ifndef VOCA_STATS_H
#define VOCA_STATS_H

int stats_main(int argc, char **argv);

#endif
